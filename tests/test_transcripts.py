"""Golden transcripts: readable conversations replayed through the terminal channel with a frozen clock.

Format: `> text` is what the person types, `< text` starts a bot message and `| text` continues it,
`~ N days` / `~ N hours` moves the clock, `@ private` / `@ group` moves the same person to their
private chat or back to the group, `# …` is a comment. Header options: `#! group = <hamlet code>`
(start in that hamlet's group), `#! name = …`, `#! registry = <file in tests/transcripts/>` (the
communes and hamlets instead of the example registry). Regenerate after a deliberate change
with `CCCD_UPDATE_GOLDEN=1 scripts/test tests/test_transcripts.py`, then read the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.channels.console import ConsoleChannel
from bot.service import ChatService
from storage import registry
from tests.conftest import EXAMPLE_CSV

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))
UPDATE = os.environ.get("CCCD_UPDATE_GOLDEN") == "1"


def parse(path: Path) -> tuple[str, list[tuple[str, str]], dict]:
    """Return the header options and the (kind, text) turns of a transcript."""
    options: dict[str, str] = {}
    turns: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#!"):
            key, _, value = line[2:].partition("=")
            options[key.strip()] = value.strip()
        elif line.startswith("> ") or line == ">":
            turns.append((">", line[2:]))
        elif line.startswith("~ "):
            turns.append(("~", line[2:]))
        elif line.startswith("@ "):
            turns.append(("@", line[2:].strip()))
        elif line.startswith("< "):
            turns.append(("<", line[2:]))
        elif line.startswith("|") and turns and turns[-1][0] == "<":
            turns[-1] = ("<", turns[-1][1] + "\n" + line[2:])
    header = "\n".join(l for l in path.read_text(encoding="utf-8").splitlines() if l.startswith("#"))
    return header, turns, options


def render_transcript(header: str, exchanges: list[tuple[str, str, list[str]]]) -> str:
    out = [header, ""]
    for kind, text, replies in exchanges:
        out.append(f"{kind} {text}".rstrip())
        for reply in replies:
            first, *rest = reply.split("\n")
            out.append(f"< {first}")
            out.extend(f"| {line}".rstrip() for line in rest)
        out.append("")
    return "\n".join(out)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_transcript(path, database, catalog, settings, clock):
    header, turns, options = parse(path)
    csv = path.parent / options["registry"] if "registry" in options else EXAMPLE_CSV
    async with database.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(csv.read_bytes()))
    service = ChatService(database, catalog, settings, clock=clock)
    name = options.get("name", "")
    group = ConsoleChannel(service, name=name, group=options.get("group")) if options.get("group") else None
    private = ConsoleChannel(service, name=name)
    console = group or private
    await console.link_group()
    expected: list[str] = []
    actual: list[str] = []
    exchanges: list[tuple[str, str, list[str]]] = []
    for kind, text in turns:
        if kind == "<":
            expected.append(text)
            continue
        if kind == "@":
            console = private if text == "private" else group
            assert console is not None, "@ group needs a `#! group = …` header"
            exchanges.append(("@", text, []))
            continue
        if kind == "~":
            amount, unit = re.match(r"(\d+)\s*(\w+)", text).groups()
            clock.advance(**{unit if unit.endswith("s") else unit + "s": int(amount)})
            exchanges.append(("~", text, []))
            continue
        replies = await console.say(text)
        actual.extend(replies)
        exchanges.append((">", text, replies))
    if UPDATE:
        path.write_text(render_transcript(header, exchanges), encoding="utf-8")
        return
    assert actual == expected
