"""What one socket read costs by the size asked for (the cost behind `CCCD_SOCKET_READ_BYTES`, issue 11).

A small message (300 bytes, like a webhook or a PostgreSQL reply) is sent and read back over a socket pair,
`--reads` times for each size. CPython allocates the size asked for, then shrinks it to what arrived: with
glibc's mmap threshold raised (as in a server after start-up, reproduced here by freeing a 4 MB block), a
256 KiB read is a heap allocation (and fragments the heap, BENCHMARKS.md "Memory"); with the threshold fixed
(`MALLOC_MMAP_THRESHOLD_=131072`) it is mmap + mremap + munmap on every read.

usage:
  python bench/socket_reads.py
  MALLOC_MMAP_THRESHOLD_=131072 python bench/socket_reads.py
"""

from __future__ import annotations

import argparse
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=200_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[262144, 65536, 16384])
    args = parser.parse_args()
    block = bytes(4 << 20)  # freeing a mapped block raises glibc's dynamic mmap threshold
    del block
    a, b = socket.socketpair()
    message = b"x" * 300
    for size in args.sizes:
        started = time.perf_counter()
        for _ in range(args.reads):
            a.send(message)
            b.recv(size)
        print(f"recv({size}): {(time.perf_counter() - started) / args.reads * 1e6:.2f} µs per send + read")


if __name__ == "__main__":
    main()
