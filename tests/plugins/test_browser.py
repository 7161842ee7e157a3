"""The Trading reports pages in a real headless Chromium, served by a real local Airflow that just
ran the pipeline (scripts/local_airflow.py, the stack of `make demo`, on its own port and home).
The pages are used where users use them: inside the Airflow UI's sandboxed plugin iframe.
Screenshots (each page, light and dark, 1280 and 800 px wide) go to test-output/screenshots/
(gitignored)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from demo import run_pipeline
from local_airflow import USERNAME, LocalAirflow, free_port

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

PROJECT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = PROJECT / "test-output" / "screenshots"
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
MINUS = "\u2212"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: run scripts/install_test_tools.py"
    ),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, stack_home):
    data_root = tmp_path_factory.mktemp("browser-data")
    pipeline.generate_inputs(Storage(str(data_root)), num_contracts=CONTRACTS)
    airflow = LocalAirflow(stack_home("browser-airflow"), free_port(), str(data_root))
    airflow.start(timeout=600)
    try:
        outcome = run_pipeline(airflow, {"num_contracts": CONTRACTS}, show_progress=False, timeout=900)
        assert outcome["orchestrator"]["state"] == "success", outcome
        assert outcome["aggregation"]["state"] == "success", outcome
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


def _sign_in(airflow, browser, color_scheme: str = "light", width: int = 1280, screenshot: str = ""):
    """A browser context signed in through Airflow's real login page, sent there by the reports."""
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=color_scheme)
    page = context.new_page()
    page.goto(f"{airflow.base_url}/trading-reports/")
    assert "/auth/login" in page.url and "Total P&L" not in page.content()
    page.locator("input[name=username]").fill(USERNAME)
    page.locator("input[name=password]").fill(airflow.password)
    if screenshot:
        page.screenshot(path=str(SCREENSHOTS / screenshot))
    page.locator("button[type=submit]").click()
    page.wait_for_url(f"{airflow.base_url}/trading-reports/", timeout=30_000)
    return context, page


@pytest.fixture(scope="module")
def signed_in(served, browser):
    airflow, _ = served
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context, page = _sign_in(airflow, browser, screenshot="airflow-login.png")
    yield page
    context.close()


def _json(data_root: Path, key: str) -> dict:
    return json.loads((data_root / key).read_text())


def _signed(value: float) -> str:
    return ("+" if value > 0 else MINUS if value < 0 else "") + f"{abs(value):,.2f}"


def test_signed_out_or_forged_sessions_land_on_the_login_page(served, browser):
    airflow, _ = served
    context = browser.new_context()
    page = context.new_page()
    for path in ("", "partitions", "run", "validation", "ingestion"):
        response = page.goto(f"{airflow.base_url}/trading-reports/{path}")
        assert "/auth/login" in page.url, path
        assert response.ok and "Trading reports" not in page.title()
    context.add_cookies([{"name": "_token", "value": "forged.token.value", "url": airflow.base_url}])
    page.goto(f"{airflow.base_url}/trading-reports/partitions")
    assert "/auth/login" in page.url and "Not allowed" not in page.content()
    context.close()


def test_portfolio_page_shows_the_numbers_and_what_they_cover(served, signed_in):
    airflow, data_root = served
    page, report = signed_in, _json(data_root, layout.report_key("portfolio"))
    latest = _json(data_root, "output/runs/latest.json")
    summary = report["summary"]
    response = page.goto(f"{airflow.base_url}/trading-reports/")
    assert response.headers["cache-control"] == "no-store"
    assert page.inner_text("#total_pnl .v") == _signed(summary["total_pnl"])
    assert page.inner_text("#win_rate .v") == f"{summary['win_rate']:.1%}"
    assert page.inner_text("#sharpe_ratio .v").startswith(f"{summary['sharpe_ratio']:,.2f}")
    assert page.inner_text("#average_beta .v") == f"{summary['average_beta']:.3f}"
    scope = page.inner_text("#scope")
    assert latest["run_id"] in scope and "Produced" in scope, scope
    assert str(data_root) not in page.content()
    assert page.locator("#contracts tbody tr").count() == CONTRACTS
    assert page.locator("#pnl-chart rect.bar").count() == len(report["timeseries"])
    box = page.locator("#pnl-chart").bounding_box()
    assert box["width"] > 800 and box["height"] > 250  # drawn, not an empty element
    # sortable: P&L column descending puts the best contract first
    page.locator("#contracts th", has_text="P&L (USD)").click()
    page.locator("#contracts th", has_text="P&L (USD)").click()
    best = max(report["contracts"], key=lambda c: c["total_pnl"])["contract"]
    assert page.inner_text("#contracts tbody tr:first-child td:first-child") == best


def test_grid_cell_inside_the_airflow_ui_opens_its_instance_and_clearing_reruns_it(served, signed_in):
    """Airflow's menu -> the matrix in the sandboxed iframe -> a click on a cell lands on that
    partition's mapped task instance; the multi-select Clear of the matrix reruns it."""
    airflow, data_root = served
    page = signed_in
    report = _json(
        data_root, f"output/runs/{_json(data_root, 'output/runs/latest.json')['run_id']}/portfolio.json"
    )
    page.goto(f"{airflow.base_url}/")
    page.get_by_role("button", name="Plugins").or_(page.get_by_text("Plugins", exact=True)).first.click()
    page.get_by_text("Trading reports", exact=True).first.hover()
    page.get_by_text("Trading reports", exact=True).first.click()
    page.get_by_role("menuitem", name="Partitions").or_(
        page.get_by_text("Partitions", exact=True)
    ).first.click()
    page.wait_for_url("**/plugin/trading-partitions**")
    frame = page.frame_locator("iframe").first
    frame.locator("table.grid a.c").first.wait_for(timeout=30_000)
    cells = frame.locator("table.grid a.c")
    assert cells.count() == len(report["partitions"]) == report["summary"]["expected_partitions"]
    states = frame.locator("table.grid a.c").evaluate_all("els => els.map(e => e.dataset.state)")
    assert set(states) == {"success"}
    page.screenshot(path=str(SCREENSHOTS / "airflow-ui-partitions.png"))

    cell = cells.nth(5)  # the sixth bar of the first contract
    contract, timestamp = cell.get_attribute("data-contract"), cell.get_attribute("data-timestamp")
    run_id, map_index = cell.get_attribute("data-run"), int(cell.get_attribute("data-map-index"))
    cell.click()  # inside the iframe: page.js routes the Airflow UI around it
    page.wait_for_url(f"**/tasks/analyze_partition/mapped/{map_index}", timeout=30_000)
    assert quote(run_id, safe="") in page.url
    # the Airflow UI names the instance by its rendered map index: the partition clicked
    page.get_by_text(f"{contract} {timestamp}").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "airflow-mapped-instance.png"))

    client = airflow.client()
    path = (
        f"/api/v2/dags/analyze_symbol/dagRuns/{quote(run_id, safe='')}"
        f"/taskInstances/analyze_partition/{map_index}"
    )
    before = client.get(path)
    assert before["state"] == "success"

    page.go_back()  # Airflow's history holds the matrix page: back to it
    page.wait_for_url("**/plugin/trading-partitions**", timeout=30_000)
    frame = page.frame_locator("iframe").first
    frame.locator("table.grid a.c").first.wait_for(timeout=30_000)
    frame.locator("#select-mode").check()
    target = frame.locator(f'table.grid a.c[data-run="{run_id}"][data-map-index="{map_index}"]').first
    target.click()
    assert frame.locator("#selected-count").inner_text() == "1 selected"
    assert page.url.endswith("/plugin/trading-partitions") or "/plugin/trading-partitions" in page.url
    page.screenshot(path=str(SCREENSHOTS / "airflow-ui-partitions-selected.png"))
    frame.locator("#clear-selected").click()
    assert "Clear 1 task instance(s)" in frame.locator("#clear-confirm-text").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "airflow-ui-partitions-confirm-clear.png"))
    frame.locator("#clear-confirm-yes").click()
    frame.locator("#clear-status", has_text="Cleared 1 task instance").wait_for(timeout=30_000)

    deadline = time.monotonic() + 180
    while True:
        after = client.get(path)
        if after["try_number"] > before["try_number"] and after["state"] == "success":
            break
        assert time.monotonic() < deadline, (
            f"partition not rerun: {after['state']}, try {after['try_number']}"
        )
        time.sleep(2)
    client.wait_for_run("analyze_symbol", run_id, timeout=120)
    # the matrix shows the instance's new try once reloaded
    page.reload()
    frame = page.frame_locator("iframe").first
    rerun = f'[data-run="{run_id}"][data-map-index="{map_index}"][title*="try {after["try_number"]}"]'
    frame.locator(f"table.grid a.c{rerun}").first.wait_for(timeout=30_000)


def test_run_validation_ingestion_pages_and_the_run_tab(served, signed_in):
    airflow, data_root = served
    page = signed_in
    latest = _json(data_root, "output/runs/latest.json")
    page.goto(f"{airflow.base_url}/trading-reports/run")
    assert latest["run_id"] in page.inner_text("#run-facts")
    assert page.locator("#symbols tbody tr").count() == CONTRACTS
    assert page.locator("#symbols .badge").all_inner_texts() == ["success"] * CONTRACTS

    validation = _json(data_root, layout.report_key("validation"))
    page.goto(f"{airflow.base_url}/trading-reports/validation")
    assert page.inner_text("#status") == validation["status"]
    if validation["issues"]:
        assert page.locator("#issues tbody tr").count() == len(validation["issues"])
    else:
        assert page.inner_text("#no-issues") == "No issues: every check passed."

    page.goto(f"{airflow.base_url}/trading-reports/ingestion")  # this run read generated input
    assert "No ingestion report yet" in page.inner_text("#missing-report")

    # the run's report one tab away in Airflow's own run page
    run_url = f"{airflow.base_url}/dags/trading_orchestrator/runs/{quote(latest['run_id'], safe='')}"
    page.goto(run_url)
    page.get_by_text("Trading report", exact=True).first.click()
    frame = page.frame_locator("iframe").first
    frame.locator("#run-facts").wait_for(timeout=30_000)
    assert latest["run_id"] in frame.locator("#run-facts").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "airflow-ui-run-tab.png"))
    # a link of the tab (the analyze_symbol run of a contract) navigates the Airflow UI
    frame.locator("#symbols a[data-airflow]").first.click()
    page.wait_for_url("**/dags/analyze_symbol/runs/**", timeout=30_000)


PAGES = {
    "portfolio": "",
    "partitions": "partitions",
    "run": "run",
    "validation": "validation",
    "ingestion": "ingestion",
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_light_and_dark_at_1280_and_800_px(served, browser, scheme):
    """Each page opened directly and inside the Airflow UI, in the UI's colour mode; at 800 px the
    page itself never scrolls sideways (the matrix and the tables scroll in their own boxes)."""
    airflow, _ = served
    for width in (1280, 800):
        context, page = _sign_in(airflow, browser, scheme, width)
        for name, path in PAGES.items():
            page.goto(f"{airflow.base_url}/trading-reports/{path}")
            assert page.evaluate("document.documentElement.dataset.theme") == scheme
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} at {width} px scrolls sideways by {overflow} px"
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}-{width}.png"), full_page=True)
        for name in ("portfolio", "partitions"):
            page.goto(f"{airflow.base_url}/plugin/trading-{name}")
            frame = page.frame_locator("iframe").first
            frame.locator("h1").wait_for(timeout=30_000)
            parent = page.evaluate("document.documentElement.classList.contains('dark') ? 'dark' : 'light'")
            assert parent == scheme
            assert frame.locator("html").get_attribute("data-theme") == scheme  # follows the Airflow UI
            page.screenshot(path=str(SCREENSHOTS / f"airflow-ui-{name}-{scheme}-{width}.png"))
        context.close()
