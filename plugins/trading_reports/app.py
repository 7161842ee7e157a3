"""The Trading reports pages, served by Airflow's api-server under /trading-reports/.

They render the reports the DAGs write (`output/reports/*.json` under TRADING_DATA_ROOT, local or
S3): there is no second store. Every page needs a signed-in Airflow user: the request's JWT (the
UI's `_token` cookie, or `Authorization: Bearer`) is checked by Airflow's own `get_user`; a browser
without one is sent to the login page, an API client gets 401.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

PREFIX = "/trading-reports"
PAGES = (
    ("", "Portfolio"),
    ("partitions", "Partitions"),
    ("validation", "Validation"),
    ("ingestion", "Ingestion"),
)
SIGNAL_COLOURS = {"BUY": "#1a7f37", "SELL": "#cf222e", "HOLD": "#8c959f"}
DEFINITIONS = {
    "total_pnl": "Sum over closed trades of position × next bar return × notional (10,000 USD a trade).",
    "win_rate": "Good trades / closed trades. A BUY is good when the next bar's return is > 0, a SELL when < 0.",
    "sharpe_ratio": "Mean / standard deviation of the per-bar portfolio returns × √1764 (252 sessions × 7 bars).",
    "average_beta": "Mean of the partitions' betas: OLS slope of bar returns on the S&P 500's, 70-bar window.",
}

app = FastAPI(title="Trading reports", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(HTTPException)
async def _sign_in_first(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login()
        separator = "&" if "?" in login else "?"
        return RedirectResponse(f"{login}{separator}next={quote(str(request.url), safe='')}", status_code=303)
    return Response(
        json.dumps({"detail": exc.detail}), status_code=exc.status_code, media_type="application/json"
    )


# -- data -------------------------------------------------------------------------------------------
def _storage():
    from trading_lib.settings import load_settings
    from trading_lib.storage import Storage

    settings = load_settings()
    if not settings.is_s3:
        return Storage(settings.data_root)
    from airflow.sdk import ObjectStoragePath

    return Storage(
        settings.data_root, fs=ObjectStoragePath(settings.data_root, conn_id=settings.aws_conn_id).fs
    )


def _report(name: str) -> dict[str, Any] | None:
    from trading_lib.layout import report_key
    from trading_lib.storage import MissingInputError

    try:
        return _storage().read_json(report_key(name))
    except MissingInputError:
        return None


def _partition_states(run_ids: list[str]) -> dict[str, tuple[str, int, str | None]]:
    """rendered map index ("AAPL 2024-...") -> (run_id, map_index, state) from Airflow's metadata DB."""
    if not run_ids:
        return {}
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TI.run_id, TI.map_index, TI.state, TI.rendered_map_index).where(
                TI.dag_id == "analyze_symbol", TI.task_id == "analyze_time_partition", TI.run_id.in_(run_ids)
            )
        ).all()
    return {
        label: (run_id, index, str(state) if state else None) for run_id, index, state, label in rows if label
    }


# -- rendering --------------------------------------------------------------------------------------
def _page(title: str, body: str, active: str) -> HTMLResponse:
    nav = " ".join(
        f'<a class="{"on" if path == active else ""}" href="{PREFIX}/{path}">{html.escape(name)}</a>'
        for path, name in PAGES
    )
    return HTMLResponse(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)} · Trading reports</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}} nav a{{margin-right:16px;color:#0969da}}
nav a.on{{font-weight:700;text-decoration:none;color:#1f2328}} table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #d0d7de;padding:4px 10px;text-align:right}} th{{background:#f6f8fa}} td.l,th.l{{text-align:left}}
.cards{{display:flex;gap:16px;flex-wrap:wrap}} .card{{border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;width:260px}}
.card .v{{font-size:28px;font-weight:700}} .card .d{{font-size:12px;color:#57606a}} .badge{{padding:2px 10px;border-radius:10px;color:#fff}}
.grid td{{padding:0;border:2px solid #fff}} .grid a{{display:block;width:34px;height:20px}} .muted{{color:#57606a}}
</style></head><body><nav>{nav}</nav><h1>{html.escape(title)}</h1>{body}</body></html>"""
    )


def _missing(what: str, how: str) -> str:
    return f'<p class="muted">No {html.escape(what)} yet. {html.escape(how)}</p>'


def _number(value: Any, fmt: str = "{:,.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], limit: int = 1000) -> str:
    head = "".join(f'<th class="{"l" if f == "s" else ""}">{html.escape(t)}</th>' for _, t, f in columns)
    body = []
    for row in rows[:limit]:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            text = html.escape(str(value if value is not None else "")) if fmt == "s" else _number(value, fmt)
            cells.append(f'<td class="{"l" if fmt == "s" else ""}">{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f'<p class="muted">{len(rows) - limit} more rows not shown.</p>' if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _pnl_chart(series: list[dict[str, Any]], width: int = 760, height: int = 240) -> str:
    """Cumulative P&L over time as an inline SVG line chart (no JavaScript, nothing downloaded)."""
    points = [
        (row["timestamp"], row["cumulative_pnl"]) for row in series if row.get("cumulative_pnl") is not None
    ]
    if len(points) < 2:
        return _missing("P&L series", "It needs at least two bars.")
    values = [v for _, v in points]
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    pad = 40

    def xy(i: int, v: float) -> tuple[float, float]:
        return pad + i * (width - 2 * pad) / (len(points) - 1), pad / 2 + (high - v) * (height - pad) / span

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, (_, v) in enumerate(points)))
    zero = xy(0, 0.0)[1]
    labels = f"""<text x="{pad}" y="{height - 4}" font-size="11">{html.escape(points[0][0][:16])}</text>
<text x="{width - pad}" y="{height - 4}" font-size="11" text-anchor="end">{html.escape(points[-1][0][:16])}</text>
<text x="4" y="{xy(0, high)[1] + 4:.1f}" font-size="11">{high:,.0f}</text>
<text x="4" y="{xy(0, low)[1] + 4:.1f}" font-size="11">{low:,.0f}</text>"""
    return f"""<svg id="pnl-chart" width="{width}" height="{height}" role="img" aria-label="Cumulative P&amp;L">
<line x1="{pad}" x2="{width - pad}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#d0d7de"/>
<polyline fill="none" stroke="#0969da" stroke-width="2" points="{line}"/>{labels}</svg>"""


# -- pages --------------------------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse)
def portfolio(user=Depends(get_user)) -> HTMLResponse:
    report = _report("portfolio")
    if report is None:
        return _page("Portfolio", _missing("portfolio report", "Run trading_orchestrator (make demo)."), "")
    s = report["summary"]
    cards = [
        ("total_pnl", "Total P&L (USD)", _number(s.get("total_pnl"))),
        ("win_rate", "Win rate", _number(s.get("win_rate"), "{:.1%}")),
        ("sharpe_ratio", "Sharpe ratio (annualised)", _number(s.get("sharpe_ratio"))),
        ("average_beta", "Average beta", _number(s.get("average_beta"), "{:.3f}")),
    ]
    card_html = "".join(
        f'<div class="card" id="{key}"><div>{html.escape(title)}</div><div class="v">{value}</div>'
        f'<div class="d">{html.escape(DEFINITIONS[key])}</div></div>'
        for key, title, value in cards
    )
    scope = report.get("scope", {})
    facts = (
        f"<p>{s['partitions']} of {s['expected_partitions']} partitions, {s['missing_partitions']} missing · "
        f"{s['trades']} trades ({s['closed_trades']} closed, {s['good_trades']} good) · window "
        f"{html.escape(str(scope.get('window_start')))} to {html.escape(str(scope.get('window_end')))}</p>"
    )
    contracts = _table(
        report["contracts"],
        [
            ("contract", "Contract", "s"),
            ("partitions", "Partitions", "{:,}"),
            ("trades", "Trades", "{:,}"),
            ("good_trades", "Good", "{:,}"),
            ("win_rate", "Win rate", "{:.1%}"),
            ("total_pnl", "P&L (USD)", "{:,.2f}"),
            ("average_beta", "Avg beta", "{:.3f}"),
            ("buys", "BUY", "{:,}"),
            ("sells", "SELL", "{:,}"),
        ],
    )
    timeseries = _table(
        report["timeseries"],
        [
            ("timestamp", "Bar", "s"),
            ("partitions", "Partitions", "{:,}"),
            ("trades", "Trades", "{:,}"),
            ("pnl", "P&L (USD)", "{:,.2f}"),
            ("cumulative_pnl", "Cumulative", "{:,.2f}"),
            ("portfolio_return", "Portfolio return", "{:.4%}"),
        ],
    )
    missing = report.get("missing_partitions") or []
    missing_html = (
        "<h2>Missing partitions</h2>"
        + _table(missing, [("contract", "Contract", "s"), ("timestamp", "Bar", "s")])
        if missing
        else ""
    )
    body = (
        f'<div class="cards">{card_html}</div>{facts}<h2>Cumulative P&amp;L</h2>{_pnl_chart(report["timeseries"])}'
        f"<h2>Contracts</h2>{contracts}{missing_html}<h2>Time series</h2>{timeseries}"
    )
    return _page("Portfolio", body, "")


@app.get("/partitions", response_class=HTMLResponse)
def partitions(user=Depends(get_user)) -> HTMLResponse:
    report, last_run = _report("portfolio"), _report("pipeline/last_run")
    if report is None:
        return _page(
            "Partitions", _missing("partitions", "Run trading_orchestrator (make demo)."), "partitions"
        )
    states = _partition_states((last_run or {}).get("analyze_symbol_run_ids", []))
    cells: dict[tuple[str, str], dict[str, Any]] = {
        (p["contract"], p["timestamp"]): p for p in report["partitions"]
    }
    for missing in report.get("missing_partitions") or []:
        cells.setdefault((missing["contract"], missing["timestamp"]), {"signal": None})
    contracts = sorted({c for c, _ in cells})
    timestamps = sorted({t for _, t in cells})
    rows = []
    for contract in contracts:
        tds = []
        for ts in timestamps:
            cell = cells.get((contract, ts))
            label = f"{contract} {ts}"
            run_id, index, state = states.get(label, (None, None, None))
            signal = (cell or {}).get("signal")
            colour = SIGNAL_COLOURS.get(signal, "#ffffff")
            outline = "" if state in (None, "success") else "outline:3px solid #bf8700;"
            title = html.escape(f"{label}: {signal or 'missing'}, task {state or 'unknown'}")
            href = (
                f"/dags/analyze_symbol/runs/{quote(run_id, safe='')}/tasks/analyze_time_partition/mapped/{index}"
                if run_id is not None
                else "#"
            )
            tds.append(
                f'<td><a data-signal="{signal or "missing"}" data-state="{state or ""}" title="{title}" '
                f'href="{href}" target="_top" style="background:{colour};{outline}"></a></td>'
            )
        rows.append(f'<tr><th class="l">{html.escape(contract)}</th>{"".join(tds)}</tr>')
    legend = " ".join(
        f'<span class="badge" style="background:{colour}">{name}</span>'
        for name, colour in SIGNAL_COLOURS.items()
    )
    body = (
        f"<p>One cell per partition (contract × bar), coloured by signal; an outlined cell's task is not "
        f"successful. Click a cell to open its mapped task instance, where <b>Clear</b> reprocesses it. "
        f"{legend}</p><table class='grid'>{''.join(rows)}</table>"
        f'<p class="muted">Bars from {html.escape(timestamps[0] if timestamps else "")} to '
        f"{html.escape(timestamps[-1] if timestamps else '')}.</p>"
    )
    return _page("Partitions", body, "partitions")


@app.get("/validation", response_class=HTMLResponse)
def validation(user=Depends(get_user)) -> HTMLResponse:
    report = _report("validation")
    if report is None:
        return _page(
            "Validation",
            _missing("validation report", "Run validate_data or the orchestrator."),
            "validation",
        )
    colour = {"PASS": "#1a7f37", "WARN": "#bf8700", "FAIL": "#cf222e"}[report["status"]]
    checks = [{"check": name, **c} for name, c in report["checks"].items()]
    body = (
        f'<p><span class="badge" id="status" style="background:{colour}">{report["status"]}</span> '
        f"{html.escape(report['summary'])}</p><p class='muted'>{html.escape(report.get('status_rule', ''))}</p>"
        + _table(
            checks,
            [
                ("check", "Check", "s"),
                ("severity", "Worst", "s"),
                ("issues", "Issues", "{:,}"),
                ("description", "Rule", "s"),
            ],
        )
        + "<h2>Issues</h2>"
        + _table(
            report["issues"],
            [
                ("check", "Check", "s"),
                ("severity", "Severity", "s"),
                ("contract", "Contract", "s"),
                ("timestamp", "Bar", "s"),
                ("detail", "Detail", "s"),
            ],
        )
    )
    return _page("Validation", body, "validation")


@app.get("/ingestion", response_class=HTMLResponse)
def ingestion(user=Depends(get_user)) -> HTMLResponse:
    report = _report("ingestion")
    if report is None:
        how = "The pipeline used input already in storage (run with run_ingestion=true to fetch from Yahoo)."
        return _page("Ingestion", _missing("ingestion report", how), "ingestion")
    body = (
        f"<p>Status <b>{html.escape(report['status'])}</b> · window {html.escape(report['start'])} to "
        f"{html.escape(report['end'])} (fetched from {html.escape(report['fetch_start'])} for warm-up)</p>"
        + _table(
            report["tickers"],
            [
                ("symbol", "Ticker", "s"),
                ("status", "Status", "s"),
                ("rows", "Bars", "{:,}"),
                ("first_bar", "First bar", "s"),
                ("last_bar", "Last bar", "s"),
                ("attempts", "Attempts", "{:,}"),
                ("error", "Failure", "s"),
            ],
        )
    )
    return _page("Ingestion", body, "ingestion")
