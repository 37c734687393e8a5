"""Appointment reminders: offered on the guide's step "Đến đúng hẹn" (after the person chose a date in step 8);
the person types or picks the date; the evening before, the bot reminds them where to go and what to bring.
`/huynhac` (or the button) cancels at any time.

Pure: the flow returns an Outcome with a `ReminderWanted` or `ReminderCancelled` event; the service stores
it (storage/schedules.py) and the broadcast sender sends it when due, like a broadcast of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.broadcasts.optout import load
from bot.conversation import Context, Flow, Outcome, State
from bot.flows.common import respond
from bot.messages import ChatType, Choice, Incoming, Reply
from bot.normalize import fold_key

PREFIX = "rm"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
EVENING = time(19, 0)  # when the reminder goes out, the evening before (local time)
MAX_DAYS = 120
_NUMERIC = re.compile(r"^(?:ngay\s*)?(\d{1,2})\s*[/.\-]\s*(\d{1,2})(?:\s*[/.\-]\s*(\d{2}|\d{4}))?$")
_DAY_ALONE = re.compile(r"^ngay\s*(?:mung\s*)?(\d{1,2})$")
RECENTLY_PAST = 60  # a day/month without a year this many days before today is a day past, not next year's
_WORDS = re.compile(r"^(?:ngay\s*)?(\d{1,2})\s*thang\s*(\d{1,2})(?:\s*nam\s*(\d{4}))?$")


@dataclass(frozen=True, slots=True)
class ReminderWanted:
    day: date


@dataclass(frozen=True, slots=True)
class ReminderCancelled:
    pass


def _msg(key: str, **values) -> str:
    return load().msg(key, **values)


def today(ctx: Context) -> date:
    return ctx.now.astimezone(LOCAL).date()


def remind_at(day: date, now: datetime, quiet_start: str | None = None) -> datetime:
    """The evening before the appointment (UTC); at once when that evening has begun already. Where the
    commune's quiet hours begin at EVENING or earlier (`quiet_start`, "HH:MM"), an hour before they begin."""
    at = EVENING
    if quiet_start:
        hours, _, minutes = quiet_start.partition(":")
        begins = time(int(hours), int(minutes or 0))
        if time(12, 0) < begins <= EVENING:
            at = time(begins.hour - 1, begins.minute)
    evening = datetime.combine(day - timedelta(days=1), at, tzinfo=LOCAL).astimezone(timezone.utc)
    return max(evening, now)


def shown(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def offer_choice() -> Choice:
    return Choice(_msg("reminder_offer"), PREFIX)


def ask(state: State, ctx: Context, prefix: tuple[Reply, ...] = ()) -> Outcome:
    first = today(ctx)
    days = [first + timedelta(days=k) for k in (1, 2, 3)]
    choices = tuple(Choice(d.strftime("%d/%m"), f"{PREFIX}:{d.isoformat()}") for d in days)
    example = (first + timedelta(days=7)).strftime("%d/%m")
    reply = Reply(_msg("reminder_ask_date", example=example), (*choices, Choice(_msg("reminder_cancel_label"), f"{PREFIX}:x")))
    return respond(state.evolve(flow=Flow.REMIND), [*prefix, reply], log=None)


def cancel(state: State, ctx: Context) -> Outcome:
    keep = state.flow if state.flow not in (Flow.REMIND,) else Flow.IDLE
    if state.flow != Flow.REMIND and not ctx.has_reminder:
        return respond(state.evolve(flow=keep), [Reply(_msg("reminder_none"))], log=None)  # nothing to stop: say so
    return respond(state.evolve(flow=keep), [Reply(_msg("reminder_cancelled"))], ReminderCancelled(), log=None)


def parse_day(text: str, first: date) -> date | None:
    """A date typed as 15/12, 15-12-2026, "ngày 15 tháng 12", "ngày 15" (this month, or the next if past);
    without a year, that day this year (a day just past stays past: the person is told so), else next year."""
    compact = re.sub(r"\s+", " ", text.strip().lower()).replace("ngày", "ngay")
    alone = _DAY_ALONE.match(fold_key(text))
    if alone:
        d = int(alone.group(1))
        month = date(first.year, first.month, 1)
        for _ in range(2):
            try:
                day = month.replace(day=d)
            except ValueError:
                day = None
            if day is not None and day > first:
                return day
            month = (month + timedelta(days=32)).replace(day=1)
        return None
    for pattern, source in ((_NUMERIC, compact), (_WORDS, fold_key(text))):
        found = pattern.match(source)
        if not found:
            continue
        d, m, y = int(found.group(1)), int(found.group(2)), found.group(3)
        try:
            if y:
                year = int(y) + (2000 if len(y) == 2 else 0)
                return date(year, m, d)
            day = date(first.year, m, d)
            if day >= first or (first - day).days <= RECENTLY_PAST:
                return day
            return date(first.year + 1, m, d)
        except ValueError:
            return None
    return None


def set_day(state: State, ctx: Context, day: date) -> Outcome:
    first = today(ctx)
    if day <= first:
        return respond(state, [Reply(_msg("reminder_past_date"))], log=None)
    if day > first + timedelta(days=MAX_DAYS):
        return respond(state, [Reply(_msg("reminder_far_date", days=MAX_DAYS))], log=None)
    eve = (day - timedelta(days=1)).strftime("%d/%m")
    if ctx.now >= datetime.combine(day - timedelta(days=1), EVENING, tzinfo=LOCAL):
        said = _msg("reminder_set_soon", date=shown(day))  # that evening has begun: not "tối {eve}"
    else:
        said = _msg("reminder_set", eve=eve, date=shown(day))
    reply = Reply(said, (Choice(_msg("reminder_cancel_label"), f"{PREFIX}:x"),))
    window = ctx.reply_window_days
    if window and (day - timedelta(days=1)) > first + timedelta(days=window):
        # The channel lets the bot write only so long after the person's last message: say so now.
        reply = Reply(f"{reply.text}\n{_msg('reminder_window_note', days=window)}", reply.choices)
    return respond(state.evolve(flow=Flow.IDLE), [reply], ReminderWanted(day), log=None)


def typed(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome | None:
    """Text while the bot waits for the date; None (the flow is left, the text handled as usual) for a
    command or a text without any digit (a question: "cần mang giấy tờ gì"). "huỷ" cancels."""
    if msg.chat_type is not ChatType.PRIVATE or text.startswith("/"):
        return None
    if fold_key(text) in load().reminder_cancel_words:
        return cancel(state, ctx)
    if not any(ch.isdigit() for ch in text):
        return None
    day = parse_day(text, today(ctx))
    if day is None:
        example = (today(ctx) + timedelta(days=7)).strftime("%d/%m")
        return respond(state, [Reply(_msg("reminder_bad_date", example=example))], log=None)
    return set_day(state, ctx, day)


def press(state: State, msg: Incoming, ctx: Context, arg: str) -> Outcome | None:
    if msg.chat_type is not ChatType.PRIVATE:
        return None
    if not arg:
        return ask(state, ctx)
    if arg == "x":
        return cancel(state, ctx)
    try:
        day = date.fromisoformat(arg)
    except ValueError:
        return None
    return set_day(state, ctx, day)
