"""The monthly report as a workbook (one sheet per view), as CSV, and as text for the terminal."""

from __future__ import annotations

import csv
import io

from bot.figures import Report, share, shown

CHANNEL_NAMES = {"telegram": "Telegram", "zalo_bot": "Zalo (bot)", "zalo_oa": "Zalo OA", "web": "Web", "console": "Thử nghiệm"}
TIME_FORMAT = "%d/%m/%Y %H:%M"


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def _percent(part: int, whole: int) -> float:
    return round(share(part, whole) * 100, 1)


def sheets(report: Report) -> list[tuple[str, list[list]]]:
    """The report's tables: (sheet name, rows), the first rows saying what and when."""
    head = [
        ["Báo cáo sử dụng chatbot hướng dẫn làm căn cước"],
        ["Xã/phường", report.commune_name],
        ["Kỳ báo cáo", report.period.label, f"{report.period.start:%d/%m/%Y}", f"{report.period.last:%d/%m/%Y}"],
        ["Lập lúc (giờ Việt Nam)", report.generated_at.astimezone(_tz()).strftime(TIME_FORMAT)],
        ["Số người dưới 5 được ghi là \"< 5\"."],
        [],
    ]
    o = report.overview
    overview = head + [
        ["Chỉ số", "Giá trị"],
        ["Tin nhắn", o.messages],
        ["Số người", shown(o.people)],
        ["Nhóm có hoạt động", o.groups],
        ["Câu hỏi", o.questions],
        ["Trả lời được (%)", _percent(o.answered, o.questions)],
        ["Đưa lựa chọn (%)", _percent(o.choices, o.questions)],
        ["Chưa trả lời được (%)", _percent(o.unanswered, o.questions)],
        [],
        ["Kênh", "Tin nhắn", "Số người", "Trả lời được", "Đưa lựa chọn", "Chưa trả lời được"],
    ] + [[channel_name(c.channel), c.messages, shown(c.people), c.answered, c.choices, c.unanswered] for c in o.channels]
    hamlets = head + [
        ["Mã thôn", "Thôn", "Số người", "Tin nhắn", "Bắt đầu hướng dẫn", "Đến bước 9", "Báo đã nộp", "Chưa trả lời được"]
    ] + [
        [h.code, h.name, shown(h.people), h.messages, shown(h.started), shown(h.reached_last), shown(h.submitted), h.unanswered]
        for h in report.hamlets
    ]
    f = report.funnel
    funnel = head + [["Bước", "Tên bước", "Số người đến bước", "Dừng ở bước này", "Số lần bấm \"vướng\""]] + [
        [s.number, s.title, shown(s.people), shown(s.stopped), s.stuck] for s in f.steps
    ] + [["", "Báo đã nộp hồ sơ", shown(f.submitted)]]
    topics = head + [["Mã chủ đề", "Chủ đề", "Số câu hỏi", "Kỳ trước", "Thay đổi (%)"]] + [
        [t.topic, t.title, t.count, t.previous, None if t.change is None else round(t.change * 100, 1)] for t in report.topics
    ]
    return [("Tổng quan", overview), ("Thôn", hamlets), ("Hành trình 9 bước", funnel), ("Câu hỏi", topics)]


def _tz():
    from storage.stats import LOCAL_TZ

    return LOCAL_TZ


def to_xlsx(report: Report) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets(report):
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        sheet["A1"].font = Font(bold=True, size=13)
        sheet.column_dimensions["A"].width = 24
        sheet.column_dimensions["B"].width = 34
        for col in "CDEFGH":
            sheet.column_dimensions[col].width = 16
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_csv(report: Report) -> str:
    """Every sheet one after another, each headed by its name; UTF-8 with BOM so Excel reads the accents."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    for name, rows in sheets(report):
        writer.writerow([f"## {name}"])
        writer.writerows(rows)
        writer.writerow([])
    return out.getvalue()


def to_text(report: Report) -> str:
    """The overview and the hamlet table, for `cccd-bot stats`."""
    o = report.overview
    lines = [
        f"{report.commune_name} — {report.period.label}",
        f"Tin nhắn: {o.messages}   Số người: {shown(o.people)}   Nhóm có hoạt động: {o.groups}",
        f"Câu hỏi: {o.questions}   trả lời được {_percent(o.answered, o.questions)}%   "
        f"đưa lựa chọn {_percent(o.choices, o.questions)}%   chưa trả lời được {_percent(o.unanswered, o.questions)}%",
    ]
    for c in o.channels:
        lines.append(f"  {channel_name(c.channel):<12} tin nhắn {c.messages:>8}   số người {shown(c.people)!s:>6}")
    lines.append("")
    header = ["Thôn", "Người", "Tin nhắn", "Bắt đầu", "Bước 9", "Đã nộp", "Chưa TL"]
    lines.append(f"{header[0]:<28}" + "".join(f"{h:>10}" for h in header[1:]))
    for h in report.hamlets:
        values = [shown(h.people), h.messages, shown(h.started), shown(h.reached_last), shown(h.submitted), h.unanswered]
        lines.append(f"{h.name[:27]:<28}" + "".join(f"{v!s:>10}" for v in values))
    if not report.hamlets:
        lines.append("(chưa có thôn nào: cccd-bot hamlets import FILE.csv)")
    return "\n".join(lines)
