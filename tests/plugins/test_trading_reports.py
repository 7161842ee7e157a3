"""The Trading reports pages over real reports (the library pipeline run into a temporary data
root, local or on a real S3 server), behind Airflow's real auth manager and real JWTs.
Browser test against a running Airflow: test_browser.py."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from trading_lib import cli, layout, pipeline
from trading_lib.ingestion import IngestionReport, TickerResult
from trading_lib.sample_data import Anomalies
from trading_lib.storage import Storage
from trading_lib.symbols import symbol_to_segment

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from s3.conftest import seaweedfs_fixture  # noqa: E402, F401 - fixture

pytestmark = pytest.mark.airflow

ORCHESTRATOR_RUN = "manual__2024-01-23T17:00:00+00:00"
PAGES = ["/", "/partitions", "/run", "/validation", "/ingestion"]


def _run_pipeline(root: str) -> None:
    """Sample data with WARN-level defects (so the validation page has issues to list and the grid
    a bar one contract lacks), `python -m trading_lib run --contracts 3`, plus the run record the
    orchestrator's publish_results writes (there is no Airflow run here)."""
    pipeline.generate_inputs(
        Storage(root), num_contracts=3, anomalies=Anomalies(nan_runs=1, outliers=1, missing_bars=1)
    )
    assert cli.main(["--data-root", root, "run", "--contracts", "3"]) == 0
    storage = Storage(root)
    manifest = storage.read_json(layout.report_key("pipeline/manifest"))
    validation = storage.read_json(layout.report_key("validation"))
    storage.write_json(
        layout.report_key("pipeline/last_run"),
        {
            "orchestrator_run_id": ORCHESTRATOR_RUN,
            "contracts": manifest["contracts"],
            "analyze_symbol_run_ids": [
                f"{ORCHESTRATOR_RUN}__{symbol_to_segment(c)}" for c in manifest["contracts"]
            ],
            "window_start": manifest["window_start"],
            "window_end": manifest["window_end"],
            "validation": {"status": validation["status"], "summary": validation["summary"]},
        },
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    _run_pipeline(str(root))
    return root


def _report(root: Path, name: str) -> dict:
    return json.loads((root / layout.report_key(name)).read_text())


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


def _client(monkeypatch, root: str) -> TestClient:
    monkeypatch.setenv("TRADING_DATA_ROOT", root)
    from trading_reports.app import app

    return TestClient(app, follow_redirects=False)  # the api-server mounts it under /trading-reports


@pytest.fixture
def client(data_root, monkeypatch, auth_manager):
    return _client(monkeypatch, str(data_root))


def _token(auth_manager, role: str | None = "viewer") -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username="reader", role=role))


@pytest.fixture
def viewer(auth_manager) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(auth_manager)}"}


def _cells(page: str, tag: str) -> list[list[str]]:
    """Cells (unescaped markup) of the table with id ``tag``, one list per body row."""
    body = re.search(rf'<table id="{tag}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


# -- auth -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_signed_out_requests_are_refused(client, page):
    api = client.get(page, headers={"Accept": "application/json"})
    assert (api.status_code, api.json()) == (401, {"detail": "Not authenticated"})
    browser = client.get(page, headers={"Accept": "text/html"})
    assert browser.status_code == 303
    location = urlsplit(browser.headers["location"])
    assert location.path == "/auth/login"  # the SimpleAuthManager's page; back to this page after
    assert parse_qs(location.query)["next"] == [f"http://testserver{page}"]
    forged = client.get(page, headers={"Authorization": "Bearer not-a-jwt", "Accept": "text/html"})
    assert forged.status_code == 403 and "Sign in as another user" in forged.text
    assert "Total P&amp;L" not in forged.text


def test_every_route_of_the_app_needs_a_user(client):
    from trading_reports.app import app

    paths = {route.path for route in app.routes if "GET" in getattr(route, "methods", ())}
    assert paths == set(PAGES)  # a new page gets a test here, and the app-level auth dependency
    for path in paths:
        assert client.get(path).status_code == 401


def test_a_user_without_read_access_to_the_dags_is_refused(client, auth_manager):
    roleless = {"Authorization": f"Bearer {_token(auth_manager, role=None)}"}
    for page in PAGES:
        response = client.get(page, headers=roleless)
        assert (response.status_code, response.json()) == (403, {"detail": "Forbidden"})


def test_cookie_of_the_ui_signs_in(client, auth_manager):
    client.cookies.set("_token", _token(auth_manager))
    assert client.get("/").status_code == 200


# -- pages ----------------------------------------------------------------------------------------
def test_portfolio_page_shows_the_reported_numbers(client, viewer, data_root):
    page = client.get("/", headers=viewer).text
    report = _report(data_root, "portfolio")
    summary = report["summary"]
    for key, shown in [
        ("total_pnl", f"{summary['total_pnl']:,.2f}"),
        ("win_rate", f"{summary['win_rate']:.1%}"),
        ("sharpe_ratio", f"{summary['sharpe_ratio']:,.2f}"),
        ("average_beta", f"{summary['average_beta']:.3f}"),
    ]:
        assert re.search(rf'id="{key}"><div>[^<]+</div><div class="v">{re.escape(shown)}</div>', page), key
    assert "Good trades / closed trades" in page  # definitions beside the numbers
    assert f"{summary['trades']:,} trades" in page
    contracts = _cells(page, "contracts")
    assert [row[0] for row in contracts] == [c["contract"] for c in report["contracts"]]
    assert [row[5] for row in contracts] == [f"{c['total_pnl']:,.2f}" for c in report["contracts"]]
    timeseries = _cells(page, "timeseries")
    assert len(timeseries) == len(report["timeseries"]) == len({p["timestamp"] for p in report["partitions"]})
    assert timeseries[-1][4] == f"{report['timeseries'][-1]['cumulative_pnl']:,.2f}"
    chart = re.search(r'<svg id="pnl-chart".*?</svg>', page, re.S).group(0)
    assert chart.count("<rect") == len(report["timeseries"]) and chart.count("<polyline") == 1


def test_partition_grid_has_one_cell_per_partition(client, viewer, data_root):
    page = client.get("/partitions", headers=viewer).text
    report = _report(data_root, "portfolio")
    shown = re.findall(r'data-contract="([^"]+)" data-timestamp="([^"]+)" data-signal="(\w+)"', page)
    assert sorted(shown) == sorted((p["contract"], p["timestamp"], p["signal"]) for p in report["partitions"])
    assert len(shown) == report["summary"]["expected_partitions"]
    # these runs are not in this metadata DB: the cells say so instead of linking nowhere
    assert "/mapped/" not in page and "no task instance in the last run" in page


def test_grid_cells_link_to_their_mapped_instance_and_show_its_state():
    from trading_reports.rendering import Links, partition_grid
    from trading_reports.reports import TaskCell, partition_index

    labels = ["2024-01-22T09:30:00-05:00", "2024-01-22T10:30:00-05:00", "2024-01-22T11:30:00-05:00"]
    # a run past max_map_length: two timestamps share the instance with map index 0
    index = partition_index([labels[:2], labels[2:]])
    assert index == {labels[0]: 0, labels[1]: 0, labels[2]: 1}
    cells = {("^VIX", ts): TaskCell("run 1", i, "success" if i == 0 else "failed") for ts, i in index.items()}
    partitions = [{"contract": "^VIX", "timestamp": ts, "signal": "BUY", "beta": 1.0} for ts in labels[:2]]
    grid = partition_grid(
        partitions,
        [{"contract": "^VIX", "timestamp": labels[2]}],
        cells,
        Links("/airflow/trading-reports", "/trading-reports"),
    )
    hrefs = re.findall(r'href="([^"]+)"', grid)
    assert hrefs == [
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_time_partition/mapped/0",
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_time_partition/mapped/0",
        "/airflow/dags/analyze_symbol/runs/run%201/tasks/analyze_time_partition/mapped/1",
    ]
    assert re.findall(r'data-signal="(\w+)" data-state="(\w*)"', grid) == [
        ("BUY", "success"),
        ("BUY", "success"),
        ("missing", "failed"),
    ]
    assert grid.count("outline:") == 1  # only the failed instance is outlined


def test_pipeline_run_page_shows_the_run_and_each_symbol(client, viewer, data_root):
    page = client.get("/run", headers=viewer).text
    manifest = _report(data_root, "pipeline/manifest")
    assert ORCHESTRATOR_RUN in page and manifest["window_start"] in page
    rows = _cells(page, "symbols")
    assert [row[0] for row in rows] == manifest["contracts"]
    for row, contract in zip(rows, manifest["contracts"], strict=True):
        summary = _report(data_root, f"symbols/{symbol_to_segment(contract)}")
        assert row[3:9] == [
            f"{summary['partitions']:,}",
            f"{summary['written']:,}",
            f"{len(summary['missing']):,}",
            f"{summary['signals']['BUY']:,}",
            f"{summary['signals']['SELL']:,}",
            f"{summary['signals']['HOLD']:,}",
        ]
        assert (
            f"/dags/analyze_symbol/runs/{ORCHESTRATOR_RUN.replace(':', '%3A').replace('+', '%2B')}__"
            in row[1]
        )


def test_validation_page_shows_the_status_and_every_issue(client, viewer, data_root):
    page = client.get("/validation", headers=viewer).text
    report = _report(data_root, "validation")
    assert re.search(rf'id="status"[^>]*>{report["status"]}</span>', page)
    assert len(_cells(page, "checks")) == len(report["checks"])
    assert report["status"] == "WARN" and report["issues"]  # the injected defects were found
    issues = _cells(page, "issues")
    assert len(issues) == len(report["issues"])
    assert [row[:3] + row[4:] for row in issues] == [
        [i["check"], i["severity"], i["contract"], i["detail"]] for i in report["issues"]
    ]


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
        written={layout.HOLDINGS_KEY: 182},
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


@pytest.mark.parametrize("page", PAGES)
def test_missing_reports_give_a_friendly_page(tmp_path, monkeypatch, auth_manager, page):
    client = _client(monkeypatch, str(tmp_path))
    response = client.get(page, headers={"Authorization": f"Bearer {_token(auth_manager)}"})
    assert response.status_code == 200
    assert re.search(r'id="missing-report">No [^<]+ yet\.', response.text)


@pytest.mark.s3
def test_reports_are_read_from_an_s3_data_root_with_the_airflow_connection(
    seaweedfs, data_root, monkeypatch, auth_manager
):
    """Reports in a real S3 server; the credentials come only from the Airflow connection."""
    root = f"s3://{seaweedfs.bucket}/ui-reports"
    source = Storage(str(data_root))
    target = Storage(root, **seaweedfs.storage_options())
    for key in source.list_keys(layout.REPORTS_PREFIX, suffix=".json"):
        target.write_bytes(key, source.read_bytes(key))
    monkeypatch.setenv("AIRFLOW_CONN_TRADING_REPORTS_S3", seaweedfs.airflow_connection())
    monkeypatch.setenv("TRADING_AWS_CONN_ID", "trading_reports_s3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    client = _client(monkeypatch, root)
    page = client.get("/", headers={"Authorization": f"Bearer {_token(auth_manager)}"}).text
    total = _report(data_root, "portfolio")["summary"]["total_pnl"]
    assert f'<div class="v">{total:,.2f}</div>' in page


def test_plugin_registers_the_app_and_a_menu_entry_per_page():
    from trading_reports import TradingReportsPlugin

    assert TradingReportsPlugin.fastapi_apps[0]["url_prefix"] == "/trading-reports"
    views = TradingReportsPlugin.external_views
    assert [view["href"] for view in views] == [f"/trading-reports{page}" for page in PAGES]
    assert {view["destination"] for view in views} == {"nav"}
    assert len({view["url_route"] for view in views}) == len(PAGES)
