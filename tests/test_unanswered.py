"""`cccd-bot faq unanswered`: near-duplicate questions grouped, most frequent first."""

from __future__ import annotations

from bot.unanswered import group_questions


def test_groups_spellings_of_one_question():
    groups = group_questions(
        [
            "cap lai cccd bn",
            "Cấp lại căn cước công dân bao nhiêu?",  # abbreviations expanded, marks folded
            "cap lai cccd bn",
            "cap lai cccd bnnnn",  # stretched letters collapsed
            "sang tên xe máy",
        ]
    )
    assert [g.count for g in groups] == [4, 1]
    assert groups[0].text == "cap lai cccd bn"  # the most frequent wording names the group
    assert set(groups[0].variants) == {"cap lai cccd bn", "Cấp lại căn cước công dân bao nhiêu?", "cap lai cccd bnnnn"}


def test_different_questions_stay_apart():
    groups = group_questions(["mất thẻ căn cước", "lệ phí làm thẻ căn cước", "mat the can cuoc"])
    assert sorted(g.count for g in groups) == [1, 2]


def test_most_frequent_first_and_a_marked_wording_wins_a_tie():
    groups = group_questions(["sang ten xe may", "sang tên xe máy", "b", "b", "b"])
    assert [g.text for g in groups] == ["b", "sang tên xe máy"]


def test_placeholders_and_blanks_are_skipped():
    assert group_questions(["", "   ", "[photo]", " [sticker] "]) == []


def test_explicit_empty_dictionary():
    groups = group_questions(["cccd mat", "can cuoc cong dan mat"], abbreviations={})
    assert len(groups) == 2
