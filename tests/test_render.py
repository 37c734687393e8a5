"""Rendering replies for channels: numbered choices and splitting long text."""

from __future__ import annotations

import pytest

from bot.messages import Capabilities, Choice, Reply
from bot.render import render, split_text

NO_BUTTONS = Capabilities(buttons=False, max_text=2000)
BUTTONS = Capabilities(buttons=True, max_text=4096, max_buttons=5)


def test_choices_become_numbered_lines_without_buttons():
    out = render(Reply("Chọn:", (Choice("Tiếp theo", "g:n"), Choice("Về menu", "m"))), NO_BUTTONS, "Trả lời bằng số.")
    assert out.texts == ("Chọn:\n\n1. Tiếp theo\n2. Về menu\nTrả lời bằng số.",)
    assert out.buttons == ()


def test_choices_stay_buttons_where_the_channel_has_them():
    reply = Reply("Chọn:", (Choice("A", "a"), Choice("B", "b")))
    out = render(reply, BUTTONS)
    assert out.texts == ("Chọn:",) and out.buttons == reply.choices


def test_too_many_choices_for_buttons_fall_back_to_numbers():
    reply = Reply("Chọn:", tuple(Choice(str(i), str(i)) for i in range(7)))
    out = render(reply, BUTTONS)
    assert out.buttons == () and "7. 6" in out.texts[0]


def test_split_at_sentence_boundaries_within_limit():
    text = " ".join(f"Câu số {i} nói một điều." for i in range(300))
    chunks = split_text(text, 2000)
    assert len(chunks) > 1
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == text


def test_split_keeps_paragraphs_and_cuts_unbroken_words():
    text = "Đoạn một.\n" + "x" * 5000
    chunks = split_text(text, 2000)
    assert chunks[0] == "Đoạn một."
    assert all(len(c) <= 2000 for c in chunks)
    assert "".join(chunks[1:]) == "x" * 5000


def test_short_text_is_untouched_and_empty_gives_nothing():
    assert split_text("Xin chào.", 10) == ["Xin chào."]
    assert split_text("   ", 10) == []
    with pytest.raises(ValueError):
        split_text("a", 0)


def test_a_link_button_where_links_are_shown_and_its_sentence_elsewhere():
    from bot.messages import Link

    link = Choice("Nhắn riêng với tôi", "pm", Link(private_start="h_x", instead="Bấm vào tên tôi rồi chọn “Nhắn tin”."))
    reply = Reply("Tôi hướng dẫn trong tin nhắn riêng.", (Choice("Về menu", "m"), link))
    telegram = render(reply, Capabilities(buttons=True, max_text=4096, links=True))
    assert telegram.buttons == (Choice("Về menu", "m"), link) and "Nhắn tin" not in telegram.texts[0]
    zalo = render(reply, Capabilities(buttons=False, max_text=2000), "Trả lời bằng số.")
    assert zalo.texts == ("Tôi hướng dẫn trong tin nhắn riêng.\nBấm vào tên tôi rồi chọn “Nhắn tin”.\n\n1. Về menu\nTrả lời bằng số.",)
    assert zalo.numbered == (Choice("Về menu", "m"),)
