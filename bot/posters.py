"""Hamlet posters: one A4 page with the hamlet's name, QR codes that open the bot, and the nine steps.

The letters ask for the steps to be posted at the one-stop desk and in each hamlet's culture house;
the QR codes carry the hamlet (Telegram's `start=h_<code>`, the web chat's `?h=<code>`) so that the
statistics know where people come from. The PDF embeds DejaVu Sans (bot/fonts/, Bitstream Vera
licence, see LICENSE-DejaVu.txt), which has every Vietnamese glyph, and QR codes drawn by segno.

`make_poster` is the pure part (hamlet, content, settings -> PDF bytes); `poster_for_code` looks the
hamlet up; `handle_poster` is an aiohttp handler for `.../{code}/poster.pdf`, meant to be mounted
behind the officers' login.
"""

from __future__ import annotations

import asyncio
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import segno
from fpdf import FPDF

from bot.catalog import Catalog
from bot.config import Settings
from bot.hamlets import CODE_RE, Hamlet
from bot.web.texts import WebTexts
from storage.errors import CodedError

FONT_DIR = Path(__file__).parent / "fonts"
FONT = "DejaVu"
QR_SCALE = 16  # pixels a module: about 270 dpi at the printed size
RED = (138, 28, 28)
BLUE = (31, 95, 168)


class PosterError(CodedError):
    """A poster cannot be made; `code` is the sentence (web.yaml, for the commune's IT person) saying why."""


@dataclass(frozen=True)
class PosterLink:
    """One way in: the label printed above its QR code, the address it encodes, an optional hint."""

    label: str
    url: str
    hint: str = ""


def links(hamlet: Hamlet, settings: Settings, texts: WebTexts) -> tuple[list[PosterLink], list[str]]:
    """The links a poster carries for this hamlet, and the settings missing for the others."""
    found: list[PosterLink] = []
    missing: list[str] = []
    username = (settings.telegram_bot_username or "").strip().lstrip("@")
    if username:
        found.append(PosterLink(texts.get("poster_telegram"), f"https://t.me/{username}?start=h_{hamlet.code}"))
    else:
        missing.append("CCCD_TELEGRAM_BOT_USERNAME")
    if settings.zalo_url:
        # Zalo links carry no start parameter: the person picks the hamlet when the bot asks.
        found.append(PosterLink(texts.get("poster_zalo"), settings.zalo_url, texts.get("poster_zalo_hint", hamlet=hamlet.name)))
    else:
        missing.append("CCCD_ZALO_URL")
    if settings.public_url and settings.web_chat:
        found.append(PosterLink(texts.get("poster_web"), f"{settings.public_url}/?h={hamlet.code}"))
    else:
        missing.append("CCCD_PUBLIC_URL" if not settings.public_url else "CCCD_WEB_CHAT")
    return found, missing


def _qr_png(url: str) -> io.BytesIO:
    out = io.BytesIO()
    # Error correction M survives a poster's creases and dirt while keeping the code small.
    segno.make_qr(url, error="m").save(out, kind="png", scale=QR_SCALE, border=4)
    out.seek(0)
    return out


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


class _Poster(FPDF):
    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_margins(15, 12, 15)
        self.set_auto_page_break(False)

    def para(self, text: str, size: float, *, bold: bool = False, color=(0, 0, 0), align: str = "L", height: float | None = None) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.set_text_color(*color)
        self.multi_cell(0, height or size * 0.45, _nfc(text), align=align, new_x="LMARGIN", new_y="NEXT")


def make_poster(hamlet: Hamlet, catalog: Catalog, texts: WebTexts, settings: Settings) -> bytes:
    """Draw the poster of one hamlet as PDF bytes; PosterError when no link is configured."""
    found, missing = links(hamlet, settings, texts)
    if not found:
        raise PosterError("poster_err_no_links", names=", ".join(missing))
    pdf = _Poster()
    pdf.set_title(_nfc(f"{texts.get('poster_title')} - {hamlet.label}"))
    pdf.set_creator("cccd-bot")
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.para(texts.get("poster_title"), 24, bold=True, color=RED, align="C", height=11)
    pdf.para(texts.get("poster_for", hamlet=hamlet.label), 16, bold=True, align="C", height=7.5)
    pdf.ln(2)
    pdf.para(texts.get("poster_scan"), 12, align="C", height=5.5)
    pdf.ln(3)

    size = 50.0 if len(found) == 3 else 56.0
    gap = (width - size * len(found)) / (len(found) + 1)
    top = pdf.get_y()
    bottom = top
    for i, link in enumerate(found):
        x = pdf.l_margin + gap + i * (size + gap)
        pdf.set_xy(x - gap / 2, top)
        pdf.set_font(FONT, "B", 15)
        pdf.set_text_color(*BLUE)
        pdf.cell(size + gap, 7, _nfc(link.label), align="C")
        pdf.image(_qr_png(link.url), x=x, y=top + 8, w=size, h=size)
        pdf.set_xy(x - gap / 2 + 1, top + 9 + size)
        pdf.set_font(FONT, "", 7.5)
        pdf.set_text_color(60, 60, 60)
        pdf.multi_cell(size + gap - 2, 3.4, link.url, align="C", new_x="LEFT", new_y="NEXT")
        if link.hint:
            pdf.set_font(FONT, "", 8.5)
            pdf.multi_cell(size + gap - 2, 3.8, _nfc(link.hint), align="C", new_x="LEFT", new_y="NEXT")
        bottom = max(bottom, pdf.get_y())
    pdf.set_xy(pdf.l_margin, bottom + 4)

    pdf.set_draw_color(*RED)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(2)
    pdf.para(texts.get("poster_steps"), 15, bold=True, color=RED, height=8)
    for k, step in enumerate(catalog.steps, 1):
        pdf.para(texts.get("poster_step", k=k, title=step.title), 12, bold=True, height=5.6)
        if not step.review_note:
            # A step whose text awaits an officer's check shows its title only: paper stays up for months.
            pdf.para(_first_line(step.text), 10, color=(40, 40, 40), height=4.6)
        pdf.ln(1.2)
    pdf.ln(1)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(2)
    pdf.para(texts.get("poster_help"), 9.5, height=4.4)
    pdf.ln(1)
    pdf.para(texts.get("poster_safety"), 9.5, bold=True, height=4.4)
    if pdf.get_y() > pdf.h - 8:
        raise PosterError("poster_err_too_long")
    return bytes(pdf.output())


async def poster_for_code(service, code: str, texts: WebTexts) -> bytes:
    """The poster of the hamlet with `code` (any case); PosterError names an unknown code."""
    hamlet = (await service.hamlets()).get(code) if CODE_RE.match(code or "") else None
    if hamlet is None:
        raise PosterError("poster_err_no_hamlet", code=(code or "")[:40])
    # Drawing takes a moment of CPU: keep the event loop (and the other channels) answering.
    return await asyncio.to_thread(make_poster, hamlet, service.catalog, texts, service.settings)


async def handle_poster(request):
    """aiohttp handler: GET .../{code}/poster.pdf -> the hamlet's poster (404 unknown hamlet, 409 no link).

    Mount it behind the officers' login, e.g. `app.router.add_get("/admin/hamlets/{code}/poster.pdf", handle_poster)`.
    """
    from aiohttp import web

    from bot.server import SERVICE
    from bot.startup import say
    from bot.web.texts import TextsError, load_texts

    service = request.app[SERVICE]
    code = request.match_info.get("code", "")
    try:
        texts = load_texts(service.settings.content_dir)
    except TextsError as exc:  # web.yaml itself is wrong: say so in the operator's words
        raise web.HTTPConflict(text=say("poster_content_error", error=exc)) from None
    hamlet = (await service.hamlets()).get(code) if CODE_RE.match(code) else None
    if hamlet is None:
        raise web.HTTPNotFound(text=texts.get("poster_http_no_hamlet", code=code[:40]))
    try:
        body = await poster_for_code(service, hamlet.code, texts)
    except PosterError as exc:
        raise web.HTTPConflict(text=texts.get("poster_http_failed", reason=texts.error(exc))) from None
    return poster_response(body, hamlet.code)


def poster_response(body: bytes, code: str):
    """The poster as a PDF download (aiohttp response), named after the hamlet."""
    from aiohttp import web

    return web.Response(
        body=body,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="ap-phich-{code}.pdf"', "Cache-Control": "no-store"},
    )
