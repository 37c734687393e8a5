"""Officers' commands: `cccd-bot users ...`, `cccd-bot report`, `cccd-bot stats`."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime, timezone
from pathlib import Path


def _run(fn):
    """Run `fn(session)` in one transaction on the configured (migrated) database."""
    from bot.cli import in_database

    return in_database(fn)


def _read_password(confirm: bool = True) -> str:
    """From a prompt on a terminal, else the first line of stdin; never from the command line."""
    if sys.stdin.isatty():
        first = getpass.getpass("Mật khẩu: ")
        if confirm and getpass.getpass("Nhập lại mật khẩu: ") != first:
            raise SystemExit("lỗi: hai lần nhập mật khẩu không khớp")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cmd_users_add(args) -> int:
    from storage import accounts

    password = _read_password()

    async def go(session):
        await accounts.add(session, args.username, password, args.role, args.commune, _now())

    return _account_call(go, f"đã tạo tài khoản {args.username} ({args.role}{', ' + args.commune if args.commune else ''})")


def cmd_users_passwd(args) -> int:
    from storage import accounts

    password = _read_password()
    return _account_call(lambda s: accounts.set_password(s, args.username, password), f"đã đổi mật khẩu của {args.username}")


def cmd_users_disable(args) -> int:
    from storage import accounts

    return _account_call(lambda s: accounts.set_active(s, args.username, False), f"đã khoá tài khoản {args.username}")


def cmd_users_enable(args) -> int:
    from storage import accounts

    return _account_call(lambda s: accounts.set_active(s, args.username, True), f"đã mở lại tài khoản {args.username}")


def _account_call(fn, done: str) -> int:
    from storage.accounts import AccountError

    try:
        _run(fn)
    except AccountError as exc:
        print(f"lỗi: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0


def cmd_users_list(args) -> int:
    from storage import accounts

    rows = _run(accounts.list_all)
    if not rows:
        print("chưa có tài khoản nào (tạo: cccd-bot users add TÊN --role admin)")
    for a in rows:
        state = "hoạt động" if a.active else "đã khoá"
        last = a.last_login_at.strftime("%Y-%m-%d %H:%M") if a.last_login_at else "-"
        print(f"{a.username:<24} {a.role:<8} {a.commune_code or '(mọi xã)':<20} {state:<10} đăng nhập gần nhất: {last}")
    return 0


def _report(args):
    from bot.cli import _catalog_or_exit, _settings
    from bot.figures import Period, report

    catalog = _catalog_or_exit(_settings())
    try:
        period = Period.month(args.month) if args.month else Period.this_month(_now())
    except ValueError as exc:
        raise SystemExit(f"lỗi: {exc}") from None

    async def go(session):
        from storage import registry

        if args.commune and args.commune not in dict(await registry.communes(session)):
            raise SystemExit(f"lỗi: không có xã/phường mã '{args.commune}'")
        return await report(session, period, args.commune, catalog, _now())

    return _run(go)


def cmd_report(args) -> int:
    from bot.report import to_csv, to_xlsx

    out = Path(args.out)
    data = _report(args)
    try:
        if out.suffix.lower() == ".csv":
            out.write_text(to_csv(data), encoding="utf-8")
        else:
            out.write_bytes(to_xlsx(data))
    except OSError as exc:
        print(f"lỗi: không ghi được {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"đã ghi báo cáo {data.period.label} ({data.commune_name}) vào {out}")
    return 0


def cmd_stats(args) -> int:
    from bot.report import to_text

    print(to_text(_report(args)))
    return 0


def register_cli(sub) -> None:
    users = sub.add_parser("users", help="tài khoản trang quản lý (dashboard)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="tạo tài khoản; mật khẩu nhập khi được hỏi (hoặc dòng đầu của stdin)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("admin", "officer", "team"), help="admin, officer (cán bộ) hoặc team (tổ công nghệ số)")
    add.add_argument("--commune", metavar="CODE", help="chỉ xem được xã/phường này")
    add.set_defaults(func=cmd_users_add)
    users_sub.add_parser("list", help="liệt kê tài khoản").set_defaults(func=cmd_users_list)
    for name, fn, text in (
        ("disable", cmd_users_disable, "khoá tài khoản"),
        ("enable", cmd_users_enable, "mở lại tài khoản đã khoá"),
        ("passwd", cmd_users_passwd, "đổi mật khẩu (nhập khi được hỏi)"),
    ):
        p = users_sub.add_parser(name, help=text)
        p.add_argument("username")
        p.set_defaults(func=fn)

    report = sub.add_parser("report", help="xuất báo cáo tháng ra tệp .xlsx (hoặc .csv)")
    report.add_argument("--month", metavar="YYYY-MM", help="tháng báo cáo (mặc định: tháng này)")
    report.add_argument("--commune", metavar="CODE", help="một xã/phường (mặc định: tất cả)")
    report.add_argument("--out", required=True, metavar="FILE.xlsx")
    report.set_defaults(func=cmd_report)

    st = sub.add_parser("stats", help="in số liệu tổng quan và bảng theo thôn")
    st.add_argument("--month", metavar="YYYY-MM", help="tháng (mặc định: tháng này)")
    st.add_argument("--commune", metavar="CODE", help="một xã/phường (mặc định: tất cả)")
    st.set_defaults(func=cmd_stats)
