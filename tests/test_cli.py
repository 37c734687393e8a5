"""The `cccd-bot` command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.catalog import CONTENT_DIR
from tests.conftest import EXAMPLE_CSV


def run(args, tmp_path, stdin="", **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")}
    env["CCCD_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"
    # The command runs in tmp_path: without this, `bot` would come from wherever the venv was installed from
    # (a git worktree sharing another checkout's venv would test that checkout's code).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")]))
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )


def test_content_check_passes_on_shipped_content(tmp_path):
    result = run(["content", "check"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nội dung ổn: 9 bước" in result.stdout
    review = run(["content", "check", "--review"], tmp_path)
    assert "cần xem lại: bước 4 tim_thu_tuc:" in review.stdout and "cần xem lại: bước 1 tao_tai_khoan:" in review.stdout
    assert "cần xem lại: nhan_the_tai_nha:" in review.stdout and "cần xem lại: le_phi:" not in review.stdout


def test_content_check_and_chat_refuse_broken_content(tmp_path):
    broken = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, broken)
    (broken / "steps.yaml").write_text("steps: []\n", encoding="utf-8")
    check = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(broken))
    assert check.returncode == 1
    assert "steps.yaml: -: có 0 bước (hướng dẫn có 9 bước)" in check.stdout
    chat = run(["chat"], tmp_path, stdin="/start\n", CCCD_CONTENT_DIR=str(broken))
    assert chat.returncode == 1
    assert "steps.yaml: -: có 0 bước (hướng dẫn có 9 bước)" in chat.stderr and "bot không khởi động" in chat.stderr


def test_content_check_refuses_another_address_a_bare_source_and_a_long_first_message(tmp_path):
    broken = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, broken)
    messages = broken / "messages.yaml"
    messages.write_text(messages.read_text(encoding="utf-8").replace("Anh/chị cần gì?", "Bạn cần gì?"), encoding="utf-8")
    card = broken / "faq_card.yaml"
    text = card.read_text(encoding="utf-8")
    text = text.replace('cite: "Luật Căn cước 2023, Điều 26"', 'cite: "seed:003"')
    text = text.replace("một thời hạn chung cho cả ba trường hợp.", "một thời hạn chung cho cả ba trường hợp." + " Giữ giấy hẹn." * 40)
    card.write_text(text, encoding="utf-8")
    check = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(broken))
    assert check.returncode == 1
    assert "messages.yaml: menu_prompt: xưng hô “Bạn”" in check.stdout
    assert "faq_card.yaml: thoi_gian_tra_ket_qua: cite “seed:003” dùng mã thư seed" in check.stdout
    assert "faq_card.yaml: thoi_gian_tra_ket_qua: tin nhắn đầu (answer + caveat + nguồn) dài" in check.stdout


def test_wrong_database_url_is_a_clear_error(tmp_path):
    result = run(["db", "upgrade"], tmp_path, CCCD_DATABASE_URL="mysql://localhost/x")
    assert result.returncode == 2
    assert "CCCD_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_plain_database_urls_from_the_documentation_work(tmp_path):
    # "sqlite:///…" (and postgres://…) as other tools write them: the bot picks its async driver itself.
    url = f"sqlite:///{tmp_path / 'plain.sqlite3'}"
    upgrade = run(["db", "upgrade"], tmp_path, CCCD_DATABASE_URL=url)
    assert upgrade.returncode == 0, upgrade.stderr
    chat = run(["chat"], tmp_path, stdin="le phi lam can cuoc bao nhieu\n", CCCD_DATABASE_URL=url)
    assert chat.returncode == 0, chat.stderr
    assert (tmp_path / "plain.sqlite3").stat().st_size > 0


def test_wrong_log_level_is_a_clear_error(tmp_path):
    result = run(["content", "check"], tmp_path, CCCD_LOG_LEVEL="LOUD")
    assert result.returncode == 2
    assert "CCCD_LOG_LEVEL" in result.stderr and "Traceback" not in result.stderr


def test_log_level_info_shows_refused_input(tmp_path):
    result = run(["chat"], tmp_path, stdin="\x01\x02\n", CCCD_LOG_LEVEL="info")
    assert result.returncode == 0, result.stderr
    assert "refused input on console" in result.stderr


def test_ask_json_one_question(tmp_path):
    result = run(["ask", "--json", "lệ phí làm căn cước bao nhiêu tiền"], tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["topic"] == "le_phi" and record["score"] > 0 and record["answer"]


def test_ask_json_reads_lines_in_order(tmp_path):
    result = run(["ask", "--json"], tmp_path, stdin="lệ phí làm căn cước bao nhiêu tiền\nthời tiết hôm nay\nkhông nhận được mã otp\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["topic"] for r in records] == ["le_phi", None, "ma_otp"]
    assert records[1]["answer"]


def test_ask_answers_from_the_content_when_the_database_cannot_be_read(tmp_path):
    # A configured PostgreSQL that is down: the answers still come (stdout stays JSON), the reason on stderr.
    url = "postgresql+asyncpg://nobody@127.0.0.1:9/none"
    result = run(["ask", "--json", "lệ phí làm căn cước bao nhiêu tiền"], tmp_path, CCCD_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["topic"] == "le_phi"
    assert "không đọc được các câu ví dụ đã duyệt" in result.stderr and "Traceback" not in result.stderr
    # No database at all (the default SQLite file was never made): nothing said, and none made.
    quiet = run(["ask", "--json", "lệ phí làm căn cước bao nhiêu tiền"], tmp_path)
    assert quiet.stderr == "" and not (tmp_path / "cli.sqlite3").exists()


def test_piped_chat_reaches_the_last_step(tmp_path):
    lines = ["/start", "11", "/huongdan"] + ["tiếp"] * 8
    result = run(["chat"], tmp_path, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "Bước 9/9" in result.stdout
    assert result.stdout.index("Bước 1/9") < result.stdout.index("Bước 9/9")


def test_hamlets_import_and_group_chat(tmp_path):
    imported = run(["hamlets", "import", str(EXAMPLE_CSV)], tmp_path)
    assert imported.returncode == 0 and "Đã nhập 10 thôn, tổ dân phố thuộc 1 xã, phường." in imported.stdout
    chat = run(["chat", "--group", "ngoctrao_tdp03"], tmp_path, stdin="/huongdan\n")
    assert "tin nhắn riêng" in chat.stdout
    unknown = run(["chat", "--group", "nowhere"], tmp_path, stdin="/start\n")
    assert unknown.returncode == 1 and "Không có thôn mã “nowhere”" in unknown.stderr and "Traceback" not in unknown.stderr


def test_hamlets_import_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x00binary")
    result = run(["hamlets", "import", str(bad)], tmp_path)
    assert result.returncode == 1 and "tệp là dữ liệu nhị phân, không phải văn bản CSV" in result.stderr
    lines = tmp_path / "lines.csv"
    lines.write_text("commune_code,commune_name,hamlet_code,hamlet_name\nx y,Xã A,h1,Thôn 1\nx,Xã A,H1,Thôn 2\n", encoding="utf-8")
    every = run(["hamlets", "import", str(lines)], tmp_path)
    assert every.returncode == 1 and "Traceback" not in every.stderr
    assert "dòng 2: commune_code 'x y' phải gồm 1-40 ký tự A-Z a-z 0-9 _ -" in every.stderr
    assert "dòng 3: hamlet_code 'H1' đã có ở dòng 2" in every.stderr
    missing = run(["hamlets", "import", str(tmp_path / "none.csv")], tmp_path)
    assert missing.returncode == 1 and "Không đọc được tệp" in missing.stderr


def test_unanswered_lists_grouped_questions(tmp_path):
    run(["chat"], tmp_path, stdin="con trâu nhà tôi bị lạc\ncon trau nha toi bi lac\nthời tiết\n")
    result = run(["faq", "unanswered"], tmp_path)
    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert first.split()[0] == "2" and "con tr" in first


def test_db_retention_deletes_old_question_texts_now_and_keeps_the_counts(tmp_path):
    import sqlite3

    run(["chat"], tmp_path, stdin="lệ phí bao nhiêu\nmất thẻ thì làm sao\n")
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        first = conn.execute("SELECT min(id) FROM query_log WHERE text IS NOT NULL").fetchone()[0]
        conn.execute("UPDATE query_log SET created_at = '2026-01-01 08:00:00.000000' WHERE id = ?", (first,))
    result = run(["db", "retention"], tmp_path, CCCD_QUERY_TEXT_RETENTION_DAYS="30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Đã xóa nội dung 1 câu hỏi cũ hơn 30 ngày (số đếm vẫn giữ) và 0 dấu xóa cũ."
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        rows = conn.execute("SELECT text, topic FROM query_log WHERE outcome != 'command' ORDER BY id").fetchall()
    assert rows[0] == (None, "le_phi") and rows[1][0] == "mất thẻ thì làm sao"
    again = run(["db", "retention"], tmp_path, CCCD_QUERY_TEXT_RETENTION_DAYS="30")
    assert "Đã xóa nội dung 0 câu hỏi" in again.stdout


# --- configuration errors: one clear Vietnamese sentence, a non-zero exit, no traceback ---------------


def _refused(result, code, *parts):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("Lỗi: ")]
    assert len(message) == 1, result.stderr
    for part in parts:
        assert part in message[0], message[0]
    return message[0]


def test_a_misspelt_variable_names_the_right_one(tmp_path):
    result = run(["serve"], tmp_path, CCCD_TELEGRAM_TOKN="123:abc")
    _refused(result, 2, "CCCD_TELEGRAM_TOKN", "có phải ý anh/chị là CCCD_TELEGRAM_TOKEN")


def test_a_misspelt_variable_in_the_env_file_too(tmp_path):
    (tmp_path / ".env").write_text("CCCD_DATABSE_URL=sqlite+aiosqlite:///x.sqlite3\n", encoding="utf-8")
    _refused(run(["db", "upgrade"], tmp_path), 2, "CCCD_DATABSE_URL", "CCCD_DATABASE_URL")


def test_an_unknown_variable_points_to_the_list(tmp_path):
    _refused(run(["chat"], tmp_path, CCCD_WHATEVER="1"), 2, "Không có biến cấu hình CCCD_WHATEVER", "README.md")


@pytest.mark.parametrize("officers", ["telegram:42,zalo 7", "telgram:42", "telegram:", "42"])
def test_a_malformed_officer_entry(tmp_path, officers):
    bad = officers.split(",")[-1]
    _refused(run(["serve"], tmp_path, CCCD_OFFICERS=officers), 2, f"CCCD_OFFICERS có mục sai: “{bad}”", "kênh:mã_người_dùng")


def test_well_formed_officers_are_accepted(tmp_path):
    result = run(["db", "upgrade"], tmp_path, CCCD_OFFICERS="telegram:42, zalo_bot:abc-1,zalo_oa:99")
    assert result.returncode == 0, result.stderr


def test_an_invalid_value_says_what_it_must_be(tmp_path):
    _refused(run(["serve"], tmp_path, CCCD_PORT="tám nghìn"), 2, "CCCD_PORT", "từ 1 đến 65535")


def test_an_unreachable_database(tmp_path):
    # Nothing listens on this port (this checkout's own range): PostgreSQL refuses the connection.
    url = "postgresql+asyncpg://postgres:secret@127.0.0.1:6499/cccd"
    for command in (["db", "upgrade"], ["chat"], ["serve", "--port", "6411"]):
        message = _refused(run(command, tmp_path, CCCD_DATABASE_URL=url), 1, "Không kết nối được cơ sở dữ liệu", "CCCD_DATABASE_URL")
        assert "secret" not in message, "the password is never printed"


def test_a_sqlite_folder_is_created_and_an_impossible_one_explained(tmp_path):
    made = run(["db", "upgrade"], tmp_path, CCCD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/new/folder/bot.sqlite3")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "new" / "folder" / "bot.sqlite3").is_file()
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path}/a-file/bot.sqlite3"
    _refused(run(["db", "upgrade"], tmp_path, CCCD_DATABASE_URL=url), 2, f"{tmp_path}/a-file", "CCCD_DATABASE_URL")


def test_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(["serve", "--port", str(port)], tmp_path)
    _refused(result, 1, f"Cổng {port} trên 127.0.0.1 đang được một chương trình khác dùng", "--port")


def test_a_wrong_command_is_explained_in_vietnamese(tmp_path):
    result = run(["serv"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Lỗi: “serv” không phải là lệnh" in result.stderr and "Cách dùng: cccd-bot" in result.stderr


def test_help_is_in_vietnamese(tmp_path):
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    assert "Cách dùng: cccd-bot" in result.stdout and "trò chuyện với bot" in result.stdout
    assert "show this help" not in result.stdout and "options:" not in result.stdout


def test_every_command_explains_itself_in_vietnamese(capsys):
    """`cccd-bot <command> --help` for every command and subcommand: argparse's English never shows, every
    argument says what it is for, and a missing choice or a clash of options is said in Vietnamese."""
    import argparse

    from bot.cli import build_parser, main

    def commands(parser, path):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, [*path, name])

    paths = list(commands(build_parser(), []))
    assert ["users", "add"] in paths and ["broadcast", "approve"] in paths and ["zalo-oa", "authorize"] in paths
    for path in paths:
        with pytest.raises(SystemExit):
            main([*path, "--help"])
        shown = capsys.readouterr().out
        assert shown.startswith("Cách dùng: cccd-bot"), path
        for english in ("usage:", "options:", "positional arguments", "show this help", "{"):
            assert english not in shown.replace("{admin,officer,team}", "").replace("{all,web,sender}", "").replace(
                "{all,communes,hamlets}", ""), (path, english)
        # Each argument is followed by words saying what it is for, on its line or the next (argparse leaves
        # it bare without `help`).
        lines = shown.splitlines() + [""]
        bare = [
            line for line, after in zip(lines, lines[1:])
            if re.fullmatch(r"  -?-?[\w-]+(?: [^ ]+)?", line) and line.strip() != "LỆNH" and not after.startswith(" " * 8)
        ]
        assert bare == [], (path, bare)
    for argv, said in (
        (["broadcast", "create", "--as", "telegram:1"], "cần một trong: --text --file"),
        (["broadcast", "create", "--as", "telegram:1", "--text", "a", "--file", "b"], "không dùng --file cùng với --text"),
        (["ask", "--json=1"], "--json không nhận giá trị"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err, argv


def test_chat_log_goes_to_a_file_not_between_the_replies(tmp_path):
    result = run(["chat", "--log", "chat.log"], tmp_path, stdin="\x01\x02\n/start\n", CCCD_LOG_LEVEL="info")
    assert result.returncode == 0, result.stderr
    assert "refused input on console" not in result.stderr + result.stdout
    assert "refused input on console" in (tmp_path / "chat.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("break_it, said", [
    (lambda text: text.replace('logout: "Đăng xuất"', 'logout: "Đăng xuất'), "dashboard.yaml: -: sai cú pháp YAML ở dòng "),
    (lambda text: text.replace('  logout: "Đăng xuất"\n', ""), "dashboard.yaml: logout: thiếu nội dung bắt buộc, hoặc nội dung đang trống"),
    (lambda text: text.replace('"Kỳ báo cáo"', '"Kỳ báo cáo {month}"'),
     "dashboard.yaml: report_period: chỗ điền không có: {month} (được dùng: không có)"),
], ids=["bad-yaml", "missing-id", "wrong-placeholder"])
def test_serve_refuses_to_start_on_a_broken_dashboard_yaml(tmp_path, break_it, said):
    # Before, the bot started and every dashboard page answered 500; now the start stops, naming file and id.
    broken = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, broken)
    dashboard = broken / "dashboard.yaml"
    dashboard.write_text(break_it(dashboard.read_text(encoding="utf-8")), encoding="utf-8")
    result = run(["serve", "--port", "7601"], tmp_path, CCCD_CONTENT_DIR=str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Lỗi nội dung: {said}" in result.stderr
    assert "nên bot không khởi động. Sửa các tệp nội dung rồi kiểm tra lại bằng: cccd-bot content check" in result.stderr
    assert "đang lắng nghe" not in result.stdout
    check = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(broken))
    assert check.returncode == 1 and said in check.stdout
