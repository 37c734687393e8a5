"""Reading everyday replies: typos, particles and abbreviations forgiven, negations never."""

from __future__ import annotations

import pytest

from bot import replies

STEERING = ("greeting", "greeting_kin", "menu", "guide", "how_to", "next", "back", "thanks", "goodbye", "ack")
OUTCOME = ("answer.outcome_yes", "answer.outcome_not_yet", "answer.outcome_problem")


@pytest.mark.parametrize(
    "text, kind",
    [
        ("tiep theoo", "next"), ("tiêp", "next"), ("tiep di", "next"), ("TIẾP THEO", "next"),
        ("lui lai", "back"), ("tro lai", "back"), ("quay lại ạ", "back"),
        ("huong dan lam can cuoc", "how_to"), ("hd lam cccd", "how_to"), ("chi toi cach lam", "how_to"),
        ("lam cccd online the nao", "how_to"), ("Hướng dẫn 9 bước", "guide"),
        ("chào cháu", "greeting_kin"), ("alo", "greeting"), ("cảm ơn", "thanks"), ("cam on nhe", "thanks"),
        ("tạm biệt", "goodbye"), ("ok", "ack"), ("dc roi", "ack"),
        ("mất căn cước thì làm lại thế nào", None), ("lệ phí bao nhiêu", None), ("", None),
    ],
)
def test_steering_words(catalog, text, kind):
    assert replies.kind_of(catalog, text, STEERING) == kind


@pytest.mark.parametrize(
    "text, kind",
    [
        ("rồi", "answer.outcome_yes"), ("da nop duoc roi", "answer.outcome_yes"), ("xong roi a", "answer.outcome_yes"),
        ("đã nộp được rồi", "answer.outcome_yes"), ("chua", "answer.outcome_not_yet"), ("chưa nộp", "answer.outcome_not_yet"),
        ("chưa nộp được", "answer.outcome_not_yet"), ("ko nop dc", "answer.outcome_problem"), ("bị lỗi", "answer.outcome_problem"),
        ("khong nop duoc", "answer.outcome_problem"), ("thời tiết hôm nay", None),
    ],
)
def test_outcome_answers(catalog, text, kind):
    assert replies.kind_of(catalog, text, OUTCOME) == kind


def test_a_negated_answer_never_reads_as_its_positive_by_spelling(catalog):
    # "chưa nộp đuợc" (a typo) is close in spelling to "đã nộp được" but says the opposite.
    assert replies.kind_of(catalog, "chua nop duocc", OUTCOME) == "answer.outcome_not_yet"
    assert replies.kind_of(catalog, "khong xoaa", ("answer.confirm", "answer.decline")) == "answer.decline"


def test_long_messages_are_questions_not_replies(catalog):
    assert replies.kind_of(catalog, "cảm ơn, cho tôi hỏi làm căn cước cho con 14 tuổi cần giấy tờ gì", STEERING) is None
