"""Officers' commands: `cccd-bot users ...`, `cccd-bot report`, `cccd-bot stats` (their words: operator.yaml)."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime, timezone
from pathlib import Path

from bot.startup import say


def _run(fn):
    """Run `fn(session)` in one transaction on the configured (migrated) database."""
    from bot.cli import in_database

    return in_database(fn)


def _read_password(confirm: bool = True) -> str:
    """From a prompt on a terminal, else the first line of stdin; never from the command line."""
    if sys.stdin.isatty():
        first = getpass.getpass(say("password_prompt") + " ")
        if confirm and getpass.getpass(say("password_again") + " ") != first:
            raise SystemExit(say("password_mismatch"))
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cmd_users_add(args) -> int:
    from storage import accounts

    password = _read_password()

    async def go(session):
        await accounts.add(session, args.username, password, args.role, args.commune, _now())

    if args.commune:
        return _account_call(go, say("users_added_commune", username=args.username, role=args.role, commune=args.commune))
    return _account_call(go, say("users_added", username=args.username, role=args.role))


def cmd_users_passwd(args) -> int:
    from storage import accounts

    password = _read_password()
    return _account_call(lambda s: accounts.set_password(s, args.username, password), say("users_password_changed", username=args.username))


def cmd_users_disable(args) -> int:
    from storage import accounts

    return _account_call(lambda s: accounts.set_active(s, args.username, False), say("users_disabled", username=args.username))


def cmd_users_enable(args) -> int:
    from storage import accounts

    return _account_call(lambda s: accounts.set_active(s, args.username, True), say("users_enabled", username=args.username))


def _account_call(fn, done: str) -> int:
    from storage.accounts import AccountError

    try:
        _run(fn)
    except AccountError as exc:
        print(say("users_error", reason=say(exc.code, **exc.params)), file=sys.stderr)
        return 1
    print(done)
    return 0


def cmd_users_list(args) -> int:
    from storage import accounts

    rows = _run(accounts.list_all)
    if not rows:
        print(say("users_none"))
    for a in rows:
        state = say("users_active") if a.active else say("users_locked")
        last = a.last_login_at.strftime("%Y-%m-%d %H:%M") if a.last_login_at else "-"
        commune = a.commune_code or say("users_everywhere")
        print(say("users_row", username=a.username, role=a.role, commune=commune, state=state, last=last))
    return 0


def _report(args):
    """The report asked for, and the dashboard's texts it is written in (dashboard.yaml)."""
    from bot.cli import _catalog_or_exit, _settings
    from bot.figures import Period, PeriodError, report
    from bot.web.texts import TextsError, load_dashboard_texts

    settings = _settings()
    catalog = _catalog_or_exit(settings)
    try:
        texts = load_dashboard_texts(settings.content_dir)
    except TextsError as exc:
        for problem in str(exc).splitlines():
            print(say("content_problem", problem=problem), file=sys.stderr)
        raise SystemExit(1) from None
    try:
        period = Period.month(args.month) if args.month else Period.this_month(_now())
    except PeriodError as exc:
        raise SystemExit(say("report_error", reason=texts.error(exc))) from None

    async def go(session):
        from storage import registry

        if args.commune and args.commune not in dict(await registry.communes(session)):
            raise SystemExit(say("report_no_commune", code=args.commune))
        return await report(session, period, args.commune, catalog, _now())

    return _run(go), texts


def cmd_report(args) -> int:
    from bot.report import commune_words, to_csv, to_xlsx

    out = Path(args.out)
    data, texts = _report(args)
    try:
        if out.suffix.lower() == ".csv":
            out.write_text(to_csv(data, texts), encoding="utf-8")
        else:
            out.write_bytes(to_xlsx(data, texts))
    except OSError as exc:
        print(say("not_written", path=out, reason=exc.strerror), file=sys.stderr)
        return 1
    print(say("report_written", period=data.period.label(texts), commune=commune_words(data, texts), path=out))
    return 0


def cmd_stats(args) -> int:
    from bot.report import to_text

    print(to_text(*_report(args)))
    return 0


def register_cli(sub) -> None:
    users = sub.add_parser("users", help=say("help_users"), description=say("help_users"))
    users_sub = users.add_subparsers(dest="users_command", required=True, title=say("help_commands"), metavar="LỆNH")
    add = users_sub.add_parser("add", help=say("help_users_add"), description=say("help_users_add"))
    add.add_argument("username", metavar="TÊN_ĐĂNG_NHẬP", help=say("help_users_username"))
    add.add_argument("--role", required=True, choices=("admin", "officer", "team"), help=say("help_users_role"))
    add.add_argument("--commune", metavar="MÃ_XÃ", help=say("help_users_commune"))
    add.set_defaults(func=cmd_users_add)
    users_sub.add_parser("list", help=say("help_users_list"), description=say("help_users_list")).set_defaults(func=cmd_users_list)
    for name, fn, text in (
        ("disable", cmd_users_disable, "help_users_disable"),
        ("enable", cmd_users_enable, "help_users_enable"),
        ("passwd", cmd_users_passwd, "help_users_passwd"),
    ):
        p = users_sub.add_parser(name, help=say(text), description=say(text))
        p.add_argument("username", metavar="TÊN_ĐĂNG_NHẬP", help=say("help_users_username"))
        p.set_defaults(func=fn)

    report = sub.add_parser("report", help=say("help_report"), description=say("help_report"))
    report.add_argument("--month", metavar="YYYY-MM", help=say("help_report_month"))
    report.add_argument("--commune", metavar="MÃ_XÃ", help=say("help_report_commune"))
    report.add_argument("--out", required=True, metavar="TỆP.xlsx", help=say("help_report_out"))
    report.set_defaults(func=cmd_report)

    st = sub.add_parser("stats", help=say("help_stats"), description=say("help_stats"))
    st.add_argument("--month", metavar="YYYY-MM", help=say("help_stats_month"))
    st.add_argument("--commune", metavar="MÃ_XÃ", help=say("help_report_commune"))
    st.set_defaults(func=cmd_stats)
