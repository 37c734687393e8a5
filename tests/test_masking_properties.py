"""Property tests of masking: every way people write ID numbers, phone numbers and codes, among words.

The budget and the seed are fixed by the "ci" profile (tests/conftest.py: derandomized), so CI runs the
same examples every time; `CCCD_TEST_HYPOTHESIS=explore` searches wider with a random seed. Examples
found failing while the masking was written are kept as regression cases in tests/test_masking.py.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.masking import CODE_MASK, ID_MASK, NUMBER_MASK, PHONE_MASK, mask

PLACEHOLDERS = (ID_MASK, PHONE_MASK, CODE_MASK, NUMBER_MASK)

# Words residents write around numbers, with and without diacritics, and the shorthand they use.
WORDS = (
    "số điện thoại của tôi là sdt dt đt cccd cmnd căn cước gọi giúp em nhé ko k đ được không nhận "
    "anh chị ạ ơi zalo mình bị mất thẻ so dien thoai cua toi la goi giup nhe duoc khong nhan "
    "hỏi làm sao vậy rồi chưa sai lỗi đăng ký tài khoản vneid"
).split()
# What comes right before a number: a space, nothing ("sdt0912…"), a colon, a line break.
GLUE = (" ", "", ": ", "\n", " (", ", ")
# A code word is a word of its own.
CODE_GLUE = (" ", "\n", ", ", ". ")

# Separators between digit groups: spaces of every width, doubled, dashes with and without spaces,
# dots, commas, slashes, underscores.
SEPARATORS = (" ", "  ", "\u00a0", "\u2009", "\u202f", ".", "-", " - ", "–", " – ", "—", ",", ", ", "/", "_", "")
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def digits(n: int, first: str = "0123456789") -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(first), st.text("0123456789", min_size=n - 1, max_size=n - 1)).map("".join)


@st.composite
def written(draw, number: str) -> str:
    """`number` as a person might type it: grouped with separators, spaced digit by digit, full width."""
    style = draw(st.sampled_from(("plain", "grouped", "spaced", "full_width", "grouped_full_width")))
    if style == "plain":
        return number
    if style == "spaced":
        return " ".join(number)
    if style == "full_width":
        return number.translate(FULL_WIDTH)
    parts, i = [], 0
    while i < len(number):
        size = draw(st.integers(1, 5))
        parts.append(number[i : i + size])
        i += size
    sep = draw(st.sampled_from(SEPARATORS))
    out = sep.join(parts)
    return out.translate(FULL_WIDTH) if style == "grouped_full_width" else out


@st.composite
def id_number(draw) -> str:
    n = draw(st.sampled_from((9, 12)))
    return draw(written(draw(digits(n))))


@st.composite
def phone_number(draw) -> str:
    national = draw(st.sampled_from("35789")) + draw(digits(8))
    prefix = draw(st.sampled_from(("0", "+84", "84", "+84 ", "(+84) ", "+84 (0)", "0084")))
    body = draw(written(national))
    if prefix == "0" and draw(st.booleans()):
        # "(097) 564 4740": the area or network part in brackets.
        return f"(0{national[:2]}) {national[2:5]} {national[5:]}"
    return prefix + body


@st.composite
def one_time_code(draw) -> tuple[str, str]:
    """A 4-8 digit code with a code word up to about 40 characters before it: (words, code)."""
    word = draw(st.sampled_from(("mã", "ma", "otp", "OTP", "mã OTP", "mã xác nhận", "ma xac nhan", "code", "mã pin")))
    filler = draw(st.sampled_from(("", " là", " của em là", " gửi về là", ":", " vừa nhận", " la")))
    code = draw(written(draw(digits(draw(st.integers(4, 8))))))
    if word == "ma" and len(filler) > 4:
        filler = ""  # "ma" alone is also "but": it counts only right before the number
    return f"{word}{filler} ", code


PERSONAL = st.one_of(id_number(), phone_number(), one_time_code())


def words(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS), min_size=min_size, max_size=6).map(" ".join)


@st.composite
def message_with_numbers(draw) -> tuple[str, list[tuple[str, bool]]]:
    """A message of words and personal numbers; also its parts, each flagged as a number or not."""
    parts: list[tuple[str, bool]] = [(draw(words()), False)]
    for _ in range(draw(st.integers(1, 3))):
        number = draw(PERSONAL)
        if isinstance(number, tuple):  # a code with its code word: the word is kept, the code masked
            word, code = number
            parts.append((draw(st.sampled_from(CODE_GLUE)) + word, False))
            parts.append((code, True))
        else:
            parts.append((draw(st.sampled_from(GLUE)), False))
            parts.append((number, True))
        parts.append((" " + draw(words(min_size=1)), False))
    return "".join(text for text, _ in parts), parts


@given(message_with_numbers())
def test_no_personal_number_survives_and_the_words_stay(case):
    text, parts = case
    masked = mask(text)
    assert not any(ch.isdecimal() for ch in masked), (text, masked)
    # Word for word the same, each number replaced by one placeholder ("(" or "+" may go with it).
    pattern = "".join(
        "[(+]?(?:" + "|".join(map(re.escape, PLACEHOLDERS)) + ")" if is_number else re.escape(part)
        for part, is_number in parts
    )
    # A bracket or a plus sign typed before the number may be taken with it.
    pattern = pattern.replace(re.escape(" (") + "[(+]?", re.escape(" ") + r"\(?[(+]?")
    assert re.fullmatch(pattern, masked), (text, masked)


@given(message_with_numbers())
def test_masking_is_idempotent(case):
    text, _ = case
    once = mask(text)
    assert mask(once) == once


READABLE = st.one_of(
    st.integers(1, 9).map(lambda k: f"bước {k}"),
    st.integers(1, 9).map(lambda k: f"Bước {k}/9"),
    st.integers(1900, 2100).map(lambda y: f"năm {y}"),
    st.integers(14, 110).map(lambda a: f"{a} tuổi"),
    st.integers(1, 999).map(lambda x: f"{x}.000đ"),
    st.integers(1, 999).map(lambda x: f"{x}.000 đồng"),
    st.integers(1, 9999).map(lambda x: f"{x}k"),
    st.integers(1, 999).map(lambda x: f"{x} nghìn"),
    st.integers(1, 50).map(lambda x: f"{x} triệu"),
    st.integers(1, 999).map(lambda x: f"{x * 1000} đồng"),
    st.integers(1, 31).map(lambda d: f"ngày {d}/{(d % 12) + 1}/2025"),
    st.integers(1, 30).map(lambda t: f"tổ {t}"),
)
PLAIN_WORDS = [w for w in WORDS if w not in ("k", "đ")]


@given(st.lists(st.tuples(st.lists(st.sampled_from(PLAIN_WORDS), min_size=1, max_size=5), READABLE), min_size=1, max_size=4))
def test_amounts_years_ages_and_steps_stay_readable(chunks):
    text = " ".join(" ".join(ws) + " " + item for ws, item in chunks)
    assert mask(text) == text
