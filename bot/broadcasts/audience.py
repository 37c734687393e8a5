"""Resolve an audience to recipients, and the dry run: how many per hamlet and channel, before sending."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.compose import Desk
from bot.broadcasts.model import Audience
from storage import broadcasts as repo
from storage import registry
from storage.broadcasts import Recipient


async def resolve(session: AsyncSession, audience: Audience) -> list[Recipient]:
    """Every recipient of the audience (opted-out people included, marked, to be counted as skipped)."""
    hamlets: list[str] | None
    if audience.scope == "all":
        hamlets = None
    elif audience.scope == "hamlets":
        hamlets = list(audience.codes)
    else:
        communes = set(audience.codes)
        hamlets = [h for h, c in (await repo.hamlet_communes(session)).items() if c in communes]
    return await repo.audience(session, hamlets=hamlets, kinds=audience.kinds, channels=audience.channels or None)


@dataclass(frozen=True)
class DryRunLine:
    hamlet: str | None
    channel: str
    kind: str
    to_send: int
    opted_out: int


async def dry_run(session: AsyncSession, audience: Audience) -> list[DryRunLine]:
    """Recipients per (hamlet, channel, kind): what would be sent, and who is skipped for having opted out."""
    send: Counter = Counter()
    skipped: Counter = Counter()
    for r in await resolve(session, audience):
        key = (r.hamlet_code, r.channel, r.kind)
        (skipped if r.opted_out else send)[key] += 1
    keys = sorted(set(send) | set(skipped), key=lambda k: (k[0] or "", k[1], k[2]))
    return [DryRunLine(h, ch, kind, send[(h, ch, kind)], skipped[(h, ch, kind)]) for h, ch, kind in keys]


async def unknown_codes(session: AsyncSession, audience: Audience) -> list[str]:
    """Codes of the audience that name no commune or hamlet in the registry."""
    communes_of = await repo.hamlet_communes(session)
    known = set(communes_of) if audience.scope == "hamlets" else set(communes_of.values())
    return [c for c in audience.codes if c not in known] if audience.scope != "all" else []


async def desk(session: AsyncSession, communes: frozenset[str]) -> Desk:
    """What /phatthanh shows a team member (or an officer, communes {"*"}): the registry and each hamlet's reach."""
    return Desk(
        communes=communes,
        commune_names=dict(await registry.communes(session)),
        hamlet_communes=await repo.hamlet_communes(session),
        hamlet_names={code: name for code, name, _ in await registry.list_hamlets(session)},
        reach=await repo.reach_by_hamlet(session),
    )
