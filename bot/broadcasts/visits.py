"""Mobile issuing teams' visits ("tổ cấp lưu động đến tận thôn"): entered by officers (dashboard or CSV),
given in the FAQ answer about mobile teams for the person's hamlet, and announced to the hamlets' groups
the day before (by the broadcast sender, bot/broadcasts/jobs.py).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from bot.broadcasts.optout import load

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters other than tab and line breaks
_HHMM = re.compile(r"^([01]?\d|2[0-3])[:hH]([0-5]\d)$")
MAX_PLACE = 300
MAX_ROWS = 2000
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class NextVisit:
    day: date
    start: str
    end: str | None
    place: str


def time_text(start: str, end: str | None) -> str:
    content = load()
    return content.msg("visit_time_range", start=start, end=end) if end else content.msg("visit_time_from", start=start)


# `content.msg(...)`: ids of broadcasts.yaml (tests/test_catalog.py checks them against that file).
def next_visit_text(visit: NextVisit, hamlet_name: str) -> str:
    content = load()
    return content.msg("visit_next", hamlet=hamlet_name, date=visit.day.strftime("%d/%m/%Y"), time=time_text(visit.start, visit.end), place=visit.place)


def announcement(day: date, start: str, end: str | None, place: str, hamlet_names: list[str], *, today: bool = False) -> str:
    """The announcement to the hamlets' groups: "ngày mai" the day before, "hôm nay" on the day itself."""
    key = "visit_announce_today" if today else "visit_announce"
    content = load()
    return content.msg(key, date=day.strftime("%d/%m/%Y"), time=time_text(start, end), place=place, hamlets=", ".join(hamlet_names))


async def cancel(session, visit, now: datetime) -> str:
    """Cancel a visit (the dashboard). Its announcement not sent yet is cancelled with it; one already sent
    to some group is followed by a notice that the visit is cancelled, to the same groups (before the visit
    begins). Returns what happened: "not_announced", "stopped" or "notice"."""
    from storage import broadcasts as repo
    from storage.broadcasts import BroadcastStatus, DeliveryStatus
    from storage.models import Broadcast

    visit.cancelled = True
    announced = visit.announced_broadcast_id
    b = await repo.get(session, announced, lock=True) if announced else None
    if b is None:
        return "not_announced"
    counts = await repo.totals(session, b.id)
    sent = sum(counts.get(s, 0) for s in (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN))
    if b.status not in (BroadcastStatus.DONE, BroadcastStatus.CANCELLED):
        await repo.cancel_open(session, b.id, now)
        b.status, b.finished_at, b.updated_at = BroadcastStatus.CANCELLED, now, now
    if not sent:
        return "stopped"
    begins = datetime.combine(visit.visit_date, datetime.strptime(visit.start_time, "%H:%M").time(), tzinfo=LOCAL)
    if begins <= now:
        return "stopped"  # begun already: a notice comes too late
    content = load()
    text = content.msg("visit_cancelled", date=visit.visit_date.strftime("%d/%m/%Y"), time=time_text(visit.start_time, visit.end_time), place=visit.place)
    session.add(Broadcast(
        kind="visit", author=b.author, approver=b.approver, text=text, audience=dict(b.audience), status=BroadcastStatus.SCHEDULED,
        created_at=now, updated_at=now, expires_at=begins.astimezone(timezone.utc),
    ))
    await session.flush()
    return "notice"


def clock_time(value: str) -> str | None:
    """"7:30", "07:30", "7h30" -> "07:30"; None if it is not a time of day."""
    found = _HHMM.match(value.strip())
    return f"{int(found.group(1)):02d}:{found.group(2)}" if found else None


COLUMNS = ("ngay", "bat_dau", "ket_thuc", "dia_diem", "thon")  # a CSV's first row


class VisitError(ValueError):
    """A visit that cannot be stored: `key` says why (the sentence is `visits_err_<key>` in dashboard.yaml,
    filled with `values`); a CSV row's error carries the row's own error in `values["reason"]`."""

    def __init__(self, key: str, **values):
        super().__init__(key, values)
        self.key = key
        self.values = values

    def words(self, texts) -> str:
        """The reason in people's words (`texts`: the dashboard's WebTexts)."""
        values = {k: v.words(texts) if isinstance(v, VisitError) else v for k, v in self.values.items()}
        return texts.get(f"visits_err_{self.key}", **values)


@dataclass(frozen=True)
class VisitInput:
    day: date
    start: str
    end: str | None
    place: str
    hamlets: tuple[str, ...]


def check_visit(day: str, start: str, end: str, place: str, hamlets: list[str], known: dict[str, str], commune: str, today: date) -> VisitInput:
    """Check one visit as typed in the form or a CSV row; `known` maps hamlet codes to their commune."""
    if any(_CONTROL.search(value) for value in (day, start, end, place, *hamlets)):
        raise VisitError("control")  # NUL and the like: never stored (PostgreSQL refuses NUL in text)
    try:
        when = date.fromisoformat(day.strip()) if "-" in day else datetime.strptime(day.strip(), "%d/%m/%Y").date()
    except ValueError:
        raise VisitError("day", day=repr(day[:20])) from None
    if when < today:
        raise VisitError("past", day=when.strftime("%d/%m/%Y"))
    begin = clock_time(start)
    if begin is None:
        raise VisitError("start", time=repr(start[:10]))
    finish = clock_time(end) if end.strip() else None
    if end.strip() and (finish is None or finish <= begin):
        raise VisitError("end", time=repr(end[:10]))
    place = " ".join(place.split())
    if not place or len(place) > MAX_PLACE:
        raise VisitError("place", max=MAX_PLACE)
    codes = tuple(dict.fromkeys(h.strip() for h in hamlets if h.strip()))
    if not codes:
        raise VisitError("no_hamlet")
    outside = [h for h in codes if known.get(h) != commune]
    if outside:
        raise VisitError("outside", codes=", ".join(outside[:5]))
    return VisitInput(when, begin, finish, place, codes)


def parse_csv(data: bytes, known: dict[str, str], commune: str, today: date) -> list[VisitInput]:
    """Rows `ngay,bat_dau,ket_thuc,dia_diem,thon` (hamlet codes separated by ';'); every row checked, none kept on an error."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise VisitError("not_utf8") from None
    reader = csv.DictReader(io.StringIO(text))
    needed = set(COLUMNS)
    try:
        header = reader.fieldnames
    except csv.Error:
        raise VisitError("row", number=1, reason=VisitError("csv")) from None
    if not header or not needed <= {f.strip() for f in header}:
        raise VisitError("header", header=",".join(COLUMNS))
    out: list[VisitInput] = []
    number = 1
    try:
        for number, row in enumerate(reader, start=2):
            if number - 1 > MAX_ROWS:
                raise VisitError("rows", max=MAX_ROWS)
            row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()}
            try:
                out.append(check_visit(row["ngay"], row["bat_dau"], row["ket_thuc"], row["dia_diem"], row["thon"].split(";"), known, commune, today))
            except VisitError as exc:
                raise VisitError("row", number=number, reason=exc) from None
    except csv.Error:
        # A field beyond the csv module's limit (131,072 characters), a stray quote, a NUL byte.
        raise VisitError("row", number=number + 1, reason=VisitError("csv")) from None
    if not out:
        raise VisitError("empty")
    return out
