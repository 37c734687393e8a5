"""A small, hand-counted history of use, written through the real logging calls.

November 2026, Phường Ngọc Trạo (ngoc_trao), counted by hand:
- Tổ dân phố 1: six people (u1-u6) on Telegram, each asked once about fees (answered, le_phi); u6's
  question came on 31 October at 18:00 UTC, which is 1 November in Vietnam. All six reached step 1,
  five step 2, two (u1, u2) every step to 9; u1 said they submitted. u3 pressed "stuck" twice on step 2.
- Tổ dân phố 2: two people on Zalo: v1 and v2 asked the same unanswered question in two spellings,
  v2 got choices once, v1 asked once in the hamlet's group (answered, le_phi).
- Tổ dân phố 3-10: nothing.
Also: one answered le_phi question in tdp01 on 15 October (the previous month), and in commune
cam_thach one unanswered question carrying markup, in a hamlet whose name carries markup.
"""

from __future__ import annotations

from datetime import datetime, timezone

from storage import logs, registry

COMMUNE = "ngoc_trao"
OTHER = "cam_thach"
EVIL_HAMLET = "Thôn <b>Hai</b>"
EVIL_TEXT = "<script>alert(1)</script> hỏi chỗ làm"
UNANSWERED_A = "làm căn cước ở đâu vậy"
UNANSWERED_B = "lam can cuoc o dau vay"
STEPS = ("tao_tai_khoan", "dang_nhap", "nop_truc_tuyen", "tim_thu_tuc", "chon_nop_ho_so", "chon_ly_do", "chon_co_quan", "chon_ngay", "den_dung_hen")


def at(day: int, hour: int = 10, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=timezone.utc)


async def seed(db) -> None:
    async with db.transaction() as s:
        await registry.import_rows(
            s,
            [registry.Row(COMMUNE, "Phường Ngọc Trạo", f"ngoctrao_tdp{i:02d}", f"Tổ dân phố {i}") for i in range(1, 11)]
            + [registry.Row(OTHER, "Xã Cẩm Thạch", "camthach_01", "Thôn Một"), registry.Row(OTHER, "Xã Cẩm Thạch", "camthach_02", EVIL_HAMLET)],
        )

    async def q(when, hamlet, user, outcome, *, topic=None, text="câu hỏi", channel="telegram", chat_type="private", chat=None):
        async with db.transaction() as s:
            await logs.add_query(
                s, created_at=when, channel=channel, chat_type=chat_type, chat_ref=chat or user, hamlet_code=hamlet,
                user_ref=user, text=text, topic=topic, score=0.9, outcome=outcome, handling_ms=1.0,
            )

    async def ev(when, hamlet, user, kind, name):
        async with db.transaction() as s:
            fields = {"step": name} if kind == "step" else {"value": name}
            await logs.add_guide_event(s, created_at=when, channel="telegram", hamlet_code=hamlet, user_ref=user, kind=kind, **fields)

    t1, t2 = "ngoctrao_tdp01", "ngoctrao_tdp02"
    for i in range(1, 6):
        await q(at(3), t1, f"u{i}", "answered", topic="le_phi", text="lệ phí bao nhiêu")
    await q(datetime(2026, 10, 31, 18, 0, tzinfo=timezone.utc), t1, "u6", "answered", topic="le_phi", text="lệ phí")
    await q(at(15, month=10), t1, "u1", "answered", topic="le_phi", text="lệ phí")
    for i in range(1, 7):
        await ev(at(4), t1, f"u{i}", "step", STEPS[0])
    for i in range(1, 6):
        await ev(at(4, 11), t1, f"u{i}", "step", STEPS[1])
    for user in ("u1", "u2"):
        for slug in STEPS[2:]:
            await ev(at(5), t1, user, "step", slug)
    await ev(at(5, 12), t1, "u1", "outcome", "yes")
    await ev(at(5, 12), t1, "u2", "outcome", "not_yet")
    for _ in range(2):
        await q(at(4, 12), t1, "u3", "command", text="[g:s:dang_nhap]")
    await q(at(6), t2, "v1", "unanswered", text=UNANSWERED_A, channel="zalo_bot")
    await q(at(7), t2, "v2", "unanswered", text=UNANSWERED_B, channel="zalo_bot")
    await q(at(7, 11), t2, "v2", "choices", topic="mat_the", text="mất thẻ thì sao", channel="zalo_bot")
    await q(at(8), t2, "v1", "answered", topic="le_phi", text="lệ phí nhóm", chat_type="group", chat="g1", channel="zalo_bot")
    await q(at(5), "camthach_02", "w1", "unanswered", text=EVIL_TEXT)
