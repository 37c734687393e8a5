"""Finding the question in a long message: asking sentences, story, courtesy, two questions."""

from __future__ import annotations

from bot.question import QuestionFinder

CUES = ["xin hoi", "cho hoi", "co duoc khong", "bao nhieu", "o dau", "the nao", "phai lam gi"]
COURTESY = ["xin cam on", "luat su cho hoi", "mong duoc giai dap"]
FINDER = QuestionFinder(CUES, COURTESY, context_weight=0.5, min_words=12, endings=["khong", "ko", "chua"], particles=["a", "vay"])


def test_a_short_message_is_one_question_of_full_weight():
    reading = FINDER.read("mất thẻ làm lại ở đâu")
    assert [(p.text, p.weight) for p in reading.parts] == [("mất thẻ làm lại ở đâu", 1.0)]
    assert reading.questions == ("mất thẻ làm lại ở đâu",)


def test_the_asking_sentence_weighs_fully_and_the_story_less():
    reading = FINDER.read("Mẹ tôi năm nay 80 tuổi, ở xã Hải Ninh. Bà bị ốm nằm một chỗ. Xin hỏi làm thẻ cho bà thế nào?")
    assert [(p.weight, p.asks) for p in reading.parts] == [(0.5, False), (0.5, False), (1.0, True)]
    assert reading.questions == ("Xin hỏi làm thẻ cho bà thế nào",)


def test_a_part_ending_in_a_question_word_asks_even_without_a_question_mark():
    reading = FINDER.read("toi 40 tuoi o thon dong da lam the nam 2016. gio the cu con dung duoc ko a")
    assert [p.asks for p in reading.parts] == [False, True]


def test_courtesy_is_dropped_and_a_date_is_not_a_sentence_break():
    reading = FINDER.read("Luật sư cho hỏi, tôi sinh ngày 01.07.1990 ở Thanh Hóa, thẻ hết hạn thì phải làm gì. Xin cảm ơn!")
    texts = [p.text for p in reading.parts]
    assert all("cảm ơn" not in t and "Luật sư" not in t for t in texts)
    assert any("01.07.1990" in t for t in texts)


def test_two_questions_in_one_sentence_are_both_found():
    reading = FINDER.read("Tôi ở xã Tân Phú, thẻ bị mất hôm qua. Làm lại thẻ ở đâu, lệ phí hết bao nhiêu?")
    assert len(reading.questions) == 2
    assert reading.questions[0].startswith("Làm lại thẻ ở đâu")
    assert "lệ phí" in reading.questions[1]


def test_a_message_where_nothing_asks_weighs_every_part_fully():
    reading = FINDER.read("Tôi năm nay 45 tuổi, ở thôn Đông. Tôi đã làm thẻ căn cước năm ngoái. Thẻ vẫn tốt.")
    assert {p.weight for p in reading.parts} == {1.0}


def test_a_form_of_address_after_the_question_word_does_not_hide_it():
    finder = QuestionFinder(CUES, COURTESY, 0.5, 12, endings=["khong", "ko"], particles=["a", "moi nguoi", "ca nha"])
    reading = finder.read("toi 40 tuoi o thon dong da lam the nam 2016. gio the cu con dung duoc ko moi nguoi")
    assert [p.asks for p in reading.parts] == [False, True]
    reading = finder.read("toi 40 tuoi o thon dong da lam the nam 2016. gio the cu con dung duoc ko ca nha a")
    assert [p.asks for p in reading.parts] == [False, True]
    assert not finder.asks("toi da hoi moi nguoi")  # a form of address alone asks nothing
