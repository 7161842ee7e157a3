"""Charts drawn server-side as inline SVG: nothing to download, no JavaScript (the api-server may
have no internet, and the page must show the numbers as soon as it loads). The SVG has a viewBox
and no fixed width, so it scales to the page; colours come from the page's CSS (light/dark)."""

from __future__ import annotations

import html
import math
from typing import Any


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


def _money(value: float) -> str:
    if abs(value) >= 10_000:
        text = f"{abs(value) / 1000:,.0f}k"
    else:
        text = f"{abs(value):,.0f}"
    return ("\u2212" if value < 0 else "") + text


def pnl_chart(series: list[dict[str, Any]], width: int = 960, height: int = 320) -> str | None:
    """Per-bar P&L (bars, green above / red below zero) and cumulative P&L (line) over the bars of
    the report's time series; one x position per bar, so nights and weekends take no space; a tick
    per bar, hour labels (exchange time) as space allows, a label per session. None below two bars."""
    rows = [r for r in series if r.get("cumulative_pnl") is not None]
    if len(rows) < 2:
        return None
    cumulative = [float(r["cumulative_pnl"]) for r in rows]
    per_bar = [float(r.get("pnl") or 0.0) for r in rows]
    ticks = nice_ticks(min(0.0, *cumulative, *per_bar), max(0.0, *cumulative, *per_bar))
    low, high = ticks[0], ticks[-1]
    left, right, top, bottom = 72, 12, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(rows)

    def x(i: int) -> float:
        return left + (i + 0.5) * slot

    def y(value: float) -> float:
        return top + (high - value) * plot_h / ((high - low) or 1.0)

    parts = [
        f'<text class="axis-title" transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" '
        'text-anchor="middle">P&amp;L (USD)</text>'
    ]
    for tick in ticks:
        parts.append(
            f'<line class="{"zero" if tick == 0 else "gl"}" x1="{left}" x2="{width - right}" '
            f'y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_money(tick)}</text>'
        )
    stamps = [str(r["timestamp"]) for r in rows]
    days = [s[:10] for s in stamps]
    day_starts = [i for i, day in enumerate(days) if i == 0 or day != days[i - 1]]
    # hour labels every `stride` bars, so that labels are >= 26 units apart
    stride = next((k for k in (1, 2, 3, 4, 7, 14, 28, 70) if k * slot >= 26), 140)
    axis_y = height - bottom
    for i, stamp in enumerate(stamps):
        length = 6 if i in day_starts else 3
        parts.append(
            f'<line class="tick" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{axis_y}" y2="{axis_y + length}"/>'
        )
        if (i - day_starts[_day_of(i, day_starts)]) % stride == 0 and stamp[11:13].isdigit():
            parts.append(
                f'<text x="{x(i):.1f}" y="{axis_y + 16}" text-anchor="middle">{int(stamp[11:13])}</text>'
            )
    label_every = max(1, math.ceil(len(day_starts) * 64 / plot_w))
    for n, i in enumerate(day_starts):
        x0 = left + i * slot
        parts.append(f'<line class="gl" x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{axis_y + 20}"/>')
        if n % label_every == 0:
            parts.append(f'<text x="{x0 + 2:.1f}" y="{axis_y + 31}">{html.escape(days[i][5:])}</text>')
    parts.append(
        f'<text class="axis-title" x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        "Bar start: hour (exchange time, ET) and session date (MM-DD)</text>"
    )
    bar_w = max(slot * 0.7, 0.5)
    for i, (stamp, value) in enumerate(zip(stamps, per_bar, strict=True)):
        y0, y1 = sorted((y(0.0), y(value)))
        tip = html.escape(f"{stamp}: P&L {value:+,.2f}, cumulative {cumulative[i]:+,.2f} USD")
        parts.append(
            f'<rect class="bar {"gain" if value >= 0 else "loss"}" x="{x(i) - bar_w / 2:.1f}" y="{y0:.1f}" '
            f'width="{bar_w:.1f}" height="{max(y1 - y0, 0.5):.1f}"><title>{tip}</title></rect>'
        )
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(cumulative))
    parts.append(f'<polyline class="cum" points="{points}"/>')
    return (
        f'<svg id="pnl-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Cumulative and per-bar P&amp;L, {html.escape(days[0])} to {html.escape(days[-1])}">'
        f"{''.join(parts)}</svg>"
        '<p class="muted"><span class="legend-line">━━</span> cumulative P&amp;L · '
        '<span class="legend-gain">▮</span><span class="legend-loss">▮</span> P&amp;L of the bar '
        "(green above zero, red below) · hover a bar for its numbers</p>"
    )


def _day_of(i: int, day_starts: list[int]) -> int:
    """Index in day_starts of the session containing bar i."""
    n = 0
    for k, start in enumerate(day_starts):
        if start <= i:
            n = k
    return n
