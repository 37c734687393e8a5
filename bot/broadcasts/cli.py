"""`cccd-bot broadcast ...`: create, dry-run, approve, list, report, pause, resume, cancel, send.

Usable before the dashboard pages exist. The person acting is named with --as channel:user_id and
must be in CCCD_TEAM (their commune) or CCCD_OFFICERS.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path

from bot.startup import say



def _status(status: str) -> str:
    """A broadcast status as the dashboard names it (dashboard.yaml: bc_status_<status>)."""
    from bot.broadcasts.report import status_name
    from bot.cli import _settings
    from bot.web.texts import load_dashboard_texts

    return status_name(load_dashboard_texts(_settings().content_dir), status)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _audience(args):
    from bot.broadcasts.model import Audience, AudienceError

    codes = tuple(c.strip() for c in (args.codes or "").split(",") if c.strip())
    try:
        return Audience(
            scope=args.scope,
            codes=codes,
            kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
            channels=tuple(c.strip() for c in (args.channels or "").split(",") if c.strip()),
        )
    except AudienceError as exc:
        print(say("bc_bad_audience", reason=exc), file=sys.stderr)
        raise SystemExit(2) from None


def _actor(settings, who: str):
    from bot.broadcasts.workflow import actor_for

    channel, _, user = (who or "").partition(":")
    if not channel or not user:
        print(say("bc_bad_as"), file=sys.stderr)
        raise SystemExit(2)
    return actor_for(settings, channel, user)


def _run(coro_fn):
    from bot.cli import _settings
    from bot.broadcasts.workflow import BadRequest, NotAllowed
    from storage.db import Database

    settings = _settings()

    async def main():
        db = Database(settings.database_url)
        await db.migrate()
        try:
            return await coro_fn(settings, db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except NotAllowed as exc:
        print(say("bc_not_allowed", reason=exc), file=sys.stderr)
        return 3
    except BadRequest as exc:
        print(say("bc_bad_request", reason=exc), file=sys.stderr)
        return 1


def cmd_create(args) -> int:
    from bot.broadcasts import workflow

    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(say("bc_unreadable_file", file=args.file, reason=exc), file=sys.stderr)
            return 1
    else:
        text = args.text or ""
    audience = _audience(args)
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(say("bc_bad_at"), file=sys.stderr)
            return 2
        if at.tzinfo is None:
            print(say("bc_at_without_zone"), file=sys.stderr)
            return 2

    async def go(settings, db):
        actor = _actor(settings, args.as_)
        b = await workflow.create(db, actor, text, audience, _now(), scheduled_at=at)
        b = await workflow.submit(db, actor, b.id, _now())
        print(say("bc_status_line", id=b.id, status=_status(b.status)))
        return 0

    return _run(go)


def cmd_dry_run(args) -> int:
    from bot.broadcasts.audience import dry_run, unknown_codes

    audience = _audience(args)

    async def go(settings, db):
        async with db.transaction() as session:
            unknown = await unknown_codes(session, audience)
            if unknown:
                print(say("bc_unknown_codes", codes=", ".join(unknown)), file=sys.stderr)
                return 1
            lines = await dry_run(session, audience)
        print(f"{say('bc_col_hamlet'):<24} {say('bc_col_channel'):<10} {say('bc_col_kind'):<8} {say('bc_col_to_send'):>7} {say('bc_col_opted_out'):>13}")
        for line in lines:
            print(f"{line.hamlet or say('bc_no_hamlet'):<24} {line.channel:<10} {line.kind:<8} {line.to_send:>7} {line.opted_out:>13}")
        print(say("bc_dry_run_total", to_send=sum(l.to_send for l in lines), opted_out=sum(l.opted_out for l in lines)))
        return 0

    return _run(go)


def _transition(name: str):
    def cmd(args) -> int:
        from bot.broadcasts import workflow

        async def go(settings, db):
            actor = _actor(settings, args.as_)
            b = await getattr(workflow, name)(db, actor, args.id, _now())
            print(say("bc_status_line", id=b.id, status=_status(b.status)))
            return 0

        return _run(go)

    return cmd


def cmd_list(args) -> int:
    from storage import broadcasts as repo

    async def go(settings, db):
        async with db.transaction() as session:
            rows = await repo.list_recent(session, args.limit)
            for b in rows:
                totals = await repo.totals(session, b.id)
                first = b.text.splitlines()[0][:50]
                done = totals.get("sent", 0)
                print(f"{b.id:>5}  {_status(b.status):<12} {done:>6}/{sum(totals.values()):<6} {b.author:<20} {first}")
        return 0

    return _run(go)


def cmd_report(args) -> int:
    from bot.broadcasts import report as reports

    async def go(settings, db):
        async with db.transaction() as session:
            found = await reports.read(session, args.id, unknown_limit=10_000)
        if found is None:
            print(say("bc_no_broadcast", id=args.id), file=sys.stderr)
            return 1
        b = found.broadcast
        print(say("bc_report_head", id=b.id, status=_status(b.status), author=b.author, approver=b.approver or "-"))
        cols = reports.COLUMNS
        print(f"{say('bc_col_hamlet'):<20} {say('bc_col_channel'):<10} {say('bc_col_kind'):<8} " + " ".join(f"{c:>9}" for c in cols))
        for (hamlet, channel, kind), counts in found.table:
            print(f"{hamlet or '-':<20} {channel:<10} {kind:<8} " + " ".join(f"{counts.get(c, 0):>9}" for c in cols))
        if found.unknown:
            print(say("bc_unknown_rows"))
            for d in found.unknown:
                print(f"  {d.channel} {d.kind} {d.chat_id} ({d.hamlet_code or '-'})")
        return 0

    return _run(go)


def cmd_send(args) -> int:
    from bot.broadcasts.runner import run
    from bot.cli import _settings

    settings = _settings()
    off = [name for name, on in (("Telegram", settings.telegram_token), ("Zalo Bot", settings.zalo_bot_token),
                                 ("Zalo OA", settings.zalo_oa_app_id and settings.zalo_oa_secret_key)) if not on]
    if off:
        print(say("bc_channels_off", channels=", ".join(off)), file=sys.stderr)
    asyncio.run(run(settings, until_idle=args.until_done))
    return 0


def _audience_args(p) -> None:
    p.add_argument("--scope", choices=("all", "communes", "hamlets"), default="all", help=say("help_bc_scope"))
    p.add_argument("--codes", metavar="MÃ,MÃ", help=say("help_bc_codes"))
    p.add_argument("--kinds", default="group,private", metavar="LOẠI", help=say("help_bc_kinds"))
    p.add_argument("--channels", metavar="KÊNH", help=say("help_bc_channels"))


def register_cli(subparsers) -> None:
    bc = subparsers.add_parser("broadcast", help=say("help_bc"), description=say("help_bc"))
    sub = bc.add_subparsers(dest="broadcast_command", required=True, title=say("help_commands"), metavar="LỆNH")

    create = sub.add_parser("create", help=say("help_bc_create"), description=say("help_bc_create"))
    create.add_argument("--as", dest="as_", required=True, metavar="KÊNH:MÃ", help=say("help_bc_as_author"))
    group = create.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", metavar="NỘI_DUNG", help=say("help_bc_text"))
    group.add_argument("--file", metavar="TỆP", help=say("help_bc_file"))
    create.add_argument("--at", metavar="THỜI_ĐIỂM", help=say("help_bc_at"))
    _audience_args(create)
    create.set_defaults(func=cmd_create)

    dry = sub.add_parser("dry-run", help=say("help_bc_dry_run"), description=say("help_bc_dry_run"))
    _audience_args(dry)
    dry.set_defaults(func=cmd_dry_run)

    for name, help_ in (("approve", say("help_bc_approve")), ("pause", say("help_bc_pause")), ("resume", say("help_bc_resume")), ("cancel", say("help_bc_cancel"))):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("id", type=int, metavar="SỐ_TIN", help=say("help_bc_id"))
        p.add_argument("--as", dest="as_", required=True, metavar="KÊNH:MÃ", help=say("help_bc_as"))
        p.set_defaults(func=_transition(name))

    ls = sub.add_parser("list", help=say("help_bc_list"), description=say("help_bc_list"))
    ls.add_argument("--limit", type=int, default=30, metavar="SỐ_TIN", help=say("help_bc_limit"))
    ls.set_defaults(func=cmd_list)

    rep = sub.add_parser("report", help=say("help_bc_report"), description=say("help_bc_report"))
    rep.add_argument("id", type=int, metavar="SỐ_TIN", help=say("help_bc_id"))
    rep.set_defaults(func=cmd_report)

    send = sub.add_parser("send", help=say("help_bc_send"), description=say("help_bc_send"))
    send.add_argument("--until-done", action="store_true", help=say("help_bc_until_done"))
    send.set_defaults(func=cmd_send)
