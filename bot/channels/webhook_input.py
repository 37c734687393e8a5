"""Reading webhook bodies from strangers: bounded, parsed safely, checked field by field.

Anyone can POST to a webhook. Channels check the secret or signature first, on the raw bytes, and only
then parse with `parse_json`: the body is bounded in size, in nesting, and in what its strings may hold
(no NUL, no lone surrogate — PostgreSQL refuses both, and a forged client can send them), and NaN or
Infinity are refused. `check` then verifies the types of the fields a channel reads, so that a
wrong-typed field is a clean 400 at the door instead of a failure in the background later.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 20


class BadInput(ValueError):
    """The body cannot be accepted; the message says why, without repeating the body."""


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read at most `limit` bytes of the body; raise BadInput when it is longer."""
    if request.content_length is not None and request.content_length > limit:
        raise BadInput(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BadInput(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise BadInput(f"{name} is not a number JSON allows")


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise BadInput("a string holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("a string holds a lone surrogate") from None


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a body; raise BadInput for anything but UTF-8 JSON within the bounds (see the module)."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except BadInput:
        raise
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput("body is not JSON") from None
    # One walk over every value, without recursion: depth, strings, keys.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                raise BadInput("JSON nested too deeply")
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                raise BadInput("JSON nested too deeply")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
    return data


# -- field checks -------------------------------------------------------------------------------------

INT = "int"
STR = "str"
NUMBER = "number"
ID = "id"  # a platform id: an integer, or a string of 1-64 characters
BOOL = "bool"
MAX_ID = 64


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == STR:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == ID:
        if isinstance(value, int) and not isinstance(value, bool):
            return len(str(value)) <= MAX_ID
        return isinstance(value, str) and 0 < len(value) <= MAX_ID
    raise ValueError(kind)


def check(value: Any, schema: dict[str, Any], where: str = "body") -> None:
    """Check that the fields named in `schema` have their types, when present; raise BadInput otherwise.

    A schema maps a field to a kind (INT, STR, NUMBER, ID, BOOL), to a nested schema (an object), or to
    a tuple (a kind or schema, True) for a field that must be present. Fields not named are not read,
    and not checked.
    """
    if not isinstance(value, dict):
        raise BadInput(f"{where} is not an object")
    for name, spec in schema.items():
        required = isinstance(spec, tuple)
        spec = spec[0] if required else spec
        if name not in value or value[name] is None:
            if required:
                raise BadInput(f"{where}.{name} is missing")
            continue
        item = value[name]
        if isinstance(spec, dict):
            check(item, spec, f"{where}.{name}")
        elif not _kind_ok(item, spec):
            raise BadInput(f"{where}.{name} has the wrong type")


_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"?(\d{1,20})"?')


def raw_timestamps(raw: bytes, limit: int = 4) -> list[str]:
    """The values of "timestamp" fields in a raw body, found without parsing it (for signatures over them)."""
    out: list[str] = []
    for match in _TIMESTAMP.finditer(raw):
        out.append(match.group(1).decode())
        if len(out) >= limit:
            break
    return out


def bad_request(reason: BadInput | str) -> web.Response:
    return web.Response(status=400, text=str(reason))
