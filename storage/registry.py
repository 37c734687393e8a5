"""Communes and hamlets: the registry, imported from CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import CodedError
from storage.models import Chat, Commune, Hamlet, User

CSV_COLUMNS = ("commune_code", "commune_name", "hamlet_code", "hamlet_name")
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_CSV_BYTES = 5_000_000


class CsvError(ValueError):
    """The CSV cannot be imported. `problems` holds one (text id, values) pair per problem — every bad line —
    rendered in Vietnamese at the edge from operator.yaml (`csv_err_*`)."""

    def __init__(self, problems: list[tuple[str, dict]]):
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:  # for logs and tracebacks only
        return "; ".join(f"{code} {params}" for code, params in self.problems)


@dataclass(frozen=True)
class Row:
    commune_code: str
    commune_name: str
    hamlet_code: str
    hamlet_name: str


def parse_csv(data: bytes) -> list[Row]:
    """Parse and check a registry CSV; raise CsvError listing each problem by line."""
    if len(data) > MAX_CSV_BYTES:
        raise CsvError([("csv_err_too_large", {"max": MAX_CSV_BYTES})])
    if b"\x00" in data:
        raise CsvError([("csv_err_binary", {})])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError([("csv_err_encoding", {"byte": exc.start})]) from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CsvError([("csv_err_columns", {"missing": ", ".join(missing), "expected": ", ".join(CSV_COLUMNS)})])
    rows: list[Row] = []
    errors: list[tuple[str, dict]] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(reader, 2):
        values = {c: (raw.get(c) or "").strip() for c in CSV_COLUMNS}
        row = Row(**values)
        for col in ("commune_code", "hamlet_code"):
            if not CODE_RE.match(values[col]):
                errors.append(("csv_err_code", {"line": line, "column": col, "value": values[col][:40]}))
        for col in ("commune_name", "hamlet_name"):
            if not values[col] or len(values[col]) > 200:
                errors.append(("csv_err_name", {"line": line, "column": col}))
        # Codes are looked up without regard to case (people type them, QR links carry them).
        code_key = row.hamlet_code.lower()
        if code_key in seen:
            errors.append(("csv_err_duplicate", {"line": line, "code": row.hamlet_code[:40], "first": seen[code_key]}))
        seen[code_key] = line
        rows.append(row)
    if errors:
        raise CsvError(errors)
    if not rows:
        raise CsvError([("csv_err_empty", {})])
    return rows


async def import_rows(session: AsyncSession, rows: list[Row]) -> tuple[int, int]:
    """Insert or update communes and hamlets; return (communes, hamlets) written."""
    communes = {}
    for row in rows:
        communes[row.commune_code] = row.commune_name
    for code, name in communes.items():
        existing = await session.get(Commune, code)
        if existing:
            existing.name = name
        else:
            session.add(Commune(code=code, name=name))
    await session.flush()
    for row in rows:
        existing = await session.get(Hamlet, row.hamlet_code)
        if existing:
            existing.name = row.hamlet_name
            existing.commune_code = row.commune_code
        else:
            session.add(Hamlet(code=row.hamlet_code, name=row.hamlet_name, commune_code=row.commune_code))
    await session.flush()
    return len(communes), len(rows)


async def list_hamlets(session: AsyncSession) -> list[tuple[str, str, str]]:
    """Return (code, name, commune name) of every hamlet, in code order."""
    result = await session.execute(
        select(Hamlet.code, Hamlet.name, Commune.name).join(Commune, Hamlet.commune_code == Commune.code).order_by(Hamlet.code)
    )
    return [tuple(r) for r in result.all()]


async def communes(session: AsyncSession) -> list[tuple[str, str]]:
    """(code, name) of every commune, by name."""
    return [tuple(r) for r in (await session.execute(select(Commune.code, Commune.name).order_by(Commune.name, Commune.code))).all()]


async def hamlets_in(session: AsyncSession, commune: str | None) -> list[tuple[str, str, str]]:
    """(code, name, commune code) of the hamlets of a commune (or of all), by commune and name."""
    query = select(Hamlet.code, Hamlet.name, Hamlet.commune_code).order_by(Hamlet.commune_code, Hamlet.name, Hamlet.code)
    if commune:
        query = query.where(Hamlet.commune_code == commune)
    rows = [tuple(r) for r in (await session.execute(query)).all()]
    # "Tổ dân phố 2" before "Tổ dân phố 10", as people count them.
    return sorted(rows, key=lambda r: (r[2], natural_key(r[1]), r[0]))


def natural_key(name: str) -> str:
    return re.sub(r"\d+", lambda m: m.group().zfill(8), name.lower())


class RegistryError(CodedError):
    """A change to the registry that cannot be made; `code` is its sentence in dashboard.yaml."""


def _check_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or len(name) > 200:
        raise RegistryError("registry_err_name")
    return name


async def add_hamlet(session: AsyncSession, commune: str, code: str, name: str) -> None:
    if not CODE_RE.match(code or ""):
        raise RegistryError("registry_err_code")
    if await session.get(Commune, commune) is None:
        raise RegistryError("registry_err_commune")
    existing = (await session.execute(select(Hamlet).where(func.lower(Hamlet.code) == code.lower()))).scalar_one_or_none()
    if existing is not None:
        raise RegistryError("registry_err_taken", code=code)
    session.add(Hamlet(code=code, name=_check_name(name), commune_code=commune))
    await session.flush()


async def rename_hamlet(session: AsyncSession, code: str, name: str) -> Hamlet:
    hamlet = await session.get(Hamlet, code)
    if hamlet is None:
        raise RegistryError("registry_err_unknown")
    hamlet.name = _check_name(name)
    return hamlet


async def remove_hamlet(session: AsyncSession, code: str) -> Hamlet:
    """Remove a hamlet; its people and groups keep their history but lose the link (ON DELETE SET NULL)."""
    hamlet = await session.get(Hamlet, code)
    if hamlet is None:
        raise RegistryError("registry_err_unknown")
    await session.execute(update(Chat).where(Chat.hamlet_code == code).values(hamlet_code=None))
    await session.execute(update(User).where(User.hamlet_code == code).values(hamlet_code=None))
    await session.delete(hamlet)
    await session.flush()
    return hamlet


async def groups_by_hamlet(session: AsyncSession, commune: str | None) -> dict[str, list[tuple[str, str | None, bool]]]:
    """hamlet code -> [(channel, title, active)] of the group chats linked to it."""
    query = (
        select(Chat.hamlet_code, Chat.channel, Chat.title, Chat.active)
        .where(Chat.type == "group", Chat.hamlet_code.is_not(None))
        .order_by(Chat.channel, Chat.title)
    )
    if commune:
        query = query.where(Chat.hamlet_code.in_(select(Hamlet.code).where(Hamlet.commune_code == commune)))
    out: dict[str, list] = {}
    for code, channel, title, active in (await session.execute(query)).all():
        out.setdefault(code, []).append((channel, title, bool(active)))
    return out
