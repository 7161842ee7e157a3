"""Airflow plugin: the pipeline's reports inside the Airflow UI (see docs/ui-reports.md)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from trading_reports.app import PAGES, PREFIX, app

# Menu entries of the Airflow UI; each page opens inside the UI at /plugin/<url_route>.
NAV_VIEWS = [
    {
        "name": title,
        "href": f"{PREFIX}/{path}",
        "destination": "nav",
        "category": "Trading reports",
        "url_route": f"trading-{path or 'portfolio'}",
    }
    for path, title in PAGES
]
# Tabs: the UI fills in {DAG_ID}, {RUN_ID}, {TASK_ID}, {MAP_INDEX} of the page they sit on.
TAB_VIEWS = [
    {
        "name": "Trading report",
        "href": f"{PREFIX}/dag-run/{{DAG_ID}}/{{RUN_ID}}",
        "destination": "dag_run",
        "url_route": "trading-run-report",
    },
    {
        "name": "Partition result",
        "href": f"{PREFIX}/task-instance/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}",
        "destination": "task_instance",
        "url_route": "trading-partition-result",
    },
]


class TradingReportsPlugin(AirflowPlugin):
    name = "trading_reports"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Trading reports"}]
    external_views = NAV_VIEWS + TAB_VIEWS
