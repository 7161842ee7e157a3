"""HTML of the pages: one shell, tables, cards, the run banner and the partition matrix. Plain
server-side HTML with every value escaped, plus the small inline script of page.js (theme, links
into the Airflow UI, sortable tables, matrix controls). Links are built from the mount point the
api-server gives the app, so they stay right behind a base URL (e.g. https://host/airflow/)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from trading_airflow.runtime import ANALYZE_DAG, PARTITION_TASK
from trading_airflow.ui.reports import TaskCell

_HERE = Path(__file__).resolve().parent
STYLE = (_HERE / "page.css").read_text()
SCRIPT = (_HERE / "page.js").read_text()

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), and a glyph
# for each value so the matrix reads without colour: (fill, glyph colour, glyph, label).
SIGNALS = {
    "BUY": ("#009E73", "#ffffff", "▲", "BUY"),
    "SELL": ("#D55E00", "#ffffff", "▼", "SELL"),
    "HOLD": ("#8c8c8c", "#ffffff", "•", "HOLD"),
    None: ("#8c8c8c", "#ffffff", "?", "result missing"),
}
STATES = {
    "success": ("#009E73", "#ffffff", "✓", "success"),
    "failed": ("#D55E00", "#ffffff", "✗", "failed"),
    "upstream_failed": ("#CC79A7", "#ffffff", "!", "upstream failed"),
    "up_for_retry": ("#E69F00", "#000000", "↻", "up for retry"),
    "running": ("#0072B2", "#ffffff", "▶", "running"),
    "queued": ("#56B4E9", "#000000", "…", "queued / scheduled"),
    "skipped": ("#bdbdbd", "#000000", "–", "skipped / removed"),
    None: ("transparent", "#8c8c8c", "·", "not run / no instance"),
}
STATE_ALIASES = {"scheduled": "queued", "deferred": "queued", "restarting": "running", "removed": "skipped"}
BADGE_CLASSES = {
    "PASS": "b-ok",
    "ok": "b-ok",
    "success": "b-ok",
    "WARN": "b-warn",
    "partial": "b-warn",
    "up_for_retry": "b-warn",
    "FAIL": "b-bad",
    "failed": "b-bad",
    "upstream_failed": "b-bad",
    "running": "b-run",
    "queued": "b-run",
    "late": "b-warn",
    "on time": "b-ok",
}
MINUS = "\u2212"


class Links:
    """URLs of this app's pages and of the Airflow UI, below the api-server's mount point."""

    def __init__(self, app_root: str, prefix: str):
        self.app_root = app_root.rstrip("/")
        self.airflow_root = self.app_root.removesuffix(prefix)

    def page(self, path: str) -> str:
        return f"{self.app_root}/{path}"

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow_root}/dags/{quote(dag_id, safe='')}"

    def dag_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.dag(dag_id)}/runs/{quote(run_id, safe='')}"

    def mapped_instance(self, cell: TaskCell) -> str:
        return f"{self.dag_run(ANALYZE_DAG, cell.run_id)}/tasks/{PARTITION_TASK}/mapped/{cell.map_index}"


@dataclass(frozen=True)
class Banner:
    """A newer orchestrator run than the one(s) shown that failed or has not finished."""

    run_id: str
    state: str
    href: str
    shown: bool = False  # the run is the one the page shows (then: still running)


def page(
    title: str,
    body: str,
    active: str,
    links: Links,
    pages: Sequence[tuple[str, str]],
    scope: str = "",
    banner: Banner | None = None,
) -> str:
    nav = "".join(
        f'<a class="{"on" if path == active else ""}" href="{html.escape(links.page(path))}">'
        f"{html.escape(name)}</a>"
        for path, name in pages
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · Trading reports</title><style>{STYLE}</style>"
        f"<script>{SCRIPT}</script></head>"
        f'<body data-airflow-root="{html.escape(links.airflow_root)}"><nav>{nav}</nav>'
        f"<h1>{html.escape(title)}</h1>{scope}{banner_html(banner)}{body}</body></html>"
    )


def banner_html(banner: Banner | None) -> str:
    if banner is None:
        return ""
    run = link(banner.href, banner.run_id, airflow=True)
    if banner.shown:
        text = f"trading_orchestrator run {run} is {html.escape(banner.state)}: this report may still change."
    elif banner.state == "failed":
        text = f"A newer trading_orchestrator run {run} failed: this page shows the results before it."
    else:
        text = (
            f"A newer trading_orchestrator run {run} is {html.escape(banner.state)}: "
            "this page does not include it yet."
        )
    css = "banner failed" if banner.state == "failed" else "banner"
    return f'<div class="{css}" id="run-banner" role="status">{text}</div>'


def scope_line(parts: list[tuple[str, str]]) -> str:
    """The "what this page shows" line: (label, value markup) pairs; values are markup."""
    text = " · ".join(f"{html.escape(label)} <b>{value}</b>" for label, value in parts if value)
    return f'<p class="scope" id="scope">{text}</p>'


def missing(what: str, how: str) -> str:
    return f'<p class="muted" id="missing-report">No {html.escape(what)} yet. {html.escape(how)}</p>'


def number(value: Any, fmt: str = "{:,.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def signed(value: Any, fmt: str = "{:,.2f}") -> str:
    """A number with its sign shown (+ / −) and coloured (pos / neg): readable without colour."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = fmt.format(abs(value))
    if value > 0 and text.strip("0.,%") != "":
        return f'<span class="pos">+{text}</span>'
    if value < 0 and text.strip("0.,%") != "":
        return f'<span class="neg">{MINUS}{text}</span>'
    return text


def badge(status: str | None, element_id: str = "") -> str:
    text = status or "unknown"
    ident = f' id="{element_id}"' if element_id else ""
    return f'<span class="badge {BADGE_CLASSES.get(text, "b-other")}"{ident}>{html.escape(text)}</span>'


def link(href: str | None, text: str, airflow: bool = False) -> str:
    """A link; ``airflow``: a page of the Airflow UI, opened in the UI around the frame (page.js)."""
    if not href:
        return html.escape(text)
    extra = ' data-airflow="1" target="_top"' if airflow else ""
    return f'<a href="{html.escape(href)}"{extra}>{html.escape(text)}</a>'


def time_text(value: Any) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM UTC' (or the text as given when not parseable)."""
    from datetime import UTC

    from trading_airflow.ui.reports import parse_time

    parsed = parse_time(value)
    if parsed is None:
        return html.escape(str(value)) if value else ""
    return html.escape(parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def table(
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str, str]],
    table_id: str = "",
    limit: int = 2000,
) -> str:
    """A sortable table in its own horizontal scroll. Columns are (key, title, format); format "s"
    is text, "w" text that may wrap, "html" markup built by the caller, "±…" a signed number
    (e.g. "±{:,.2f}"), anything else a number format."""
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(
        f'<th scope="col" class="{"" if _numeric(f) else "l"}">{html.escape(t)}</th>' for _, t, f in columns
    )
    body = []
    for row in rows[:limit]:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            sort = ""
            if fmt == "html":
                text = value or ""
                sort = row.get(f"{key}__sort")
                sort = "" if sort is None else f' data-v="{html.escape(str(sort))}"'
            elif fmt in ("s", "w"):
                text = html.escape("" if value is None else str(value))
            else:
                text = signed(value, fmt[1:]) if fmt.startswith("±") else number(value, fmt)
                sort = f' data-v="{value}"' if isinstance(value, int | float) else ""
            css = ("" if _numeric(fmt) else "l") + (" w" if fmt == "w" else "")
            cells.append(f'<td class="{css.strip()}"{sort}>{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f'<p class="muted">{len(rows) - limit:,} more rows not shown.</p>' if len(rows) > limit else ""
    return (
        f'<div class="scroll"><table{ident} class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


def _numeric(fmt: str) -> bool:
    return fmt not in ("s", "w", "html")


def _state_key(state: str | None) -> str | None:
    if state is None:
        return None
    state = STATE_ALIASES.get(state, state)
    return state if state in STATES else "queued"


# -- partition matrix -------------------------------------------------------------------------------
def partition_grid(
    partitions: list[dict[str, Any]],
    missing_partitions: list[dict[str, Any]],
    cells: dict[tuple[str, str], TaskCell],
    links: Links,
    can_clear: bool = False,
) -> str:
    """Contracts × bars, with its toolbar and legends. Each cell shows the partition's signal or its
    task instance's state (toggle), as a colour and a glyph; a cell links to its mapped instance."""
    by_key = {(p["contract"], p["timestamp"]): p for p in partitions}
    for gap in missing_partitions:
        by_key.setdefault((gap["contract"], gap["timestamp"]), {})
    contracts = sorted({c for c, _ in by_key})
    timestamps = sorted({t for _, t in by_key})
    if not timestamps:
        return '<p class="muted">The report has no partitions.</p>'
    days: list[tuple[str, int]] = []
    for ts in timestamps:
        if days and days[-1][0] == ts[:10]:
            days[-1] = (days[-1][0], days[-1][1] + 1)
        else:
            days.append((ts[:10], 1))
    day_row = "".join(
        f'<th class="day" colspan="{span}" title="{day}">{day[5:] if span >= 2 else ""}</th>'
        for day, span in days
    )
    hour_row = "".join(
        f'<th class="hr" scope="col" data-col="{i}" title="{html.escape(ts)}">{int(ts[11:13])}</th>'
        for i, ts in enumerate(timestamps)
    )
    rows = []
    for contract in contracts:
        tds = "".join(
            _grid_cell(contract, ts, i, by_key.get((contract, ts)), cells.get((contract, ts)), links)
            for i, ts in enumerate(timestamps)
        )
        rows.append(
            f'<tr data-contract="{html.escape(contract)}"><th class="row" scope="row" '
            f'title="Select the row (in selection mode)">{html.escape(contract)}</th>{tds}</tr>'
        )
    states_present = sorted({_state_key(c.state) or "none" for c in cells.values()})
    state_options = "".join(
        f'<option value="{s}">{html.escape(STATES[None if s == "none" else s][3])}</option>'
        for s in states_present
    )
    contract_options = "".join(
        f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in contracts
    )
    toolbar = (
        '<div class="toolbar">'
        '<label>Colour by <select id="colour"><option value="signal">signal</option>'
        '<option value="state">task state</option></select></label>'
        '<label>State <select id="state-filter"><option value="all">all</option>'
        f'<option value="not-success">not success</option>{state_options}</select></label>'
        f'<label>Contract <select id="contract-filter"><option value="all">all</option>{contract_options}'
        "</select></label></div>"
        '<div class="toolbar"><label><input type="checkbox" id="select-mode"> Select cells '
        "(click a cell, a contract or an hour) instead of opening them</label>"
        '<button type="button" id="select-failed">Select all failed</button>'
        '<button type="button" id="select-none">Select none</button>'
        '<span id="selected-count">0 selected</span>'
        '<button type="button" class="primary" id="clear-selected" disabled'
        + (
            ' title="Clear the selected task instances: Airflow runs them again">'
            if can_clear
            else ' title="Your Airflow role may not clear analyze_symbol task instances">'
        )
        + "Clear selected</button></div>"
        + ("" if can_clear else '<p class="muted">Your Airflow role may not clear task instances.</p>')
        + '<div class="banner" id="clear-confirm" hidden><span id="clear-confirm-text"></span> '
        '<button type="button" class="primary" id="clear-confirm-yes">Clear</button> '
        '<button type="button" id="clear-confirm-no">Cancel</button></div>'
        '<p id="clear-status" role="status"></p>'
    )
    grid = (
        f'<div class="scroll"><table class="grid" id="grid" data-mode="signal" data-dag="{ANALYZE_DAG}" '
        f'data-task="{PARTITION_TASK}" data-can-clear="{"true" if can_clear else "false"}">'
        f'<thead><tr><th></th>{day_row}</tr><tr><th class="row muted">hour (ET)</th>{hour_row}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return toolbar + grid_legend() + grid


def _grid_cell(
    contract: str,
    ts: str,
    column: int,
    partition: dict[str, Any] | None,
    cell: TaskCell | None,
    links: Links,
) -> str:
    if partition is None:  # a bar this contract does not have (not expected, not a result)
        return "<td></td>"
    signal = partition.get("signal")
    state = cell.state if cell else None
    s_fill, s_ink, s_glyph, s_label = SIGNALS.get(signal, SIGNALS[None])
    t_fill, t_ink, t_glyph, t_label = STATES[_state_key(state)]
    beta = partition.get("beta")
    where = (
        f"task {state or 'not run'}, try {cell.try_number or 0}, map index {cell.map_index}"
        if cell
        else "no task instance found in the stored runs"
    )
    title = html.escape(
        f"{contract} {ts}: {s_label}"
        + (f", beta {beta:.3f}" if isinstance(beta, int | float) else "")
        + f" ({where})"
    )
    css = "c" + ("" if signal else " missing")
    attrs = (
        f'class="{css}" data-contract="{html.escape(contract)}" data-timestamp="{html.escape(ts)}" '
        f'data-signal="{html.escape(signal or "missing")}" data-state="{html.escape(state or "")}" '
        f'data-col="{column}" data-g1="{s_glyph}" data-g2="{t_glyph}" title="{title}" '
        f'aria-label="{title}" style="--s:{s_fill};--sc:{s_ink};--t:{t_fill};--tc:{t_ink}"'
    )
    if cell is None:
        return f"<td><span {attrs}></span></td>"
    return (
        f'<td><a {attrs} data-run="{html.escape(cell.run_id)}" data-map-index="{cell.map_index}" '
        f'data-airflow="1" target="_top" href="{html.escape(links.mapped_instance(cell))}"></a></td>'
    )


def grid_legend() -> str:
    def item(fill: str, ink: str, glyph: str, label: str) -> str:
        return (
            f'<span><span class="c" style="background:{fill};color:{ink};'
            f'{"border:1px solid var(--border);" if fill == "transparent" else ""}">{glyph}</span>'
            f"{html.escape(label)}</span>"
        )

    signals = "".join(item(*v) for v in SIGNALS.values())
    states = "".join(item(*v) for v in STATES.values())
    return (
        f'<div class="legend shown" data-for="signal"><b>Signal</b>{signals}</div>'
        f'<div class="legend" data-for="state"><b>Task state</b>{states}</div>'
    )
