"""The Trading reports pages over run records and reports of the shapes the DAGs write
(output/runs/<run_id>/run.json and portfolio.json, output/runs/latest.json, output/reports/*.json),
behind Airflow's real auth manager and real JWTs, with DAG runs in a real metadata DB.
Browser test against a running Airflow: test_browser.py."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from s3.conftest import seaweedfs_fixture  # noqa: F401 - fixture

from trading_lib import layout
from trading_lib.ingestion import IngestionReport, TickerResult
from trading_lib.storage import Storage
from trading_lib.symbols import symbol_to_segment

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow

RUN = "manual__2024-01-23T17:00:00+00:00"
OLD_RUN = "manual__2024-01-10T17:00:00+00:00"
CONTRACTS = ["AAPL", "MSFT", "^VIX"]
DAYS = ["2024-01-22", "2024-01-23"]
HOURS = ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
PAGES = ["/", "/partitions", "/run", "/validation", "/ingestion"]
TABS = [f"/run/{quote(RUN, safe='')}", f"/dag-run/trading_orchestrator/{quote(RUN, safe='')}"]
SERVER_PATH = re.compile(r"/(tmp|home|work|var|opt|Users)/|output/trading-results")


def _bars() -> list[str]:
    return [f"{day}T{hour}:00-05:00" for day in DAYS for hour in HOURS]


def _portfolio(kind: str, run_id: str | None) -> dict:
    """A portfolio report of the documented shape: 3 contracts × 14 bars, ^VIX lacks its last bar."""
    bars = _bars()
    signals = ["BUY", "SELL", "HOLD"]
    partitions = [
        {"contract": c, "timestamp": ts, "signal": signals[(i + j) % 3], "beta": round(0.5 + 0.1 * j, 3)}
        for j, c in enumerate(CONTRACTS)
        for i, ts in enumerate(bars)
        if not (c == "^VIX" and ts == bars[-1])
    ]
    pnl = [(-1) ** i * 100.0 * (i % 4) + 25.0 for i in range(len(bars))]
    cumulative = [sum(pnl[: i + 1]) for i in range(len(bars))]
    timeseries = [
        {
            "timestamp": ts,
            "partitions": 3,
            "trades": 2,
            "pnl": pnl[i],
            "cumulative_pnl": cumulative[i],
            "portfolio_return": pnl[i] / 30_000,
        }
        for i, ts in enumerate(bars)
    ]
    daily = []
    for day in DAYS:
        rows = [t for t in timeseries if t["timestamp"].startswith(day)]
        daily.append(
            {
                "date": day,
                "partitions": 21,
                "trades": 14,
                "closed_trades": 12,
                "good_trades": 7,
                "win_rate": 7 / 12,
                "pnl": sum(t["pnl"] for t in rows),
                "cumulative_pnl": rows[-1]["cumulative_pnl"],
            }
        )
    scope = {"kind": kind, "period_start": DAYS[0], "period_end": DAYS[-1], "contracts": CONTRACTS}
    if run_id:
        scope["run_id"] = run_id
    return {
        "scope": scope,
        "produced_at": "2024-01-23T22:05:00+00:00",
        "aggregation_run_id": "asset_triggered__2024-01-23T22:04:00+00:00",
        "summary": {
            "contracts": 3,
            "partitions": len(partitions),
            "expected_partitions": len(partitions) + 1,
            "missing_partitions": 1,
            "trades": 28,
            "closed_trades": 24,
            "open_trades": 4,
            "open_trades_missing_bar": 1,
            "good_trades": 14,
            "win_rate": 14 / 24,
            "total_pnl": cumulative[-1],
            "sharpe_ratio": -1.2345,
            "sharpe_returns": len(bars) - 1,
            "sharpe_standard_error": 0.61,
            "sharpe_annualisation": "mean / std of per-bar portfolio returns x sqrt(1764)",
            "average_beta": 0.6,
        },
        "contracts": [
            {
                "contract": c,
                "partitions": 14,
                "trades": 9,
                "good_trades": 5,
                "win_rate": 5 / 8,
                "total_pnl": [1234.5, -987.25, 0.0][j],
                "average_beta": 0.5 + 0.1 * j,
                "buys": 5,
                "sells": 4,
            }
            for j, c in enumerate(CONTRACTS)
        ],
        "timeseries": timeseries,
        "daily": daily,
        "missing_partitions": [{"contract": "^VIX", "timestamp": bars[-1]}],
        "open_trades": [
            {
                "contract": "MSFT",
                "timestamp": bars[6],
                "signal": "BUY",
                "next_bar": bars[7],
                "reason": "next bar of the grid missing (a later bar is stored)",
            },
            *(
                {
                    "contract": c,
                    "timestamp": bars[-1],
                    "signal": "SELL",
                    "next_bar": "2024-01-24T09:30:00-05:00",
                    "reason": "next bar not stored yet",
                }
                for c in CONTRACTS
            ),
        ],
        "partitions": partitions,
    }


def _record(run_id: str, window: tuple[str, str], state: str = "success") -> dict:
    return {
        "run_id": run_id,
        "dag_id": "trading_orchestrator",
        "run_type": "manual",
        "logical_date": None,
        "window_start": window[0],
        "window_end": window[1],
        "contracts": CONTRACTS,
        "analyze_symbol_run_ids": [f"{run_id}__{symbol_to_segment(c)}" for c in CONTRACTS],
        "validation": {"status": "WARN", "summary": "2 issues (WARN)", "issues": 2},
        "ingestion": None,
        "state": state,
        "created_at": "2024-01-23T17:00:05+00:00" if run_id == RUN else "2024-01-10T17:00:05+00:00",
        "updated_at": "2024-01-23T22:05:00+00:00",
    }


def _write_reports(root: str) -> None:
    """The files a trading_orchestrator run and the aggregation write (shapes of docs/ui-reports.md)."""
    storage = Storage(root)
    record = _record(RUN, ("2024-01-22T00:00:00-05:00", "2024-01-24T00:00:00-05:00"))
    old = _record(OLD_RUN, ("2024-01-08T00:00:00-05:00", "2024-01-10T00:00:00-05:00"))
    storage.write_json(f"output/runs/{RUN}/run.json", record)
    storage.write_json(f"output/runs/{RUN}/portfolio.json", _portfolio("run", RUN))
    storage.write_json(f"output/runs/{OLD_RUN}/run.json", old)
    storage.write_json("output/runs/latest.json", record)
    storage.write_json(layout.report_key("portfolio"), _portfolio("period", None))
    storage.write_json(
        layout.report_key("ingestion"),
        {
            "start": "2024-01-22",
            "end": "2024-01-24",
            "fetch_start": "2024-01-05",
            "status": "ok",
            "run_id": RUN,
            "produced_at": "2024-01-23T17:01:00+00:00",
            "tickers": [{"symbol": c, "status": "ok", "rows": 14, "attempts": 1} for c in CONTRACTS],
            "written": {"bars/2024-01-22.parquet": 21, "bars/2024-01-23.parquet": 21},
        },
    )
    storage.write_json(
        layout.report_key("validation"),
        {
            "status": "WARN",
            "summary": "2 issues (WARN)",
            "status_rule": "FAIL when a check finds an error, WARN on warnings only, else PASS.",
            "checks": {
                "nan_runs": {"severity": "WARN", "issues": 1, "description": "No NaN close runs."},
                "outliers": {"severity": "WARN", "issues": 1, "description": "No 9-sigma returns."},
                "missing_bars": {"severity": "PASS", "issues": 0, "description": "Every bar present."},
            },
            "issues": [
                {
                    "check": "nan_runs",
                    "severity": "WARN",
                    "contract": "AAPL",
                    "timestamp": "2024-01-22T10:30:00-05:00",
                    "detail": "2 NaN closes in a row",
                },
                {
                    "check": "outliers",
                    "severity": "WARN",
                    "contract": "MSFT",
                    "timestamp": "2024-01-23T11:30:00-05:00",
                    "detail": "return 9.3 MADs from the median",
                },
            ],
        },
    )
    for j, contract in enumerate(CONTRACTS):
        storage.write_json(
            layout.report_key(f"symbols/{symbol_to_segment(contract)}"),
            {
                "contract": contract,
                "run_id": f"{RUN}__{symbol_to_segment(contract)}",
                "partitions": 14,
                "written": 14 - (j == 2),
                "missing": [] if j < 2 else [_bars()[-1]],
                "signals": {"BUY": 5 + j, "SELL": 4, "HOLD": 5 - 2 * (j == 2)},
                "average_beta": 0.5 + 0.1 * j,
            },
        )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    _write_reports(str(root))
    return root


def _json(root: Path, key: str) -> dict:
    return json.loads((root / key).read_text())


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


def _client(monkeypatch, root: str) -> TestClient:
    monkeypatch.setenv("TRADING_DATA_ROOT", root)
    from trading_reports_plugin import TradingReportsPlugin

    # what the api-server mounts under /trading-reports: the plugin's app, which imports the pages
    app = TradingReportsPlugin.fastapi_apps[0]["app"]
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(data_root, monkeypatch, auth_manager):
    return _client(monkeypatch, str(data_root))


def _token(auth_manager, role: str | None = "viewer") -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username="reader", role=role))


@pytest.fixture
def viewer(auth_manager) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(auth_manager)}"}


@pytest.fixture
def dag_runs(airflow_db):
    """Add trading_orchestrator runs to the metadata DB: add(run_id, state, minutes_ago)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType
    from sqlalchemy import delete

    added: list[str] = []
    now = datetime.now(UTC)
    # The session's metadata DB is shared: dag.test() runs of other test modules (tests/dags) must
    # not count as "a newer orchestrator run" here.
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == "trading_orchestrator"))

    def add(run_id: str, state: str, minutes_ago: float = 0) -> None:
        with create_session() as session:
            session.add(
                DagRun(
                    dag_id="trading_orchestrator",
                    run_id=run_id,
                    run_type=DagRunType.MANUAL,
                    state=state,
                    run_after=now - timedelta(minutes=minutes_ago),
                )
            )
        added.append(run_id)

    yield add
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.run_id.in_(added)))


def _cells(page: str, tag: str) -> list[list[str]]:
    """Cells (text, tags removed) of the table with id ``tag``, one list per body row."""
    body = re.search(rf'<table id="{tag}"[^>]*>.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell))
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


def _signed(value: float, fmt: str = "{:,.2f}") -> str:
    text = fmt.format(abs(value))
    return ("+" if value > 0 else "\u2212" if value < 0 else "") + text


# -- auth and headers -----------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES + TABS)
def test_signed_out_or_forged_sessions_go_to_the_login_page(client, page):
    api = client.get(page, headers={"Accept": "application/json"})
    assert (api.status_code, api.json()) == (401, {"detail": "Not authenticated"})
    assert api.headers["cache-control"] == "no-store"
    for headers in (
        {"Accept": "text/html"},
        {"Accept": "text/html", "Authorization": "Bearer not-a-jwt"},
    ):
        browser = client.get(page, headers=headers)
        assert browser.status_code == 303, headers
        assert browser.headers["cache-control"] == "no-store"
        location = urlsplit(browser.headers["location"])
        assert location.path == "/auth/login"  # the SimpleAuthManager's page; back to this page after
        assert [unquote(url) for url in parse_qs(location.query)["next"]] == [
            f"http://testserver{unquote(page)}"
        ]
    client.cookies.set("_token", "forged.jwt.value")
    forged_cookie = client.get(page, headers={"Accept": "text/html"})
    assert forged_cookie.status_code == 303 and "/auth/login" in forged_cookie.headers["location"]


def test_every_route_of_the_app_needs_a_user(client):
    from trading_airflow.ui.app import app

    paths = {route.path for route in app.routes if "GET" in getattr(route, "methods", ())}
    assert paths == {
        *PAGES,
        "/run/{run_id}",
        "/dag-run/{dag_id}/{run_id}",
        "/task-instance/{dag_id}/{run_id}/{task_id}/{map_index}",
    }  # a new page gets a test here, and the app-level auth dependency
    for path in paths:
        assert client.get(path.replace("{", "").replace("}", "")).status_code == 401


def test_a_user_without_read_access_to_the_dags_is_refused(client, auth_manager):
    roleless = {"Authorization": f"Bearer {_token(auth_manager, role=None)}"}
    for page in PAGES + TABS:
        response = client.get(page, headers=roleless)
        assert (response.status_code, response.json()) == (403, {"detail": "Forbidden"})
        browser = client.get(page, headers={**roleless, "Accept": "text/html"})
        assert browser.status_code == 403 and "Sign in as another user" in browser.text
        assert "Total P&amp;L" not in browser.text and browser.headers["cache-control"] == "no-store"


def test_cookie_of_the_ui_signs_in(client, auth_manager):
    client.cookies.set("_token", _token(auth_manager))
    response = client.get("/")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("page", PAGES + TABS)
def test_pages_say_what_they_show_and_no_server_path(client, viewer, page, data_root):
    response = client.get(page, headers=viewer)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    text = response.text
    assert not SERVER_PATH.search(text), SERVER_PATH.search(text)
    assert str(data_root) not in text
    scope = html.unescape(
        re.sub(r"<[^>]+>", "", re.search(r'<p class="scope" id="scope">(.*?)</p>', text).group(1))
    )
    assert "Produced" in scope or "Run record updated" in scope, scope
    if page != "/ingestion":
        assert RUN in scope or "all stored runs" in scope, scope


# -- pages ----------------------------------------------------------------------------------------
def test_portfolio_page_shows_the_period_report(client, viewer, data_root):
    page = client.get("/", headers=viewer).text
    report = _json(data_root, layout.report_key("portfolio"))
    summary = report["summary"]
    scope = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'id="scope">(.*?)</p>', page).group(1)))
    assert "Runs all stored runs of the period" in scope
    assert f"Period {DAYS[0]} to {DAYS[-1]}" in scope and "Contracts 3" in scope
    assert "Produced 2024-01-23 22:05 UTC by aggregate_portfolio run asset_triggered__" in scope
    for key, shown in [
        (
            "total_pnl",
            f'<span class="{"pos" if summary["total_pnl"] > 0 else "neg"}">'
            f"{_signed(summary['total_pnl'])}</span>",
        ),
        ("win_rate", f"{summary['win_rate']:.1%}"),
        ("sharpe_ratio", f'{summary["sharpe_ratio"]:,.2f} <span class="d">± 0.61</span>'),
        ("average_beta", f"{summary['average_beta']:.3f}"),
    ]:
        assert re.search(rf'id="{key}"><div>[^<]+</div><div class="v">{re.escape(shown)}</div>', page), key
    assert "Good trades / closed trades" in page  # definitions beside the numbers
    assert f"{summary['sharpe_returns']:,} returns; ± is the standard error (Lo 2002)" in page
    assert f"{summary['trades']:,} trades" in page and f"{summary['open_trades']:,} open)" in page
    open_trades = _cells(page, "open-trades")  # each open trade named, with its next bar and why
    assert [row[:2] for row in open_trades] == [
        [t["contract"], t["timestamp"]] for t in report["open_trades"]
    ]
    assert open_trades[0][3:] == [report["open_trades"][0]["next_bar"], report["open_trades"][0]["reason"]]
    contracts = _cells(page, "contracts")
    assert [row[0] for row in contracts] == CONTRACTS
    assert [row[5] for row in contracts] == ["+1,234.50", "\u2212987.25", "0.00"]
    assert '<td class="" data-v="-987.25"><span class="neg">\u2212987.25</span></td>' in page  # sort key
    daily = _cells(page, "daily")
    assert [row[0] for row in daily] == DAYS
    assert daily[-1][7] == _signed(report["daily"][-1]["cumulative_pnl"])
    timeseries = _cells(page, "timeseries")
    assert len(timeseries) == len(report["timeseries"]) == 14
    assert timeseries[-1][4] == _signed(report["timeseries"][-1]["cumulative_pnl"])
    chart = re.search(r'<svg id="pnl-chart".*?</svg>', page, re.S).group(0)
    assert 'viewBox="0 0 960 320"' in chart and "width=" not in chart.split(">")[0]  # scales to the page
    assert chart.count('<rect class="bar') == 14 and chart.count("<polyline") == 1
    assert "P&amp;L (USD)</text>" in chart  # y-axis title
    assert chart.count('class="tick"') == 14  # a tick per bar, hour labels under them
    assert re.findall(r'text-anchor="middle">(\d+)</text>', chart)[:7] == [
        "9",
        "10",
        "11",
        "12",
        "13",
        "14",
        "15",
    ]


def test_run_page_shows_the_run_its_window_and_each_symbol(client, viewer, data_root):
    for path in (
        "/run",
        f"/run/{quote(RUN, safe='')}",
        f"/dag-run/trading_orchestrator/{quote(RUN, safe='')}",
    ):
        page = client.get(path, headers=viewer).text
        record = _json(data_root, f"output/runs/{RUN}/run.json")
        facts = html.unescape(
            re.sub(r"<[^>]+>", " ", re.search(r"<table id='run-facts'>.*?</table>", page).group(0))
        )
        assert RUN in facts and record["window_start"] in facts and record["window_end"] in facts, path
        assert "WARN" in facts and "2 issues (WARN)" in facts
        scope = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'id="scope">(.*?)</p>', page).group(1)))
        assert f"Run {RUN}" in scope and f"Period {DAYS[0]} to {DAYS[-1]}" in scope
        rows = _cells(page, "symbols")
        assert [row[0] for row in rows] == CONTRACTS
        for row, contract in zip(rows, CONTRACTS, strict=True):
            summary = _json(data_root, layout.report_key(f"symbols/{symbol_to_segment(contract)}"))
            assert row[1] == f"{RUN}__{symbol_to_segment(contract)}"
            assert row[3:9] == [
                f"{summary['partitions']:,}",
                f"{summary['written']:,}",
                f"{len(summary['missing']):,}",
                f"{summary['signals']['BUY']:,}",
                f"{summary['signals']['SELL']:,}",
                f"{summary['signals']['HOLD']:,}",
            ]
        # links into the Airflow UI are marked for page.js (the sandboxed iframe cannot navigate)
        quoted = quote(RUN, safe="")
        assert f'href="/dags/analyze_symbol/runs/{quoted}__AAPL" data-airflow="1" target="_top"' in page
        assert f"partitions?run={html.escape(RUN)}" in page
        assert 'id="pnl-chart"' in page  # the run's own portfolio report


def test_run_tab_of_another_dag_or_an_unknown_run(client, viewer):
    page = client.get("/dag-run/analyze_symbol/some-run", headers=viewer).text
    assert 'id="not-a-trading-run"' in page
    page = client.get("/dag-run/trading_orchestrator/manual__2030-01-01", headers=viewer).text
    assert "No run record for manual__2030-01-01" in page


def test_partition_grid_has_one_cell_per_partition(client, viewer, data_root):
    page = client.get("/partitions", headers=viewer).text
    report = _json(data_root, f"output/runs/{RUN}/portfolio.json")
    shown = re.findall(r'data-contract="([^"]+)" data-timestamp="([^"]+)" data-signal="(\w+)"', page)
    expected = [(p["contract"], p["timestamp"], p["signal"]) for p in report["partitions"]]
    expected += [(m["contract"], m["timestamp"], "missing") for m in report["missing_partitions"]]
    assert sorted(html.unescape(c) for c in map(str, shown)) == sorted(map(str, expected))
    assert len(shown) == report["summary"]["expected_partitions"]
    # these runs are not in this metadata DB: the cells say so instead of linking nowhere
    assert "/mapped/" not in page and "no task instance found in the stored runs" in page
    hours = re.findall(r'<th class="hr" scope="col" data-col="\d+" title="[^"]+">(\d+)</th>', page)
    assert hours == ["9", "10", "11", "12", "13", "14", "15"] * 2
    for control in (
        "colour",
        "state-filter",
        "contract-filter",
        "select-mode",
        "select-failed",
        "clear-selected",
    ):
        assert f'id="{control}"' in page, control
    assert 'data-can-clear="false"' in page  # a viewer may not clear task instances
    period = client.get("/partitions?run=period", headers=viewer).text
    assert "all stored runs of the period" in period and 'option value="period" selected' in period


def test_an_op_user_may_clear(client, auth_manager):
    page = client.get("/partitions", headers={"Authorization": f"Bearer {_token(auth_manager, 'op')}"}).text
    assert 'data-can-clear="true"' in page


def test_grid_cells_link_to_their_mapped_instance_and_show_both_colourings():
    from trading_airflow.ui.rendering import Links, partition_grid
    from trading_airflow.ui.reports import TaskCell, partition_index

    labels = ["2024-01-22T09:30:00-05:00", "2024-01-22T10:30:00-05:00", "2024-01-22T11:30:00-05:00"]
    # a run past max_map_length: two timestamps share the instance with map index 0
    index = partition_index([labels[:2], labels[2:]])
    assert index == {labels[0]: 0, labels[1]: 0, labels[2]: 1}
    cells = {
        ("^VIX", ts): TaskCell("run 1", i, "success" if i == 0 else "failed", 2) for ts, i in index.items()
    }
    partitions = [{"contract": "^VIX", "timestamp": ts, "signal": "BUY", "beta": 1.0} for ts in labels[:2]]
    grid = partition_grid(
        partitions,
        [{"contract": "^VIX", "timestamp": labels[2]}],
        cells,
        Links("/airflow/trading-reports", "/trading-reports"),
        can_clear=True,
    )
    hrefs = re.findall(r'href="([^"]+)"', grid)
    assert hrefs == [
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_partition/mapped/0",
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_partition/mapped/0",
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_partition/mapped/1",
    ]
    assert re.findall(r'data-signal="(\w+)" data-state="(\w*)"', grid) == [
        ("BUY", "success"),
        ("BUY", "success"),
        ("missing", "failed"),
    ]
    # a glyph for the signal (g1) and one for the state (g2): readable without colour
    assert re.findall(r'data-g1="(.)" data-g2="(.)"', grid) == [("▲", "✓"), ("▲", "✓"), ("?", "✗")]
    assert grid.count('data-airflow="1"') == 3 and 'data-run="run 1" data-map-index="1"' in grid
    assert 'data-can-clear="true"' in grid


def test_a_partition_maps_to_the_run_whose_window_and_contracts_contain_it():
    from trading_airflow.ui.reports import run_of_partition

    new = _record(RUN, ("2024-01-22T00:00:00-05:00", "2024-01-24T00:00:00-05:00"))
    old = _record(OLD_RUN, ("2024-01-08T00:00:00-05:00", "2024-01-10T00:00:00-05:00"))
    records = [new, old]
    assert run_of_partition(records, "MSFT", "2024-01-23T15:30:00-05:00") == (new, f"{RUN}__MSFT")
    assert run_of_partition(records, "MSFT", "2024-01-09T09:30:00-05:00") == (old, f"{OLD_RUN}__MSFT")
    assert run_of_partition(records, "MSFT", "2024-01-24T00:00:00-05:00") is None  # end is exclusive
    assert run_of_partition(records, "NVDA", "2024-01-23T15:30:00-05:00") is None


def test_banner_when_a_newer_orchestrator_run_failed_or_runs(client, viewer, dag_runs):
    page = client.get("/", headers=viewer).text
    assert 'id="run-banner"' not in page
    dag_runs(RUN, "success", minutes_ago=30)
    assert 'id="run-banner"' not in client.get("/", headers=viewer).text
    dag_runs("manual__2024-01-24T09:00:00+00:00", "running", minutes_ago=1)
    for path in PAGES:
        page = client.get(path, headers=viewer).text
        banner = re.search(r'<div class="banner" id="run-banner" role="status">(.*?)</div>', page)
        assert banner, path
        text = html.unescape(re.sub(r"<[^>]+>", "", banner.group(1)))
        assert text == (
            "A newer trading_orchestrator run manual__2024-01-24T09:00:00+00:00 is running: "
            "this page does not include it yet."
        )
    dag_runs("manual__2024-01-24T10:00:00+00:00", "failed", minutes_ago=0)
    page = client.get("/validation", headers=viewer).text
    assert (
        'class="banner failed" id="run-banner"' in page
        and "failed: this page shows the results before it" in page
    )


def test_validation_page_shows_the_status_and_every_issue(client, viewer, data_root):
    page = client.get("/validation", headers=viewer).text
    report = _json(data_root, layout.report_key("validation"))
    assert re.search(rf'id="status"[^>]*>{report["status"]}</span>', page)
    assert len(_cells(page, "checks")) == len(report["checks"])
    issues = _cells(page, "issues")
    assert [row[:3] + row[4:] for row in issues] == [
        [i["check"], i["severity"], i["contract"], i["detail"]] for i in report["issues"]
    ]
    scope = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'id="scope">(.*?)</p>', page).group(1)))
    assert f"Run {RUN}" in scope and "Run record updated 2024-01-23 22:05 UTC" in scope


def test_ingestion_page_shows_each_ticker_and_failure(tmp_path, monkeypatch, auth_manager):
    storage = Storage(str(tmp_path))
    client = _client(monkeypatch, str(tmp_path))
    headers = {"Authorization": f"Bearer {_token(auth_manager)}"}
    assert "No ingestion report yet" in client.get("/ingestion", headers=headers).text
    report = IngestionReport(
        start="2024-01-02",
        end="2024-01-24",
        fetch_start="2023-12-14",
        tickers=[
            TickerResult("AAPL", rows=182, first_bar="2023-12-14T09:30:00-05:00", attempts=1),
            TickerResult(
                "ZZZZ", attempts=1, error="NoData: Yahoo returned no bars for the range", status="failed"
            ),
        ],
        written={"bars/2024-01-02.parquet": 182},
        status="partial",
    )
    storage.write_json(layout.report_key("ingestion"), report.to_dict())
    page = client.get("/ingestion", headers=headers).text
    assert re.search(r'id="status"[^>]*>partial</span>', page)
    rows = _cells(page, "tickers")
    assert [(row[0], row[1], row[2], row[6]) for row in rows] == [
        ("AAPL", "ok", "182", ""),
        ("ZZZZ", "failed", "0", "NoData: Yahoo returned no bars for the range"),
    ]
    assert not SERVER_PATH.search(page) and str(tmp_path) not in page


@pytest.mark.parametrize("page", PAGES)
def test_missing_reports_give_a_friendly_page(tmp_path, monkeypatch, auth_manager, page):
    client = _client(monkeypatch, str(tmp_path))
    response = client.get(page, headers={"Authorization": f"Bearer {_token(auth_manager)}"})
    assert response.status_code == 200
    assert re.search(r'id="missing-report">No [^<]+ yet\.', response.text)


def test_pages_follow_the_airflow_theme_and_fit_the_width(client, viewer):
    page = client.get("/", headers=viewer).text
    assert ':root[data-theme="dark"]' in page and "prefers-color-scheme: dark" in page
    assert 'c.contains("dark")' in page  # the Airflow UI marks <html class="dark">
    assert '<div class="scroll"><table id="contracts" class="sortable">' in page
    assert "overflow-x: hidden" in page


@pytest.mark.skipif(
    "--run-id" not in (PROJECT / "trading_lib" / "cli.py").read_text(),
    reason="trading_lib's `run --run-id` (run records) is not there yet",
)
def test_pages_over_the_library_pipeline(tmp_path, monkeypatch, auth_manager):
    """The real library pipeline writes the run record and both portfolio reports."""
    from trading_lib import cli, pipeline

    pipeline.generate_inputs(Storage(str(tmp_path)), num_contracts=3)
    assert cli.main(["--data-root", str(tmp_path), "run", "--contracts", "3", "--run-id", RUN]) == 0
    client = _client(monkeypatch, str(tmp_path))
    headers = {"Authorization": f"Bearer {_token(auth_manager)}"}
    for path in [*PAGES, TABS[0]]:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert not SERVER_PATH.search(response.text), path
    report = _json(tmp_path, f"output/runs/{RUN}/portfolio.json")
    page = client.get("/partitions", headers=headers).text
    assert page.count("data-timestamp=") == report["summary"]["expected_partitions"]


@pytest.mark.s3
def test_reports_are_read_from_an_s3_data_root_with_the_airflow_connection(
    seaweedfs, data_root, monkeypatch, auth_manager
):
    """Reports in a real S3 server; the credentials come only from the Airflow connection."""
    root = f"s3://{seaweedfs.bucket}/ui-reports"
    source = Storage(str(data_root))
    target = Storage(root, **seaweedfs.storage_options())
    for key in source.list_keys("output", suffix=".json"):
        target.write_bytes(key, source.read_bytes(key))
    monkeypatch.setenv("AIRFLOW_CONN_TRADING_REPORTS_S3", seaweedfs.airflow_connection())
    monkeypatch.setenv("TRADING_AWS_CONN_ID", "trading_reports_s3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    client = _client(monkeypatch, root)
    headers = {"Authorization": f"Bearer {_token(auth_manager)}"}
    page = client.get("/", headers=headers).text
    total = _json(data_root, layout.report_key("portfolio"))["summary"]["total_pnl"]
    assert f'<div class="v"><span class="neg">{_signed(total)}</span></div>' in page
    assert RUN in client.get("/run", headers=headers).text  # runs/latest.json and the run's files
    assert client.get("/partitions", headers=headers).text.count("data-timestamp=") == 42


def test_airflow_loads_the_plugin_without_importing_the_report_pages():
    """Airflow loads the plugins folder in every process, each task's included: loading this plugin
    must not import the pages' FastAPI app and the api-server's modules behind it (~1.8 s of CPU in
    every task, most of a partition's cost on the Celery stack)."""
    code = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "heavy = ['trading_airflow.ui.app', 'airflow.api_fastapi.app', 'fastapi']\n"
        "print(json.dumps({'plugins': [p['name'] for p in plugins_manager.get_plugin_info()],\n"
        "  'errors': plugins_manager.get_import_errors(),\n"
        "  'imported': [m for m in heavy if m in sys.modules]}))\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"plugins": ["trading_reports"], "errors": {}, "imported": []}


def test_plugin_registers_the_app_the_menu_and_the_tabs():
    from trading_reports_plugin import TradingReportsPlugin

    assert TradingReportsPlugin.fastapi_apps[0]["url_prefix"] == "/trading-reports"
    views = TradingReportsPlugin.external_views
    nav = [view for view in views if view["destination"] == "nav"]
    assert [view["href"] for view in nav] == [f"/trading-reports{page}" for page in PAGES]
    tabs = {view["destination"]: view["href"] for view in views if view["destination"] != "nav"}
    assert tabs == {
        "dag_run": "/trading-reports/dag-run/{DAG_ID}/{RUN_ID}",
        "task_instance": "/trading-reports/task-instance/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}",
    }
    assert len({view["url_route"] for view in views}) == len(views)
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    for view in views:  # what the api-server serves to the UI
        ExternalViewResponse.model_validate(view)


def test_task_instance_tab_outside_a_partition_or_without_its_xcom(client, viewer):
    page = client.get("/task-instance/validate_data/some-run/validate/%7BMAP_INDEX%7D", headers=viewer).text
    assert 'id="not-a-partition"' in page
    # an analyze_symbol run of the stored record, but not in this metadata DB: no XCom to read
    path = f"/task-instance/analyze_symbol/{quote(RUN, safe='')}__AAPL/analyze_partition/3"
    page = client.get(path, headers=viewer).text
    assert "No partitions recorded for this instance." in page
    scope = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'id="scope">(.*?)</p>', page).group(1)))
    assert scope == f"Contract AAPL · Orchestrator run {RUN} · Map index 3"


def test_late_runs_are_shown_on_the_pipeline_run_page(tmp_path, monkeypatch, auth_manager):
    """What the deadline alert's callback writes (trading_airflow.deadlines): the late run's page
    says it is late and the Pipeline run page lists it; a run on time says so."""
    from trading_lib.run_record import late_facts, record_run

    storage = Storage(str(tmp_path))
    window = {"window_start": "2024-01-23T15:30:00-05:00", "window_end": "2024-01-23T16:00:00-05:00"}
    record_run(storage, OLD_RUN, "running", contracts=["AAPL"], **window)
    record_run(storage, OLD_RUN, late=late_facts("2024-01-23T21:20:00+00:00", "running"))
    record_run(storage, RUN, "success", contracts=["AAPL"], **window)  # the newest: on time
    client = _client(monkeypatch, str(tmp_path))
    headers = {"Authorization": f"Bearer {_token(auth_manager)}"}

    late_page = client.get(f"/run/{quote(OLD_RUN, safe='')}", headers=headers).text
    assert re.search(r'id="run-deadline"[^>]*>late</span>', late_page)
    assert "2024-01-23 21:20 UTC" in late_page and "it was running" in late_page
    newest = client.get("/run", headers=headers).text
    assert re.search(r'id="run-deadline"[^>]*>on time</span>', newest)
    rows = _cells(newest, "late-runs")
    assert [(row[0], row[2], row[3]) for row in rows] == [(OLD_RUN, "2024-01-23 21:20 UTC", "running")]
    assert f'href="/dags/trading_orchestrator/runs/{quote(OLD_RUN, safe="")}"' in newest
