"""Mask ID numbers, phone numbers and one-time codes in text before it is stored or logged."""

from __future__ import annotations

import re

ID_MASK = "[số giấy tờ]"
PHONE_MASK = "[số điện thoại]"
CODE_MASK = "[mã]"
NUMBER_MASK = "[số]"

# Digit groups joined by spaces, dots or dashes ("0912 345 678", "001.089.012.345"), or a leading +84.
# Only digits bound the match: people glue numbers to words ("sdt0912345678", "cccd001089012345").
_DIGITS = re.compile(r"(?<!\d)(\+?\d(?:[ .\-]?\d)*)(?!\d)")
_AMOUNT_AFTER = re.compile(r"\s*(k|đ|d|vnd|vnđ|đồng|dong|nghìn|ngàn|ngan|nghin|tr|triệu|trieu)\b", re.I)
# A short code counts as a one-time code when one of these words comes just before ("mã OTP là 4821").
_CODE_CONTEXT = re.compile(r"\b(otp|opt|mã|ma|code|pin|passcode)\b\D{0,12}$", re.I)
# Amounts never need nine digits here (fees are tens of thousands of đồng), and "k"/"đ" after a
# long number usually means "không"/"được" ("sdt 0912345678 k nghe"): long numbers are always masked.
MAX_AMOUNT_DIGITS = 8


def _replacement(text: str, match: re.Match[str]) -> str:
    raw = match.group(1)
    digits = re.sub(r"\D", "", raw)
    n = len(digits)
    if n <= MAX_AMOUNT_DIGITS and _AMOUNT_AFTER.match(text, match.end()) and not raw.startswith("+"):
        return raw
    if raw.startswith("+84") or (digits.startswith("84") and n in (11, 12) and " " not in raw):
        return PHONE_MASK
    if digits.startswith("0") and n in (10, 11):
        return PHONE_MASK
    if n in (9, 12):
        return ID_MASK
    if n >= 9:
        return NUMBER_MASK
    if 6 <= n <= 8:
        return CODE_MASK
    if 4 <= n <= 5 and _CODE_CONTEXT.search(text[: match.start()]):
        return CODE_MASK
    return raw


def mask(text: str) -> str:
    """Return text with ID numbers, phone numbers and OTP-like codes replaced by placeholders."""
    return _DIGITS.sub(lambda m: _replacement(text, m), text)
