"""Server-side SVG charts: no JavaScript library, no CDN, readable without scripts.

A chart is an inline ``<svg>`` with a ``viewBox``, so it scales to its card's width; every
point carries a ``<title>`` so hovering shows its exact value. Text is escaped with
``format_html`` like everything else on the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#2f5bea", "#12a37f", "#f59f0b", "#d9485f", "#7c5cd6", "#0ea5c6"]
WIDTH, HEIGHT = 760, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 14, 30
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    kind: str = "line"  # "line" or "bar"
    color: str = ""


def nice_ceiling(value: float) -> float:
    """The axis maximum: ``value`` rounded up to 1, 2, 2.5 or 5 times a power of ten, so tick
    labels are round numbers."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _n(value: float) -> str:
    """SVG coordinates with one decimal: format_html escapes its arguments into strings, so
    numbers are formatted before they reach it."""
    return f"{value:.1f}"


def _x_positions(count: int) -> tuple[list[float], float]:
    """Centre x of each slot, and the slot width (bars fill part of a slot)."""
    inner = WIDTH - PAD_LEFT - PAD_RIGHT
    slot = inner / max(count, 1)
    return [PAD_LEFT + slot * (i + 0.5) for i in range(count)], slot


def _y(value: float, top: float) -> float:
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM
    return PAD_TOP + inner * (1 - value / top)


def _grid(top: float, fmt: Callable[[float], str]) -> SafeString:
    rows = []
    for i in range(5):
        value = top * i / 4
        y = _y(value, top)
        rows.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
                PAD_LEFT,
                WIDTH - PAD_RIGHT,
                _n(y),
                _n(y),
                PAD_LEFT - 8,
                _n(y + 4),
                fmt(value),
            )
        )
    return mark_safe("".join(rows))


def _x_labels(labels: Sequence[str], xs: list[float]) -> SafeString:
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    return format_html_join(
        "",
        '<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text>',
        ((_n(xs[i]), HEIGHT - 8, label) for i, label in enumerate(labels) if i % every == 0),
    )


def _bars(series: Series, color: str, xs, slot, offset, width, top, fmt, labels) -> SafeString:
    return format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" rx="2">'
        "<title>{}: {} {}</title></rect>",
        (
            (
                _n(x - slot / 2 + offset),
                _n(_y(v, top)),
                _n(width),
                _n(_y(0, top) - _y(v, top)),
                color,
                labels[i],
                fmt(v),
                series.name,
            )
            for i, (x, v) in enumerate(zip(xs, series.values, strict=True))
            if v
        ),
    )


def _line(series: Series, color: str, xs, top, fmt, labels) -> SafeString:
    values = enumerate(zip(xs, series.values, strict=True))
    points = [(x, _y(v, top), v, i) for i, (x, v) in values if v is not None]
    path = " ".join(f"{_n(x)},{_n(y)}" for x, y, _, _ in points)
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {} {}</title></circle>',
        ((_n(x), _n(y), color, labels[i], fmt(v), series.name) for x, y, v, i in points),
    )
    return format_html(
        '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" '
        'stroke-linejoin="round"/>{}',
        path,
        color,
        dots,
    )


def chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    title: str = "",
    top: float | None = None,
) -> SafeString:
    """An SVG chart of ``series`` (bars side by side, lines on top) over ``labels``."""
    if not labels:
        return mark_safe('<p class="empty-chart muted">No data in this period.</p>')
    peak = max((v for s in series for v in s.values if v is not None), default=0)
    top = top or nice_ceiling(float(peak))
    xs, slot = _x_positions(len(labels))
    bars = [s for s in series if s.kind == "bar"]
    width = slot * 0.7 / max(len(bars), 1)
    parts = [_grid(top, fmt), _x_labels(labels, xs)]
    for index, s in enumerate(series):
        color = s.color or PALETTE[index % len(PALETTE)]
        if s.kind == "bar":
            offset = slot * 0.15 + width * bars.index(s)
            parts.append(_bars(s, color, xs, slot, offset, width, top, fmt, labels))
        else:
            parts.append(_line(s, color, xs, top, fmt, labels))
    legend = format_html_join(
        "",
        '<span class="legend-item"><i style="background:{}"></i>{}</span>',
        ((s.color or PALETTE[i % len(PALETTE)], s.name) for i, s in enumerate(series)),
    )
    return format_html(
        '<figure class="chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet">{}</svg><figcaption class="legend">{}</figcaption>'
        "</figure>",
        WIDTH,
        HEIGHT,
        title,
        mark_safe("".join(parts)),
        legend,
    )


def percent(value: float) -> str:
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"
