"""Personal numbers are masked before anything is stored or logged."""

from __future__ import annotations

import pytest

from bot.masking import mask


@pytest.mark.parametrize(
    "text, expected",
    [
        ("số cccd của tôi là 001089012345", "số cccd của tôi là [số giấy tờ]"),
        ("cmnd 123456789 bị mất", "cmnd [số giấy tờ] bị mất"),
        ("so 001 089 012 345 nhe", "so [số giấy tờ] nhe"),
        ("sdt 0912 345 678", "sdt [số điện thoại]"),
        ("gọi 0912.345.678 giúp", "gọi [số điện thoại] giúp"),
        ("số +84912345678", "số [số điện thoại]"),
        ("mã otp 482913 không vào", "mã otp [mã] không vào"),
        ("ma 4821 sai", "ma [mã] sai"),
        ("mã OTP là 4821", "mã OTP là [mã]"),
        ("sdt0912345678", "sdt[số điện thoại]"),
        ("cccd001089012345 nhé", "cccd[số giấy tờ] nhé"),
        ("sdt 0912345678 k nghe may", "sdt [số điện thoại] k nghe may"),
        ("cccd 001089012345 đ chưa", "cccd [số giấy tờ] đ chưa"),
        ("số +84 912 345 678", "số [số điện thoại]"),
    ],
)
def test_personal_numbers_are_masked(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    ["lệ phí 70.000đ phải không", "hết 50k à", "50000 đồng", "1.000.000 đồng", "tdp10", "năm 2024 đổi thẻ", "bước 5 làm sao", "tổ 3"],
)
def test_amounts_years_and_steps_are_kept(text):
    assert mask(text) == text
