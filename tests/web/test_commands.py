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
    assert again.returncode == 1 and again.stderr.strip() == "lỗi: tài khoản 'lan' đã có"
    short = run(["users", "add", "minh", "--role", "team"], tmp_path, stdin="ngắn\n")
    assert short.returncode == 1 and short.stderr.strip().endswith("lỗi: mật khẩu phải có ít nhất 10 ký tự")
    unknown = run(["users", "add", "minh", "--role", "team", "--commune", "khong_co"], tmp_path, stdin="một mật khẩu dài\n")
    assert unknown.returncode == 1
    assert "lỗi: không có xã/phường mã 'khong_co' (nhập danh sách thôn trước: cccd-bot hamlets import)" in unknown.stderr
    assert run(["users", "disable", "lan"], tmp_path).returncode == 0
    assert "đã khoá" in run(["users", "list"], tmp_path).stdout
    assert run(["users", "passwd", "lan"], tmp_path, stdin="mật khẩu mới đủ dài\n").returncode == 0
    nobody = run(["users", "passwd", "ai_do"], tmp_path, stdin="mật khẩu mới đủ dài\n")
    assert nobody.returncode == 1 and "lỗi: không có tài khoản 'ai_do'" in nobody.stderr


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
    assert stats.stdout.startswith("Tất cả xã/phường — tháng ")
    header = next(line for line in stats.stdout.splitlines() if line.startswith("Thôn "))
    assert re.split(r"\s{2,}", header.strip()) == ["Thôn", "Người", "Tin nhắn", "Bắt đầu", "Bước 9", "Đã nộp", "Chưa TL"]
    assert "Thử nghiệm   tin nhắn        1" in stats.stdout, "the console channel, as officers call it"
    rows = [re.split(r"\s{2,}", line.strip()) for line in stats.stdout.splitlines() if line.startswith("Tổ dân phố")]
    assert ["Tổ dân phố 3", "< 5", "1", "0", "0", "0", "0"] in rows, "one person shows as '< 5'"
    assert ["Tổ dân phố 4", "0", "0", "0", "0", "0", "0"] in rows
    out = tmp_path / "bao-cao.xlsx"
    report = run(["report", "--commune", "ngoc_trao", "--out", str(out)], tmp_path)
    assert report.returncode == 0, report.stderr
    book = load_workbook(out)
    values = {r[0]: r[1] for r in book["Tổng quan"].iter_rows(values_only=True) if r and r[0]}
    assert values["Tin nhắn"] == 1 and values["Xã/phường"] == "Phường Ngọc Trạo"
    assert book.sheetnames == ["Tổng quan", "Thôn", "Hành trình 9 bước", "Câu hỏi"]
    assert values["Báo cáo sử dụng chatbot hướng dẫn làm căn cước"] is None and values["Kỳ báo cáo"].startswith("tháng ")
    assert ["Thử nghiệm", 1] == [*next(r for r in book["Tổng quan"].iter_rows(values_only=True) if r[0] == "Thử nghiệm")][:2]
    assert report.stdout.startswith("đã ghi báo cáo tháng ") and "(Phường Ngọc Trạo)" in report.stdout
    bad = run(["report", "--month", "2026-13", "--out", str(out)], tmp_path)
    assert bad.returncode != 0 and bad.stderr.strip() == "lỗi: tháng phải có dạng YYYY-MM, ví dụ 2026-11"
    missing = run(["stats", "--commune", "khong_co"], tmp_path)
    assert missing.returncode != 0 and "khong_co" in missing.stderr
