"""The Trading reports pages, served by Airflow's api-server under /trading-reports/.

They render the run records and reports the DAGs write (`output/runs/`, `output/reports/` under
TRADING_DATA_ROOT, local or S3): there is no second store. Airflow does not authenticate plugin
apps, so this one does:
- authentication for every route (an app-level dependency, so a new route cannot forget it):
  Airflow's own `get_user` validates the JWT of the UI's `_token` cookie or `Authorization: Bearer`;
- authorization per page: read access to the DAG whose output the page shows (Airflow's
  `requires_access_dag`, answered by the configured auth manager).
A browser without a valid session (none, expired, forged) is sent to Airflow's login page and
back; an API client gets 401/403. Every response is `Cache-Control: no-store`.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from trading_airflow.runtime import (
    AGGREGATE_DAG,
    ANALYZE_DAG,
    INGEST_DAG,
    ORCHESTRATOR_DAG,
    PARTITION_TASK,
    VALIDATE_DAG,
    connection_storage,
)
from trading_airflow.ui import PAGES, PREFIX
from trading_airflow.ui import rendering as r
from trading_airflow.ui.charts import pnl_chart
from trading_airflow.ui.reports import (
    late_runs,
    latest_run,
    newest_orchestrator_run,
    partition_cells,
    partitions_of_map_index,
    read_report,
    read_run,
    run_records,
    run_states,
    symbol_reports,
)

DEFINITIONS = {
    "total_pnl": "Sum over closed trades of position × next bar return × notional (10,000 USD a trade).",
    "win_rate": "Good trades / closed trades. A BUY is good when the next bar's return is > 0, a SELL when < 0.",
    "sharpe_ratio": "Mean / standard deviation of the per-bar portfolio returns × √1764 (252 sessions × 7 bars).",
    "average_beta": "Mean of the partitions' betas: OLS slope of bar returns on the S&P 500's, 70-bar window.",
}
RUN_PIPELINE = "Run trading_orchestrator (make demo)."
NO_STORE = "no-store"
# Airflow's get_user: no cookie/header -> 401 "Not authenticated"; expired -> 401 "Token Expired";
# a token that does not verify -> 403 "Invalid JWT token". All three mean "sign in", not "not allowed".
SIGN_IN_DETAILS = {"Not authenticated", "Token Expired", "Invalid JWT token"}

app = FastAPI(
    title="Trading reports",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    dependencies=[Depends(get_user)],
)


@app.middleware("http")
async def _no_store(request: Request, call_next):
    response = await call_next(request)
    response.headers["Cache-Control"] = NO_STORE
    return response


def _can_read(dag_id: str | None, entity: DagAccessEntity | None = None) -> list:
    """Read access to ``dag_id`` (None: the DAG of the path parameter ``dag_id``)."""
    return [Depends(requires_access_dag("GET", entity, dag_id))]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@app.exception_handler(HTTPException)
async def _refused(request: Request, exc: HTTPException) -> Response:
    headers = {**(exc.headers or {}), "Cache-Control": NO_STORE}
    if _wants_html(request) and exc.status_code in (401, 403) and exc.detail in SIGN_IN_DETAILS:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(login, status_code=303, headers={"Cache-Control": NO_STORE})
    if exc.status_code == 403 and _wants_html(request):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        body = (
            "<p>Your Airflow user may not read this page: it needs read access to the DAG whose results "
            f"it shows.</p><p>{r.link(login, 'Sign in as another user', airflow=True)}</p>"
        )
        return HTMLResponse(
            r.page("Not allowed", body, "-", _links(request), PAGES), status_code=403, headers=headers
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _links(request: Request) -> r.Links:
    # root_path is where the api-server mounted this app (PREFIX, below any base URL path).
    return r.Links(request.scope.get("root_path", ""), PREFIX)


def _page(
    request: Request, title: str, body: str, active: str, scope: str = "", banner: r.Banner | None = None
) -> HTMLResponse:
    return HTMLResponse(r.page(title, body, active, _links(request), PAGES, scope, banner))


def _banner(links: r.Links, shown_run_ids: set[str]) -> r.Banner | None:
    """A banner when the newest trading_orchestrator run (metadata DB) failed or has not finished
    and its results are not those shown, or it is the run shown and still running."""
    newest = newest_orchestrator_run()
    if newest is None or newest.state == "success":
        return None
    if newest.run_id in shown_run_ids and newest.state == "failed":
        return None  # the page itself says this run failed
    return r.Banner(
        newest.run_id,
        newest.state,
        links.dag_run(ORCHESTRATOR_DAG, newest.run_id),
        newest.run_id in shown_run_ids,
    )


def _run_link(links: r.Links, run_id: str | None) -> str:
    return r.link(links.dag_run(ORCHESTRATOR_DAG, run_id), run_id, airflow=True) if run_id else ""


def _period(scope: dict[str, Any]) -> str:
    start, end = scope.get("period_start"), scope.get("period_end")
    return html.escape(f"{start} to {end}") if start or end else ""


def _report_scope(report: dict[str, Any], links: r.Links, run_id: str | None = None) -> str:
    """What a portfolio report covers, and when it was produced."""
    scope = report.get("scope") or {}
    contracts = scope.get("contracts") or [c.get("contract") for c in report.get("contracts", [])]
    if scope.get("kind") == "run" or run_id:
        covers = ("Run", _run_link(links, scope.get("run_id") or run_id))
    elif scope.get("runs"):
        runs = list(scope["runs"])
        shown = ", ".join(_run_link(links, rid) for rid in runs[-3:])
        covers = (
            "Runs",
            f"all stored runs of the period ({len(runs):,}: {'…, ' if len(runs) > 3 else ''}{shown})",
        )
    else:
        covers = ("Runs", "all stored runs of the period")
    aggregation = report.get("aggregation_run_id")
    produced = r.time_text(report.get("produced_at")) or "unknown"
    if aggregation:
        produced += " by aggregate_portfolio run " + r.link(
            links.dag_run(AGGREGATE_DAG, aggregation), aggregation, airflow=True
        )
    return r.scope_line(
        [
            covers,
            ("Period", _period(scope) + " (exchange dates, inclusive)" if _period(scope) else ""),
            ("Contracts", f"{len(contracts):,}" if contracts else ""),
            ("Produced", produced),
        ]
    )


def _portfolio_body(report: dict[str, Any]) -> str:
    s = report["summary"]
    sharpe = r.number(s.get("sharpe_ratio"))
    if s.get("sharpe_standard_error") is not None and s.get("sharpe_ratio") is not None:
        sharpe += f' <span class="d">± {s["sharpe_standard_error"]:.2f}</span>'
    sharpe_note = DEFINITIONS["sharpe_ratio"]
    if s.get("sharpe_annualisation"):
        text = str(s["sharpe_annualisation"]).strip().rstrip(".")
        sharpe_note = f"Sharpe ratio: {text}."
    if s.get("sharpe_returns") is not None:
        sharpe_note += f" {s['sharpe_returns']:,} returns; ± is the standard error (Lo 2002)."
    cards = [
        ("total_pnl", "Total P&L (USD)", r.signed(s.get("total_pnl")), DEFINITIONS["total_pnl"]),
        ("win_rate", "Win rate", r.number(s.get("win_rate"), "{:.1%}"), DEFINITIONS["win_rate"]),
        ("sharpe_ratio", "Sharpe ratio (annualised)", sharpe, sharpe_note),
        (
            "average_beta",
            "Average beta",
            r.number(s.get("average_beta"), "{:.3f}"),
            DEFINITIONS["average_beta"],
        ),
    ]
    card_html = "".join(
        f'<div class="card" id="{key}"><div>{html.escape(title)}</div><div class="v">{value}</div>'
        f'<div class="d">{html.escape(note)}</div></div>'
        for key, title, value, note in cards
    )
    facts = (
        f'<p id="facts">{s.get("partitions", 0):,} of {s.get("expected_partitions", 0):,} partitions, '
        f"{s.get('missing_partitions', 0):,} missing · {s.get('trades', 0):,} trades "
        f"({s.get('closed_trades', 0):,} closed, {s.get('good_trades', 0):,} good, "
        f"{s.get('open_trades', 0):,} open)</p>"
    )
    timeseries_rows = report.get("timeseries") or []
    chart = pnl_chart(timeseries_rows) or '<p class="muted">The P&amp;L chart needs at least two bars.</p>'
    contracts = r.table(
        report.get("contracts") or [],
        [
            ("contract", "Contract", "s"),
            ("partitions", "Partitions", "{:,}"),
            ("trades", "Trades", "{:,}"),
            ("good_trades", "Good", "{:,}"),
            ("win_rate", "Win rate", "{:.1%}"),
            ("total_pnl", "P&L (USD)", "±{:,.2f}"),
            ("average_beta", "Avg beta", "{:.3f}"),
            ("buys", "BUY", "{:,}"),
            ("sells", "SELL", "{:,}"),
        ],
        table_id="contracts",
    )
    daily = report.get("daily") or []
    daily_html = (
        f"<h2>Per session ({len(daily):,})</h2>"
        + r.table(
            daily,
            [
                ("date", "Session", "s"),
                ("partitions", "Partitions", "{:,}"),
                ("trades", "Trades", "{:,}"),
                ("closed_trades", "Closed", "{:,}"),
                ("good_trades", "Good", "{:,}"),
                ("win_rate", "Win rate", "{:.1%}"),
                ("pnl", "P&L (USD)", "±{:,.2f}"),
                ("cumulative_pnl", "Cumulative", "±{:,.2f}"),
            ],
            table_id="daily",
        )
        if daily
        else ""
    )
    timeseries = r.table(
        timeseries_rows,
        [
            ("timestamp", "Bar", "s"),
            ("partitions", "Partitions", "{:,}"),
            ("trades", "Trades", "{:,}"),
            ("pnl", "P&L (USD)", "±{:,.2f}"),
            ("cumulative_pnl", "Cumulative", "±{:,.2f}"),
            ("portfolio_return", "Portfolio return", "±{:.4%}"),
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
    open_trades = report.get("open_trades") or []
    open_html = (
        f"<h2>Open trades ({len(open_trades):,})</h2>"
        + r.table(
            open_trades,
            [
                ("contract", "Contract", "s"),
                ("timestamp", "Bar", "s"),
                ("signal", "Signal", "s"),
                ("next_bar", "Next bar", "s"),
                ("reason", "Why open", "s"),
            ],
            table_id="open-trades",
        )
        if open_trades
        else ""
    )
    return (
        f'<div class="cards">{card_html}</div>{facts}<h2>P&amp;L over time</h2>{chart}'
        f"<h2>Contract performance</h2>{contracts}{daily_html}{gaps_html}{open_html}"
        f"<details><summary><b>Time series ({len(timeseries_rows):,} bars)</b></summary>{timeseries}</details>"
    )


# -- portfolio (the period) -------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse, dependencies=_can_read(AGGREGATE_DAG))
def portfolio(request: Request) -> HTMLResponse:
    storage = connection_storage()
    report, latest = read_report("portfolio", storage), latest_run(storage)
    links = _links(request)
    banner = _banner(links, {latest["run_id"]} if latest and latest.get("run_id") else set())
    if report is None:
        return _page(request, "Portfolio", r.missing("portfolio report", RUN_PIPELINE), "", banner=banner)
    return _page(request, "Portfolio", _portfolio_body(report), "", _report_scope(report, links), banner)


# -- partitions -------------------------------------------------------------------------------------
@app.get(
    "/partitions",
    response_class=HTMLResponse,
    dependencies=_can_read(ANALYZE_DAG, DagAccessEntity.TASK_INSTANCE),
)
def partitions(request: Request, run: str | None = None, user=Depends(get_user)) -> HTMLResponse:
    """The matrix of the latest run (default), of run ``run``, or of the period (run=period)."""
    storage = connection_storage()
    links = _links(request)
    records = run_records(storage)
    latest = records[0] if records else None
    run_id = None if run == "period" else (run or (latest or {}).get("run_id"))
    report = read_run(run_id, "portfolio", storage) if run_id else read_report("portfolio", storage)
    banner = _banner(links, {run_id} if run_id else {rec["run_id"] for rec in records[:1]})
    choices = [("period", "the period (all stored runs)")] + [
        (rec["run_id"], f"run {rec['run_id']}") for rec in records[:50]
    ]
    picker = (
        '<form class="toolbar" method="get"><label>Show <select name="run" onchange="this.form.submit()">'
        + "".join(
            f'<option value="{html.escape(value)}"{" selected" if value == (run_id or "period") else ""}>'
            f"{html.escape(text)}</option>"
            for value, text in choices
        )
        + "</select></label><noscript><button>Show</button></noscript></form>"
    )
    if report is None:
        return _page(
            request,
            "Partitions",
            picker + r.missing("partition results", RUN_PIPELINE),
            "partitions",
            banner=banner,
        )
    keys = [(p["contract"], p["timestamp"]) for p in report.get("partitions", [])] + [
        (g["contract"], g["timestamp"]) for g in report.get("missing_partitions") or []
    ]
    cells = partition_cells(keys, records)
    can_clear = get_auth_manager_is_authorized_to_clear(user)
    grid = r.partition_grid(
        report.get("partitions", []), report.get("missing_partitions") or [], cells, links, can_clear
    )
    intro = (
        "<p>One cell per partition (contract × bar). Click a cell to open its mapped task instance in "
        "Airflow, where <b>Clear</b> reprocesses that partition alone (aggregate_portfolio then runs "
        "again by itself); or select cells and clear them here in one go.</p>"
    )
    return _page(
        request,
        "Partitions",
        picker + intro + grid,
        "partitions",
        _report_scope(report, links, run_id),
        banner,
    )


def get_auth_manager_is_authorized_to_clear(user) -> bool:
    """Whether ``user`` may clear analyze_symbol task instances (what clearTaskInstances checks)."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return get_auth_manager().is_authorized_dag(
            method="PUT",
            access_entity=DagAccessEntity.TASK_INSTANCE,
            details=DagDetails(id=ANALYZE_DAG),
            user=user,
        )
    except Exception:  # noqa: BLE001 - an auth manager that cannot say: the API will
        return True


# -- pipeline run ---------------------------------------------------------------------------------
def _run_body(request: Request, record: dict[str, Any]) -> tuple[str, str]:
    """(scope line, body) of the page of one orchestrator run."""
    storage = connection_storage()
    links = _links(request)
    run_id = record["run_id"]
    contracts = record.get("contracts") or []
    symbol_run_ids = record.get("analyze_symbol_run_ids") or []
    run_ids = dict(zip(contracts, symbol_run_ids, strict=False))
    dag_runs = [(ANALYZE_DAG, rid) for rid in run_ids.values()] + [(ORCHESTRATOR_DAG, run_id)]
    states = run_states(dag_runs)
    state = states.get((ORCHESTRATOR_DAG, run_id)) or record.get("state")
    summaries = symbol_reports(contracts, storage)
    rows = []
    for contract in contracts:
        rid = run_ids.get(contract)
        summary: dict[str, Any] = summaries.get(contract, {})
        if summary.get("run_id") not in (None, rid):
            summary = {}  # the latest summary belongs to another run
        signals = summary.get("signals") or {}
        rows.append(
            {
                "contract": contract,
                "run": r.link(links.dag_run(ANALYZE_DAG, rid), rid, airflow=True) if rid else "",
                "run__sort": rid,
                "state": r.badge(states.get((ANALYZE_DAG, rid))) if rid else "",
                "state__sort": states.get((ANALYZE_DAG, rid)) or "",
                "partitions": summary.get("partitions"),
                "written": summary.get("written"),
                "missing": len(summary["missing"]) if "missing" in summary else None,
                "buy": signals.get("BUY"),
                "sell": signals.get("SELL"),
                "hold": signals.get("HOLD"),
                "average_beta": summary.get("average_beta"),
            }
        )
    validation = record.get("validation") or {}
    ingestion = record.get("ingestion") or {}
    facts = [
        ("Orchestrator run", f"{_run_link(links, run_id)} {r.badge(state, 'run-state')}"),
        ("Type", html.escape(str(record.get("run_type") or ""))),
        ("Logical date", r.time_text(record.get("logical_date")) or "none"),
        (
            "Window",
            f"{html.escape(str(record.get('window_start')))} to {html.escape(str(record.get('window_end')))}"
            " (bars starting at or after the start and before the end)",
        ),
        (
            "Validation",
            f"{r.badge(validation.get('status'), 'run-validation')} {html.escape(str(validation.get('summary') or ''))}"
            if validation
            else "not run",
        ),
        (
            "Ingestion",
            f"{r.badge(ingestion.get('status'))} {html.escape(str(ingestion.get('summary') or ''))}"
            if ingestion
            else "none (input already in storage)",
        ),
        ("Deadline", _deadline_text(record)),
        ("Contracts", f"{len(contracts):,}"),
        (
            "Started / updated",
            f"{r.time_text(record.get('created_at'))} / {r.time_text(record.get('updated_at'))}",
        ),
    ]
    head = (
        "<div class='scroll'><table id='run-facts'><tbody>"
        + "".join(f"<tr><th class='l' scope='row'>{k}</th><td class='l w'>{v}</td></tr>" for k, v in facts)
        + "</tbody></table></div>"
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
        ],
        table_id="symbols",
    )
    report = read_run(run_id, "portfolio", storage)
    grid_link = r.link(links.page(f"partitions?run={run_id}"), "Partition matrix of this run")
    if report is None:
        portfolio = f'<p class="muted" id="missing-report">No portfolio report for this run yet ({html.escape(str(state))}).</p>'
        scope = r.scope_line([("Run", _run_link(links, run_id)), ("Produced", "not yet")])
    else:
        portfolio = _portfolio_body(report)
        scope = _report_scope(report, links, run_id)
    body = f"{head}<p>{grid_link}</p><h2>Per symbol</h2>{table}<h2>Portfolio of this run</h2>{portfolio}"
    return scope, body + _late_runs_body(links, storage)


def _deadline_text(record: dict[str, Any]) -> str:
    """The run's deadline: late (when, the state it was in, when noticed), or not (yet) late."""
    late = record.get("late")
    if not late:
        return f"{r.badge('on time', 'run-deadline')} not late (or its deadline has not passed yet)"
    return (
        f"{r.badge('late', 'run-deadline')} not finished by its deadline {r.time_text(late.get('deadline'))} "
        f"(it was {html.escape(str(late.get('state_at_deadline') or 'unknown'))}; noticed "
        f"{r.time_text(late.get('noticed_at'))})"
    )


def _late_runs_body(links: r.Links, storage) -> str:
    """The runs the deadline alert marked late, newest deadline first (the Pipeline run page)."""
    rows = [
        {
            "run": _run_link(links, rec["run_id"]),
            "run__sort": rec["run_id"],
            "report": r.link(links.page(f"run/{quote(rec['run_id'], safe='')}"), "report"),
            "deadline": r.time_text(rec["late"].get("deadline")),
            "state": r.badge(rec["late"].get("state_at_deadline")),
            "window": html.escape(str(rec.get("window_start") or "not fixed yet")),
        }
        for rec in late_runs(storage)
    ]
    if not rows:
        return '<h2>Late runs</h2><p class="muted" id="no-late-runs">No run has missed its deadline.</p>'
    columns = [
        ("run", "Orchestrator run", "html"),
        ("report", "Page", "html"),
        ("deadline", "Deadline", "s"),
        ("state", "State at the deadline", "html"),
        ("window", "Window start", "html"),
    ]
    return "<h2>Late runs</h2>" + r.table(rows, columns, table_id="late-runs")


@app.get("/run", response_class=HTMLResponse, dependencies=_can_read(ORCHESTRATOR_DAG, DagAccessEntity.RUN))
def pipeline_run(request: Request) -> HTMLResponse:
    """The newest orchestrator run (output/runs/latest.json)."""
    record = latest_run()
    links = _links(request)
    if not record or not record.get("run_id"):
        return _page(
            request,
            "Pipeline run",
            r.missing("pipeline run", RUN_PIPELINE),
            "run",
            banner=_banner(links, set()),
        )
    scope, body = _run_body(request, record)
    return _page(request, "Pipeline run", body, "run", scope, _banner(links, {record["run_id"]}))


@app.get(
    "/run/{run_id}",
    response_class=HTMLResponse,
    dependencies=_can_read(ORCHESTRATOR_DAG, DagAccessEntity.RUN),
)
def one_run(request: Request, run_id: str) -> HTMLResponse:
    return _orchestrator_run_page(request, run_id, "run")


def _orchestrator_run_page(request: Request, run_id: str, active: str) -> HTMLResponse:
    record = read_run(run_id)
    links = _links(request)
    if record is None:
        body = (
            f'<p class="muted" id="missing-report">No run record for {html.escape(run_id)} yet: the run '
            "writes it when it starts (or it ran before run records existed).</p>"
        )
        return _page(request, "Pipeline run", body, active, banner=_banner(links, {run_id}))
    scope, body = _run_body(request, record)
    return _page(request, f"Pipeline run {run_id}", body, active, scope, _banner(links, {run_id}))


# -- tabs of the Airflow UI (external_views with destination dag_run / task_instance) ------------------
@app.get(
    "/dag-run/{dag_id}/{run_id}",
    response_class=HTMLResponse,
    dependencies=_can_read(None, DagAccessEntity.RUN),
)
def dag_run_tab(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
    """The "Trading report" tab of a DAG run: the run's report for trading_orchestrator."""
    if dag_id == ORCHESTRATOR_DAG:
        return _orchestrator_run_page(request, run_id, "-")
    body = (
        '<p class="muted" id="not-a-trading-run">This tab shows the report of a trading_orchestrator run; '
        f"{html.escape(dag_id)} runs have none. "
        f"{r.link(_links(request).page('run'), 'Newest pipeline run')}</p>"
    )
    return _page(request, "Trading report", body, "-")


@app.get(
    "/task-instance/{dag_id}/{run_id}/{task_id}/{map_index}",
    response_class=HTMLResponse,
    dependencies=_can_read(None, DagAccessEntity.TASK_INSTANCE),
)
def task_instance_tab(
    request: Request, dag_id: str, run_id: str, task_id: str, map_index: str
) -> HTMLResponse:
    """The "Partition result" tab of a mapped analyze_partition instance: its partitions'
    signal and beta in the run's report, and the orchestrator run it belongs to."""
    links = _links(request)
    if dag_id != ANALYZE_DAG or task_id != PARTITION_TASK or not map_index.lstrip("-").isdigit():
        body = (
            '<p class="muted" id="not-a-partition">This tab shows the result of a mapped '
            f"{PARTITION_TASK} instance of {ANALYZE_DAG}.</p>"
        )
        return _page(request, "Partition result", body, "-")
    timestamps = partitions_of_map_index(run_id, int(map_index))
    records = run_records()
    record = next((rec for rec in records if run_id in (rec.get("analyze_symbol_run_ids") or [])), None)
    contract = None
    if record:
        contract = record["contracts"][record["analyze_symbol_run_ids"].index(run_id)]
    report = read_run(record["run_id"], "portfolio") if record else None
    found = {(p["contract"], p["timestamp"]): p for p in (report or {}).get("partitions", [])}
    rows = [
        {
            "timestamp": timestamp,
            "signal": (found.get((contract, timestamp)) or {}).get("signal")
            or "no result in the run's report",
            "beta": (found.get((contract, timestamp)) or {}).get("beta"),
        }
        for timestamp in timestamps
    ]
    scope = r.scope_line(
        [
            ("Contract", html.escape(contract or "unknown")),
            ("Orchestrator run", _run_link(links, record["run_id"]) if record else "not found"),
            ("Map index", html.escape(map_index)),
        ]
    )
    body = (
        r.table(
            rows,
            [("timestamp", "Bar", "s"), ("signal", "Signal", "s"), ("beta", "Beta", "{:.3f}")],
            "partition",
        )
        if rows
        else '<p class="muted" id="missing-report">No partitions recorded for this instance.</p>'
    )
    if record:
        body += f"<p>{r.link(links.page('partitions?run=' + record['run_id']), 'Partition matrix of the run')}</p>"
    return _page(request, "Partition result", body, "-", scope)


# -- validation -----------------------------------------------------------------------------------
def _latest_scope(links: r.Links, report: dict[str, Any], latest: dict[str, Any] | None) -> str:
    run_id = report.get("run_id") or (latest or {}).get("run_id")
    window = ""
    if report.get("window_start") or report.get("start"):
        window = html.escape(
            f"{report.get('window_start') or report.get('start')} to {report.get('window_end') or report.get('end')}"
        )
    produced = report.get("produced_at") or report.get("generated_at")
    when = (
        ("Produced", r.time_text(produced))
        if produced
        else ("Run record updated", r.time_text((latest or {}).get("updated_at")) or "unknown")
    )
    return r.scope_line(
        [("Run", _run_link(links, run_id) if run_id else "the latest"), ("Window", window), when]
    )


@app.get("/validation", response_class=HTMLResponse, dependencies=_can_read(VALIDATE_DAG))
def validation(request: Request) -> HTMLResponse:
    storage = connection_storage()
    report, latest = read_report("validation", storage), latest_run(storage)
    links = _links(request)
    banner = _banner(links, {latest["run_id"]} if latest and latest.get("run_id") else set())
    if report is None:
        how = "Run validate_data or the orchestrator."
        return _page(request, "Validation", r.missing("validation report", how), "validation", banner=banner)
    checks = [{"check": name, **c} for name, c in (report.get("checks") or {}).items()]
    issues = report.get("issues") or []
    body = (
        f"<p>{r.badge(report.get('status'), 'status')} {html.escape(str(report.get('summary') or ''))}</p>"
        f"<p class='muted'>{html.escape(str(report.get('status_rule') or ''))}</p>"
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
        + f"<h2>Issues ({len(issues):,})</h2>"
        + (
            r.table(
                issues,
                [
                    ("check", "Check", "s"),
                    ("severity", "Severity", "s"),
                    ("contract", "Contract", "s"),
                    ("timestamp", "Bar", "s"),
                    ("detail", "Detail", "w"),
                ],
                table_id="issues",
            )
            if issues
            else '<p class="muted" id="no-issues">No issues: every check passed.</p>'
        )
    )
    return _page(request, "Validation", body, "validation", _latest_scope(links, report, latest), banner)


# -- ingestion ------------------------------------------------------------------------------------
@app.get("/ingestion", response_class=HTMLResponse, dependencies=_can_read(INGEST_DAG))
def ingestion(request: Request) -> HTMLResponse:
    storage = connection_storage()
    report, latest = read_report("ingestion", storage), latest_run(storage)
    links = _links(request)
    banner = _banner(links, {latest["run_id"]} if latest and latest.get("run_id") else set())
    if report is None:
        how = "The pipeline used input already in storage (run with run_ingestion=true to fetch from Yahoo)."
        return _page(request, "Ingestion", r.missing("ingestion report", how), "ingestion", banner=banner)
    written = report.get("written") or {}
    body = (
        f"<p>{r.badge(report.get('status'), 'status')} window {html.escape(str(report.get('start')))} to "
        f"{html.escape(str(report.get('end')))} (bars fetched from {html.escape(str(report.get('fetch_start')))} "
        "for the beta warm-up)</p>"
        + r.table(
            report.get("tickers") or [],
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
                [("key", "Store key (relative to the data root)", "s"), ("rows", "Rows", "{:,}")],
            )
            if written
            else ""
        )
    )
    return _page(request, "Ingestion", body, "ingestion", _latest_scope(links, report, latest), banner)
