"""Charts drawn server-side as inline SVG: nothing to download, no JavaScript (the api-server may
have no internet, and the page must show the numbers as soon as it loads)."""

from __future__ import annotations

import html
import math
from typing import Any

GAIN, LOSS, LINE, GRID, TEXT = "#1a7f37", "#cf222e", "#0969da", "#d0d7de", "#57606a"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 × 10^k apart) covering [low, high], for the value axis."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step)) + 1)]


def pnl_chart(series: list[dict[str, Any]], width: int = 900, height: int = 300) -> str | None:
    """Per-bar P&L (green/red bars) and cumulative P&L (line) over the bars of the report's time
    series; one x position per bar, so nights and weekends take no space. None below two bars."""
    rows = [r for r in series if r.get("cumulative_pnl") is not None]
    if len(rows) < 2:
        return None
    cumulative = [float(r["cumulative_pnl"]) for r in rows]
    per_bar = [float(r.get("pnl") or 0.0) for r in rows]
    ticks = nice_ticks(min(0.0, *cumulative, *per_bar), max(0.0, *cumulative, *per_bar))
    low, high = ticks[0], ticks[-1]
    left, right, top, bottom = 64, 12, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(rows)

    def x(i: int) -> float:
        return left + (i + 0.5) * slot

    def y(value: float) -> float:
        return top + (high - value) * plot_h / ((high - low) or 1.0)

    parts = []
    for tick in ticks:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}" stroke-width="{1.5 if tick == 0 else 0.5}"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:,.0f}</text>'
        )
    days = [str(r["timestamp"])[:10] for r in rows]
    day_starts = [i for i, day in enumerate(days) if i == 0 or day != days[i - 1]]
    label_every = max(1, math.ceil(len(day_starts) / 10))
    for n, i in enumerate(day_starts):
        x0 = left + i * slot
        parts.append(
            f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{height - bottom}" '
            f'stroke="{GRID}" stroke-width="0.5"/>'
        )
        if n % label_every == 0:
            parts.append(
                f'<text x="{x0 + 2:.1f}" y="{height - bottom + 14}">{html.escape(days[i][5:])}</text>'
            )
    bar_w = max(slot * 0.7, 0.5)
    for i, (row, value) in enumerate(zip(rows, per_bar, strict=True)):
        y0, y1 = sorted((y(0.0), y(value)))
        tip = html.escape(f"{row['timestamp']}: P&L {value:,.2f}, cumulative {cumulative[i]:,.2f} USD")
        parts.append(
            f'<rect class="bar" x="{x(i) - bar_w / 2:.1f}" y="{y0:.1f}" width="{bar_w:.1f}" '
            f'height="{max(y1 - y0, 0.5):.1f}" fill="{GAIN if value >= 0 else LOSS}" opacity="0.55">'
            f"<title>{tip}</title></rect>"
        )
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(cumulative))
    parts.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="2" points="{points}"/>')
    legend = (
        f'<text x="{left}" y="{height - 6}">{html.escape(days[0])} to {html.escape(days[-1])} · '
        f'<tspan fill="{LINE}">━ cumulative P&amp;L</tspan> · <tspan fill="{GAIN}">▮</tspan>'
        f'<tspan fill="{LOSS}">▮</tspan> P&amp;L of the bar (USD)</text>'
    )
    return (
        f'<svg id="pnl-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Cumulative and per-bar P&amp;L" font-size="11" fill="{TEXT}">'
        f"{''.join(parts)}{legend}</svg>"
    )
