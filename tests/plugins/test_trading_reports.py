"""The Trading reports pages over real reports (the library pipeline run into a temporary data
root), behind Airflow's real auth manager and real JWTs. Browser test: test_browser.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    storage = Storage(str(root))
    pipeline.generate_inputs(storage, num_contracts=3)
    pipeline.validate(storage)
    contracts = pipeline.select_contracts(storage, 3)
    window = pipeline.resolve_window(storage)
    pipeline.write_manifest(storage, contracts=contracts, window=window)
    for contract in contracts:
        pipeline.run_partitions(storage, contract, pipeline.list_partitions(storage, contract))
    pipeline.aggregate(storage)
    return root


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


@pytest.fixture
def client(data_root, monkeypatch, auth_manager):
    monkeypatch.setenv("TRADING_DATA_ROOT", str(data_root))
    from trading_reports.app import app

    return TestClient(app, follow_redirects=False)  # the api-server mounts it under /trading-reports


@pytest.fixture
def token(auth_manager):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


PAGES = ["/", "/partitions", "/validation", "/ingestion"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_need_a_signed_in_user(client, page):
    api = client.get(page, headers={"Accept": "application/json"})
    assert api.status_code == 401
    browser = client.get(page, headers={"Accept": "text/html"})
    assert browser.status_code == 303
    assert "login" in browser.headers["location"] and "next=" in browser.headers["location"]
    forged = client.get(page, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code in (401, 403)


def test_portfolio_page_shows_the_reported_numbers(client, token, data_root):
    response = client.get("/", cookies={"_token": token})
    assert response.status_code == 200
    summary = json.loads((data_root / layout.report_key("portfolio")).read_text())["summary"]
    page = response.text
    assert f"{summary['total_pnl']:,.2f}" in page
    assert f"{summary['win_rate']:.1%}" in page
    assert f"{summary['sharpe_ratio']:,.2f}" in page
    assert f"{summary['average_beta']:.3f}" in page
    assert "<polyline" in page  # the cumulative P&L chart
    assert page.count("<tr>") >= 1 + 3 + 1 + 24  # contract rows and time-series rows
    assert "Good trades / closed trades" in page  # definitions shown with the numbers


def test_partition_grid_covers_every_partition_and_links_to_mapped_instances(client, token, data_root):
    page = client.get("/partitions", headers={"Authorization": f"Bearer {token}"}).text
    report = json.loads((data_root / layout.report_key("portfolio")).read_text())
    cells = re.findall(r'data-signal="(\w+)"', page)
    assert len(cells) == len(report["partitions"]) == 72
    assert sorted(cells) == sorted(p["signal"] for p in report["partitions"])


def test_validation_and_missing_ingestion(client, token):
    validation = client.get("/validation", cookies={"_token": token}).text
    assert 'id="status"' in validation and "PASS" in validation
    ingestion = client.get("/ingestion", cookies={"_token": token}).text
    assert "No ingestion report yet" in ingestion


def test_plugin_registers_the_app_and_nav_entries():
    from trading_reports import TradingReportsPlugin

    assert TradingReportsPlugin.fastapi_apps[0]["url_prefix"] == "/trading-reports"
    hrefs = [view["href"] for view in TradingReportsPlugin.external_views]
    assert hrefs == [
        "/trading-reports/",
        "/trading-reports/partitions",
        "/trading-reports/validation",
        "/trading-reports/ingestion",
    ]
