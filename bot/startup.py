"""Checks made before the bot starts, and the sentences that tell whoever installs it what is wrong.

Every problem becomes one `OperatorError`: a Vietnamese sentence on what is wrong and how to fix it
(bot/content/operator.yaml) and an exit code, printed by the command line without a traceback.
Configuration mistakes exit with 2, a database or port the bot cannot use with 1.
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import os
import socket
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

OPERATOR_TEXT = Path(__file__).parent / "content" / "operator.yaml"
PREFIX = "CCCD_"
# Variables of the test suite, not of the bot (tests/conftest.py, tests/test_transcripts.py).
NOT_SETTINGS = ("CCCD_TEST_", "CCCD_UPDATE_GOLDEN")
OFFICER_CHANNELS = ("telegram", "zalo_bot", "zalo_oa", "console")
CONFIG, UNAVAILABLE = 2, 1
DB_TIMEOUT = 10.0


# Every id the code says (`say(<id>)`, or completed: `os_*`, `account_err_*`, `check_*`), with its placeholders.
OPERATOR_FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split())
    for key, fields in {
        "usage": "", "positionals": "", "options": "", "help_option": "", "arg_error": "message prog",
        "description": "", "help_verbose": "", "help_commands": "", "help_chat": "", "help_chat_group": "",
        "help_chat_user": "", "help_chat_log": "", "help_serve": "", "help_serve_host": "", "help_serve_port": "",
        "help_serve_role": "", "help_ask": "", "help_ask_question": "", "help_ask_json": "", "help_content": "",
        "help_content_check": "", "help_content_review": "", "help_db": "", "help_db_upgrade": "",
        "help_db_retention": "", "help_hamlets": "", "help_hamlets_import": "", "help_hamlets_file": "",
        "help_faq": "", "help_faq_unanswered": "", "help_faq_limit": "", "help_faq_json": "", "db_upgraded": "",
        "ask_no_examples": "error", "db_retention_done": "days texts tombstones",
        "hamlets_imported": "communes hamlets", "no_unanswered": "", "serve_channel": "detail name",
        "serve_listening": "host port role", "chat_log": "path", "error": "message",
        "config_invalid": "name rule value", "rule_database_url": "", "rule_log_level": "", "rule_port": "",
        "rule_other": "detail", "unknown_variable_like": "name suggestion", "unknown_variable": "name",
        "officers_malformed": "channels item", "db_unreachable": "reason where", "db_refused": "",
        "db_no_host": "host", "db_timeout": "", "db_password": "", "db_missing": "name", "db_other": "detail",
        "sqlite_folder": "folder reason", "sqlite_file": "path reason", "port_in_use": "host port",
        "port_denied": "host port", "host_invalid": "host reason", "content_problem": "problem",
        "content_refused": "count", "file_unreadable": "path reason", "file_invalid": "detail path",
        "csv_err_too_large": "max", "csv_err_binary": "", "csv_err_encoding": "byte", "csv_err_columns": "expected missing", "csv_err_code": "column line value",
        "csv_err_name": "column line", "csv_err_duplicate": "code first line", "csv_err_empty": "",
        "unknown_hamlet": "code", "role_needs_postgres": "", "channel_unreachable": "platform reason",
        "telegram_token_rejected": "", "telegram_webhook_refused": "", "telegram_stopped": "",
        "zalo_bot_webhook_refused": "url", "zalo_bot_getme_failed": "reason", "status_on_mode": "mode",
        "telegram_status_send_only": "name", "telegram_status_webhook": "name path",
        "telegram_status_polling": "name", "zalo_bot_status_send_only": "groups name",
        "zalo_bot_status_webhook": "groups name url", "zalo_bot_status_polling": "groups name",
        "zalo_oa_status": "path", "zalo_oa_status_named": "name path", "zalo_oa_no_token": "reason",
        "telegram_privacy_off": "", "telegram_privacy_on": "", "zalo_bot_groups_on": "", "zalo_bot_groups_off": "",
        "zalo_bot_groups_unknown": "", "zalo_bot_mention_names": "names", "zalo_bot_probe_ok": "",
        "zalo_bot_probe_failed": "", "zalo_oa_inactive_groups": "groups", "zalo_oa_inactive_more": "count",
        "zalo_oa_group_expired": "code", "zalo_oa_group_not_member": "code", "oa_auth_missing": "names",
        "oa_auth_no_redirect": "", "oa_auth_concurrent": "", "oa_auth_open": "", "oa_auth_callback": "",
        "oa_auth_code_refused": "reason", "oa_auth_refresh_refused": "reason", "oa_auth_stored": "until",
        "oa_auth_refresh_spent": "", "arg_invalid_choice": "choices value", "arg_required": "names",
        "arg_unrecognized": "names", "arg_invalid_value": "name value", "arg_expected_one": "name",
        "arg_expected_some": "name", "arg_one_of": "names", "arg_not_together": "name other",
        "arg_no_value": "name value", "os_enoent": "", "os_enotdir": "", "os_eacces": "", "os_erofs": "",
        "os_eaddrnotavail": "", "bc_bad_audience": "reason", "bc_bad_as": "", "bc_not_allowed": "reason",
        "bc_bad_request": "reason", "bc_unreadable_file": "file reason", "bc_bad_at": "", "bc_at_without_zone": "",
        "bc_status_line": "id status", "bc_unknown_codes": "codes", "bc_col_hamlet": "", "bc_col_channel": "",
        "bc_col_kind": "", "bc_col_to_send": "", "bc_col_opted_out": "", "bc_no_hamlet": "",
        "bc_dry_run_total": "opted_out to_send", "bc_no_broadcast": "id",
        "bc_report_head": "approver author id status", "bc_unknown_rows": "", "bc_channels_off": "channels",
        "help_bc_scope": "", "help_bc_codes": "", "help_bc_kinds": "", "help_bc_channels": "", "help_bc": "",
        "help_bc_create": "", "help_bc_as_author": "", "help_bc_text": "", "help_bc_file": "", "help_bc_at": "",
        "help_bc_dry_run": "", "help_bc_as": "", "help_bc_list": "", "help_bc_report": "", "help_bc_send": "",
        "help_bc_until_done": "", "help_bc_approve": "", "help_bc_pause": "", "help_bc_resume": "",
        "help_bc_cancel": "", "content_problems": "count",
        "content_ok": "examples messages review_steps review_topics steps topics", "review_step": "note number slug",
        "review_topic": "id note", "review_change": "day id note", "help_poster": "", "help_poster_hamlet": "",
        "help_poster_out": "", "poster_content_error": "error", "poster_error": "error",
        "not_written": "path reason", "poster_done": "hamlet path", "poster_no_qr": "names",
        "poster_steps_in_review": "steps", "help_users": "", "help_users_add": "", "help_users_username": "",
        "help_users_role": "", "help_users_commune": "", "help_users_list": "", "help_users_disable": "",
        "help_users_enable": "", "help_users_passwd": "", "help_report": "", "help_report_month": "",
        "help_report_commune": "", "help_report_out": "", "help_stats": "", "help_stats_month": "",
        "password_prompt": "", "password_again": "", "password_mismatch": "", "users_added": "role username",
        "users_added_commune": "commune role username", "users_password_changed": "username",
        "users_disabled": "username", "users_enabled": "username", "users_error": "reason",
        "account_err_password_short": "min", "account_err_password_long": "max", "account_err_username": "",
        "account_err_role": "roles", "account_err_commune": "commune", "account_err_exists": "username",
        "account_err_unknown": "username", "users_none": "", "users_row": "commune last role state username",
        "users_everywhere": "", "users_active": "", "users_locked": "", "report_error": "reason",
        "report_no_commune": "code", "report_written": "commune path period", "channel_on": "",
        "channel_off": "reason", "channel_not_shipped": "", "channel_not_set": "names", "web_chat_not_set": "",
        "web_chat_content": "error", "telegram_token_malformed": "", "telegram_secret_malformed": "",
        "telegram_webhook_url_malformed": "", "readyz_sender_behind": "seconds", "readyz_database_error": "error",
        "help_bc_id": "", "help_bc_limit": "", "help_zalo_oa": "", "help_oa_authorize": "",
        "help_oa_authorize_description": "", "help_oa_code": "", "help_oa_refresh_token": "",
        "check_not_utf8": "", "check_no_file": "", "check_unreadable": "reason", "check_top_mapping": "",
        "check_changes_list": "", "check_change_mapping": "where", "check_change_from": "where",
        "check_change_order": "where", "check_change_keys": "keys where", "check_change_replace": "where",
        "check_change_count": "found old where", "check_no_faq": "", "check_topics_list": "",
        "check_entry_mapping": "", "check_duplicate_id": "file", "check_needs_review_flag": "",
        "check_examples_mapping": "", "check_unknown_topic": "", "check_examples_list": "",
        "check_example_repeated": "example", "check_example_short": "example min words",
        "check_long_examples": "count min", "check_id_chars": "", "check_title_empty": "",
        "check_title_long": "length max", "check_answer_empty": "", "check_answer_long": "length max",
        "check_source_empty": "", "check_example_empty": "", "check_examples_few": "count min",
        "check_examples_no_accents": "", "check_examples_all_accents": "", "check_more_long": "length max",
        "check_review_note_empty": "", "check_review_caveat": "", "check_caveat_unreviewed": "",
        "check_cite_missing": "", "check_cite_seed": "cite", "check_cite_kind": "cite", "check_cite_article": "cite",
        "check_address": "around word", "check_step_mapping": "", "check_slug_duplicate": "",
        "check_step_empty": "name", "check_problem_label": "", "check_problem_topic": "",
        "check_steps_count": "count", "check_phrases_list": "", "check_phrase_folded": "phrase",
        "check_services_mapping": "", "check_service_fields": "", "check_service_unknown": "",
        "check_service_missing": "", "check_neighbours_mapping": "", "check_question_endings": "",
        "check_ask_back_mapping": "", "check_synonyms_mapping": "", "check_synonym_key": "",
        "check_synonym_empty": "", "check_synonym_taken": "owner variant", "check_synonym_canonical": "variant",
        "check_synonym_folded": "phrase seen", "check_keywords_mapping": "", "check_keyword_missing": "",
        "check_keyword_taken": "owner phrase", "check_guide_topics": "", "check_braces": "error",
        "check_placeholders": "known unknown", "check_placeholders_none": "", "check_message_empty": "",
        "check_message_missing": "", "check_see_also": "topic", "check_points_nowhere": "topic",
        "check_contract_missing": "", "check_not_our_subject": "", "check_first_message_long": "length max",
        "check_yaml_at": "column detail line", "check_yaml": "detail", "check_messages_mapping": "",
        "check_missing_text": "", "check_bc_missing": "names", "check_bc_optout": "",
    }.items()
}


def read_operator_texts(path: Path = OPERATOR_TEXT) -> tuple[dict[str, str], list[str]]:
    """operator.yaml's sentences, and what is wrong with them (a missing id, a placeholder the code does
    not fill), one problem a line naming the file and the id."""
    from bot.catalog import placeholder_problem

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        # The sentences saying what is wrong live in this very file: the reader's own words it is.
        return {}, [f"{path.name}: -: {exc}".replace("\n", " ")]
    raw = data.get("operator") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return {}, [f"{path.name}: -: operator: {{id: text}}"]
    texts = {str(k): v for k, v in raw.items() if isinstance(v, str)}
    problems = []
    for key, allowed in OPERATOR_FIELDS.items():
        text = texts.get(key, "").strip()
        problem = placeholder_problem(text, allowed, lambda k, **v: _said(texts, k, **v)) if text else _said(texts, "check_missing_text")
        if problem:
            problems.append(f"{path.name}: {key}: {problem}")
    return texts, problems


def _said(texts: dict[str, str], key: str, **values: Any) -> str:
    """A sentence of a possibly broken operator.yaml: its id when the sentence itself is missing."""
    try:
        return texts[key].format(**values).strip()
    except (KeyError, IndexError, ValueError):
        return key


@lru_cache(maxsize=1)
def _texts() -> dict[str, str]:
    texts, problems = read_operator_texts()
    if problems:
        raise OperatorError("\n".join(problems), CONFIG)
    return texts


def say(key: str, **values: Any) -> str:
    """Return the operator sentence under `key`, filled with `values`."""
    return _texts()[key].format(**values).strip()


class OperatorError(Exception):
    """A problem the person running the bot must fix; `str()` is the sentence to print."""

    def __init__(self, message: str, code: int = CONFIG):
        super().__init__(message)
        self.code = code


def os_reason(exc: OSError) -> str:
    """The system's reason for `exc`, in Vietnamese when it is a usual one."""
    name = errno.errorcode.get(exc.errno or 0, "").lower()
    key = f"os_{name}"
    return say(key) if name and key in _texts() else (exc.strerror or str(exc))


# --- variables -------------------------------------------------------------------------------------


def setting_names() -> tuple[str, ...]:
    from bot.config import Settings

    return tuple(PREFIX + name.upper() for name in Settings.model_fields)


def check_variable_names(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> None:
    """Refuse a CCCD_* variable the bot does not know: a misspelt name would be silently ignored."""
    names = [n for n in environ if n.upper().startswith(PREFIX)]
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values

        names += [n for n in dotenv_values(env_file) if n.upper().startswith(PREFIX)]
    known = setting_names()
    for name in names:
        upper = name.upper()
        if upper in known or upper.startswith(NOT_SETTINGS):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        if close:
            raise OperatorError(say("unknown_variable_like", name=name, suggestion=close[0]))
        raise OperatorError(say("unknown_variable", name=name))


_RULES = {"database_url": "rule_database_url", "log_level": "rule_log_level", "port": "rule_port"}


def load_settings(**overrides: Any):
    """Return the Settings, or raise OperatorError naming the variable and what it must be."""
    from pydantic import ValidationError

    from bot.config import Settings

    check_variable_names(os.environ)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        rule = _RULES.get(field)
        text = say(rule) if rule else say("rule_other", detail=err["msg"])
        raise OperatorError(say("config_invalid", name=PREFIX + field.upper(), value=repr(err.get("input"))[:80], rule=text)) from None
    check_officers(settings.officers)
    return settings


def check_officers(value: str) -> None:
    """Each CCCD_OFFICERS entry is channel:user_id; a wrong one would silently give no rights."""
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        channel, sep, user = item.partition(":")
        if not sep or channel.strip() not in OFFICER_CHANNELS or not user.strip() or any(ch.isspace() for ch in item):
            raise OperatorError(say("officers_malformed", item=item, channels=", ".join(OFFICER_CHANNELS)))


# --- database --------------------------------------------------------------------------------------


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _reason(exc: BaseException, url: str) -> str:
    from sqlalchemy.engine import make_url

    cause: BaseException | None = exc
    while cause is not None:
        name = type(cause).__name__
        if isinstance(cause, ConnectionRefusedError) or (isinstance(cause, OSError) and "Connect call failed" in str(cause)):
            return say("db_refused")
        if isinstance(cause, socket.gaierror):
            return say("db_no_host", host=make_url(url).host)
        if isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
            return say("db_timeout")
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return say("db_password")
        if name == "InvalidCatalogNameError":
            return say("db_missing", name=make_url(url).database)
        cause = cause.__cause__ or cause.__context__
    return say("db_other", detail=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix):].split("?", 1)[0]
    return Path(path).expanduser() if path and path != ":memory:" else None


def check_database(url: str) -> None:
    """Make sure the database can be opened: create a SQLite file's folder, reach PostgreSQL."""
    from storage.migrate import ensure_sqlite_dir

    path = _sqlite_path(url)
    if path is not None:
        try:
            ensure_sqlite_dir(url)
        except OSError as exc:
            raise OperatorError(say("sqlite_folder", folder=path.parent, reason=os_reason(exc))) from None
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise OperatorError(say("sqlite_file", path=path, reason=say("os_eacces")), UNAVAILABLE)
        return
    try:
        asyncio.run(asyncio.wait_for(_probe(url), DB_TIMEOUT))
    except Exception as exc:  # any failure to connect is explained the same way
        raise OperatorError(say("db_unreachable", where=_shown(url), reason=_reason(exc, url)), UNAVAILABLE) from None


async def _probe(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, connect_args={"timeout": DB_TIMEOUT})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


# --- port ------------------------------------------------------------------------------------------


def check_port(host: str, port: int) -> None:
    """Make sure the server can listen on host:port before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperatorError(say("host_invalid", host=host, reason=exc.strerror)) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As the server will: reuse an address in TIME_WAIT, but never one another program listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise port_error(exc, host, port) from None


def port_error(exc: OSError, host: str, port: int) -> OperatorError:
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(say("port_in_use", host=host, port=port), UNAVAILABLE)
    if exc.errno == errno.EACCES:
        return OperatorError(say("port_denied", host=host, port=port), UNAVAILABLE)
    return OperatorError(say("host_invalid", host=host, reason=os_reason(exc)), UNAVAILABLE)
