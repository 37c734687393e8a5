"""Benchmark `bot.masking.mask` on long messages (results go to BENCHMARKS.md).

    .venv/bin/python bench/masking.py

A 60,000-character message once froze every chat for 10.7 s (a quadratic search). This measures mask()
on messages of 6,000, 60,000 and 600,000 characters of several shapes (ordinary text with numbers, digits
separated by single spaces, code words everywhere, one endless digit chain), against a baseline measured
in the same run on the same texts: one `re.sub(r"\\d", "#", text)` pass, the cheapest linear scan there is.
Linear time shows as a time per character that stays flat when the message grows tenfold.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.masking import mask  # noqa: E402

SHAPES = {
    "mixed text": "sdt 0912 345 678, cccd 001089012345, mã otp 482913 k nhận được, phí 70.000đ năm 2024 bước 5. ",
    "spaced digits": "1 ",
    "code words": "mã otp xác nhận 12 ",
    "one digit chain": "1-",
    "digits and dots": "1.",
    "digit words": "không chín một hai, ",
    "words and digits": "năm 12 mã ",
}
SIZES = (6_000, 60_000, 600_000)
_DIGIT = re.compile(r"\d")


def best_of(fn, text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'shape':<16} {'chars':>8} {'mask ms':>9} {'baseline ms':>12} {'ratio':>6} {'ns/char':>8}")
    worst = 0.0
    for name, unit in SHAPES.items():
        for size in SIZES:
            text = (unit * (size // len(unit) + 1))[:size]
            repeat = 5 if size <= 60_000 else 2
            masked = best_of(mask, text, repeat)
            baseline = best_of(lambda t: _DIGIT.sub("#", t), text, repeat)
            if size == 60_000:
                worst = max(worst, masked)
            print(
                f"{name:<16} {size:>8} {masked * 1000:>9.1f} {baseline * 1000:>12.1f} "
                f"{masked / baseline:>6.1f} {masked / size * 1e9:>8.0f}"
            )
    print(f"slowest 60,000-character message: {worst * 1000:.1f} ms (was 10,700 ms before issue #10)")


if __name__ == "__main__":
    main()
