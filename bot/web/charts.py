"""Charts drawn on the server as inline SVG: nothing is loaded from the internet, no script needed."""

from __future__ import annotations

from datetime import date

from markupsafe import Markup, escape

from bot.figures import SUPPRESSED, shown

BAR = "#2f6db5"
MUTED = "#c9d4e3"


def number(value) -> str:
    """12345 -> '12.345' (Vietnamese thousands separator); strings ("< 5") unchanged."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", "X").replace(".", ",").replace("X", ".")
    return f"{value:,}".replace(",", ".")


def percent(part: int, whole: int) -> str:
    return f"{(part / whole * 100) if whole else 0:.1f}".replace(".", ",") + "%"


def bars(items: list[tuple[str, int]], *, people: bool = False, title: str = "", width: int = 640) -> Markup:
    """Horizontal bars, one a row: (label, value). With `people`, counts below 5 show '< 5' and no bar."""
    row_h, label_w, value_w = 24, 200, 70
    height = row_h * len(items) + 8
    top = max([v for _, v in items if not (people and shown(v) == SUPPRESSED)] + [1])
    plot = width - label_w - value_w
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        text = shown(value) if people else value
        w = 0 if text == SUPPRESSED else round(plot * value / top) if value else 0
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<g class="bar" data-label="{escape(label)}" data-value="{escape(number(text))}">'
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="13">{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{plot}" height="{row_h - 8}" fill="{MUTED}" opacity="0.35"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{BAR}"/>'
            f'<text x="{label_w + plot + 6}" y="{y + 16}" font-size="13">{escape(number(text))}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(per_day: list[tuple[date, int]], *, title: str = "", width: int = 640, height: int = 180) -> Markup:
    """Messages per day as columns, with the highest value and the first and last days labelled."""
    n = max(len(per_day), 1)
    top = max([v for _, v in per_day] + [1])
    left, bottom = 36, 22
    plot_w, plot_h = width - left - 4, height - bottom - 8
    step = plot_w / n
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{8 + plot_h}" x2="{width - 4}" y2="{8 + plot_h}" stroke="#888"/>',
        f'<text x="{left - 4}" y="16" text-anchor="end" font-size="11">{number(top)}</text>',
    ]
    for i, (day, value) in enumerate(per_day):
        h = round(plot_h * value / top) if value else 0
        x = left + i * step
        parts.append(
            f'<rect class="day" data-day="{day.isoformat()}" data-value="{value}" x="{x + 1:.1f}" y="{8 + plot_h - h}" '
            f'width="{max(step - 2, 1):.1f}" height="{h}" fill="{BAR}"><title>{day:%d/%m}: {number(value)}</title></rect>'
        )
    if per_day:
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="11">{per_day[0][0]:%d/%m}</text>')
        parts.append(f'<text x="{width - 4}" y="{height - 6}" font-size="11" text-anchor="end">{per_day[-1][0]:%d/%m}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


FILTERS = {"number": number, "shown": shown}
