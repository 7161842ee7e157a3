"""The Trading reports pages in a real headless Chromium, served by a real local Airflow that just
ran the pipeline (scripts/local_airflow.py, the stack of `make demo`, on its own port and home).
Screenshots go to test-output/ (gitignored)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "scripts"))

from demo import run_pipeline  # noqa: E402
from local_airflow import USERNAME, LocalAirflow, free_port  # noqa: E402

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
CONTRACTS = 3

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
    pipeline.generate_inputs(Storage(str(data_root)), num_contracts=CONTRACTS)
    airflow = LocalAirflow(tmp_path_factory.mktemp("browser-airflow"), free_port(), str(data_root))
    airflow.start(timeout=180)
    try:
        outcome = run_pipeline(airflow, {"num_contracts": CONTRACTS}, show_progress=False)
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


@pytest.fixture(scope="module")
def signed_in(served, browser):
    """A browser that signed in through Airflow's real login page, sent there by the reports."""
    airflow, _ = served
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(f"{airflow.base_url}/trading-reports/")
    assert "/auth/login" in page.url and "Total P&L" not in page.content()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.locator("input[name=username]").fill(USERNAME)
    page.locator("input[name=password]").fill(airflow.password)
    page.screenshot(path=str(SCREENSHOTS / "airflow-login.png"))
    page.locator("button[type=submit]").click()
    page.wait_for_url(f"{airflow.base_url}/trading-reports/", timeout=30_000)
    yield page
    context.close()


def _report(data_root: Path, name: str) -> dict:
    return json.loads((data_root / layout.report_key(name)).read_text())


def test_signed_out_browser_never_sees_a_report(served, browser):
    airflow, _ = served
    context = browser.new_context()
    page = context.new_page()
    for path in ("", "partitions", "run", "validation", "ingestion"):
        response = page.goto(f"{airflow.base_url}/trading-reports/{path}")
        assert "/auth/login" in page.url, path
        assert response.ok and "Trading reports" not in page.title()
    context.close()


def test_portfolio_page_shows_the_numbers_of_the_last_run(served, signed_in):
    airflow, data_root = served
    page, report = signed_in, _report(data_root, "portfolio")
    summary = report["summary"]
    page.goto(f"{airflow.base_url}/trading-reports/")
    assert page.inner_text("#total_pnl .v") == f"{summary['total_pnl']:,.2f}"
    assert page.inner_text("#win_rate .v") == f"{summary['win_rate']:.1%}"
    assert page.inner_text("#sharpe_ratio .v") == f"{summary['sharpe_ratio']:,.2f}"
    assert page.inner_text("#average_beta .v") == f"{summary['average_beta']:.3f}"
    assert page.locator("#contracts tbody tr").count() == CONTRACTS
    assert page.locator("#pnl-chart rect.bar").count() == len(report["timeseries"])
    box = page.locator("#pnl-chart").bounding_box()
    assert box["width"] > 800 and box["height"] > 250  # drawn, not an empty element
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-portfolio.png"), full_page=True)


def test_grid_cell_opens_its_mapped_task_instance(served, signed_in):
    airflow, data_root = served
    page, report = signed_in, _report(data_root, "portfolio")
    page.goto(f"{airflow.base_url}/trading-reports/partitions")
    cells = page.locator("table.grid a")
    assert cells.count() == len(report["partitions"]) == report["summary"]["expected_partitions"]
    states = page.eval_on_selector_all("table.grid a", "els => els.map(e => e.dataset.state)")
    assert set(states) == {"success"}
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-partitions.png"), full_page=True)

    cell = cells.nth(5)  # the sixth bar of the first contract
    contract, timestamp = cell.get_attribute("data-contract"), cell.get_attribute("data-timestamp")
    cell.click()
    page.wait_for_url("**/tasks/analyze_time_partition/mapped/*")
    # the Airflow UI names the instance by its rendered map index: the partition clicked
    page.get_by_text(f"{contract} {timestamp}").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "airflow-mapped-instance.png"))


def test_run_validation_and_ingestion_pages(served, signed_in):
    airflow, data_root = served
    page = signed_in
    last_run = _report(data_root, "pipeline/last_run")
    page.goto(f"{airflow.base_url}/trading-reports/run")
    assert last_run["orchestrator_run_id"] in page.inner_text("#run-facts")
    assert page.locator("#symbols tbody tr").count() == CONTRACTS
    assert page.locator("#symbols .badge").all_inner_texts() == ["success"] * CONTRACTS
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-run.png"), full_page=True)

    validation = _report(data_root, "validation")
    page.goto(f"{airflow.base_url}/trading-reports/validation")
    assert page.inner_text("#status") == validation["status"]
    if validation["issues"]:
        assert page.locator("#issues tbody tr").count() == len(validation["issues"])
    else:
        assert page.inner_text("#no-issues") == "No issues: every check passed."
    page.screenshot(path=str(SCREENSHOTS / "trading-reports-validation.png"), full_page=True)

    page.goto(f"{airflow.base_url}/trading-reports/ingestion")  # this run read generated input
    assert "No ingestion report yet" in page.inner_text("#missing-report")


def test_reports_menu_in_the_airflow_ui(served, signed_in):
    airflow, _ = served
    page = signed_in
    page.goto(f"{airflow.base_url}/plugin/trading-portfolio")
    frame = page.frame_locator("iframe").first
    frame.locator("#total_pnl").wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "airflow-ui-trading-reports.png"))
