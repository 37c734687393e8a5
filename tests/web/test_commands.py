"""`cccd-bot users`, `report` and `stats`, run as the commune's IT person runs them."""

from __future__ import annotations

import re

from openpyxl import load_workbook

from tests.conftest import EXAMPLE_CSV
from tests.test_cli import run


def test_users_add_list_disable_passwd(tmp_path):
    assert run(["hamlets", "import", str(EXAMPLE_CSV)], tmp_path).returncode == 0
    added = run(["users", "add", "lan", "--role", "officer", "--commune", "ngoc_trao"], tmp_path, stdin="một mật khẩu dài\n")
    assert added.returncode == 0, added.stderr
    assert "đã tạo tài khoản lan" in added.stdout
    listed = run(["users", "list"], tmp_path)
    assert "lan" in listed.stdout and "officer" in listed.stdout and "ngoc_trao" in listed.stdout and "hoạt động" in listed.stdout
    assert "một mật khẩu dài" not in listed.stdout
    again = run(["users", "add", "lan", "--role", "team"], tmp_path, stdin="một mật khẩu dài\n")
    assert again.returncode == 1 and "đã có" in again.stderr
    short = run(["users", "add", "minh", "--role", "team"], tmp_path, stdin="ngắn\n")
    assert short.returncode == 1 and "ít nhất 10 ký tự" in short.stderr
    unknown = run(["users", "add", "minh", "--role", "team", "--commune", "khong_co"], tmp_path, stdin="một mật khẩu dài\n")
    assert unknown.returncode == 1 and "khong_co" in unknown.stderr
    assert run(["users", "disable", "lan"], tmp_path).returncode == 0
    assert "đã khoá" in run(["users", "list"], tmp_path).stdout
    assert run(["users", "passwd", "lan"], tmp_path, stdin="mật khẩu mới đủ dài\n").returncode == 0
    assert run(["users", "passwd", "ai_do"], tmp_path, stdin="mật khẩu mới đủ dài\n").returncode == 1


def test_password_is_never_an_argument(tmp_path):
    result = run(["users", "add", "lan", "--role", "admin", "--password", "x"], tmp_path)
    assert result.returncode == 2


def test_stats_and_report(tmp_path):
    assert run(["hamlets", "import", str(EXAMPLE_CSV)], tmp_path).returncode == 0
    chat = run(["chat", "--group", "ngoctrao_tdp03"], tmp_path, stdin="lệ phí làm căn cước bao nhiêu\n")
    assert chat.returncode == 0, chat.stderr
    stats = run(["stats"], tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "Tin nhắn: 1" in stats.stdout and "Tổ dân phố 3" in stats.stdout
    rows = [re.split(r"\s{2,}", line.strip()) for line in stats.stdout.splitlines() if line.startswith("Tổ dân phố")]
    assert ["Tổ dân phố 3", "< 5", "1", "0", "0", "0", "0"] in rows, "one person shows as '< 5'"
    assert ["Tổ dân phố 4", "0", "0", "0", "0", "0", "0"] in rows
    out = tmp_path / "bao-cao.xlsx"
    report = run(["report", "--commune", "ngoc_trao", "--out", str(out)], tmp_path)
    assert report.returncode == 0, report.stderr
    book = load_workbook(out)
    values = {r[0]: r[1] for r in book["Tổng quan"].iter_rows(values_only=True) if r and r[0]}
    assert values["Tin nhắn"] == 1 and values["Xã/phường"] == "Phường Ngọc Trạo"
    bad = run(["report", "--month", "2026-13", "--out", str(out)], tmp_path)
    assert bad.returncode != 0 and "YYYY-MM" in bad.stderr
    missing = run(["stats", "--commune", "khong_co"], tmp_path)
    assert missing.returncode != 0 and "khong_co" in missing.stderr
