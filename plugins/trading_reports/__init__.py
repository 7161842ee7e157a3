"""Airflow plugin: the pipeline's reports inside the Airflow UI (see docs/ui-reports.md)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from trading_reports.app import PAGES, PREFIX, app


class TradingReportsPlugin(AirflowPlugin):
    name = "trading_reports"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Trading reports"}]
    # Menu entries of the Airflow UI; each page opens inside the UI at /plugin/<url_route>.
    external_views = [
        {
            "name": title,
            "href": f"{PREFIX}/{path}",
            "destination": "nav",
            "category": "Trading reports",
            "url_route": f"trading-{path or 'portfolio'}",
        }
        for path, title in PAGES
    ]
