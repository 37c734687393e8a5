"""Finding a hamlet from what a person types."""

from __future__ import annotations

import pytest

from bot.hamlets import Hamlet, HamletDirectory

DIRECTORY = HamletDirectory(
    [Hamlet(f"ngoctrao_tdp{i:02d}", f"Tổ dân phố {i}", "Phường Ngọc Trạo") for i in range(1, 11)]
    + [Hamlet("camthach_dong", "Thôn Đồng Tâm", "Xã Cẩm Thạch"), Hamlet("camthach_hoa", "Thôn Hòa Bình", "Xã Cẩm Thạch")]
)


@pytest.mark.parametrize(
    "typed, code",
    [
        ("Tổ dân phố 3", "ngoctrao_tdp03"),
        ("to dan pho so 3", "ngoctrao_tdp03"),
        ("tdp 10", "ngoctrao_tdp10"),
        ("tổ 1", "ngoctrao_tdp01"),
        ("NGOCTRAO_TDP07", "ngoctrao_tdp07"),
        ("thon dong tam", "camthach_dong"),
        ("đồng tâm", "camthach_dong"),
        ("hoa binh", "camthach_hoa"),
        ("thôn hoà bình", "camthach_hoa"),
        ("hoa bnh", "camthach_hoa"),
    ],
)
def test_typed_names_find_their_hamlet(typed, code):
    assert DIRECTORY.find(typed).code == code


@pytest.mark.parametrize("typed", ["", "tổ 11", "thôn", "xin chào", "to dan pho"])
def test_unsure_names_find_nothing(typed):
    assert DIRECTORY.find(typed) is None
