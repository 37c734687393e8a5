"""Mobile issuing teams' visits ("tổ cấp lưu động đến tận thôn"): entered by officers (dashboard or CSV),
given in the FAQ answer about mobile teams for the person's hamlet, and announced to the hamlets' groups
the day before (by the broadcast sender, bot/broadcasts/jobs.py).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime

from bot.broadcasts.optout import load

_HHMM = re.compile(r"^([01]?\d|2[0-3])[:hH]([0-5]\d)$")
MAX_PLACE = 300
MAX_ROWS = 2000


@dataclass(frozen=True, slots=True)
class NextVisit:
    day: date
    start: str
    end: str | None
    place: str


def time_text(start: str, end: str | None) -> str:
    content = load()
    return content.msg("visit_time_range", start=start, end=end) if end else content.msg("visit_time_from", start=start)


def next_visit_text(visit: NextVisit, hamlet_name: str) -> str:
    return load().msg("visit_next", hamlet=hamlet_name, date=visit.day.strftime("%d/%m/%Y"), time=time_text(visit.start, visit.end), place=visit.place)


def announcement(day: date, start: str, end: str | None, place: str, hamlet_names: list[str]) -> str:
    return load().msg("visit_announce", date=day.strftime("%d/%m/%Y"), time=time_text(start, end), place=place, hamlets=", ".join(hamlet_names))


def clock_time(value: str) -> str | None:
    """"7:30", "07:30", "7h30" -> "07:30"; None if it is not a time of day."""
    found = _HHMM.match(value.strip())
    return f"{int(found.group(1)):02d}:{found.group(2)}" if found else None


class VisitError(ValueError):
    """A visit that cannot be stored; the message (Vietnamese) says why."""


@dataclass(frozen=True)
class VisitInput:
    day: date
    start: str
    end: str | None
    place: str
    hamlets: tuple[str, ...]


def check_visit(day: str, start: str, end: str, place: str, hamlets: list[str], known: dict[str, str], commune: str, today: date) -> VisitInput:
    """Check one visit as typed in the form or a CSV row; `known` maps hamlet codes to their commune."""
    try:
        when = date.fromisoformat(day.strip()) if "-" in day else datetime.strptime(day.strip(), "%d/%m/%Y").date()
    except ValueError:
        raise VisitError(f"ngày không hợp lệ: {day[:20]!r} (viết 2026-12-05 hoặc 05/12/2026)") from None
    if when < today:
        raise VisitError(f"ngày {when.strftime('%d/%m/%Y')} đã qua")
    begin = clock_time(start)
    if begin is None:
        raise VisitError(f"giờ bắt đầu không hợp lệ: {start[:10]!r} (viết 07:30)")
    finish = clock_time(end) if end.strip() else None
    if end.strip() and (finish is None or finish <= begin):
        raise VisitError(f"giờ kết thúc không hợp lệ: {end[:10]!r}")
    place = " ".join(place.split())
    if not place or len(place) > MAX_PLACE:
        raise VisitError(f"địa điểm phải có, tối đa {MAX_PLACE} ký tự")
    codes = tuple(dict.fromkeys(h.strip() for h in hamlets if h.strip()))
    if not codes:
        raise VisitError("chưa chọn thôn nào")
    outside = [h for h in codes if known.get(h) != commune]
    if outside:
        raise VisitError(f"không có thôn {', '.join(outside[:5])} trong xã/phường này")
    return VisitInput(when, begin, finish, place, codes)


def parse_csv(data: bytes, known: dict[str, str], commune: str, today: date) -> list[VisitInput]:
    """Rows `ngay,bat_dau,ket_thuc,dia_diem,thon` (hamlet codes separated by ';'); every row checked, none kept on an error."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise VisitError("tệp không phải văn bản UTF-8 (CSV)") from None
    reader = csv.DictReader(io.StringIO(text))
    needed = {"ngay", "bat_dau", "ket_thuc", "dia_diem", "thon"}
    if not reader.fieldnames or not needed <= {f.strip() for f in reader.fieldnames}:
        raise VisitError("dòng đầu phải là: ngay,bat_dau,ket_thuc,dia_diem,thon")
    out: list[VisitInput] = []
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            raise VisitError(f"tệp quá {MAX_ROWS} dòng")
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        try:
            out.append(check_visit(row["ngay"], row["bat_dau"], row["ket_thuc"], row["dia_diem"], row["thon"].split(";"), known, commune, today))
        except VisitError as exc:
            raise VisitError(f"dòng {number}: {exc}") from None
    if not out:
        raise VisitError("tệp không có dòng nào")
    return out
