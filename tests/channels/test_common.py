"""What the platform channels share: secrets, mentions and timestamps (the pipeline has its own tests)."""

from __future__ import annotations

from datetime import datetime, timezone

from bot.channels.common import epoch_time, remove_mention, secret_matches


def test_secret_matches_only_the_exact_secret():
    assert secret_matches("s3cret-token", "s3cret-token")
    assert not secret_matches("s3cret-toke", "s3cret-token")
    assert not secret_matches(None, "s3cret-token")
    assert not secret_matches("", "")
    assert not secret_matches("\udcff\udcfe", "s3cret-token")  # undecodable header bytes, as aiohttp keeps them


def test_remove_mention():
    assert remove_mention("@CCCD Bot mất căn cước", ["CCCD Bot"]) == "mất căn cước"
    assert remove_mention("hỏi @cccd bot: mất căn cước", ["CCCD Bot"]) == "hỏi mất căn cước"
    assert remove_mention("mất căn cước", ["CCCD Bot"]) is None
    assert remove_mention("@CCCD Bot", ["", "CCCD Bot"]) == ""


def test_epoch_time_reads_seconds_and_milliseconds():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    fallback = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert epoch_time(int(when.timestamp()), lambda: fallback) == when
    assert epoch_time(str(int(when.timestamp() * 1000)), lambda: fallback) == when
    for bad in (None, "", "soon", True, -5, 10**30, float("nan")):
        assert epoch_time(bad, lambda: fallback) == fallback


def test_question_words_match_whole_words_without_diacritics():
    from bot.channels.common import has_question_word

    words = ["căn cước", "cccd", "VNeID"]
    assert has_question_word("Mất CĂN CƯỚC thì làm sao", words)
    assert has_question_word("mat can cuoc lam lai the nao", words)
    assert has_question_word("cho hỏi vneid đăng nhập kiểu gì", words)
    assert not has_question_word("chiều nay họp thôn", words)
    assert not has_question_word("cccdx là gì", words)  # part of another word
    assert not has_question_word("mất căn cước", [])
