"""What the broadcast sender makes into broadcasts when their time comes: appointment reminders (a broadcast
of one, to the person), mobile teams' visits (announced to the hamlets' groups the day before) and
recurring broadcasts (one at each run of the rule).

Each is made in one transaction with the change that marks it made (reminder `sent`, visit announced,
rule's next run moved on), so a sender that dies in between makes it again or not at all — never twice.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.broadcasts import visits as visit_texts
from bot.broadcasts import workflow
from bot.broadcasts.model import Audience
from bot.broadcasts.optout import load
from bot.broadcasts.quiet import QuietHours
from storage import broadcasts as repo
from storage import registry, schedules
from storage.broadcasts import BroadcastStatus, Recipient
from storage.db import Database
from storage.models import Broadcast

log = logging.getLogger(__name__)
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# A visit is announced from this hour of the day before (local time); quiet hours still apply.
ANNOUNCE_FROM = time(8, 0)


async def make_due(db: Database, now: datetime, *, weekly_summary: bool = False) -> int:
    """Make the broadcasts that are due; return how many were made. Close those past their time."""
    today = now.astimezone(LOCAL).date()
    async with db.transaction() as session:  # looked at first: the write lock is taken only when needed
        stale = await schedules.expired_reminders_exist(session, today) or await repo.expired_exist(session, now)
    if stale:
        async with db.writing() as session:
            await schedules.expire_reminders(session, today)
            await repo.expire_due(session, now)
    made = await reminders_due(db, now) + await visits_due(db, now) + await recurring_due(db, now)
    if weekly_summary:
        made += await weekly_summary_due(db, now)
    return made


def _broadcast(
    kind: str, author: str, text: str, audience: dict, status: str, now: datetime, approver: str | None = None,
    expires_at: datetime | None = None,
) -> Broadcast:
    return Broadcast(
        kind=kind, author=author, approver=approver, text=text, audience=audience, status=status,
        created_at=now, updated_at=now, started_at=now if status == BroadcastStatus.SENDING else None, expires_at=expires_at,
    )


# A reminder that quiet hours hold until the appointment day itself says "hôm nay", until this hour.
REMIND_TODAY_UNTIL = time(12, 0)
TOMORROW, TODAY = "tomorrow", "today"


def wording(quiet: QuietHours, now: datetime, day: date, until: time) -> tuple[str, datetime] | None:
    """How a message about `day` made at `now` may speak, and until when it may be sent (UTC).

    It goes out at the first moment outside the commune's quiet hours: still the day before -> "ngày mai"
    (until midnight); on the day itself before `until` -> "hôm nay" (until then); else None (too late)."""
    zone = ZoneInfo(quiet.zone)
    goes = (quiet.resume_at(now) or now).astimezone(zone)
    midnight = datetime.combine(day, time(0, 0), tzinfo=zone)
    if goes.date() < day:
        return TOMORROW, midnight.astimezone(timezone.utc)
    cutoff = datetime.combine(day, until, tzinfo=zone)
    if goes.date() == day and goes < cutoff:
        return TODAY, cutoff.astimezone(timezone.utc)
    return None


async def _quiet_hours(session, commune: str | None) -> QuietHours:
    p = await repo.policy(session, commune)
    return QuietHours(p.quiet_start, p.quiet_end, p.timezone)


async def reminders_due(db: Database, now: datetime) -> int:
    async with db.transaction() as session:
        due = [r.id for r in await schedules.due_reminders(session, now, now.astimezone(LOCAL).date())]
    made = 0
    for reminder_id in due:
        async with db.writing() as session:
            r = await session.get(schedules.Reminder, reminder_id)
            if r is None or r.status != schedules.PENDING:
                continue  # cancelled (or made) meanwhile
            commune = (await repo.hamlet_communes(session)).get(r.hamlet_code or "")
            when = wording(await _quiet_hours(session, commune), now, r.appointment, REMIND_TODAY_UNTIL)
            if when is None:
                r.status, r.updated_at = schedules.EXPIRED, now  # too late to remind: nothing is sent
                continue
            words, until = when
            content = load()
            key = "reminder_text" if words == TOMORROW else "reminder_text_today"
            text = content.msg(key, date=r.appointment.strftime("%d/%m/%Y"), body=r.text)
            audience = {"scope": "all", "codes": [], "kinds": ["private"], "channels": [r.channel]}
            b = _broadcast(
                "reminder", "system:reminder", text, audience, BroadcastStatus.SENDING, now, approver="system:reminder", expires_at=until
            )
            session.add(b)
            await session.flush()
            # Asked for by the person: sent even if they opted out of broadcasts.
            await repo.add_deliveries(session, b.id, [Recipient(r.channel, r.user_id, "private", r.hamlet_code, commune)], now)
            r.status, r.broadcast_id, r.updated_at = schedules.SENT, b.id, now
            made += 1
    return made


async def visits_due(db: Database, now: datetime) -> int:
    """Announce the visits of tomorrow (from ANNOUNCE_FROM) and those of today not announced yet (entered
    late, or held by quiet hours): "hôm nay", while the visit has not begun."""
    local = now.astimezone(LOCAL)
    days = [local.date()] + ([local.date() + timedelta(days=1)] if local.time() >= ANNOUNCE_FROM else [])
    async with db.transaction() as session:
        due = [v.id for day in days for v in await schedules.visits_to_announce(session, day)]
        names = {code: name for code, name, _ in await registry.list_hamlets(session)} if due else {}
    made = 0
    for visit_id in due:
        async with db.writing() as session:
            v = await session.get(schedules.MobileVisit, visit_id)
            if v is None or v.cancelled or v.announced_broadcast_id is not None:
                continue
            hamlets = [h for h in v.hamlets if h in names]
            if not hamlets:
                v.announced_broadcast_id = schedules.NOT_ANNOUNCED  # its hamlets were removed from the registry: nobody to tell
                continue
            hour, minute = (int(x) for x in v.start_time.split(":"))
            when = wording(await _quiet_hours(session, v.commune_code), now, v.visit_date, time(hour, minute))
            if when is None:
                v.announced_broadcast_id = schedules.NOT_ANNOUNCED  # begun (or about to) before it could be told
                continue
            words, until = when
            text = visit_texts.announcement(
                v.visit_date, v.start_time, v.end_time, v.place, [names[h] for h in hamlets], today=words == TODAY
            )
            audience = {"scope": "hamlets", "codes": hamlets, "kinds": ["group"], "channels": []}
            # Entered by an officer: no further approval; sent as any broadcast (quiet hours, pacing).
            b = _broadcast("visit", v.created_by, text, audience, BroadcastStatus.SCHEDULED, now, approver=v.created_by, expires_at=until)
            session.add(b)
            await session.flush()
            v.announced_broadcast_id = b.id
            made += 1
    return made


class CronError(ValueError):
    """A rule that cannot be kept: `key` is its reason's id in dashboard.yaml (recurring_err_<...>)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


MIN_GAP = timedelta(days=1)  # between two runs of a recurring rule
RUNS_CHECKED = 12


def check_cron(cron: str, zone: str, now: datetime) -> datetime:
    """The first run of a rule typed on the dashboard; CronError if it is malformed ("cron"), never comes
    ("never", e.g. 31 February) or runs more often than once a day ("often")."""
    from croniter import CroniterError, croniter

    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise CronError("recurring_err_cron")
    try:
        runs = croniter(cron, now.astimezone(ZoneInfo(zone)))
        times = [runs.get_next(datetime) for _ in range(RUNS_CHECKED)]
    except (CroniterError, ValueError):
        raise CronError("recurring_err_never") from None
    if any(b - a < MIN_GAP for a, b in zip(times, times[1:])):
        raise CronError("recurring_err_often")
    return times[0].astimezone(timezone.utc)


def next_run(cron: str, zone: str, after: datetime) -> datetime:
    """The first run of `cron` (local time in `zone`) strictly after `after` (UTC)."""
    from croniter import croniter

    local = after.astimezone(ZoneInfo(zone))
    return croniter(cron, local).get_next(datetime).astimezone(timezone.utc)


async def recurring_due(db: Database, now: datetime) -> int:
    async with db.transaction() as session:
        due = [r.id for r in await schedules.due_recurring(session, now)]
    made = 0
    for rule_id in due:
        async with db.writing() as session:
            rule = await session.get(schedules.RecurringBroadcast, rule_id)
            if rule is None or not rule.active or repo_aware(rule.next_run_at) > now:
                continue
            # Each run is submitted like any broadcast: where the communes ask for approval, it waits for an
            # officer or admin other than the rule's author (nobody approves their own).
            needs = await workflow.needs_approval(session, Audience.from_dict(rule.audience), await repo.hamlet_communes(session))
            status = BroadcastStatus.AWAITING_APPROVAL if needs else BroadcastStatus.SCHEDULED
            b = _broadcast("recurring", rule.author, rule.text, dict(rule.audience), status, now, approver=None if needs else rule.author)
            session.add(b)
            await session.flush()
            # From now, not from the missed run: a sender that was down for days sends once, not once per missed run.
            try:
                rule.next_run_at = next_run(rule.cron, rule.timezone, now)
            except Exception:  # a rule stored before rules were checked, that never comes again
                log.warning("recurring rule %s: no next run of %r; stopped", rule.id, rule.cron)
                rule.active = False
            rule.last_broadcast_id, rule.updated_at = b.id, now
            made += 1
    return made


def repo_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)



# ---------------------------------------------------------------- the weekly summary (optional)

SUMMARY_KEY = "broadcasts.weekly_summary"
SUMMARY_FROM = time(8, 0)  # Monday morning, local time
# Like the dashboard's "< 5": a hamlet where fewer people used the guide gets no summary (nobody counts a few).
SUMMARY_MIN = 5


async def weekly_summary_due(db: Database, now: datetime) -> int:
    """On Monday morning, tell each hamlet group how many people of the hamlet used the guide in the past 7 days."""
    from sqlalchemy import distinct, func, select

    from bot.broadcasts.optout import load
    from storage import kv
    from storage.models import Chat, GuideEvent

    local = now.astimezone(LOCAL)
    if local.weekday() != 0 or local.time() < SUMMARY_FROM:
        return 0
    year, week, _ = local.isocalendar()
    key = f"{year}-W{week:02d}"
    async with db.transaction() as session:
        stored = await kv.get(session, SUMMARY_KEY)
    if stored is not None and stored[0].get("week") == key:
        return 0
    made = 0
    async with db.writing() as session:
        # The mark and the broadcasts in one transaction: made once a week, whatever happens.
        if not await kv.put_if_version(session, SUMMARY_KEY, {"week": key}, stored[1] if stored else None, now):
            return 0  # made by another sender
        grouped = set((await session.execute(
            select(Chat.hamlet_code).where(Chat.type == "group", Chat.active.is_(True), Chat.hamlet_code.is_not(None))
        )).scalars())
        counts = await session.execute(
            select(GuideEvent.hamlet_code, func.count(distinct(GuideEvent.user_ref)))
            .where(GuideEvent.kind == "step", GuideEvent.created_at >= now - timedelta(days=7), GuideEvent.created_at < now)
            .group_by(GuideEvent.hamlet_code)
        )
        names = {code: name for code, name, _ in await registry.list_hamlets(session)}
        content = load()
        for hamlet, n in counts.all():
            if hamlet not in grouped or hamlet not in names or n < SUMMARY_MIN:
                continue
            text = content.msg("weekly_summary", n=n, hamlet=names[hamlet])
            audience = {"scope": "hamlets", "codes": [hamlet], "kinds": ["group"], "channels": []}
            session.add(_broadcast("summary", "system:summary", text, audience, BroadcastStatus.SCHEDULED, now, approver="system:summary"))
            made += 1
    return made
