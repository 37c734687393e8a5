"""The monthly report as a workbook (one sheet per view), as CSV, and as text for the terminal.

Its words are the dashboard's (bot/content/dashboard.yaml, ids `report_*`, `channel_*`, `period_*`):
the same report is exported from the dashboard and written by `cccd-bot report` and `cccd-bot stats`.
"""

from __future__ import annotations

import csv
import io

from bot.figures import Report, share, shown
from bot.web.texts import WebTexts

CHANNELS = ("telegram", "zalo_bot", "zalo_oa", "web", "console")
TIME_FORMAT = "%d/%m/%Y %H:%M"


def channel_name(channel: str, texts: WebTexts) -> str:
    """A channel as officers call it (`channel_<code>`); an unknown code is shown as it is."""
    key = f"channel_{channel}"
    return texts.get(key) if key in texts.messages else channel


def commune_words(report: Report, texts: WebTexts) -> str:
    return report.commune_name or texts.get("filter_all_communes")


def _percent(part: int, whole: int) -> float:
    return round(share(part, whole) * 100, 1)


def sheets(report: Report, texts: WebTexts) -> list[tuple[str, list[list]]]:
    """The report's tables: (sheet name, rows), the first rows saying what and when."""
    t = texts.get
    head = [
        [t("report_title")],
        [t("report_commune"), commune_words(report, texts)],
        [t("report_period"), report.period.label(texts), f"{report.period.start:%d/%m/%Y}", f"{report.period.last:%d/%m/%Y}"],
        [t("report_generated"), report.generated_at.astimezone(_tz()).strftime(TIME_FORMAT)],
        [t("report_small_counts")],
        [],
    ]
    o = report.overview
    overview = head + [
        [t("report_col_measure"), t("report_col_value")],
        [t("report_messages"), o.messages],
        [t("report_people"), shown(o.people)],
        [t("report_groups"), o.groups],
        [t("report_questions"), o.questions],
        [t("report_answered_percent"), _percent(o.answered, o.questions)],
        [t("report_choices_percent"), _percent(o.choices, o.questions)],
        [t("report_unanswered_percent"), _percent(o.unanswered, o.questions)],
        [],
        [t("report_channel"), t("report_messages"), t("report_people"), t("report_answered"), t("report_choices"),
         t("report_unanswered")],
    ] + [[channel_name(c.channel, texts), c.messages, shown(c.people), c.answered, c.choices, c.unanswered] for c in o.channels]
    hamlets = head + [
        [t("report_hamlet_code"), t("report_hamlet"), t("report_people"), t("report_messages"), t("report_started"),
         t("report_reached_last"), t("report_submitted"), t("report_unanswered")]
    ] + [
        [h.code, h.name, shown(h.people), h.messages, shown(h.started), shown(h.reached_last), shown(h.submitted), h.unanswered]
        for h in report.hamlets
    ]
    f = report.funnel
    funnel = head + [[t("report_step"), t("report_step_title"), t("report_step_people"), t("report_step_stopped"), t("report_step_stuck")]] + [
        [s.number, s.title, shown(s.people), shown(s.stopped), s.stuck] for s in f.steps
    ] + [["", t("report_funnel_submitted"), shown(f.submitted)]]
    topics = head + [[t("report_topic_id"), t("report_topic"), t("report_topic_count"), t("report_topic_previous"), t("report_topic_change")]] + [
        [row.topic, row.title, row.count, row.previous, None if row.change is None else round(row.change * 100, 1)] for row in report.topics
    ]
    return [(t("report_sheet_overview"), overview), (t("report_sheet_hamlets"), hamlets),
            (t("report_sheet_funnel"), funnel), (t("report_sheet_topics"), topics)]


def _tz():
    from storage.stats import LOCAL_TZ

    return LOCAL_TZ


def to_xlsx(report: Report, texts: WebTexts) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets(report, texts):
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


def to_csv(report: Report, texts: WebTexts) -> str:
    """Every sheet one after another, each headed by its name; UTF-8 with BOM so Excel reads the accents."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    for name, rows in sheets(report, texts):
        writer.writerow([f"## {name}"])
        writer.writerows(rows)
        writer.writerow([])
    return out.getvalue()


def to_text(report: Report, texts: WebTexts) -> str:
    """The overview and the hamlet table, for `cccd-bot stats`."""
    t = texts.get
    o = report.overview
    lines = [
        t("report_text_head", commune=commune_words(report, texts), period=report.period.label(texts)),
        t("report_text_totals", messages=o.messages, people=shown(o.people), groups=o.groups),
        t("report_text_questions", questions=o.questions, answered=_percent(o.answered, o.questions),
          choices=_percent(o.choices, o.questions), unanswered=_percent(o.unanswered, o.questions)),
    ]
    for c in o.channels:
        lines.append("  " + t("report_text_channel", channel=channel_name(c.channel, texts), messages=c.messages, people=str(shown(c.people))))
    lines.append("")
    header = [t(f"report_text_col_{key}") for key in ("hamlet", "people", "messages", "started", "reached_last", "submitted", "unanswered")]
    lines.append(f"{header[0]:<28}" + "".join(f"{h:>10}" for h in header[1:]))
    for h in report.hamlets:
        values = [shown(h.people), h.messages, shown(h.started), shown(h.reached_last), shown(h.submitted), h.unanswered]
        lines.append(f"{h.name[:27]:<28}" + "".join(f"{v!s:>10}" for v in values))
    if not report.hamlets:
        lines.append(t("report_text_no_hamlets"))
    return "\n".join(lines)
