"""Each hamlet's links (chat entry points, printable material), shown on its row in the dashboard.

Other features add theirs with `register`: a maker takes the settings and the hamlet code and returns
a HamletLink or None (when not configured). Rows show them in order, in a cell of class "hamlet-links".
A link's label is the id of its text in dashboard.yaml (add the id to DASHBOARD_FIELDS in bot/web/texts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from bot.config import Settings


@dataclass(frozen=True)
class HamletLink:
    kind: str  # a stable slug: "telegram", "web", "poster", ...
    label: str  # the id of the button's text in dashboard.yaml
    url: str
    qr: bool = True  # whether a QR code of it helps (a chat entry does; a PDF download does not)


LinkMaker = Callable[[Settings, str], HamletLink | None]
_MAKERS: list[LinkMaker] = []


def register(maker: LinkMaker) -> LinkMaker:
    _MAKERS.append(maker)
    return maker


def hamlet_links(settings: Settings, code: str) -> list[HamletLink]:
    return [link for make in _MAKERS if (link := make(settings, code)) is not None]


@register
def telegram(settings: Settings, code: str) -> HamletLink | None:
    if not settings.telegram_bot_username:
        return None
    return HamletLink("telegram", "link_telegram", f"https://t.me/{quote(settings.telegram_bot_username)}?start=h_{quote(code)}")


@register
def web_chat(settings: Settings, code: str) -> HamletLink | None:
    return HamletLink("web", "link_web", f"/?h={quote(code)}")


@register
def poster(settings: Settings, code: str) -> HamletLink | None:
    # The dashboard serves it (bot/web/pages.py), behind the officers' login.
    return HamletLink("poster", "link_poster", f"/admin/registry/{quote(code)}/poster.pdf", qr=False)


def qr_svg(data: str) -> bytes:
    """A QR code as an SVG image (drawn here, nothing fetched)."""
    import io

    import segno

    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return out.getvalue()
