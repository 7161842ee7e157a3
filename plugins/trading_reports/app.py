"""The Trading reports pages, served by Airflow's api-server under /trading-reports/.

They render the reports the DAGs write (`output/reports/*.json` under TRADING_DATA_ROOT, local or
S3): there is no second store. Airflow does not authenticate plugin apps, so this one does:
- authentication for every route (an app-level dependency, so a new route cannot forget it):
  Airflow's own `get_user` validates the JWT of the UI's `_token` cookie or `Authorization: Bearer`;
- authorization per page: read access to the DAG whose output the page shows (Airflow's
  `requires_access_dag`, answered by the configured auth manager).
A browser without a valid session is sent to Airflow's login page and back; an API client gets 401.
"""

from __future__ import annotations

import html
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from trading_reports import rendering as r
from trading_reports.charts import pnl_chart
from trading_reports.reports import (
    ANALYZE_DAG,
    ORCHESTRATOR_DAG,
    partition_cells,
    read_report,
    run_states,
    storage,
    symbol_reports,
)

PREFIX = "/trading-reports"
PAGES = (
    ("", "Portfolio"),
    ("partitions", "Partitions"),
    ("run", "Pipeline run"),
    ("validation", "Validation"),
    ("ingestion", "Ingestion"),
)
DEFINITIONS = {
    "total_pnl": "Sum over closed trades of position × next bar return × notional (10,000 USD a trade).",
    "win_rate": "Good trades / closed trades. A BUY is good when the next bar's return is > 0, a SELL when < 0.",
    "sharpe_ratio": "Mean / standard deviation of the per-bar portfolio returns × √1764 (252 sessions × 7 bars).",
    "average_beta": "Mean of the partitions' betas: OLS slope of bar returns on the S&P 500's, 70-bar window.",
}
RUN_PIPELINE = "Run trading_orchestrator (make demo)."

app = FastAPI(
    title="Trading reports",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    dependencies=[Depends(get_user)],
)


def _can_read(dag_id: str, entity: DagAccessEntity | None = None) -> list:
    return [Depends(requires_access_dag("GET", entity, dag_id))]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@app.exception_handler(HTTPException)
async def _refused(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and _wants_html(request):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    if exc.status_code == 403 and _wants_html(request):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        body = (
            f"<p>Your Airflow session does not give access to this page ({html.escape(str(exc.detail))}): "
            f"it needs read access to the DAG whose results it shows.</p>"
            f'<p><a href="{html.escape(login)}" target="_top">Sign in as another user</a></p>'
        )
        return HTMLResponse(r.page("Not allowed", body, "-", _links(request), PAGES), status_code=403)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _links(request: Request) -> r.Links:
    # root_path is where the api-server mounted this app (PREFIX, below any base URL path).
    return r.Links(request.scope.get("root_path", ""), PREFIX)


def _page(request: Request, title: str, body: str, active: str) -> HTMLResponse:
    return HTMLResponse(r.page(title, body, active, _links(request), PAGES))


# -- portfolio ------------------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse, dependencies=_can_read("aggregate_portfolio"))
def portfolio(request: Request) -> HTMLResponse:
    report = read_report("portfolio")
    if report is None:
        return _page(request, "Portfolio", r.missing("portfolio report", RUN_PIPELINE), "")
    s = report["summary"]
    cards = [
        ("total_pnl", "Total P&L (USD)", r.number(s.get("total_pnl"))),
        ("win_rate", "Win rate", r.number(s.get("win_rate"), "{:.1%}")),
        ("sharpe_ratio", "Sharpe ratio (annualised)", r.number(s.get("sharpe_ratio"))),
        ("average_beta", "Average beta", r.number(s.get("average_beta"), "{:.3f}")),
    ]
    card_html = "".join(
        f'<div class="card" id="{key}"><div>{html.escape(title)}</div><div class="v">{value}</div>'
        f'<div class="d">{html.escape(DEFINITIONS[key])}</div></div>'
        for key, title, value in cards
    )
    scope = report.get("scope", {})
    facts = (
        f'<p id="facts">{s["partitions"]:,} of {s["expected_partitions"]:,} partitions, '
        f"{s['missing_partitions']:,} missing · {s['trades']:,} trades ({s['closed_trades']:,} closed, "
        f"{s['good_trades']:,} good) · window {html.escape(str(scope.get('window_start')))} to "
        f"{html.escape(str(scope.get('window_end')))} · results in {html.escape(str(scope.get('results_root')))}</p>"
    )
    chart = (
        pnl_chart(report["timeseries"]) or '<p class="muted">The P&amp;L chart needs at least two bars.</p>'
    )
    contracts = r.table(
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
        table_id="contracts",
    )
    timeseries = r.table(
        report["timeseries"],
        [
            ("timestamp", "Bar", "s"),
            ("partitions", "Partitions", "{:,}"),
            ("trades", "Trades", "{:,}"),
            ("pnl", "P&L (USD)", "{:,.2f}"),
            ("cumulative_pnl", "Cumulative", "{:,.2f}"),
            ("portfolio_return", "Portfolio return", "{:.4%}"),
        ],
        table_id="timeseries",
    )
    gaps = report.get("missing_partitions") or []
    gaps_html = (
        f"<h2>Missing partitions ({len(gaps):,})</h2>"
        + r.table(gaps, [("contract", "Contract", "s"), ("timestamp", "Bar", "s")], table_id="missing")
        if gaps
        else ""
    )
    body = (
        f'<div class="cards">{card_html}</div>{facts}<h2>P&amp;L over time</h2>{chart}'
        f"<h2>Contract performance</h2>{contracts}{gaps_html}"
        f"<details open><summary><h2 style='display:inline'>Time series ({len(report['timeseries']):,} bars)"
        f"</h2></summary>{timeseries}</details>"
    )
    return _page(request, "Portfolio", body, "")


# -- partitions -----------------------------------------------------------------------------------
@app.get(
    "/partitions",
    response_class=HTMLResponse,
    dependencies=_can_read(ANALYZE_DAG, DagAccessEntity.TASK_INSTANCE),
)
def partitions(request: Request) -> HTMLResponse:
    store = storage()
    report, last_run = read_report("portfolio", store), read_report("pipeline/last_run", store)
    if report is None:
        return _page(request, "Partitions", r.missing("partition results", RUN_PIPELINE), "partitions")
    cells = partition_cells(last_run)
    grid = r.partition_grid(
        report["partitions"], report.get("missing_partitions") or [], cells, _links(request)
    )
    run = html.escape((last_run or {}).get("orchestrator_run_id") or "no orchestrator run recorded")
    body = (
        "<p>One cell per partition (contract × bar) of the last portfolio report. Click a cell to open "
        "its mapped task instance in Airflow, where <b>Clear</b> reprocesses that partition alone "
        f"(aggregate_portfolio then runs again by itself). Task states of run <code>{run}</code>.</p>"
        f"{r.grid_legend()}{grid}"
    )
    return _page(request, "Partitions", body, "partitions")


# -- pipeline run (orchestration overview + per-symbol summaries) -----------------------------------
@app.get("/run", response_class=HTMLResponse, dependencies=_can_read(ORCHESTRATOR_DAG, DagAccessEntity.RUN))
def pipeline_run(request: Request) -> HTMLResponse:
    store = storage()
    last_run = read_report("pipeline/last_run", store)
    manifest = read_report("pipeline/manifest", store) or {}
    if last_run is None and not manifest:
        return _page(request, "Pipeline run", r.missing("pipeline run", RUN_PIPELINE), "run")
    last_run = last_run or {}
    contracts = last_run.get("contracts") or manifest.get("contracts") or []
    run_ids = dict(
        zip(last_run.get("contracts", []), last_run.get("analyze_symbol_run_ids", []), strict=True)
    )
    orchestrator_run = last_run.get("orchestrator_run_id")
    dag_runs = [(ANALYZE_DAG, run_id) for run_id in run_ids.values()]
    if orchestrator_run:
        dag_runs.append((ORCHESTRATOR_DAG, orchestrator_run))
    states = run_states(dag_runs)
    links = _links(request)
    summaries = symbol_reports(contracts, store)
    rows = []
    for contract in contracts:
        summary: dict[str, Any] = summaries.get(contract, {})
        run_id = run_ids.get(contract) or summary.get("run_id")
        signals = summary.get("signals") or {}
        rows.append(
            {
                "contract": contract,
                "run": r.link(links.dag_run(ANALYZE_DAG, run_id), run_id) if run_id else "",
                "state": r.badge(states.get((ANALYZE_DAG, run_id))) if run_id else "",
                "partitions": summary.get("partitions"),
                "written": summary.get("written"),
                "missing": len(summary["missing"]) if "missing" in summary else None,
                "buy": signals.get("BUY"),
                "sell": signals.get("SELL"),
                "hold": signals.get("HOLD"),
                "average_beta": summary.get("average_beta"),
                "bars": f"{summary.get('first_timestamp') or ''} to {summary.get('last_timestamp') or ''}"
                if summary
                else "no summary written",
            }
        )
    validation = last_run.get("validation") or {}
    status = validation.get("status") or manifest.get("validation_status")
    head = (
        "<table id='run-facts'><tbody>"
        "<tr><th class='l'>Orchestrator run</th><td class='l'>"
        + (
            r.link(links.dag_run(ORCHESTRATOR_DAG, orchestrator_run), orchestrator_run)
            + " "
            + r.badge(states.get((ORCHESTRATOR_DAG, orchestrator_run)))
            if orchestrator_run
            else "not recorded (run outside Airflow, or still running)"
        )
        + "</td></tr>"
        f"<tr><th class='l'>Window</th><td class='l'>{html.escape(str(last_run.get('window_start') or manifest.get('window_start')))}"
        f" to {html.escape(str(last_run.get('window_end') or manifest.get('window_end')))} (end exclusive)</td></tr>"
        f"<tr><th class='l'>Validation</th><td class='l'>{r.badge(status, 'run-validation')} "
        f"{html.escape(validation.get('summary', ''))}</td></tr>"
        f"<tr><th class='l'>Contracts</th><td class='l'>{len(contracts)}</td></tr></tbody></table>"
    )
    table = r.table(
        rows,
        [
            ("contract", "Contract", "s"),
            ("run", "analyze_symbol run", "html"),
            ("state", "State", "html"),
            ("partitions", "Partitions", "{:,}"),
            ("written", "Written", "{:,}"),
            ("missing", "Missing", "{:,}"),
            ("buy", "BUY", "{:,}"),
            ("sell", "SELL", "{:,}"),
            ("hold", "HOLD", "{:,}"),
            ("average_beta", "Avg beta", "{:.3f}"),
            ("bars", "Bars", "s"),
        ],
        table_id="symbols",
    )
    return _page(request, "Pipeline run", f"{head}<h2>Per symbol</h2>{table}", "run")


# -- validation -----------------------------------------------------------------------------------
@app.get("/validation", response_class=HTMLResponse, dependencies=_can_read("validate_data"))
def validation(request: Request) -> HTMLResponse:
    report = read_report("validation")
    if report is None:
        return _page(
            request,
            "Validation",
            r.missing("validation report", "Run validate_data or the orchestrator."),
            "validation",
        )
    checks = [{"check": name, **c} for name, c in report["checks"].items()]
    body = (
        f"<p>{r.badge(report['status'], 'status')} {html.escape(report['summary'])}</p>"
        f"<p class='muted'>{html.escape(report.get('status_rule', ''))}</p>"
        + r.table(
            checks,
            [
                ("check", "Check", "s"),
                ("severity", "Worst", "s"),
                ("issues", "Issues", "{:,}"),
                ("description", "Rule", "w"),
            ],
            table_id="checks",
        )
        + f"<h2>Issues ({len(report['issues']):,})</h2>"
        + (
            r.table(
                report["issues"],
                [
                    ("check", "Check", "s"),
                    ("severity", "Severity", "s"),
                    ("contract", "Contract", "s"),
                    ("timestamp", "Bar", "s"),
                    ("detail", "Detail", "w"),
                ],
                table_id="issues",
            )
            if report["issues"]
            else '<p class="muted" id="no-issues">No issues: every check passed.</p>'
        )
    )
    return _page(request, "Validation", body, "validation")


# -- ingestion ------------------------------------------------------------------------------------
@app.get("/ingestion", response_class=HTMLResponse, dependencies=_can_read("ingest_market_data"))
def ingestion(request: Request) -> HTMLResponse:
    report = read_report("ingestion")
    if report is None:
        how = "The pipeline used input already in storage (run with run_ingestion=true to fetch from Yahoo)."
        return _page(request, "Ingestion", r.missing("ingestion report", how), "ingestion")
    written = report.get("written") or {}
    body = (
        f"<p>{r.badge(report['status'], 'status')} window {html.escape(report['start'])} to "
        f"{html.escape(report['end'])} (bars fetched from {html.escape(report['fetch_start'])} for the beta "
        f"warm-up)</p>"
        + r.table(
            report["tickers"],
            [
                ("symbol", "Ticker", "s"),
                ("status", "Status", "s"),
                ("rows", "Bars", "{:,}"),
                ("first_bar", "First bar", "s"),
                ("last_bar", "Last bar", "s"),
                ("attempts", "Attempts", "{:,}"),
                ("error", "Failure", "w"),
            ],
            table_id="tickers",
        )
        + (
            "<h2>Input written</h2>"
            + r.table(
                [{"key": k, "rows": v} for k, v in written.items()],
                [("key", "File", "s"), ("rows", "Rows", "{:,}")],
            )
            if written
            else ""
        )
    )
    return _page(request, "Ingestion", body, "ingestion")
