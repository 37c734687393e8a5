"""Dashboard forms that carry a file (multipart/form-data): read as a stream, with limits of our own.

`request.post()` refuses a body over the application's `client_max_size` with aiohttp's bare 413 page,
before the page's handler could say in Vietnamese what is wrong. Here a file over its limit is kept as an
`Upload` marked `too_big` (its bytes are read and dropped), and the handler explains. The form is read
once, by the CSRF check, and kept on the request for the handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

FILE_LIMIT = 1024 * 1024  # the largest file a dashboard form takes (an image, a CSV)
FIELD_LIMIT = 64 * 1024  # the largest text field
MAX_FIELDS = 5000
BODY_LIMIT = 32 * 1024 * 1024  # beyond this, reading stops and the request is refused outright
_FORM = web.RequestKey("dashboard_form", MultiDictProxy)


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes  # empty when too big
    too_big: bool = False


async def read_form(request: web.Request) -> MultiDictProxy:
    """The POSTed form: text fields as str, files as `Upload` (multipart); read once per request."""
    if _FORM in request:
        return request[_FORM]
    if request.content_type != "multipart/form-data":
        form = await request.post()
    else:
        form = MultiDictProxy(await _read_multipart(request))
    request[_FORM] = form
    return form


async def _read_multipart(request: web.Request) -> MultiDict:
    out: MultiDict = MultiDict()
    total = 0
    reader = await request.multipart()
    while len(out) < MAX_FIELDS:
        part = await reader.next()
        if part is None:
            break
        if not hasattr(part, "read_chunk") or part.name is None:
            raise web.HTTPBadRequest(text="nested multipart is not accepted")
        limit = FILE_LIMIT if part.filename is not None else FIELD_LIMIT
        kept = bytearray()
        too_big = False
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > BODY_LIMIT:
                raise web.HTTPRequestEntityTooLarge(max_size=BODY_LIMIT, actual_size=total)
            if too_big or len(kept) + len(chunk) > limit:
                too_big = True
                kept.clear()
                continue
            kept += chunk
        if part.filename is not None:
            content_type = part.headers.get("Content-Type", "")
            out.add(part.name, Upload(part.filename, content_type, b"" if too_big else bytes(kept), too_big))
        else:
            charset = part.get_charset(default="utf-8")
            out.add(part.name, bytes(kept).decode(charset, errors="replace") if not too_big else "")
    return out
