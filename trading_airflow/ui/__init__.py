"""The Trading reports pages: a FastAPI app (``trading_airflow.ui.app``) that the Airflow plugin
``plugins/trading_reports_plugin.py`` serves inside the Airflow UI (see docs/ui-reports.md).

Not in plugins/: Airflow imports every .py file there, in every process and every task, and the
app is heavy (~1.8 s of CPU); the plugin imports it on its first request in the api-server only.
This module stays free of imports: the plugin reads the page list from here.
"""

PREFIX = "/trading-reports"
PAGES = (
    ("", "Portfolio"),
    ("partitions", "Partitions"),
    ("run", "Pipeline run"),
    ("validation", "Validation"),
    ("ingestion", "Ingestion"),
)
