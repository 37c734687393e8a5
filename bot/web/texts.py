"""The Vietnamese texts of the web chat page and of the posters (bot/content/web.yaml), and of the
officers' dashboard (bot/content/dashboard.yaml), checked at load.

The conversation's own sentences stay in messages.yaml (the catalog); these files hold only what the
pages and the poster add around it, so that a commune can edit every word without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.catalog import CONTENT_DIR, placeholder_problem, read_problem
from bot.startup import say
from storage.errors import CodedError

FILE = "web.yaml"

# Every id the code uses, with the placeholders it fills in.
FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split())
    for key, fields in {
        "page_title": "", "page_heading": "", "page_intro": "", "input_label": "", "input_placeholder": "",
        "send": "", "sending": "", "no_script": "", "privacy_note": "", "error_network": "", "error_rate": "",
        "error_too_long": "", "error_empty": "", "error_bad_request": "", "error_forbidden": "",
        "widget_open": "", "widget_close": "", "poster_title": "", "poster_for": "hamlet", "poster_scan": "",
        "poster_telegram": "", "poster_zalo": "", "poster_web": "", "poster_zalo_hint": "hamlet",
        "poster_steps": "", "poster_step": "k title", "poster_help": "", "poster_safety": "",
        "poster_err_no_links": "names", "poster_err_too_long": "", "poster_err_no_hamlet": "code",
        "poster_http_no_hamlet": "code", "poster_http_failed": "reason",
    }.items()
}


DASHBOARD_FILE = "dashboard.yaml"

# The officers' dashboard (bot/web/app.py, pages.py, links.py, broadcasts.py and the templates): every id,
# with its placeholders. The pages shared by all, then the broadcast pages.
DASHBOARD_FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split())
    for key, fields in {
        "site_name": "", "site_brand": "", "role_admin": "", "role_officer": "", "role_team": "", "logout": "",
        "nav_overview": "", "nav_hamlets": "", "nav_funnel": "", "nav_topics": "", "nav_unanswered": "",
        "nav_content": "", "nav_registry": "", "nav_broadcasts": "", "filter_month": "", "filter_from": "",
        "filter_to": "", "filter_commune": "", "filter_all": "", "filter_all_communes": "", "filter_show": "",
        "filter_export": "", "filter_err_commune": "", "footer": "", "login_title": "", "login_username": "",
        "login_password": "", "login_button": "", "login_err_bad": "", "login_err_locked": "",
        "login_err_disabled": "", "login_needed": "", "forbidden_title": "", "forbidden_csrf": "", "forbidden_role": "",
        "forbidden_scope": "", "forbidden_home": "", "overview_title": "", "overview_messages": "",
        "overview_people": "", "overview_groups": "", "overview_answered": "", "overview_choices": "",
        "overview_unanswered": "", "overview_by_channel": "", "overview_col_channel": "",
        "overview_col_messages": "", "overview_col_people": "", "overview_col_answered": "",
        "overview_col_choices": "", "overview_col_unanswered": "", "overview_none": "", "overview_per_day": "",
        "hamlets_title": "", "hamlets_heading": "", "hamlets_note": "", "hamlets_col_name": "",
        "hamlets_col_people": "", "hamlets_col_messages": "", "hamlets_col_started": "",
        "hamlets_col_reached_last": "", "hamlets_col_submitted": "", "hamlets_col_unanswered": "",
        "hamlets_idle": "", "hamlets_none": "", "hamlets_chart": "", "hamlets_chart_cut": "rows",
        "funnel_title": "", "funnel_chart": "", "funnel_col_step": "", "funnel_col_people": "",
        "funnel_col_stopped": "", "funnel_col_stuck": "", "funnel_submitted": "", "funnel_note": "",
        "funnel_by_hamlet": "", "funnel_col_hamlet": "", "funnel_col_step_short": "number", "funnel_col_done": "",
        "topics_title": "", "topics_heading": "", "topics_intro": "previous", "topics_chart": "",
        "topics_col_topic": "", "topics_col_count": "", "topics_col_previous": "", "topics_col_change": "",
        "topics_new": "", "topics_same": "", "topics_none": "", "unanswered_title": "", "unanswered_heading": "",
        "unanswered_intro": "total", "unanswered_hidden": "hidden link", "unanswered_show_all": "",
        "unanswered_texts_hidden": "", "unanswered_col_count": "", "unanswered_col_text": "",
        "unanswered_col_hamlets": "", "unanswered_col_last": "", "unanswered_col_action": "",
        "unanswered_tag_handled": "", "unanswered_tag_proposed": "", "unanswered_mark_handled": "",
        "unanswered_propose": "", "unanswered_none": "", "unanswered_err_no_group": "",
        "unanswered_err_missing": "", "propose_title": "", "propose_heading": "", "propose_intro": "",
        "propose_topic": "", "propose_choose": "", "propose_button": "", "propose_back": "", "content_title": "",
        "content_heading": "", "content_intro": "command folder", "content_steps": "", "content_col_step": "",
        "content_col_check": "", "content_col_file": "", "content_steps_none": "", "content_answers": "",
        "content_col_topic": "", "content_col_source": "", "content_col_id": "", "content_answers_none": "",
        "content_proposals": "", "content_proposals_note": "examples files", "content_col_questions": "",
        "content_col_proposer": "", "content_accept": "", "content_reject": "", "content_proposals_none": "",
        "content_accepted": "", "content_col_people": "", "content_topic_gone": "", "content_duplicate": "",
        "content_withdraw": "", "content_accepted_none": "", "content_done_rejected": "",
        "content_done_accepted": "", "content_done_withdrawn": "", "content_done_later": "done",
        "content_err_decision": "", "registry_title": "", "registry_col_code": "", "registry_col_hamlet": "",
        "registry_col_groups": "", "registry_col_links": "", "registry_col_edit": "", "registry_group_unnamed": "",
        "registry_group_left": "", "registry_new_name": "", "registry_rename": "", "registry_remove": "",
        "registry_none": "", "registry_add_heading": "", "registry_commune": "", "registry_code": "",
        "registry_code_example": "", "registry_name": "", "registry_name_example": "", "registry_add": "",
        "registry_import_note": "command", "registry_done_add": "", "registry_done_rename": "",
        "registry_done_remove": "", "registry_err_poster": "reason", "link_telegram": "", "link_web": "",
        "link_poster": "", "link_qr": "", "link_qr_alt": "name",
        "bc_page_title": "", "bc_link_visits": "", "bc_link_recurring": "", "bc_link_rules": "",
        "bc_compose_heading": "", "bc_text_label": "max_text", "bc_image_label": "max_mb", "bc_audience_legend": "",
        "bc_scope_all": "", "bc_scope_some": "", "bc_whole_commune": "", "bc_pick_note": "", "bc_kinds_legend": "",
        "bc_kind_group_label": "", "bc_kind_private_label": "", "bc_channels_note": "", "bc_preview_button": "",
        "bc_recent_heading": "", "bc_col_number": "", "bc_col_status": "", "bc_col_sent": "", "bc_col_audience": "",
        "bc_col_author": "", "bc_col_text": "", "bc_col_hamlet": "", "bc_col_channel": "", "bc_col_kind": "",
        "bc_none_yet": "", "bc_image_tag": "", "bc_preview_title": "", "bc_audience_line": "words",
        "bc_part_count": "n", "bc_image_alt": "", "bc_dry_run_heading": "", "bc_col_to_send": "",
        "bc_col_skipped": "", "bc_no_hamlet": "", "bc_nobody": "", "bc_total": "", "bc_submit_button": "",
        "bc_edit_again": "", "bc_zalo_note": "", "bc_detail_title": "id", "bc_detail_heading": "id status",
        "bc_people_line": "approver author",
        "bc_progress": "blocked failed no_window opted_out percent sent settled total unknown",
        "bc_report_heading": "", "bc_report_empty": "", "bc_unknown_heading": "", "bc_unknown_note": "",
        "bc_back_to_list": "", "bc_action_approve": "", "bc_action_pause": "", "bc_action_resume": "",
        "bc_action_cancel": "", "bc_done_approve": "", "bc_done_pause": "", "bc_done_resume": "",
        "bc_done_cancel": "", "bc_done_awaiting": "", "bc_done_scheduled": "", "bc_err_audience": "reason",
        "bc_err_audience_short": "", "bc_err_scope": "", "bc_err_text": "max_text", "bc_err_unknown_codes": "",
        "bc_err_not_created": "", "bc_err_own": "", "bc_err_not_allowed": "", "bc_err_status": "",
        "bc_err_image_empty": "", "bc_err_image_too_big": "max_mb", "bc_err_image_not_image": "",
        "bc_err_image_shape": "", "bc_err_image_public_url": "", "bc_everywhere": "", "bc_and": "",
        "bc_all_channels": "", "bc_kind_group": "", "bc_kind_private": "", "bc_made_visit": "",
        "bc_made_recurring": "", "bc_made_summary": "", "bc_status_draft": "", "bc_status_awaiting_approval": "",
        "bc_status_scheduled": "", "bc_status_sending": "", "bc_status_paused": "", "bc_status_done": "",
        "bc_status_cancelled": "", "bc_column_sent": "", "bc_column_failed": "", "bc_column_blocked": "",
        "bc_column_no_window": "", "bc_column_opted_out": "", "bc_column_unknown": "", "bc_column_pending": "",
        "bc_column_cancelled": "", "bc_save": "", "bc_saved": "", "bc_commune_label": "", "bc_cancel_button": "",
        "bc_back_to_broadcasts": "", "rules_title": "", "rules_note": "", "rules_col_approval": "",
        "rules_col_quiet": "", "rules_needs_approval": "", "rules_start": "", "rules_end": "", "rules_err_time": "",
        "rules_err_commune": "", "visits_note": "", "visits_col_day": "", "visits_col_time": "",
        "visits_col_place": "", "visits_col_hamlets": "", "visits_col_announced": "", "visits_cancelled": "",
        "visits_announced_in": "id", "visits_not_yet": "", "visits_never_announced": "", "visits_none": "", "visits_add_heading": "",
        "visits_day": "", "visits_from": "", "visits_to": "", "visits_place": "", "visits_place_example": "",
        "visits_hamlets_legend": "", "visits_save": "", "visits_import_heading": "", "visits_file_label": "",
        "visits_import_note": "example header", "visits_import_example": "", "visits_import_button": "", "visits_done_cancel": "",
        "visits_done_saved": "n", "visits_err": "reason", "visits_err_file_too_big": "max_mb",
        "visits_err_day": "day", "visits_err_past": "day", "visits_err_start": "time", "visits_err_end": "time",
        "visits_err_place": "max", "visits_err_no_hamlet": "", "visits_err_outside": "codes", "visits_err_not_utf8": "",
        "visits_err_header": "header", "visits_err_rows": "max", "visits_err_row": "number reason", "visits_err_empty": "", "visits_err_control": "", "visits_err_csv": "", "recurring_note": "",
        "recurring_col_rule": "", "recurring_col_next": "", "recurring_col_author": "", "recurring_stopped": "",
        "recurring_stop": "", "recurring_none": "", "recurring_add_heading": "", "recurring_cron_label": "example",
        "recurring_err_cron": "", "recurring_err_never": "", "recurring_err_often": "", "recurring_err_invalid": "",
        "recurring_done_saved": "",
        "recurring_done_stopped": "",
        "channel_telegram": "", "channel_zalo_bot": "", "channel_zalo_oa": "", "channel_web": "", "channel_console": "",
        "period_month": "month year", "period_days": "first last", "period_err_month": "", "period_err_day": "",
        "period_err_span": "", "registry_err_name": "", "registry_err_code": "", "registry_err_commune": "",
        "registry_err_taken": "code", "registry_err_unknown": "",
        "report_title": "", "report_commune": "", "report_period": "", "report_generated": "", "report_small_counts": "",
        "report_sheet_overview": "", "report_sheet_hamlets": "", "report_sheet_funnel": "", "report_sheet_topics": "",
        "report_col_measure": "", "report_col_value": "", "report_messages": "", "report_people": "", "report_groups": "",
        "report_questions": "", "report_answered_percent": "", "report_choices_percent": "",
        "report_unanswered_percent": "", "report_channel": "", "report_answered": "", "report_choices": "",
        "report_unanswered": "", "report_hamlet_code": "", "report_hamlet": "", "report_started": "",
        "report_reached_last": "", "report_submitted": "", "report_step": "", "report_step_title": "",
        "report_step_people": "", "report_step_stopped": "", "report_step_stuck": "", "report_funnel_submitted": "",
        "report_topic_id": "", "report_topic": "", "report_topic_count": "", "report_topic_previous": "",
        "report_topic_change": "", "report_text_head": "commune period", "report_text_totals": "messages people groups",
        "report_text_questions": "questions answered choices unanswered", "report_text_channel": "channel messages people",
        "report_text_col_hamlet": "", "report_text_col_people": "", "report_text_col_messages": "",
        "report_text_col_started": "", "report_text_col_reached_last": "", "report_text_col_submitted": "",
        "report_text_col_unanswered": "", "report_text_no_hamlets": "",
    }.items()
}


class TextsError(ValueError):
    """web.yaml is missing, unreadable, or lacks an id the code needs; the message says which."""


@dataclass(frozen=True)
class WebTexts:
    messages: dict[str, str]

    def get(self, key: str, **values: Any) -> str:
        return self.messages[key].format(**values).strip()

    def error(self, exc: CodedError) -> str:
        """The sentence of an error raised with the id of its text (storage.errors.CodedError)."""
        return self.get(exc.code, **exc.params)


def load_texts(directory: Path | None = None, *, file: str = FILE, fields: dict[str, frozenset[str]] = FIELDS) -> WebTexts:
    """Read web.yaml (or `file`, with its `fields`) from the content directory (the shipped content by
    default); raise TextsError if wrong."""
    path = Path(directory or CONTENT_DIR) / file
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TextsError(f"{file}: -: {read_problem(exc)}".replace("\n", " ")) from None
    raw = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise TextsError(f"{file}: -: {say('check_messages_mapping')}")
    messages = {str(k): v.strip() for k, v in raw.items() if isinstance(v, str)}
    problems = []
    for key, allowed in fields.items():
        text = messages.get(key, "")
        problem = placeholder_problem(text, allowed) if text else say("check_missing_text")
        if problem:
            problems.append(f"{file}: {key}: {problem}")
    if problems:
        raise TextsError("\n".join(problems))
    return WebTexts(messages)


def load_dashboard_texts(directory: Path | None = None) -> WebTexts:
    """The dashboard's texts (dashboard.yaml); raise TextsError if wrong."""
    return load_texts(directory, file=DASHBOARD_FILE, fields=DASHBOARD_FIELDS)
