"""The officers' figures on a hand-counted history, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from bot.figures import Period, funnel, hamlet_rows, low_confidence_total, overview, shown, topics, unanswered
from storage import logs, stats
from bot.unanswered import Grouper
from storage.models import (
    QuestionWording,
    StatMessages,
    StatMessagesMonthly,
    StatPeople,
    StatSeenDaily,
    StatSeenMonthly,
    StatStuck,
    StatTopics,
    StatUnanswered,
)
from tests.web.fixture import COMMUNE, OTHER, UNANSWERED_A, UNANSWERED_B, seed

NOV = Period.month("2026-11")


@pytest.fixture
async def seeded(database):
    await seed(database)
    return database


async def test_overview_counts_by_hand(seeded):
    async with seeded.transaction() as s:
        o = await overview(s, NOV, COMMUNE)
        everywhere = await overview(s, NOV, None)
        other = await overview(s, NOV, OTHER)
    assert (o.messages, o.people, o.groups) == (12, 8, 1)
    assert (o.answered, o.choices, o.unanswered, o.questions) == (7, 1, 2, 10)
    by_channel = {c.channel: (c.messages, c.people) for c in o.channels}
    assert by_channel == {"telegram": (8, 6), "zalo_bot": (4, 2)}
    per_day = dict(o.per_day)
    assert per_day[datetime(2026, 11, 1).date()] == 1, "18:00 UTC on 31 October is 1 November in Vietnam"
    assert per_day[datetime(2026, 11, 3).date()] == 5
    assert len(o.per_day) == 30 and sum(per_day.values()) == 12
    assert (other.messages, other.people) == (1, 1)
    assert everywhere.messages == 13


async def test_hamlet_rows_inactive_first_and_counts(seeded, catalog):
    async with seeded.transaction() as s:
        rows = await hamlet_rows(s, NOV, COMMUNE, catalog, sort="people")
    assert len(rows) == 10
    assert [r.active for r in rows] == [False] * 8 + [True, True], "hamlets with no activity come first"
    t1, t2 = rows[-2], rows[-1]
    assert t1.code == "ngoctrao_tdp01" and (t1.people, t1.messages, t1.started, t1.reached_last, t1.submitted, t1.unanswered) == (6, 8, 6, 2, 1, 0)
    assert t2.code == "ngoctrao_tdp02" and (t2.people, t2.messages, t2.unanswered) == (2, 4, 2)
    assert [shown(n) for n in (t1.people, t1.reached_last, t1.submitted, t2.people, 0)] == [6, "< 5", "< 5", "< 5", 0]


async def test_funnel_counts_by_hand(seeded, catalog):
    async with seeded.transaction() as s:
        f = await funnel(s, NOV, COMMUNE, catalog)
    assert [st.people for st in f.steps] == [6, 5, 2, 2, 2, 2, 2, 2, 2]
    assert [st.stopped for st in f.steps] == [1, 3, 0, 0, 0, 0, 0, 0, 1]
    assert [st.stuck for st in f.steps] == [0, 2, 0, 0, 0, 0, 0, 0, 0]
    assert f.submitted == 1
    t1 = next(h for h in f.hamlets if h.code == "ngoctrao_tdp01")
    assert t1.steps == [6, 5, 2, 2, 2, 2, 2, 2, 2] and t1.submitted == 1


async def test_topics_with_trend(seeded, catalog):
    async with seeded.transaction() as s:
        rows = await topics(s, NOV, COMMUNE, catalog)
    assert [(r.topic, r.count, r.previous) for r in rows] == [("le_phi", 7, 1)]
    assert rows[0].change == 6.0
    assert rows[0].title == catalog.topics["le_phi"].title


async def test_unanswered_grouped_with_hamlet(seeded):
    async with seeded.transaction() as s:
        alone = await unanswered(s, NOV, COMMUNE)
    assert sorted(g.count for g in alone) == [1, 1, 1], "not grouped yet: each wording on its own, none missing"
    assert await Grouper().catch_up(seeded) == 4, "every wording of the log: the other commune's too"
    async with seeded.transaction() as s:
        groups = await unanswered(s, NOV, COMMUNE)
    assert [g.count for g in groups] == [2, 1], "unanswered and low-confidence (offered choices) questions"
    assert groups[1].text == "mất thẻ thì sao"
    assert groups[0].count == 2 and set(groups[0].variants) == {UNANSWERED_A, UNANSWERED_B}
    assert groups[0].hamlets == ["Tổ dân phố 2"]


async def _snapshot(db):
    async with db.transaction() as s:
        out = []
        for model in (StatMessages, StatMessagesMonthly, StatTopics, StatStuck, StatSeenDaily, StatSeenMonthly, StatPeople, StatUnanswered):
            rows = (await s.execute(select(model.__table__))).all()
            out.append(sorted(tuple(r) for r in rows))
        for model in (QuestionWording,):
            rows = (await s.execute(select(model.text_hash, model.text, model.n))).all()
            out.append(sorted(tuple(r) for r in rows))
        return out


async def test_rebuild_from_the_log_gives_the_same_statistics(seeded):
    live = await _snapshot(seeded)
    assert all(live)
    async with seeded.transaction() as s:
        await stats.rebuild(s)
    assert await _snapshot(seeded) == live


async def test_a_period_other_than_a_month_counts_people_the_slow_way_alike(seeded, catalog):
    # 31 October (nothing that Vietnamese day) to 30 November: the same figures, from stat_seen_daily.
    wider = Period.days("2026-10-31", "2026-11-30")
    async with seeded.transaction() as s:
        for fn in (lambda p: overview(s, p, COMMUNE), lambda p: hamlet_rows(s, p, COMMUNE, catalog), lambda p: funnel(s, p, COMMUNE, catalog)):
            fast, slow = await fn(NOV), await fn(wider)
            if hasattr(fast, "per_day"):
                fast.per_day, slow.per_day = [], []
            assert fast == slow
        o = await overview(s, Period.days("2026-11-03", "2026-11-05"), COMMUNE)
    assert (o.messages, o.people) == (7, 6)


async def test_forgetting_a_person_removes_their_questions_from_the_unanswered_page(seeded):
    from tests.web.fixture import UNANSWERED_A

    await Grouper().catch_up(seeded)
    async with seeded.transaction() as s:
        await logs.forget(s, "v1")
    async with seeded.transaction() as s:
        groups = await unanswered(s, NOV, COMMUNE)
        texts = set((await s.execute(select(QuestionWording.text))).scalars())
        o = await overview(s, NOV, COMMUNE)
    assert UNANSWERED_A not in texts and [g.count for g in groups] == [1, 1]
    assert all(UNANSWERED_A not in g.variants for g in groups)
    assert (o.unanswered, o.people) == (2, 8), "the counts stay"


async def test_outcome_change_and_forgetting_keep_counts(seeded):
    async with seeded.transaction() as s:
        await logs.mark_unanswered(s, "v2", "mất thẻ thì sao")
    async with seeded.transaction() as s:
        await logs.forget(s, "u1")
    async with seeded.transaction() as s:
        o = await overview(s, NOV, COMMUNE)
        refs = set((await s.execute(select(StatSeenDaily.ref))).scalars()) | set((await s.execute(select(StatSeenMonthly.ref))).scalars())
    assert (o.choices, o.unanswered, o.people) == (0, 3, 8)
    assert "u1" not in refs


async def test_a_rolled_back_transaction_counts_nothing(seeded):
    with pytest.raises(RuntimeError):
        async with seeded.transaction() as s:
            await logs.add_query(
                s, created_at=datetime(2026, 11, 9, tzinfo=timezone.utc), channel="telegram", chat_type="private",
                chat_ref="z", hamlet_code="ngoctrao_tdp05", user_ref="z", text="x", topic=None, score=0, outcome="answered", handling_ms=0,
            )
            raise RuntimeError("handler failed")
    async with seeded.transaction() as s:
        assert (await overview(s, NOV, COMMUNE)).messages == 12


def test_period_parsing():
    from bot.figures import PeriodError
    from bot.web.texts import load_dashboard_texts

    t = load_dashboard_texts()
    assert (NOV.start.isoformat(), NOV.last.isoformat(), NOV.label(t)) == ("2026-11-01", "2026-11-30", "tháng 11/2026")
    assert Period.days("2026-11-03", "2026-12-05").label(t) == "03/11/2026 – 05/12/2026"
    assert Period.month("2026-01").previous() == Period.month("2025-12")
    for bad in ("2026-13", "26-11", "", "2026-11-01"):
        with pytest.raises(PeriodError) as caught:
            Period.month(bad)
        assert t.error(caught.value) == "tháng phải có dạng YYYY-MM, ví dụ 2026-11"
    with pytest.raises(PeriodError) as caught:
        Period.days("2026-11-03", "2029-11-03")
    assert t.error(caught.value) == "khoảng thời gian không hợp lệ (tối đa 2 năm)"


async def test_a_savepoint_rolled_back_inside_keeps_the_counts(seeded):
    from sqlalchemy.exc import IntegrityError

    from storage.models import Commune

    async with seeded.transaction() as s:
        await logs.add_query(
            s, created_at=datetime(2026, 11, 9, tzinfo=timezone.utc), channel="telegram", chat_type="private",
            chat_ref="z", hamlet_code="ngoctrao_tdp05", user_ref="z", text="x", topic=None, score=0, outcome="answered", handling_ms=0,
        )
        with pytest.raises(IntegrityError):
            async with s.begin_nested():
                s.add(Commune(code=COMMUNE, name="again"))
                await s.flush()
    async with seeded.transaction() as s:
        assert (await overview(s, NOV, COMMUNE)).messages == 13


async def test_every_wording_of_the_period_is_grouped_and_counted(seeded):
    """More wordings than any cut-off: each one counts in exactly one group."""
    async with seeded.transaction() as s:
        for i in range(600):
            await logs.add_query(
                s, created_at=datetime(2026, 11, 10, tzinfo=timezone.utc), channel="telegram", chat_type="private",
                chat_ref=f"p{i}", hamlet_code="ngoctrao_tdp03", user_ref=f"p{i}", text=f"hỏi về việc thứ {i} ở thôn",
                topic=None, score=0, outcome="unanswered", handling_ms=0,
            )
    grouper = Grouper()
    assert await grouper.catch_up(seeded, batch=250) == 604
    async with seeded.transaction() as s:
        groups = await unanswered(s, NOV, COMMUNE, limit=10_000)
        total = await low_confidence_total(s, NOV, COMMUNE)
    assert total == 603 and sum(g.count for g in groups) == total
    assert sorted(v for g in groups for v in g.variants) == sorted(
        [f"hỏi về việc thứ {i} ở thôn" for i in range(600)] + [UNANSWERED_A, UNANSWERED_B, "mất thẻ thì sao"]
    )


async def test_a_new_wording_joins_its_group_when_the_page_is_next_read(seeded):
    grouper = Grouper()
    await grouper.catch_up(seeded)
    async with seeded.transaction() as s:
        await logs.add_query(
            s, created_at=datetime(2026, 11, 12, tzinfo=timezone.utc), channel="telegram", chat_type="private",
            chat_ref="n1", hamlet_code="ngoctrao_tdp04", user_ref="n1", text="làm căn cước ở đâu vậy ạ",
            topic=None, score=0, outcome="unanswered", handling_ms=0,
        )
    assert await grouper.run(seeded, 100) == 1, "only the new wording is compared"
    async with seeded.transaction() as s:
        groups = await unanswered(s, NOV, COMMUNE)
    first = groups[0]
    assert first.count == 3 and "làm căn cước ở đâu vậy ạ" in first.variants and UNANSWERED_A in first.variants
    assert first.hamlets == ["Tổ dân phố 2", "Tổ dân phố 4"]
    assert await grouper.run(seeded, 100) == 0


async def test_two_processes_share_the_groups(seeded):
    first, second = Grouper(), Grouper()
    assert await first.catch_up(seeded) == 4

    async def ask(text, user):
        async with seeded.transaction() as s:
            await logs.add_query(
                s, created_at=datetime(2026, 11, 12, tzinfo=timezone.utc), channel="telegram", chat_type="private",
                chat_ref=user, hamlet_code="ngoctrao_tdp04", user_ref=user, text=text, topic=None, score=0,
                outcome="unanswered", handling_ms=0,
            )

    await ask("lam can cuoc o dau vay a", "n1")
    assert await second.run(seeded, 100) == 1  # reads the first one's groups before comparing
    await ask("thẻ bị cong vênh có sao không", "n2")
    assert await second.run(seeded, 100) == 1  # a new group
    await ask("the bi cong venh co sao khong vay", "n3")
    assert await first.run(seeded, 100) == 1  # sees the group the second one made
    async with seeded.transaction() as s:
        counts = sorted(g.count for g in await unanswered(s, NOV, COMMUNE))
    assert counts == [1, 2, 3]


async def test_the_migration_builds_the_statistics_of_what_was_logged_before(db_url, catalog):
    """A database logged by the previous version: migration 0016 builds the new tables from its log (and
    from the people-per-day table that version kept)."""
    from storage import registry
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import GuideEvent, QueryLog

    await upgrade(db_url, "0011")
    db = Database(db_url)
    try:
        async with db.transaction() as s:
            await registry.import_rows(s, [registry.Row(COMMUNE, "Phường Ngọc Trạo", f"ngoctrao_tdp{i:02d}", f"Tổ dân phố {i}") for i in (1, 2)])
            when = datetime(2026, 11, 3, 3, tzinfo=timezone.utc)
            for user, hamlet, outcome, topic, text in (
                ("u1", "ngoctrao_tdp01", "answered", "le_phi", "lệ phí"),
                ("u2", "ngoctrao_tdp01", "answered", "le_phi", "lệ phí bao nhiêu"),
                ("u3", "ngoctrao_tdp02", "unanswered", None, UNANSWERED_A),
                ("u4", "ngoctrao_tdp02", "unanswered", None, UNANSWERED_B),
            ):
                s.add(QueryLog(created_at=when, channel="telegram", chat_type="private", chat_ref=user, hamlet_code=hamlet,
                               user_ref=user, text=text, topic=topic, score=0.5, outcome=outcome, handling_ms=1.0))
            s.add(GuideEvent(created_at=when, channel="telegram", hamlet_code="ngoctrao_tdp01", user_ref="u1", kind="step", step=catalog.steps[0].slug))
            # What that version kept beside its log (0012's table, which 0016 keeps).
            day = when.date()
            for what, hamlet, user in (
                ("person", "ngoctrao_tdp01", "u1"), ("person", "ngoctrao_tdp01", "u2"), ("person", "ngoctrao_tdp02", "u3"),
                ("person", "ngoctrao_tdp02", "u4"), (f"step:{catalog.steps[0].slug}", "ngoctrao_tdp01", "u1"),
            ):
                s.add(StatSeenDaily(what=what, hamlet_code=hamlet, day=day, channel="telegram", ref=user))
        await db.migrate()
        assert await Grouper().catch_up(db) == 2
        async with db.transaction() as s:
            o = await overview(s, NOV, COMMUNE)
            rows = {r.code: (r.people, r.messages, r.started, r.unanswered) for r in await hamlet_rows(s, NOV, COMMUNE, catalog)}
            groups = await unanswered(s, NOV, COMMUNE)
            asked = await topics(s, NOV, COMMUNE, catalog)
        assert (o.messages, o.people, o.answered, o.unanswered) == (4, 4, 2, 2)
        assert rows == {"ngoctrao_tdp01": (2, 2, 1, 0), "ngoctrao_tdp02": (2, 2, 0, 2)}
        assert [(g.count, sorted(g.variants)) for g in groups] == [(2, sorted([UNANSWERED_A, UNANSWERED_B]))]
        assert [(t.topic, t.count) for t in asked] == [("le_phi", 2)]
    finally:
        await db.close()


async def test_a_count_row_written_while_its_wording_was_grouped_is_found_and_mended(seeded):
    """A row can miss its group (written by a transaction that began before the grouper placed the wording)."""
    from sqlalchemy import update

    grouper = Grouper()
    await grouper.catch_up(seeded)
    async with seeded.transaction() as s:
        before = [(g.count, sorted(g.variants)) for g in await unanswered(s, NOV, COMMUNE)]
        await s.execute(update(StatUnanswered).values(group_id=None))
    async with seeded.transaction() as s:
        assert [(g.count, sorted(g.variants)) for g in await unanswered(s, NOV, COMMUNE)] == before
    assert await grouper.run(seeded, 100) == 0
    async with seeded.transaction() as s:
        assert None not in set((await s.execute(select(StatUnanswered.group_id))).scalars())
        assert [(g.count, sorted(g.variants)) for g in await unanswered(s, NOV, COMMUNE)] == before
