"""The officers' figures: plain functions over the pre-aggregated statistics.

The dashboard pages, the exports and the command line all call these, so a figure is computed in
one place. Counts of people below SUPPRESS_BELOW are shown as "< 5" by `shown`, never by the caller.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from bot.catalog import Catalog
from storage import logs, registry, stats
from storage.stats import LOCAL_TZ

SUPPRESS_BELOW = 5
SUPPRESSED = "< 5"
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
SUBMITTED = "yes"  # the outcome value of "Đã nộp được"


def shown(people: int) -> int | str:
    """A count of people as it may be shown: fewer than 5 (but some) is '< 5'."""
    return SUPPRESSED if 0 < people < SUPPRESS_BELOW else people


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Period:
    """Whole Vietnamese calendar days from `start` up to `end` (exclusive)."""

    start: date
    end: date

    @classmethod
    def month(cls, text: str) -> "Period":
        m = MONTH_RE.match((text or "").strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
            raise ValueError("tháng phải có dạng YYYY-MM, ví dụ 2026-11")
        year, month = int(m.group(1)), int(m.group(2))
        return cls(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]) + timedelta(days=1))

    @classmethod
    def days(cls, start: str, end: str) -> "Period":
        """From two inclusive dates YYYY-MM-DD."""
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError:
            raise ValueError("ngày phải có dạng YYYY-MM-DD") from None
        if last < first or (last - first).days > 731:
            raise ValueError("khoảng thời gian không hợp lệ (tối đa 2 năm)")
        return cls(first, last + timedelta(days=1))

    @classmethod
    def this_month(cls, now: datetime) -> "Period":
        today = now.astimezone(LOCAL_TZ).date()
        return cls.month(f"{today.year:04d}-{today.month:02d}")

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def month_key(self) -> str | None:
        """YYYY-MM when the period is exactly one calendar month."""
        if self.start.day == 1 and self.end == Period.month(f"{self.start:%Y-%m}").end:
            return f"{self.start:%Y-%m}"
        return None

    @property
    def label(self) -> str:
        if self.month_key:
            return f"tháng {self.start.month:02d}/{self.start.year}"
        return f"{self.start:%d/%m/%Y} – {self.last:%d/%m/%Y}"

    def previous(self) -> "Period":
        """The period of the same length just before (the month before, for a month)."""
        if self.month_key:
            prev = self.start - timedelta(days=1)
            return Period.month(f"{prev:%Y-%m}")
        return Period(self.start - (self.end - self.start), self.start)

    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]


@dataclass
class ChannelRow:
    channel: str
    messages: int = 0
    people: int = 0
    answered: int = 0
    choices: int = 0
    unanswered: int = 0

    @property
    def questions(self) -> int:
        return self.answered + self.choices + self.unanswered


@dataclass
class Overview:
    messages: int
    people: int
    groups: int
    answered: int
    choices: int
    unanswered: int
    channels: list[ChannelRow]
    per_day: list[tuple[date, int]]

    @property
    def questions(self) -> int:
        return self.answered + self.choices + self.unanswered


async def overview(session: AsyncSession, period: Period, commune: str | None) -> Overview:
    rows = await stats.query_counts(session, period.start, period.end, commune, ("channel", "outcome"))
    channels: dict[str, ChannelRow] = {}
    for channel, outcome, n in rows:
        row = channels.setdefault(channel, ChannelRow(channel))
        row.messages += n
        if outcome == "answered":
            row.answered += n
        elif outcome in ("choices", "asked_back"):
            row.choices += n
        elif outcome == "unanswered":
            row.unanswered += n
    for channel, n in await stats.distinct_counts(session, period.start, period.end, commune, "person", ("channel",)):
        channels.setdefault(channel, ChannelRow(channel)).people = n
    people = (await stats.distinct_counts(session, period.start, period.end, commune, "person"))[0][0]
    groups = (await stats.distinct_counts(session, period.start, period.end, commune, "group"))[0][0]
    per_day = dict(await stats.query_counts(session, period.start, period.end, commune, ("day",)))
    ordered = sorted(channels.values(), key=lambda r: (-r.messages, r.channel))
    return Overview(
        messages=sum(r.messages for r in ordered),
        people=people,
        groups=groups,
        answered=sum(r.answered for r in ordered),
        choices=sum(r.choices for r in ordered),
        unanswered=sum(r.unanswered for r in ordered),
        channels=ordered,
        per_day=[(d, per_day.get(d, 0)) for d in period.day_list()],
    )


@dataclass
class HamletRow:
    code: str
    name: str
    commune: str
    people: int = 0
    messages: int = 0
    started: int = 0
    reached_last: int = 0
    submitted: int = 0
    unanswered: int = 0

    @property
    def active(self) -> bool:
        return self.messages > 0 or self.people > 0


HAMLET_SORTS = ("name", "people", "messages", "started", "reached_last", "submitted", "unanswered")


async def hamlet_rows(session: AsyncSession, period: Period, commune: str | None, catalog: Catalog, sort: str = "people") -> list[HamletRow]:
    """One row per registered hamlet of the scope; hamlets with no activity first, then by `sort`."""
    rows = {code: HamletRow(code, name, commune_code) for code, name, commune_code in await registry.hamlets_in(session, commune)}
    first, last = catalog.steps[0].slug, catalog.steps[-1].slug
    s, e = period.start, period.end

    def put(attr: str, pairs) -> None:
        for code, n in pairs:
            if code in rows:
                setattr(rows[code], attr, n)

    put("people", await stats.distinct_counts(session, s, e, commune, "person", ("hamlet_code",)))
    put("messages", await stats.query_counts(session, s, e, commune, ("hamlet_code",)))
    put("started", await stats.distinct_counts(session, s, e, commune, f"step:{first}", ("hamlet_code",)))
    put("reached_last", await stats.distinct_counts(session, s, e, commune, f"step:{last}", ("hamlet_code",)))
    put("submitted", await stats.distinct_counts(session, s, e, commune, f"outcome:{SUBMITTED}", ("hamlet_code",)))
    unanswered = defaultdict(int)
    for code, outcome, n in await stats.query_counts(session, s, e, commune, ("hamlet_code", "outcome")):
        if outcome == "unanswered":
            unanswered[code] += n
    put("unanswered", unanswered.items())
    sort = sort if sort in HAMLET_SORTS else "people"
    ordered = list(rows.values())  # already in the registry's natural order
    if sort != "name":
        ordered.sort(key=lambda r: -getattr(r, sort))
    ordered.sort(key=lambda r: r.active)  # stable: inactive hamlets first, each part in the chosen order
    return ordered


@dataclass
class FunnelStep:
    number: int
    slug: str
    title: str
    people: int = 0
    stuck: int = 0  # presses of "stuck at this step"
    stopped: int = 0  # reached this step but not the next (or, at the last, did not say they submitted)


@dataclass
class FunnelHamlet:
    code: str
    name: str
    steps: list[int]
    submitted: int


@dataclass
class Funnel:
    steps: list[FunnelStep]
    submitted: int
    hamlets: list[FunnelHamlet] = field(default_factory=list)


async def funnel(session: AsyncSession, period: Period, commune: str | None, catalog: Catalog, per_hamlet: bool = True) -> Funnel:
    s, e = period.start, period.end
    reached = {what: n for what, n in await stats.distinct_counts(session, s, e, commune, "step:", ("what",), prefix=True)}
    stuck = {name: n for name, n in await stats.event_counts(session, s, e, commune, "stuck")}
    submitted = (await stats.distinct_counts(session, s, e, commune, f"outcome:{SUBMITTED}"))[0][0]
    steps = [
        FunnelStep(i + 1, st.slug, st.title, reached.get(f"step:{st.slug}", 0), stuck.get(st.slug, 0))
        for i, st in enumerate(catalog.steps)
    ]
    for i, st in enumerate(steps):
        after = steps[i + 1].people if i + 1 < len(steps) else submitted
        st.stopped = max(st.people - after, 0)
    if not per_hamlet:
        return Funnel(steps, submitted)
    by_hamlet: dict[str, dict[str, int]] = defaultdict(dict)
    for what, code, n in await stats.distinct_counts(session, s, e, commune, "step:", ("what", "hamlet_code"), prefix=True):
        by_hamlet[code][what] = n
    done = dict(await stats.distinct_counts(session, s, e, commune, f"outcome:{SUBMITTED}", ("hamlet_code",)))
    hamlets = [
        FunnelHamlet(code, name, [by_hamlet[code].get(f"step:{st.slug}", 0) for st in steps], done.get(code, 0))
        for code, name, _ in await registry.hamlets_in(session, commune)
    ]
    return Funnel(steps, submitted, hamlets)


@dataclass
class TopicRow:
    topic: str
    title: str
    count: int
    previous: int

    @property
    def change(self) -> float | None:
        """Relative change versus the previous period; None when there was nothing before."""
        return (self.count - self.previous) / self.previous if self.previous else None


async def topics(session: AsyncSession, period: Period, commune: str | None, catalog: Catalog, limit: int = 50) -> list[TopicRow]:
    """Topics answered in the period, most asked first, with the previous period's count."""

    async def answered(p: Period) -> dict[str, int]:
        rows = await stats.query_counts(session, p.start, p.end, commune, ("outcome", "topic"))
        return {topic: n for outcome, topic, n in rows if outcome == "answered" and topic}

    now, before = await answered(period), await answered(period.previous())
    out = [
        TopicRow(t, catalog.topics[t].title if t in catalog.topics else t, n, before.get(t, 0))
        for t, n in now.items()
    ]
    out.sort(key=lambda r: (-r.count, r.topic))
    return out[:limit]


@dataclass
class UnansweredGroup:
    key: str
    text: str
    count: int
    variants: list[str]
    hamlets: list[str]
    last: datetime
    status: str | None = None  # handled / proposed, when an editor decided


# Grouping compares each wording with every group so far: the most frequent wordings are grouped, the long
# tail of one-off wordings (counted in the page's total all the same) is left out to keep the page fast.
GROUPED_WORDINGS = 500


async def low_confidence_total(session: AsyncSession, period: Period, commune: str | None) -> int:
    rows = await stats.query_counts(session, period.start, period.end, commune, ("outcome",))
    return sum(n for outcome, n in rows if outcome in logs.LOW_CONFIDENCE_OUTCOMES)


async def unanswered(session: AsyncSession, period: Period, commune: str | None, limit: int = 100) -> list[UnansweredGroup]:
    """The period's low-confidence questions (already masked when logged), near-duplicates grouped."""
    from bot.unanswered import group_questions, question_key

    rows = await logs.low_confidence_by_text(
        session, stats.day_start_utc(period.start), stats.day_start_utc(period.end), commune, limit=GROUPED_WORDINGS
    )
    names = {code: name for code, name, _ in await registry.hamlets_in(session, commune)}
    by_text: dict[str, list] = defaultdict(list)
    for text, hamlet, n, last in rows:
        by_text[text.strip()].append((hamlet, n, last))
    texts = [t for t, items in by_text.items() for _ in range(sum(n for _, n, _ in items))]
    out = []
    for g in group_questions(texts)[:limit]:
        hamlets: dict[str, int] = defaultdict(int)
        last = None
        for v in g.variants:
            for hamlet, n, ts in by_text.get(v, ()):
                hamlets[names.get(hamlet or "", hamlet or "—")] += n
                ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts
                last = ts if last is None or ts > last else last
        ordered = [h for h, _ in sorted(hamlets.items(), key=lambda kv: -kv[1])]
        out.append(UnansweredGroup(question_key(g.text), g.text, g.count, g.variants, ordered, last))
    return out


@dataclass
class Report:
    period: Period
    commune: str | None
    commune_name: str
    generated_at: datetime
    overview: Overview
    hamlets: list[HamletRow]
    funnel: Funnel
    topics: list[TopicRow]


async def report(session: AsyncSession, period: Period, commune: str | None, catalog: Catalog, now: datetime) -> Report:
    names = dict(await registry.communes(session))
    return Report(
        period=period,
        commune=commune,
        commune_name=names.get(commune, commune) if commune else "Tất cả xã/phường",
        generated_at=now,
        overview=await overview(session, period, commune),
        hamlets=await hamlet_rows(session, period, commune, catalog, sort="name"),
        funnel=await funnel(session, period, commune, catalog, per_hamlet=False),
        topics=await topics(session, period, commune, catalog),
    )
