"""
### ingest_market_data: hourly bars from Yahoo Finance into the bar store

The same task trading_orchestrator runs, standalone. Fetches what the bar store lacks of
`symbols` plus ^VIX and ^GSPC (interval 1h) for the sessions `start_date` .. `end_date` and the 11
warm-up sessions before them (plus the store's latest session, which may have been stored while
trading), in parallel, with retries and exponential backoff on rate limits and network errors;
aligns ^VIX to the stock bars without look-ahead; upserts each session file atomically and writes
`output/reports/ingestion.json`. A ticker that fails stops the ingestion before anything is
written, unless `allow_partial`. Yahoo serves 1h bars for the last 730 days only: older ranges
are refused before any request.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from trading_airflow.params import ingestion_params
from trading_airflow.runtime import DEFAULT_ARGS, INGEST_DAG, SETTINGS, START_DATE, bad_input_fails_fast
from trading_airflow.tasks import ingest_market_data as ingest_task


@dag(
    dag_id=INGEST_DAG,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "ingest"],
    default_args=DEFAULT_ARGS,
    params=ingestion_params(list(SETTINGS.symbols)),
)
def ingest_market_data():
    @task(retries=0)
    def build_request(params=None, dag_run=None):
        from trading_lib.run_request import ingestion_request

        with bad_input_fails_fast():
            request = ingestion_request(params, dag_run.conf)
        return {
            "ingest": True,
            "symbols": request["symbols"],
            "ingestion_start": request["start"],
            "ingestion_end": request["end"],
            "allow_partial": request["allow_partial"],
        }

    ingest_task(build_request())


ingest_market_data()
