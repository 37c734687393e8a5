"""Quiet hours: no broadcast reaches anyone between, by default, 21:00 and 07:00 local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


def _hhmm(value: str) -> time:
    hours, _, minutes = value.partition(":")
    return time(int(hours), int(minutes or 0))


@dataclass(frozen=True)
class QuietHours:
    start: str = "21:00"
    end: str = "07:00"
    zone: str = "Asia/Ho_Chi_Minh"

    def resume_at(self, now: datetime) -> datetime | None:
        """When sending may resume if `now` falls in the quiet hours (UTC); None if it may send now."""
        start, end = _hhmm(self.start), _hhmm(self.end)
        if start == end:
            return None
        tz = ZoneInfo(self.zone)
        local = now.astimezone(tz)
        t = local.time()
        overnight = start > end
        quiet = (t >= start or t < end) if overnight else (start <= t < end)
        if not quiet:
            return None
        day = local.date()
        if overnight and t >= start:
            day = day + timedelta(days=1)
        resume = datetime.combine(day, end, tzinfo=tz)
        return resume.astimezone(timezone.utc)
