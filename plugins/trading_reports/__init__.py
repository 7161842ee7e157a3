"""Airflow plugin: the pipeline's reports inside the Airflow UI (see docs/ui-reports.md)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from trading_reports.app import PREFIX, app

_VIEWS = (
    ("Portfolio", ""),
    ("Partitions", "partitions"),
    ("Validation", "validation"),
    ("Ingestion", "ingestion"),
)


class TradingReportsPlugin(AirflowPlugin):
    name = "trading_reports"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Trading reports"}]
    external_views = [
        {
            "name": title,
            "href": f"{PREFIX}/{path}",
            "destination": "nav",
            "category": "Trading reports",
            "url_route": f"trading-{path or 'portfolio'}",
        }
        for title, path in _VIEWS
    ]
