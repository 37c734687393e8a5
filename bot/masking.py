"""Mask ID numbers, phone numbers and one-time codes in text before it is stored or logged.

People write numbers in many ways: groups joined by spaces (also non-breaking, thin or doubled), dots,
dashes (" - ", en and em dashes), commas, slashes or underscores; "(097) 564 4740"; "+84 912…";
full-width digits from some phone keyboards; one digit at a time ("0 9 1 2 …"). So the unit masked is a
*chain*: digits (any Unicode decimal digit) joined by short runs of separators. A chain is then judged
as a whole:

- 9 or more digits: an ID number (9 or 12), a phone number (0… with 10-11 digits, 84… with 11-12, or
  written with "+"), or some other long number. Always masked: no fee or year needs nine digits.
- 4 to 8 digits near a code word ("mã", "otp", "xác nhận"…, up to 40 characters before, or a strong code
  word up to 20 characters after): a one-time code, masked even when "k"/"đ" follows ("k" is *không*).
- 6 to 8 digits written without separators: a code typed alone, masked unless it is plainly an amount
  ("150000 đồng", "1000000đ").
- Everything else stays: amounts ("50.000đ", "50 nghìn"), years ("năm 2024"), ages, step numbers, dates.

Where being readable and being safe conflict, the text is masked. Everything runs in linear time: one
regular expression without nested repetition finds the chains (separators are bounded, and digits and
separators are disjoint classes, so it never backtracks more than a few characters), and code words are
found once, in order, and walked with a single pointer.
"""

from __future__ import annotations

import re
import unicodedata

ID_MASK = "[số giấy tờ]"
PHONE_MASK = "[số điện thoại]"
CODE_MASK = "[mã]"
NUMBER_MASK = "[số]"

# Horizontal spaces (ordinary, non-breaking, thin, figure, ideographic…) and zero-width characters
# people paste between digits; punctuation that groups digits, also in full width. Never a newline:
# numbers on separate lines are separate numbers.
_SPACES = " \t\u00a0\u1680\u2000-\u200d\u202f\u205f\u2060\u3000\ufeff"
_PUNCT = r".,\-_/()+·•*'\u2010-\u2015\u2212\uff08\uff09\uff0b\uff0c\uff0d\uff0e\uff0f\uff3f"
MAX_SEPARATOR = 5
_CHAIN = re.compile(rf"\d+(?:[{_SPACES}{_PUNCT}]{{1,{MAX_SEPARATOR}}}\d+)*")
_LEADING = "+(\uff08\uff0b"

# Words after a number that make it an amount of money. "k" and "đ"/"d" also abbreviate "không" and
# "được", so they count only for numbers an amount plausibly is (see `_is_amount`).
_UNIT = re.compile(
    r"[ \t\u00a0]{0,2}(k|đ|d|vnd|vnđ|đồng|dong|đ\.|nghìn|ngàn|ngan|nghin|tr|triệu|trieu|xu)(?!\w)", re.I
)
_AMBIGUOUS_UNITS = {"k", "đ", "d"}

# Code words. Strong ones count before or after the number; "ma" (without its mark it is also "but",
# "ghost"…) only just before it.
_STRONG_CODE_WORDS = (
    r"otp|opt|mã|code|pin|passcode|password|mật\s+khẩu|mat\s+khau|xác\s+nhận|xac\s+nhan|xác\s+thực|xac\s+thuc"
)
_CODE_WORD = re.compile(rf"(?<!\w)(?:(?P<strong>{_STRONG_CODE_WORDS})|(?P<weak>ma))(?!\w)", re.I)
CODE_WINDOW_BEFORE = 40
WEAK_CODE_WINDOW = 12
CODE_WINDOW_AFTER = 20


def _digits(raw: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) for ch in raw if ch.isdecimal())


def _is_amount(text: str, end: int, digits: str, grouped: bool) -> bool:
    """Whether the number ending at `end` is an amount of money by the word after it."""
    unit = _UNIT.match(text, end)
    if unit is None:
        return False
    word = unit.group(1).lower()
    if word not in _AMBIGUOUS_UNITS:
        return True
    # "50k", "1500k", "70.000đ", "1000000đ" are amounts; "482913 k nhận được" is a code and "không".
    return len(digits) <= 4 or grouped or digits.endswith("000")


def _phone_or_id(digits: str, plus: bool) -> str:
    n = len(digits)
    if plus or (digits.startswith("84") and n in (11, 12)) or (digits.startswith("0") and n in (10, 11)):
        return PHONE_MASK
    if n in (9, 12):
        return ID_MASK
    return NUMBER_MASK


class _CodeWords:
    """Code words of one text in order, walked forwards once as the chains are met (linear overall)."""

    def __init__(self, text: str):
        self.words = [(m.start(), m.end(), m.group("strong") is not None) for m in _CODE_WORD.finditer(text)]
        self.i = 0  # first word not entirely before the current chain

    def near(self, start: int, end: int) -> tuple[bool, bool]:
        """Whether a code word is close before the chain, and whether a strong one is close after it."""
        words = self.words
        while self.i < len(words) and words[self.i][1] <= start:
            self.i += 1
        before = False
        # Words ending before the chain, nearest first, within the widest window (a bounded number).
        j = self.i - 1
        while j >= 0 and start - words[j][1] <= CODE_WINDOW_BEFORE:
            if words[j][2] or start - words[j][1] <= WEAK_CODE_WINDOW:
                before = True
                break
            j -= 1
        after = False
        j = self.i
        while j < len(words) and words[j][0] < end:
            j += 1
        while j < len(words) and words[j][0] - end <= CODE_WINDOW_AFTER:
            if words[j][2]:
                after = True
                break
            j += 1
        return before, after


# Digits said as words ("không chín một hai…"), as people dictate a phone number or read out a code, with
# and without their marks. Many are ordinary words too ("ba", "năm", "sau", "bay"), so a run of them is
# masked only when it is as long as a number never is in speech (9 or more digits), or when a code word
# stands just before it (4 to 8). Digits typed among the words count too ("09 một hai…").
_DIGIT_WORDS = {
    "không": "0", "khong": "0", "ko": "0", "một": "1", "mot": "1", "mốt": "1", "hai": "2", "ba": "3",
    "bốn": "4", "bon": "4", "tư": "4", "tu": "4", "năm": "5", "nam": "5", "lăm": "5", "lam": "5",
    "sáu": "6", "sau": "6", "bảy": "7", "bay": "7", "bẩy": "7", "tám": "8", "tam": "8", "chín": "9", "chin": "9",
}
_DIGIT_WORD = "|".join(sorted(_DIGIT_WORDS, key=len, reverse=True))
_SPELLED = re.compile(
    rf"(?<!\w)(?:{_DIGIT_WORD}|\d{{1,4}})(?:[{_SPACES},.\-]{{1,3}}(?:{_DIGIT_WORD}|\d{{1,4}}))+(?!\w)", re.I
)
MIN_SPELLED_CODE = 4
MIN_SPELLED_WORDS = 3
_WORD_TOKEN = re.compile(r"[^\W\d]+")


def _spelled_digits(raw: str) -> str:
    return "".join(_DIGIT_WORDS.get(w.lower(), w) for w in re.findall(rf"{_DIGIT_WORD}|\d+", raw, re.I))


def _mask_spelled(text: str) -> str:
    """Mask numbers said as words: a long run always, a short one after a code word."""
    codes: _CodeWords | None = None
    out: list[str] = []
    last = 0
    for match in _SPELLED.finditer(text):
        raw = match.group()
        if len(_WORD_TOKEN.findall(raw)) < MIN_SPELLED_WORDS:
            continue  # mostly digits ("năm 2023, 2024", "0912 345 678 không"): the chains below judge them
        digits = _spelled_digits(raw)
        placeholder: str | None = None
        if len(digits) >= 9:
            placeholder = _phone_or_id(digits, False)
        elif len(digits) >= MIN_SPELLED_CODE:
            codes = codes or _CodeWords(text)
            before, _ = codes.near(*match.span())
            placeholder = CODE_MASK if before else None
        if placeholder is None:
            continue
        out.append(text[last : match.start()])
        out.append(placeholder)
        last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def mask(text: str) -> str:
    """Return `text` with ID numbers, phone numbers and one-time codes replaced by placeholders."""
    if not text:
        return text
    text = _mask_spelled(unicodedata.normalize("NFC", text)) if any(ch.isalpha() for ch in text) else text
    if not any(ch.isdecimal() for ch in text):
        return text
    codes = _CodeWords(text)
    out: list[str] = []
    last = 0
    for match in _CHAIN.finditer(text):
        start, end = match.span()
        raw = match.group()
        digits = _digits(raw)
        n = len(digits)
        plus = start > 0 and text[start - 1] in "+\uff0b"
        grouped = n != len(raw)
        placeholder: str | None = None
        if n >= 9:
            placeholder = _phone_or_id(digits, plus)
        elif n >= 4:
            before, after = codes.near(start, end)
            amount = _is_amount(text, end, digits, grouped)
            # A code word before the number wins over a unit after it ("otp 482913 k nhận được").
            if before or (after and not amount):
                placeholder = CODE_MASK
            elif plus and n >= 6:
                placeholder = PHONE_MASK
            elif n >= 6 and not grouped and not amount:
                placeholder = CODE_MASK
        if placeholder is None:
            continue
        # Take in a "+" or an opening bracket just before the number ("+84…", "(097) 564 4740").
        while start > last and text[start - 1] in _LEADING and (text[start - 1] in "+\uff0b" or ")" in raw or "\uff09" in raw):
            start -= 1
        out.append(text[last:start])
        out.append(placeholder)
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)

