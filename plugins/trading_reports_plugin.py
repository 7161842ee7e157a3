"""Airflow plugin: the pipeline's reports inside the Airflow UI (see docs/ui-reports.md), and the
orchestrator's schedule and deadline classes, which the scheduler looks up here when it reads the
serialized DAG: the exchange's bar timetable (trading_airflow.timetables) and the deadline
reference "bar close, else queued" (trading_airflow.deadlines).

Airflow loads plugins in every process, each task process included (its listener manager loads
them), so this module stays light: the reports' FastAPI app is imported on its first request, in
the api-server only. Importing it here cost every task ~1.8 s of CPU (it pulls in the api-server's
security module and with it the whole API app): on the Celery stack, whose task processes do not
inherit loaded plugins, that was most of a partition's cost (docs/performance.md).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from trading_airflow.deadlines import BarCloseOrQueuedAt
from trading_airflow.timetables import ExchangeBarTimetable
from trading_airflow.ui import PAGES, PREFIX


class ReportsApp:
    """The ASGI app mounted under PREFIX: ``trading_airflow.ui.app.app``, imported when the first
    request arrives (an import error then fails that request, and the api-server log shows it)."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from trading_airflow.ui.app import app

            self._app = app
        await self._app(scope, receive, send)


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
    fastapi_apps = [{"app": ReportsApp(), "url_prefix": PREFIX, "name": "Trading reports"}]
    external_views = NAV_VIEWS + TAB_VIEWS
    timetables = [ExchangeBarTimetable]
    deadline_references = [BarCloseOrQueuedAt]
