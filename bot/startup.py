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


@lru_cache(maxsize=1)
def _texts() -> dict[str, str]:
    return yaml.safe_load(OPERATOR_TEXT.read_text(encoding="utf-8"))["operator"]


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
