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

from airflow.sdk import Param, dag, task

from trading_airflow.runtime import DEFAULT_ARGS, SETTINGS, START_DATE, bad_input_fails_fast
from trading_airflow.tasks import ingest_market_data as ingest_task
from trading_lib.run_request import DATE_PATTERN, MAX_CONTRACTS
from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id="ingest_market_data",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "ingest"],
    default_args=DEFAULT_ARGS,
    params={
        "symbols": Param(
            list(SETTINGS.symbols),
            type="array",
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            minItems=1,
            maxItems=MAX_CONTRACTS,
            uniqueItems=True,
            title="Symbols",
            description=f"Yahoo tickers to fetch (letters/digits, optional ^, parts joined by - . =), 1 to "
            f"{MAX_CONTRACTS}, no repeats. ^VIX and ^GSPC are always added.",
        ),
        "start_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Start date",
            description="First session, YYYY-MM-DD, with End date. Default: the last 5 complete sessions. "
            "1h bars exist for the last 730 days only.",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="End date",
            description="End date, exclusive, YYYY-MM-DD, after Start date.",
        ),
        "allow_partial": Param(
            False,
            type="boolean",
            title="Allow partial",
            description="Store the tickers that were fetched even if others failed (default: store nothing).",
        ),
    },
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
