"""
### ingest_market_data: hourly bars from Yahoo Finance into the input files

Layer 1 of the trading pipeline, standalone (trading_orchestrator runs the same task). Fetches
the `symbols` plus ^VIX and ^GSPC (interval 1h) in parallel, with retries and exponential
backoff on rate limits and network errors, aligns ^VIX to the stock bars without look-ahead, and
writes `input/*.parquet` plus `output/reports/ingestion.json`. Without dates it fetches the most
recent sessions. Yahoo serves 1h bars for the last 730 days only: older ranges are refused
before any request.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from common.runtime import DEFAULT_ARGS, START_DATE
from common.tasks import ingest_market_data as ingest_task

from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id="ingest_market_data",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "layer-1"],
    default_args=DEFAULT_ARGS,
    params={
        "symbols": Param(
            ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH"],
            type="array",
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            minItems=1,
            uniqueItems=True,
            description="Stocks to fetch (^VIX and ^GSPC are always added)",
        ),
        "start_date": Param(None, type=["null", "string"], format="date", description="YYYY-MM-DD"),
        "end_date": Param(None, type=["null", "string"], format="date", description="YYYY-MM-DD, exclusive"),
    },
)
def ingest_market_data():
    @task(retries=0)
    def build_request() -> dict:
        from common.runtime import bad_input_fails_fast

        from trading_lib.pipeline import PipelineInputError

        params = get_current_context()["params"]
        start, end = params.get("start_date"), params.get("end_date")
        with bad_input_fails_fast():
            if (start is None) != (end is None):
                raise PipelineInputError("start_date and end_date must be given together")
            if start is None:
                from trading_lib.ingestion import default_window

                start, end = (t.date().isoformat() for t in default_window())
            elif start >= end:
                raise PipelineInputError(f"start_date ({start}) must be before end_date ({end})")
        return {"run_ingestion": True, "symbols": params["symbols"], "start": start, "end": end}

    ingest_task(build_request())


ingest_market_data()
