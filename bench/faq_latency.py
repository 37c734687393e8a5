"""Latency of `Matcher.match` alone on one evaluation file, several rounds: thread CPU and wall time.

    .venv/bin/python bench/faq_latency.py bench/data/eval/faq_long_test2.csv after   # label printed on each line

bench/faq.py times each split once, beside quality; on a busy machine its p99 over a few hundred questions is
a handful of them. This times the matcher alone, warm, three rounds, so that two states run one after the other
in the same minutes can be compared (BENCHMARKS.md, session 5's blind runs). Prints only timings.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

# The matcher of this checkout, not of whatever checkout the venv's editable install points to (session 7: run
# from a worktree with main's venv, `import bot` found /work/main's copy first).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.catalog import load_catalog  # noqa: E402
from bot.matcher import Matcher  # noqa: E402


def main(path: str, label: str, rounds: int = 3) -> None:
    matcher = Matcher(load_catalog())
    with open(path, encoding="utf-8") as f:
        questions = [r["question"] for r in csv.DictReader(f)]
    for q in questions:  # warm: caches filled as in a running bot
        matcher.match(q)
    for n in range(rounds):
        cpu: list[float] = []
        wall: list[float] = []
        for q in questions:
            w, t = time.perf_counter(), time.thread_time()
            matcher.match(q)
            cpu.append((time.thread_time() - t) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
        cpu.sort()
        wall.sort()
        k = len(cpu)
        print(
            f"{label} round {n}: cpu p50 {cpu[k // 2]:.2f} p99 {cpu[int(k * 0.99)]:.2f} | "
            f"wall p50 {wall[k // 2]:.2f} p99 {wall[int(k * 0.99)]:.2f} | load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "matcher")
