"""HTML of the pages: one shell, tables, cards and the partition grid. Plain server-side HTML with
every value escaped; links are built from the mount point the api-server gives the app, so they
stay right behind a base URL (e.g. https://host/airflow/)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from trading_reports.reports import ANALYZE_DAG, PARTITION_TASK, TaskCell

SIGNAL_COLOURS = {"BUY": "#1a7f37", "SELL": "#cf222e", "HOLD": "#8c959f"}
# Outline of a cell whose task instance did not succeed (success has none).
STATE_COLOURS = {
    "failed": "#000000",
    "upstream_failed": "#bf8700",
    "running": "#0969da",
    "queued": "#8250df",
    "scheduled": "#8250df",
    "up_for_retry": "#fb8500",
}
OTHER_STATE_COLOUR = "#bf8700"
STATUS_COLOURS = {
    "PASS": "#1a7f37",
    "WARN": "#bf8700",
    "FAIL": "#cf222e",
    "ok": "#1a7f37",
    "partial": "#bf8700",
    "failed": "#cf222e",
    "success": "#1a7f37",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}
nav a{margin-right:16px;color:#0969da} nav a.on{font-weight:700;text-decoration:none;color:#1f2328}
table{border-collapse:collapse;margin:12px 0}
td,th{border:1px solid #d0d7de;padding:4px 10px;text-align:right}
th{background:#f6f8fa} td{white-space:nowrap} td.w{white-space:normal}
td.l,th.l{text-align:left} .muted{color:#57606a}
.cards{display:flex;gap:16px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;width:260px}
.card .v{font-size:28px;font-weight:700} .card .d{font-size:12px;color:#57606a}
.badge{padding:2px 10px;border-radius:10px;color:#fff;white-space:nowrap}
.grid td,.grid th{padding:0;border:1px solid #fff}
.grid th.day{font-size:11px;font-weight:400;text-align:left}
.grid th.l{padding:0 8px} .grid a,.grid span{display:block;height:20px;box-sizing:border-box}
.missing{background:repeating-linear-gradient(45deg,#fff 0 3px,#d0d7de 3px 5px)}
"""


class Links:
    """URLs of this app's pages and of the Airflow UI, below the api-server's mount point."""

    def __init__(self, app_root: str, prefix: str):
        self.app_root = app_root.rstrip("/")
        self.airflow_root = self.app_root.removesuffix(prefix)

    def page(self, path: str) -> str:
        return f"{self.app_root}/{path}"

    def dag_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def mapped_instance(self, cell: TaskCell) -> str:
        return f"{self.dag_run(ANALYZE_DAG, cell.run_id)}/tasks/{PARTITION_TASK}/mapped/{cell.map_index}"


def page(title: str, body: str, active: str, links: Links, pages: Sequence[tuple[str, str]]) -> str:
    nav = " ".join(
        f'<a class="{"on" if path == active else ""}" href="{links.page(path)}">{html.escape(name)}</a>'
        for path, name in pages
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · '
        f"Trading reports</title><style>{STYLE}</style></head><body><nav>{nav}</nav>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def missing(what: str, how: str) -> str:
    return f'<p class="muted" id="missing-report">No {html.escape(what)} yet. {html.escape(how)}</p>'


def number(value: Any, fmt: str = "{:,.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def badge(status: str | None, element_id: str = "") -> str:
    text = status or "unknown"
    colour = STATUS_COLOURS.get(text, OTHER_STATE_COLOUR)
    ident = f' id="{element_id}"' if element_id else ""
    return f'<span class="badge"{ident} style="background:{colour}">{html.escape(text)}</span>'


def link(href: str | None, text: str) -> str:
    return (
        f'<a href="{html.escape(href)}" target="_top">{html.escape(text)}</a>' if href else html.escape(text)
    )


def table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], table_id: str = "", limit: int = 2000
) -> str:
    """Columns are (key, title, format); format "s" is text, "w" text that may wrap, "html" markup
    built by the caller, anything else a number format."""
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f'<th class="{"" if _numeric(f) else "l"}">{html.escape(t)}</th>' for _, t, f in columns)
    body = []
    for row in rows[:limit]:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if fmt == "html":
                text = value or ""
            elif fmt in ("s", "w"):
                text = html.escape("" if value is None else str(value))
            else:
                text = number(value, fmt)
            cells.append(
                f'<td class="{"" if _numeric(fmt) else "l"}{" w" if fmt == "w" else ""}">{text}</td>'
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f'<p class="muted">{len(rows) - limit:,} more rows not shown.</p>' if len(rows) > limit else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _numeric(fmt: str) -> bool:
    return fmt not in ("s", "w", "html")


def partition_grid(
    partitions: list[dict[str, Any]],
    missing_partitions: list[dict[str, Any]],
    cells: dict[tuple[str, str], TaskCell],
    links: Links,
) -> str:
    """Contracts × bars. Fill: the partition's signal (hatched when its result is missing);
    outline: its task instance's state when not success; a cell links to its mapped instance."""
    by_key = {(p["contract"], p["timestamp"]): p for p in partitions}
    for gap in missing_partitions:
        by_key.setdefault((gap["contract"], gap["timestamp"]), {})
    contracts = sorted({c for c, _ in by_key})
    timestamps = sorted({t for _, t in by_key})
    if not timestamps:
        return '<p class="muted">The report has no partitions.</p>'
    cell_width = max(4, min(32, 1100 // len(timestamps)))
    days: list[tuple[str, int]] = []
    for ts in timestamps:
        if days and days[-1][0] == ts[:10]:
            days[-1] = (days[-1][0], days[-1][1] + 1)
        else:
            days.append((ts[:10], 1))
    header = "".join(
        f'<th class="day" colspan="{span}" title="{day}">{day[5:] if span * cell_width >= 40 else ""}</th>'
        for day, span in days
    )
    rows = []
    for contract in contracts:
        tds = []
        for ts in timestamps:
            partition = by_key.get((contract, ts))
            cell = cells.get((contract, ts))
            tds.append(_grid_cell(contract, ts, partition, cell, links, cell_width))
        rows.append(f'<tr><th class="l">{html.escape(contract)}</th>{"".join(tds)}</tr>')
    return (
        f'<table class="grid"><thead><tr><th></th>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _grid_cell(
    contract: str,
    ts: str,
    partition: dict[str, Any] | None,
    cell: TaskCell | None,
    links: Links,
    width: int,
) -> str:
    if partition is None:  # a bar this contract does not have (not expected, not a result)
        return "<td></td>"
    signal = partition.get("signal")
    state = cell.state if cell else None
    style = f"width:{width}px;"
    if signal:
        style += f"background:{SIGNAL_COLOURS.get(signal, '#ffffff')};"
    if cell and state != "success":
        style += (
            f"outline:3px solid {STATE_COLOURS.get(state or '', OTHER_STATE_COLOUR)};outline-offset:-3px;"
        )
    beta = partition.get("beta")
    where = (
        f"task {state or 'not run'}, map index {cell.map_index}"
        if cell
        else "no task instance in the last run"
    )
    title = html.escape(
        f"{contract} {ts}: {signal or 'result missing'}"
        + (f", beta {beta:.3f}" if beta is not None else "")
        + f" ({where})"
    )
    css_class = "" if signal else ' class="missing"'
    attrs = (
        f'data-contract="{html.escape(contract)}" data-timestamp="{html.escape(ts)}" '
        f'data-signal="{signal or "missing"}" data-state="{state or ""}" title="{title}" '
        f'style="{style}"{css_class}'
    )
    if cell is None:
        return f"<td><span {attrs}></span></td>"
    return f'<td><a {attrs} href="{html.escape(links.mapped_instance(cell))}" target="_top"></a></td>'


def grid_legend() -> str:
    signals = " ".join(
        f'<span class="badge" style="background:{colour}">{name}</span>'
        for name, colour in SIGNAL_COLOURS.items()
    )
    states = " ".join(
        f'<span class="badge" style="background:#fff;color:#1f2328;outline:3px solid {colour};'
        f'outline-offset:-3px">{name}</span>'
        for name, colour in STATE_COLOURS.items()
    )
    return (
        f"<p>Fill: signal {signals} "
        '<span class="badge missing" style="color:#1f2328">result missing</span></p>'
        f"<p>Outline: task instance not successful {states}</p>"
    )
