"""Normalisation rules, each with an input that a naive pipeline gets wrong."""

from __future__ import annotations

import unicodedata

import pytest

from bot.catalog import load_valid_catalog
from bot.normalize import fold, fold_key, is_syllable, normalize, place_tone


@pytest.fixture(scope="module")
def abbreviations() -> dict[str, str]:
    return load_valid_catalog().abbreviations


def folded(text: str, abbreviations=None) -> tuple[str, ...]:
    return normalize(text, abbreviations).folded


# --- Unicode ---------------------------------------------------------------------------------------


def test_decomposed_input_equals_composed():
    decomposed = unicodedata.normalize("NFD", "Cấp lại thẻ căn cước")
    assert decomposed != "Cấp lại thẻ căn cước"  # a naive comparison fails here
    assert normalize(decomposed) == normalize("Cấp lại thẻ căn cước")


def test_lookalike_eth_is_read_as_d_stroke():
    # U+00D0 (Icelandic eth) looks like Đ on a phone keyboard.
    assert normalize("\u00d0ăng ký").tokens == normalize("Đăng ký").tokens
    assert folded("\u00d0ăng ký") == ("dang", "ky")


def test_mark_typed_before_the_vowel_modifier():
    # e + acute + circumflex (canonical order keeps them apart) must still give "ế".
    odd = "ti" + "e\u0301\u0302" + "ng"
    assert normalize(odd).tokens == ("tiếng",)


# --- Tone-mark placement ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "placed"),
    [
        ("hòa", "hoà"),  # open syllable: the mark moves to the second vowel
        ("thủy", "thuỷ"),
        ("khỏe", "khoẻ"),
        ("hoà", "hoà"),  # already in place
        ("hòan", "hoàn"),  # closed syllable: the mark belongs on the last vowel, a
        ("hoàn", "hoàn"),  # and a naive "oà -> òa" rule would have broken this one
        ("hùynh", "huỳnh"),
        ("huỳnh", "huỳnh"),
        ("súyt", "suýt"),
        ("quý", "quý"),  # qu + y: the u is part of the initial
        ("gì", "gì"),  # gi + nothing: the i carries the mark
        ("giữa", "giữa"),  # gi + ưa: the modified vowel carries it
        ("người", "người"),
        ("mùa", "mùa"),
        ("chịu", "chịu"),
    ],
)
def test_place_tone(typed, placed):
    assert place_tone(typed) == placed


def test_both_spellings_of_a_word_give_one_token():
    assert normalize("hòa thủy").tokens == normalize("hoà thuỷ").tokens


# --- Folding ---------------------------------------------------------------------------------------


def test_fold_maps_d_stroke_explicitly():
    # Dropping combining marks after NFD leaves đ alone: it has no decomposition.
    naive = "".join(c for c in unicodedata.normalize("NFD", "đăng ký") if not unicodedata.combining(c))
    assert naive == "đang ky"
    assert fold("đăng ký") == "dang ky"
    assert fold("ĐĂNG KÝ") == "dang ky"


def test_folded_twin_and_marked_tokens():
    norm = normalize("Mất thẻ")
    assert norm.tokens == ("mất", "thẻ")
    assert norm.folded == ("mat", "the")
    assert norm.marked
    assert not normalize("mat the").marked


def test_lower_case():
    assert folded("VNeID CCCD") == ("vneid", "cccd")


# --- Stretched letters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("ạaaa", ("ạ",)),  # the marked first letter is kept
        ("nhiềuuuu", ("nhiều",)),
        ("okkk", ("ok",)),  # consonants too
        ("điiiii đâuuu", ("đi", "đâu")),
        ("xoong", ("xoong",)),  # two letters are legitimate and stay
    ],
)
def test_stretched_letters_collapse(typed, expected):
    assert normalize(typed).tokens == expected


# --- Amounts and ages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "token"),
    [
        ("50k", "50k"),
        ("70.000đ", "70000d"),  # not "70" and "000đ"
        ("70,000 đồng", "70000d"),
        ("70.000 vnđ", "70000d"),
        ("50 nghìn", "50k"),
        ("2 triệu", "2tr"),
    ],
)
def test_amounts_are_one_token(typed, token):
    assert folded(f"làm thẻ hết {typed} à") == ("lam", "the", "het", token, "a")


def test_amount_counts_as_one_typed_word():
    assert normalize("70.000đ").words == 1


def test_age_written_with_t():
    assert folded("chau 14t roi") == ("chau", "14", "tuoi", "roi")
    assert normalize("14t").words == 1


# --- Abbreviations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("cccd", ("can", "cuoc")),
        ("CCCD", ("can", "cuoc")),
        ("ko dc", ("khong", "duoc")),
        ("k đc", ("khong", "duoc")),
        ("đk tk dvc", ("dang", "ky", "tai", "khoan", "dich", "vu", "cong")),
        ("cmnd", ("chung", "minh")),
        ("cmt", ("chung", "minh")),
        ("ca xa", ("cong", "an", "xa")),
        ("bn tien", ("bao", "nhieu", "tien")),
        ("ntn", ("nhu", "the", "nao")),
        ("quen mk", ("quen", "mat", "khau")),
        ("lm cc", ("lam", "can", "cuoc")),
    ],
)
def test_abbreviations_expand(abbreviations, typed, expected):
    assert folded(typed, abbreviations) == expected


def test_ca_does_not_catch_ca_with_a_mark(abbreviations):
    # "ca" is công an; "cả" (all) must stay itself, although both fold to "ca".
    assert folded("mất cả ví", abbreviations) == ("mat", "ca", "vi")
    assert folded("mat ca vi", abbreviations) == ("mat", "cong", "an", "vi")  # the price of typing without marks


def test_generic_teencode_mistakes_are_not_in_the_dictionary(abbreviations):
    assert abbreviations["cmt"] != "comment"
    assert "c" not in abbreviations  # "chị" in generic lists
    assert "đ" not in abbreviations  # "không" in generic lists
    assert "hong" not in abbreviations  # also "hỏng" (broken)
    assert "a" not in abbreviations  # usually "ạ"; "anh" would match "ảnh" (photo)


def test_dictionary_values_are_folded_and_keys_as_typed(abbreviations):
    for key, value in abbreviations.items():
        assert key == unicodedata.normalize("NFC", key).lower() and " " not in key, key
        assert fold(value) == value, key


def test_typed_word_count_is_kept_before_expansion(abbreviations):
    norm = normalize("cccd", abbreviations)
    assert len(norm.folded) == 2
    assert norm.words == 1


# --- Punctuation and emoji -------------------------------------------------------------------------


def test_punctuation_and_emoji_are_dropped():
    assert folded("cccd??!! 😭😭 ...") == folded("cccd")
    assert folded("“bước 4”, (ô tìm kiếm)") == ("buoc", "4", "o", "tim", "kiem")
    assert normalize("😭😭").folded == ()
    assert normalize("😭😭").words == 0


def test_fold_key():
    assert fold_key("  Thôn  Đông, xã Hoà! ") == "thon dong xa hoa"


@pytest.mark.parametrize("word", ["chieu", "nguoi", "nghieng", "khuyu", "xoong", "gi", "quy", "thuong"])
def test_is_syllable_accepts_vietnamese_syllables(word):
    assert is_syllable(word)


@pytest.mark.parametrize("word", ["dag", "cccd", "ntn", "vneid", "lm", "onl"])
def test_is_syllable_rejects_typos_and_abbreviations(word):
    assert not is_syllable(word)
