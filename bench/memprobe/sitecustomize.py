"""Memory probe for `cccd-bot serve` under load (`bench/load.py --memprobe DIR`); imported at interpreter start
through PYTHONPATH, in the bot's processes only, and only when BENCH_MEMPROBE_DIR is set.

Every BENCH_MEMPROBE_EVERY seconds (30) it appends one JSON line to DIR/memprobe-<pid>.jsonl, telling apart
what the process's resident memory is made of, so that a growth can be placed before it is explained:
  rss            the process's resident set (MB)
  heap           resident part of glibc's main heap ([heap] in /proc/self/smaps): malloc'd blocks, Python
                 objects over 512 bytes, C libraries
  anon           resident anonymous mappings: Python's object arenas (pymalloc, 1 MiB each), thread stacks,
                 glibc's thread arenas, large blocks malloc mmaps
  malloc_used / malloc_free   glibc's mallinfo2 over every arena: in use, and free but kept (fragmentation
                 when the heap grows while "used" does not)
  gc_objects     objects the garbage collector tracks, not counting those frozen at start-up (gc.freeze);
                 gc_growth: the types that grew most since the previous line
  statements     prepared statements cached per pooled PostgreSQL connection (SQLAlchemy's asyncpg adapter)
With BENCH_MEMPROBE_TRACE=N (frames), tracemalloc starts BENCH_MEMPROBE_TRACE_AFTER seconds (30) after start
(start-up is slow under it) and each later line carries the allocation sites that grew most since the first
snapshot. It slows the process down: use it at a low rate. A diagnostic, not a figure: the figures in
BENCHMARKS.md are measured without it.
"""

import os
import sys

if os.environ.get("BENCH_MEMPROBE_DIR") and "serve" in sys.argv[1:2]:
    import collections
    import ctypes
    import gc
    import json
    import threading
    import time
    import tracemalloc

    _DIR = os.environ["BENCH_MEMPROBE_DIR"]
    _EVERY = float(os.environ.get("BENCH_MEMPROBE_EVERY", "30"))
    _FRAMES = int(os.environ.get("BENCH_MEMPROBE_TRACE", "0"))
    _TRACE_AFTER = float(os.environ.get("BENCH_MEMPROBE_TRACE_AFTER", "30"))

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    def _mallinfo():
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _MallInfo2
        except (OSError, AttributeError):  # not glibc, or older than 2.33
            return None
        return libc.mallinfo2

    def _smaps() -> dict:
        sizes = {"rss": 0, "heap": 0, "anon": 0, "file": 0}
        kind = None
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if not first.endswith(":"):  # a mapping's header: address perms offset dev inode [path]
                    parts = line.split()
                    path = parts[5] if len(parts) > 5 else ""
                    kind = "heap" if path == "[heap]" else "file" if path.startswith("/") else "anon"
                elif first == "Rss:":
                    kb = int(line.split()[1])
                    sizes[kind] += kb
                    sizes["rss"] += kb
        return {k: round(v / 1024, 1) for k, v in sizes.items()}

    def _statements() -> list[int]:
        out = []
        for obj in gc.get_objects():
            if type(obj).__name__ == "AsyncAdapt_asyncpg_connection":
                cache = getattr(obj, "_prepared_statement_cache", None)
                out.append(len(cache) if cache is not None else 0)
        return out

    def _probe() -> None:
        started = time.monotonic()
        mallinfo = _mallinfo()
        baseline = None
        previous: collections.Counter | None = None
        path = os.path.join(_DIR, f"memprobe-{os.getpid()}.jsonl")
        while True:
            time.sleep(_EVERY)
            elapsed = time.monotonic() - started
            line: dict = {"t": round(elapsed), **_smaps()}
            if mallinfo is not None:
                info = mallinfo()
                line.update(malloc_used=round(info.uordblks / 2**20, 1), malloc_free=round(info.fordblks / 2**20, 1),
                            malloc_mmapped=round(info.hblkhd / 2**20, 1))
            counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            line["gc_objects"] = sum(counts.values())
            if previous is not None:
                growth = counts.copy()
                growth.subtract(previous)
                line["gc_growth"] = {k: v for k, v in growth.most_common(8) if v > 0}
            previous = counts
            line["statements"] = _statements()
            if _FRAMES and elapsed >= _TRACE_AFTER:
                if not tracemalloc.is_tracing():
                    tracemalloc.start(_FRAMES)
                elif baseline is None:
                    baseline = tracemalloc.take_snapshot()
                else:
                    stats = tracemalloc.take_snapshot().compare_to(baseline, "traceback")[:10]
                    line["traced_growth"] = [
                        {"kb": round(s.size_diff / 1024, 1), "count": s.count_diff, "where": s.traceback.format()[-4:]} for s in stats
                    ]
                line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            with open(path, "a") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")

    threading.Thread(target=_probe, name="memprobe", daemon=True).start()
