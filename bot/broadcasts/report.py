"""A broadcast's delivery report, for the dashboard and `cccd-bot broadcast report` alike: counts per
hamlet, channel and kind (a row being sent counts as pending), the totals, and the rows whose fate is
unknown (in flight when a sender died: not sent again, listed for the team to follow up)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from storage import broadcasts as repo
from storage.broadcasts import DeliveryStatus
from storage.models import Broadcast, BroadcastDelivery

# The report's columns, in order (the names people read are in dashboard.yaml: bc_column_<status>).
COLUMNS = ("sent", "failed", "blocked", "no_window", "opted_out", "unknown", "pending", "cancelled")
STATUSES = ("draft", "awaiting_approval", "scheduled", "sending", "paused", "done", "cancelled")


def status_name(texts, status: str) -> str:
    """A broadcast status as people read it (dashboard.yaml: bc_status_<status>); `texts` is a WebTexts."""
    return texts.get(f"bc_status_{status}") if status in STATUSES else status


@dataclass(frozen=True)
class Report:
    broadcast: Broadcast
    table: list[tuple[tuple[str, str, str], dict[str, int]]]  # ((hamlet or "", channel, kind), status -> n), sorted
    totals: dict[str, int]
    unknown: list[BroadcastDelivery]

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def settled(self) -> int:
        return self.total - self.totals.get(DeliveryStatus.PENDING, 0) - self.totals.get(DeliveryStatus.SENDING, 0)


async def read(session: AsyncSession, broadcast_id: int, *, unknown_limit: int = 200) -> Report | None:
    b = await repo.get(session, broadcast_id)
    if b is None:
        return None
    table: dict[tuple[str, str, str], dict[str, int]] = {}
    for hamlet, channel, kind, status, n in await repo.report(session, broadcast_id):
        key = DeliveryStatus.PENDING.value if status == DeliveryStatus.SENDING else str(status)
        counts = table.setdefault((hamlet or "", channel, kind), {})
        counts[key] = counts.get(key, 0) + n
    unknown = [d for d in await repo.deliveries(session, broadcast_id) if d.status == DeliveryStatus.UNKNOWN][:unknown_limit]
    return Report(b, sorted(table.items()), await repo.totals(session, broadcast_id), unknown)
