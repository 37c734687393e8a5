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
from bot.normalize import has_diacritics
from storage import logs, registry, stats
from storage.errors import CodedError
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


class PeriodError(CodedError):
    """A month, a day or a span that cannot be read; `code` is its sentence in dashboard.yaml."""


@dataclass(frozen=True)
class Period:
    """Whole Vietnamese calendar days from `start` up to `end` (exclusive)."""

    start: date
    end: date

    @classmethod
    def month(cls, text: str) -> "Period":
        m = MONTH_RE.match((text or "").strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
            raise PeriodError("period_err_month")
        year, month = int(m.group(1)), int(m.group(2))
        return cls(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]) + timedelta(days=1))

    @classmethod
    def days(cls, start: str, end: str) -> "Period":
        """From two inclusive dates YYYY-MM-DD."""
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError:
            raise PeriodError("period_err_day") from None
        if last < first or (last - first).days > 731:
            raise PeriodError("period_err_span")
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

    def label(self, texts) -> str:
        """The period in words (dashboard.yaml's `period_month` or `period_days`)."""
        if self.month_key:
            return texts.get("period_month", month=f"{self.start.month:02d}", year=self.start.year)
        return texts.get("period_days", first=f"{self.start:%d/%m/%Y}", last=f"{self.last:%d/%m/%Y}")

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
    s, e = period.start, period.end
    channels: dict[str, ChannelRow] = {}
    per_day: dict[date, int] = defaultdict(int)
    for day, channel, outcome, n in await stats.message_counts(session, s, e, commune, ("day", "channel", "outcome")):
        row = channels.setdefault(channel, ChannelRow(channel))
        row.messages += n
        per_day[_as_date(day)] += n
        if outcome == "answered":
            row.answered += n
        elif outcome in ("choices", "asked_back"):
            row.choices += n
        elif outcome == "unanswered":
            row.unanswered += n
    groups = 0
    people = await stats.people_counts(session, s, e, commune, ("person", "group"), ("what", "channel"))
    for what, channel, n in people:
        if what == "person":
            channels.setdefault(channel, ChannelRow(channel)).people = n
        else:
            groups += n
    ordered = sorted(channels.values(), key=lambda r: (-r.messages, r.channel))
    return Overview(
        messages=sum(r.messages for r in ordered),
        # Pseudonyms are per channel (bot/privacy.py): a person on two channels counts on each.
        people=sum(r.people for r in ordered),
        groups=groups,
        answered=sum(r.answered for r in ordered),
        choices=sum(r.choices for r in ordered),
        unanswered=sum(r.unanswered for r in ordered),
        channels=ordered,
        per_day=[(d, per_day.get(d, 0)) for d in period.day_list()],
    )


def _as_date(value) -> date:
    """SQLite hands a date column back as text when it went through an aggregate."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


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

    attrs = {"person": "people", f"step:{first}": "started", f"step:{last}": "reached_last", f"outcome:{SUBMITTED}": "submitted"}
    for code, what, n in await stats.people_counts(session, s, e, commune, tuple(attrs), ("hamlet", "what")):
        if code in rows:
            setattr(rows[code], attrs[what], n)
    for code, outcome, n in await stats.message_counts(session, s, e, commune, ("hamlet", "outcome")):
        if code in rows:
            rows[code].messages += n
            if outcome == "unanswered":
                rows[code].unanswered += n
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
    whats = ("step:", f"outcome:{SUBMITTED}")
    reached = dict(await stats.people_counts(session, s, e, commune, whats, ("what",)))
    stuck = await stats.stuck_counts(session, s, e, commune)
    submitted = reached.get(f"outcome:{SUBMITTED}", 0)
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
    for code, what, n in await stats.people_counts(session, s, e, commune, whats, ("hamlet", "what")):
        by_hamlet[code][what] = n
    hamlets = [
        FunnelHamlet(
            code, name, [by_hamlet[code].get(f"step:{st.slug}", 0) for st in steps], by_hamlet[code].get(f"outcome:{SUBMITTED}", 0)
        )
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

    before_period = period.previous()
    now = await stats.topic_counts(session, period.start, period.end, commune)
    before = await stats.topic_counts(session, before_period.start, before_period.end, commune)
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
    keys: list[str] = field(default_factory=list)  # each variant's normalised form, as decisions are matched
    group: int = 0  # as storage.stats.unanswered_groups names it (what a decision form sends back)


async def low_confidence_total(session: AsyncSession, period: Period, commune: str | None) -> int:
    rows = await stats.message_counts(session, period.start, period.end, commune, ("outcome",))
    return sum(n for outcome, n in rows if outcome in logs.LOW_CONFIDENCE_OUTCOMES)


async def unanswered(session: AsyncSession, period: Period, commune: str | None, limit: int = 100) -> list[UnansweredGroup]:
    """The period's most asked groups of low-confidence questions (texts masked when logged).

    Every wording of the period counts: each is in a group kept in the database (bot.unanswered.Grouper),
    so the page sums the period's counts per group instead of comparing wordings on each request."""
    from bot.unanswered import question_key

    top = await stats.unanswered_groups(session, period.start, period.end, commune, limit)
    rows = await stats.unanswered_wordings(session, period.start, period.end, commune, [g for g, _, _ in top])
    names = {code: name for code, name, _ in await registry.hamlets_in(session, commune)}
    texts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    keys: dict[str, str | None] = {}
    places: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for group, text, key, hamlet, n, _ in rows:
        texts[group][text] += n
        keys[text] = key
        places[group][names.get(hamlet, hamlet or "—")] += n
    out = []
    for group, count, last in top:
        # Most asked first; on a tie, a wording with diacritics reads better as the group's name.
        variants = sorted(texts[group], key=lambda t: (-texts[group][t], not has_diacritics(t), len(t), t))
        if not variants:
            continue
        variant_keys = [keys[v] or question_key(v) for v in variants]
        hamlets = [h for h, _ in sorted(places[group].items(), key=lambda kv: -kv[1])]
        out.append(UnansweredGroup(variant_keys[0], variants[0], count, variants, hamlets, last, keys=variant_keys, group=group))
    return out


@dataclass
class Report:
    period: Period
    commune: str | None
    commune_name: str | None  # None: every commune (the report says dashboard.yaml's `filter_all_communes`)
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
        commune_name=names.get(commune, commune) if commune else None,
        generated_at=now,
        overview=await overview(session, period, commune),
        hamlets=await hamlet_rows(session, period, commune, catalog, sort="name"),
        funnel=await funnel(session, period, commune, catalog, per_hamlet=False),
        topics=await topics(session, period, commune, catalog),
    )
