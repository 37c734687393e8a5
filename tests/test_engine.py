"""The functional core: every transition of the guide, groups, choices and bad input, without I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.conversation import (
    ChatHamletLinked,
    Context,
    Flow,
    ForgetUser,
    GuideFinished,
    Outcomes,
    QueryHandled,
    State,
    StepReached,
    UnansweredRecorded,
    UserHamletChosen,
)
from bot.engine import step
from bot.hamlets import Hamlet, HamletDirectory
from bot.matcher import Matcher
from bot.messages import ChatType, Incoming

NOW = datetime(2026, 11, 2, 8, 30, tzinfo=timezone.utc)
HAMLETS = HamletDirectory([Hamlet(f"ngoctrao_tdp{i:02d}", f"Tổ dân phố {i}", "Phường Ngọc Trạo") for i in range(1, 11)])


@pytest.fixture(scope="module")
def matcher(catalog):
    return Matcher(catalog)


class Talk:
    """Drive the pure core like a person would, keeping the state between messages."""

    def __init__(self, catalog, matcher, chat_type=ChatType.PRIVATE, hamlets=HAMLETS, officer=False):
        self.catalog, self.matcher = catalog, matcher
        self.chat_type = chat_type
        self.hamlets = hamlets
        self.officer = officer
        self.state = State()
        self.events: list = []
        self.now = NOW

    def send(self, text="", payload=None, addressed=True):
        msg = Incoming("console", "c1", self.chat_type, "u1", "Bà Lan", text, self.now, payload=payload, addressed=addressed)
        ctx = Context(self.catalog, self.matcher, self.hamlets, self.now, is_officer=self.officer)
        out = step(self.state, msg, ctx)
        self.state = out.state
        self.events = list(out.events)
        return list(out.replies)


def texts(replies):
    return "\n".join(r.text for r in replies)


def labels(replies):
    return [c.label for r in replies for c in r.choices]


def payload_of(replies, label):
    for r in replies:
        for c in r.choices:
            if c.label == label:
                return c.payload
    raise AssertionError(f"no button {label!r} in {labels(replies)}")


def test_start_asks_hamlet_once_then_menu(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("/start")
    assert replies[0].text.startswith("Chào Bà Lan")
    assert "thôn hoặc tổ dân phố" in replies[1].text
    assert labels(replies)[-1] == "Bỏ qua"
    replies = t.send("", payload=payload_of(replies, "Bỏ qua"))
    assert labels(replies)[0] == "Hướng dẫn 9 bước"
    replies = t.send("/start")
    assert "thôn hoặc tổ dân phố" not in texts(replies), "the hamlet question is asked only once"


def test_start_payload_sets_hamlet(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("/start h_ngoctrao_tdp04")
    assert "Tổ dân phố 4" in texts(replies)
    assert UserHamletChosen("ngoctrao_tdp04") in t.events


def test_start_payload_unknown_code_changes_nothing(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("/start h_nowhere")
    assert "không đúng" in texts(replies)
    assert not any(isinstance(e, UserHamletChosen) for e in t.events)


def test_typed_hamlet_name_is_matched_fuzzily(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/start")
    replies = t.send("to dan pho so 7")
    assert "Tổ dân phố 7" in texts(replies)
    assert UserHamletChosen("ngoctrao_tdp07") in t.events


def test_hamlet_question_never_blocks_a_question(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/start")
    replies = t.send("mất căn cước thì làm lại thế nào ạ")
    assert t.events[0] == QueryHandled(Outcomes.ANSWERED, "mat_the", t.events[0].score)
    assert catalog.topics["mat_the"].lead in texts(replies)


@pytest.mark.parametrize("question, topic", [("mất thẻ", "mat_the"), ("quên mật khẩu", "quen_mat_khau_vneid")])
def test_short_question_at_the_hamlet_prompt_is_answered(catalog, matcher, question, topic):
    t = Talk(catalog, matcher)
    t.send("/start")
    replies = t.send(question)
    assert "chưa tìm thấy" not in texts(replies)
    assert t.events[0].outcome in (Outcomes.ANSWERED, Outcomes.CHOICES, Outcomes.ASKED_BACK)


def test_mistyped_hamlet_name_is_asked_again(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/start")
    replies = t.send("thôn Đông Xá")
    assert "chưa tìm thấy" in texts(replies)
    assert t.state.flow == Flow.HAMLET


def test_every_guide_step_forward_and_back(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("/huongdan")
    n = len(catalog.steps)
    for k in range(1, n + 1):
        assert replies[-1].text.startswith(f"Bước {k}/9: {catalog.steps[k - 1].title}")
        assert t.events == [QueryHandled(Outcomes.COMMAND), StepReached(catalog.steps[k - 1].slug)]
        assert ("Quay lại" in labels(replies)) == (k > 1)
        replies = t.send(payload=payload_of(replies, "Tiếp theo"))
    assert "hết 9 bước" in replies[-1].text
    replies = t.send(payload="g:b")  # back from the outcome question is not a step
    assert t.state.flow in (Flow.GUIDE,)
    assert replies[-1].text.startswith("Bước 8/9")
    replies = t.send(payload="g:b")
    assert replies[-1].text.startswith("Bước 7/9")


def test_words_move_the_guide_in_any_spelling(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    assert t.send("tiếp")[-1].text.startswith("Bước 2/9")
    assert t.send("Tiep theo")[-1].text.startswith("Bước 3/9")
    assert t.send("next")[-1].text.startswith("Bước 4/9")
    assert t.send("quay lại")[-1].text.startswith("Bước 3/9")
    assert t.send("lai")[-1].text.startswith("Bước 2/9")
    assert t.send("bước 5")[-1].text.startswith("Bước 5/9")
    assert t.send("buoc 9")[-1].text.startswith("Bước 9/9")


def test_back_on_first_step_stays(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    replies = t.send("quay lai")
    assert "bước đầu tiên" in replies[0].text
    assert replies[-1].text.startswith("Bước 1/9")


def test_stuck_lists_problems_linked_to_topics(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("buoc 8")
    replies = t.send(payload="g:s")
    step8 = catalog.steps[7]
    assert [c.payload for c in replies[0].choices][:-1] == [f"f:{p.topic}" for p in step8.problems]
    replies = t.send(payload=f"f:{step8.problems[0].topic}")
    assert replies[0].text.startswith(catalog.topics[step8.problems[0].topic].answer[:40])
    assert payload_of(replies, "Về bước 8/9") == f"s:{step8.slug}"
    replies = t.send(payload=f"s:{step8.slug}")
    assert replies[0].text.startswith("Bước 8/9")


def test_resume_asks_continue_or_restart(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 5")
    t.now += timedelta(days=3)
    replies = t.send("/huongdan")
    assert replies[0].text == "Anh/chị đang ở bước 5/9. Anh/chị muốn tiếp tục hay bắt đầu lại?"
    assert t.send(payload=payload_of(replies, "Tiếp tục"))[-1].text.startswith("Bước 5/9")
    t.send("/menu")
    replies = t.send("/huongdan")
    assert t.send(payload=payload_of(replies, "Bắt đầu lại"))[-1].text.startswith("Bước 1/9")


def test_start_after_days_offers_resume(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 4")
    replies = t.send("/start")
    assert "Anh/chị đang ở bước 4/9" in texts(replies)


def test_menu_guide_button_shows_where_person_stopped(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 6")
    replies = t.send("menu")
    assert labels(replies)[0] == "Tiếp tục bước 6/9"


def test_outcome_is_recorded(catalog, matcher):
    for label, value in (("Đã nộp được", "yes"), ("Chưa nộp", "not_yet"), ("Gặp vướng mắc", "problem")):
        t = Talk(catalog, matcher)
        t.send("/huongdan")
        t.send("bước 9")
        replies = t.send("tiếp")
        t.send(payload=payload_of(replies, label))
        assert GuideFinished(value) in t.events
        assert t.state.finished
        # Finished: the guide starts again from step 1 without asking.
        assert t.send("/huongdan")[-1].text.startswith("Bước 1/9")


def test_stale_outcome_press_is_not_recorded(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send(payload="o:yes")
    assert "Nút này đã cũ" in texts(replies)
    assert not any(isinstance(e, GuideFinished) for e in t.events)


def test_numbered_choice_typed_back_presses_it(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    assert t.send("1")[-1].text.startswith("Bước 2/9")  # 1 = Tiếp theo
    assert t.send("2")[-1].text.startswith("Bước 1/9")  # 2 = Quay lại


def test_confident_question_is_answered(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("không nhận được mã OTP")
    assert t.events[0].outcome == Outcomes.ANSWERED and t.events[0].topic == "ma_otp"
    assert replies[0].text.startswith(catalog.topics["ma_otp"].answer[:50])


def test_unknown_question_says_so_and_offers_a_person(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("giá lúa hôm nay bao nhiêu")
    assert replies[0].text.startswith("Xin lỗi, tôi chưa có câu trả lời")
    assert "Cần người giúp" in labels(replies)
    assert t.events == [QueryHandled(Outcomes.UNANSWERED, None, t.events[0].score)]


def test_answer_marked_for_review_says_what_is_uncertain_and_whom_to_ask(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send(payload="f:noi_lam_thu_tuc")
    lines = replies[0].text.splitlines()
    assert lines[-2] == "Chưa kiểm tra được: điểm nhận hồ sơ và giờ làm việc ở xã anh/chị. Anh/chị hỏi Công an xã trước khi đi."
    assert lines[-1].startswith("Nguồn: hướng dẫn của Bộ Công an tháng 2/2025")


def test_a_checked_answer_carries_no_caveat_and_names_its_article(catalog, matcher):
    t = Talk(catalog, matcher)
    text = t.send(payload="f:thoi_gian_tra_ket_qua")[0].text
    assert "7 ngày làm việc" in text and "Chưa kiểm tra được" not in text and "cần cán bộ" not in text
    assert text.endswith("Nguồn: Luật Căn cước 2023, Điều 26.")


def test_long_answer_waits_behind_xem_them(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("lệ phí làm căn cước bao nhiêu tiền")
    assert t.events[0].topic == "le_phi"
    first = replies[0].text
    assert len(first) <= 500 and "25.000 đồng" in first and "31/12/2026" in first
    assert "Thông tư 73/2024/TT-BTC, Điều 5" not in first
    assert labels(replies)[0] == "Xem thêm"
    more = t.send(payload=payload_of(replies, "Xem thêm"))
    assert more[0].text.startswith("Được miễn lệ phí cấp đổi, cấp lại (Thông tư 73/2024/TT-BTC, Điều 5)")
    assert "Xem thêm" not in labels(more) and "Về menu" in labels(more)
    # Typing the number of the button works as pressing it.
    replies = t.send("lệ phí làm căn cước bao nhiêu tiền")
    assert t.send("1")[0].text == more[0].text


@pytest.mark.parametrize("typed", ["xem thêm", "Xem them", "xem thêm ạ", "xem them di", "xem thêmm", "đọc tiếp"])
def test_typing_xem_them_reads_on_like_the_button(catalog, matcher, typed):
    t = Talk(catalog, matcher)
    t.send("lệ phí làm căn cước bao nhiêu tiền")
    more = t.send(typed)
    assert more[0].text == catalog.topics["le_phi"].more
    assert "Xem thêm" not in labels(more)


def test_xem_them_typed_when_nothing_is_waiting_is_a_question(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/menu")
    replies = t.send("xem thêm")
    assert all(r.text != catalog.topics["le_phi"].more for r in replies)
    assert t.events and isinstance(t.events[0], QueryHandled)


def test_tiep_inside_the_guide_still_means_the_next_step_after_an_answer(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 6")
    stuck = t.send(payload="g:s:chon_ly_do")
    answer = t.send(payload=payload_of(stuck, "Thẻ bị mất"))
    assert "Xem thêm" in labels(answer)
    more = t.send("xem thêm")
    assert more[0].text == catalog.topics["mat_the"].more
    nxt = t.send("tiếp")
    assert "Bước 7/9" in texts(nxt)


def test_xem_them_from_the_guide_leads_back_to_the_step(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 6")
    stuck = t.send(payload="g:s:chon_ly_do")
    answer = t.send(payload=payload_of(stuck, "Thẻ bị mất"))
    more = t.send(payload=payload_of(answer, "Xem thêm"))
    assert "Về bước 6/9" in labels(more)
    assert t.state.step == "chon_ly_do"


def test_an_old_xem_them_button_still_shows_the_rest(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send(payload="fm:mat_the")
    assert replies[0].text == catalog.topics["mat_the"].more
    assert t.send(payload="fm:no_such_topic")[0].text.startswith("Nút này đã cũ")


def test_first_step_names_its_letter_and_changed_steps_say_what_is_true_today(catalog, matcher):
    t = Talk(catalog, matcher)
    first = t.send("/huongdan")[-1].text
    assert first.splitlines()[1].startswith("Các bước dưới đây theo hướng dẫn năm 2023")
    assert "Lưu ý: từ 01/7/2024 không tạo tài khoản riêng" in first
    step4 = t.send("bước 4")[-1].text
    assert "cấp tỉnh hoặc cấp huyện" in step4  # the letter's words stay
    assert "Lưu ý: không còn cấp huyện" in step4 and "Các bước dưới đây" not in step4
    assert "Lưu ý" not in t.send("bước 5")[-1].text


def test_none_of_these_records_unanswered(catalog, matcher):
    t = Talk(catalog, matcher)
    t.state = State(flow=Flow.CHOOSE, pending="cau hoi la", choices=("f:le_phi", "f:-"))
    replies = t.send("2")
    assert UnansweredRecorded("cau hoi la") in t.events
    assert replies[0].text.startswith("Xin lỗi")


def test_group_ignores_messages_not_addressed(catalog, matcher):
    t = Talk(catalog, matcher, chat_type=ChatType.GROUP)
    assert t.send("mất căn cước làm sao", addressed=False) == []
    assert t.events == []


def test_group_answers_but_walks_only_in_private(catalog, matcher):
    t = Talk(catalog, matcher, chat_type=ChatType.GROUP)
    replies = t.send("mất căn cước thì làm lại thế nào")
    assert t.events[0].topic == "mat_the"
    # Only the rest of the answer is offered in a group: no menu, no steps.
    assert labels(replies) == ["Xem thêm"]
    for attempt in ("/huongdan", "bước 3", "huong dan"):
        replies = t.send(attempt)
        assert "tin nhắn riêng" in replies[0].text
        assert not any(r.text.startswith("Bước") for r in replies)
        assert not any(isinstance(e, StepReached) for e in t.events)


def test_thon_links_group_only_for_admins(catalog, matcher):
    t = Talk(catalog, matcher, chat_type=ChatType.GROUP)
    replies = t.send("/thon Tổ dân phố 3")
    assert "chỉ quản trị viên" in replies[0].text
    assert not any(isinstance(e, ChatHamletLinked) for e in t.events)
    admin = Talk(catalog, matcher, chat_type=ChatType.GROUP, officer=True)
    admin.send("/thon to dan pho 3")
    assert ChatHamletLinked("ngoctrao_tdp03") in admin.events
    admin.send("/thon ngoctrao_tdp10")
    assert ChatHamletLinked("ngoctrao_tdp10") in admin.events


def test_delete_needs_confirmation(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    replies = t.send("/xoa")
    assert not any(isinstance(e, ForgetUser) for e in t.events)
    t.send(payload=payload_of(replies, "Không xóa"))
    assert not any(isinstance(e, ForgetUser) for e in t.events)
    assert t.state.step == catalog.steps[0].slug
    replies = t.send("/xoa")
    t.send(payload=payload_of(replies, "Xóa"))
    assert ForgetUser() in t.events
    assert t.state.step is None


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\x00\x01\x02", "²", "٣", "😀😀😀", "x" * 100_000, "<script>alert(1)</script>", "'; DROP TABLE users; --", "Привет, как дела?", "你好"],
)
def test_bad_input_gets_a_polite_reply_and_valid_state(catalog, matcher, text):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    replies = t.send(text)
    assert replies and all(r.text for r in replies)
    assert "Traceback" not in texts(replies)
    assert State.from_dict(t.state.to_dict(), set(catalog.step_index)) == t.state
    assert t.state.step == catalog.steps[0].slug


@pytest.mark.parametrize("payload", ["f:no_such_topic", "s:no_such_step", "zz", "t:nowhere", "g:s:extra", "x" * 64])
def test_stale_or_unknown_payload_gets_menu(catalog, matcher, payload):
    t = Talk(catalog, matcher)
    replies = t.send(payload=payload)
    assert "Nút này đã cũ" in texts(replies) or "Chọn bên dưới" in texts(replies)
    assert replies[-1].choices


def test_state_from_stale_content_falls_back(catalog):
    state = State.from_dict({"flow": "guide", "step": "removed_step", "choices": "bad", "last_seen": "nonsense"}, set(catalog.step_index))
    assert state == State()
    assert State.from_dict("garbage") == State()


@pytest.mark.parametrize("greeting", ["chào bạn", "Xin chào", "alo", "chao ad"])
def test_a_greeting_gets_the_welcome_not_an_apology(catalog, matcher, greeting):
    t = Talk(catalog, matcher)
    replies = t.send(greeting)
    assert replies[0].text.startswith("Chào Bà Lan")
    assert not any(e.outcome == Outcomes.UNANSWERED for e in t.events if isinstance(e, QueryHandled))


def test_a_double_tap_or_an_old_step_button_does_not_skip_steps(catalog, matcher):
    t = Talk(catalog, matcher)
    first = t.send("/huongdan")
    next_on_step_1 = payload_of(first, "Tiếp theo")
    assert t.send(payload=next_on_step_1)[-1].text.startswith("Bước 2/9")
    assert t.send(payload=next_on_step_1)[-1].text.startswith("Bước 2/9"), "the second tap repeats step 2"
    t.send("bước 6")
    replies = t.send(payload=next_on_step_1)  # a button from an old message
    assert replies[-1].text.startswith("Bước 2/9")
    replies = t.send(payload="g:n:removed_step")
    assert "Nút này đã cũ" in texts(replies)


@pytest.mark.parametrize("typed", ["bỏ qua", "bo qua", "để sau"])
def test_typing_skip_at_the_hamlet_question_skips_it(catalog, matcher, typed):
    t = Talk(catalog, matcher)
    t.send("/start")
    replies = t.send(typed)
    assert replies[0].text == catalog.msg("hamlet_skipped")
    assert t.state.flow == Flow.IDLE and t.state.hamlet_asked


def test_words_at_the_last_question_stay_in_the_guide(catalog, matcher):
    t = Talk(catalog, matcher)
    t.send("/huongdan")
    t.send("bước 9")
    t.send("tiếp")
    assert "hết 9 bước" in t.send("tiếp")[-1].text
    assert t.send("quay lại")[-1].text.startswith("Bước 9/9")


def test_command_argument_on_the_next_line(catalog, matcher):
    admin = Talk(catalog, matcher, chat_type=ChatType.GROUP, officer=True)
    admin.send("/thon\nTổ dân phố 3")
    assert ChatHamletLinked("ngoctrao_tdp03") in admin.events


def test_asking_how_to_apply_online_starts_the_guide_in_private(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send("cho e hỏi làm căn cước online thì làm như nào ạ")
    assert replies[0].text.startswith("Bước 1/9")
    assert t.events[0] == QueryHandled(Outcomes.ANSWERED, "huong_dan_9_buoc", t.events[0].score)
    assert StepReached(catalog.steps[0].slug) in t.events
    group = Talk(catalog, matcher, chat_type=ChatType.GROUP)
    replies = group.send("cho e hỏi làm căn cước online thì làm như nào ạ")
    assert "Bước 1/9" not in texts(replies), "in a group the answer is given, the guide stays private"


def test_a_typed_no_to_the_offered_hamlet_shows_the_list(catalog, matcher):
    t = Talk(catalog, matcher)
    ctx_hamlet = "ngoctrao_tdp05"
    msg = Incoming("console", "c1", ChatType.PRIVATE, "u1", "Bà Lan", "/start", NOW)
    out = step(t.state, msg, Context(catalog, matcher, HAMLETS, NOW, chat_hamlet=ctx_hamlet))
    assert out.replies[1].text == "Anh/chị ở Tổ dân phố 5, Phường Ngọc Trạo phải không?"
    msg = Incoming("console", "c1", ChatType.PRIVATE, "u1", "Bà Lan", "không phải", NOW)
    out = step(out.state, msg, Context(catalog, matcher, HAMLETS, NOW, chat_hamlet=ctx_hamlet))
    assert [c.label for c in out.replies[0].choices][:2] == ["Tổ dân phố 1", "Tổ dân phố 2"]
    assert not any(isinstance(e, UserHamletChosen) for e in out.events)


# --- Long messages (issue #14); written for these tests ---------------------------------------------

TWO_QUESTIONS = (
    "Bố tôi 79 tuổi, bị liệt sau tai biến, không ngồi dậy được. Thẻ của bố sắp hết hạn. Cho tôi hỏi công "
    "an có đến tận nhà làm thẻ cho người không đi lại được không, và làm như vậy có mất lệ phí không?"
)
# Session 5: the earlier wording ("không biết bắt đầu từ đâu, ai giúp được tôi?") is now answered (the nine-step
# guide, with "who can help" offered beside it); this one names no question the matcher can be sure of.
VAGUE_PARAGRAPH = (
    "Chào anh chị, tôi là người ở quê lên thành phố. Tôi có nghe nói về căn cước và tài khoản trên mạng, "
    "nhưng không rõ mấy thứ đó là gì, có liên quan gì đến nhau không?"
)


def test_two_questions_get_the_main_answer_and_a_button_for_the_other(catalog, matcher):
    t = Talk(catalog, matcher)
    replies = t.send(TWO_QUESTIONS)
    assert t.events[0].topic == "cap_luu_dong"
    assert replies[-1].text.startswith(catalog.topics["cap_luu_dong"].answer[:40])
    offered = [c for c in replies[-1].choices if not c.payload.startswith("fm:")]  # after "Xem thêm"
    assert offered[0].payload == "f:le_phi"
    assert offered[0].label == catalog.topics["le_phi"].title
    replies = t.send(payload="f:le_phi")
    assert t.events[0].topic == "le_phi"


def test_in_a_group_two_questions_get_one_button(catalog, matcher):
    t = Talk(catalog, matcher, chat_type=ChatType.GROUP)
    replies = t.send(TWO_QUESTIONS)
    assert [c.payload for c in replies[-1].choices if not c.payload.startswith("fm:")] == ["f:le_phi"]


def test_in_a_group_a_long_unsure_message_gets_one_suggestion_not_a_list(catalog, matcher):
    private = Talk(catalog, matcher).send(VAGUE_PARAGRAPH)
    assert len([c for c in private[-1].choices if c.payload != "f:-"]) > 1  # private: the usual list
    group = Talk(catalog, matcher, chat_type=ChatType.GROUP).send(VAGUE_PARAGRAPH)
    assert [c.payload for c in group[-1].choices][-1] == "f:-"
    assert len(group[-1].choices) == 2  # one suggestion and "none of these"


def test_typing_xem_tiep_shows_the_next_page_of_hamlets(catalog, matcher):
    many = HamletDirectory([Hamlet(f"xa_thon{i:02d}", f"Thôn {i}", "Xã Đông Sơn") for i in range(1, 21)])
    t = Talk(catalog, matcher, hamlets=many)
    first = t.send("/start")
    assert "Xem tiếp" in labels(first) and "Thôn 1" in labels(first)
    second = t.send("xem tiep")
    assert "Thôn 10" in labels(second) and "Thôn 1" not in labels(second)


def test_fees_switch_to_the_full_rates_on_the_day_the_reduction_ends(catalog, matcher):
    t = Talk(catalog, matcher)
    # 23:59 on 31/12/2026 in Vietnam: still the reduced fee.
    t.now = datetime(2026, 12, 31, 16, 59, tzinfo=timezone.utc)
    before = t.send("lệ phí làm căn cước bao nhiêu tiền")[0].text
    assert "cấp đổi 25.000 đồng" in before and "đến hết 31/12/2026" in before
    # 00:00 on 01/01/2027 in Vietnam: the full fees, with what could not be checked and whom to ask.
    t.now = datetime(2026, 12, 31, 17, 0, tzinfo=timezone.utc)
    after = t.send("lệ phí làm căn cước bao nhiêu tiền")
    first = after[0].text
    assert "cấp đổi 50.000 đồng" in first and "70.000 đồng" in first and "25.000" not in first
    assert "gia hạn" in first and first.endswith("Nguồn: Luật Căn cước 2023, Điều 38; Thông tư 73/2024/TT-BTC.")
    more = t.send(payload=payload_of(after, "Xem thêm"))[0].text
    assert "đã hết hạn ngày 31/12/2026" in more
    lost = t.send("mất thẻ căn cước thì làm sao")[0].text
    assert "Lệ phí cấp lại: 70.000 đồng" in lost and "35.000" not in lost
