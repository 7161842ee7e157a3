"""The Trading reports pages in a real headless Chromium, served by a real local Airflow that just
ran the pipeline (scripts/local_airflow.py, the stack of `make demo`). Screenshots go to
test-output/ (gitignored)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "scripts"))

from demo import run_pipeline  # noqa: E402
from local_airflow import LocalAirflow, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = PROJECT / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: run scripts/install_test_tools.py"
    ),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_root = tmp_path_factory.mktemp("browser-data")
    pipeline.generate_inputs(Storage(str(data_root)), num_contracts=3)
    airflow = LocalAirflow(tmp_path_factory.mktemp("browser-airflow"), free_port(), str(data_root))
    airflow.start(timeout=180)
    try:
        outcome = run_pipeline(airflow, {"num_contracts": 3}, show_progress=False)
        assert outcome["aggregation"]["state"] == "success"
        yield airflow, data_root
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _page(browser, airflow, signed_in: bool):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    if signed_in:
        token = airflow.client().token()
        context.add_cookies([{"name": "_token", "value": token, "url": airflow.base_url}])
    return context.new_page()


def test_signed_out_browser_is_sent_to_login(served, browser):
    airflow, _ = served
    page = _page(browser, airflow, signed_in=False)
    page.goto(f"{airflow.base_url}/trading-reports/")
    assert "login" in page.url
    assert "Total P&L" not in page.content()


def test_pages_show_the_last_run(served, browser):
    airflow, data_root = served
    SCREENSHOTS.mkdir(exist_ok=True)
    summary = json.loads((data_root / layout.report_key("portfolio")).read_text())["summary"]
    page = _page(browser, airflow, signed_in=True)

    page.goto(f"{airflow.base_url}/trading-reports/")
    assert page.inner_text("#total_pnl .v") == f"{summary['total_pnl']:,.2f}"
    assert page.inner_text("#win_rate .v") == f"{summary['win_rate']:.1%}"
    assert page.inner_text("#sharpe_ratio .v") == f"{summary['sharpe_ratio']:,.2f}"
    assert page.inner_text("#average_beta .v") == f"{summary['average_beta']:.3f}"
    assert page.locator("#pnl-chart polyline").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-portfolio.png"), full_page=True)

    page.goto(f"{airflow.base_url}/trading-reports/partitions")
    cells = page.locator("table.grid a")
    assert cells.count() == 72
    assert set(page.eval_on_selector_all("table.grid a", "els => els.map(e => e.dataset.state)")) == {
        "success"
    }
    href = cells.first.get_attribute("href")
    assert re.fullmatch(r"/dags/analyze_symbol/runs/[^/]+/tasks/analyze_time_partition/mapped/\d+", href)
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-partitions.png"), full_page=True)

    page.goto(f"{airflow.base_url}/trading-reports/validation")
    assert page.inner_text("#status") == "PASS"
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-validation.png"), full_page=True)

    # one click from a grid cell to the mapped task instance in the Airflow UI
    page.goto(f"{airflow.base_url}{href}")
    page.wait_for_load_state("networkidle")
    assert "/mapped/" in page.url
    page.screenshot(path=str(SCREENSHOTS / "airflow-mapped-instance.png"))
