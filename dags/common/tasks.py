"""Tasks used by more than one DAG: ingestion and validation run inside trading_orchestrator and as
the standalone ingest_market_data / validate_data DAGs, from these same definitions."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from common.runtime import IO_RETRY_ARGS, bad_input_fails_fast, task_storage

# Yahoo rate-limits bursts: back off exponentially, starting at 30 s, up to 10 minutes.
INGEST_RETRY_ARGS = IO_RETRY_ARGS | {"retry_delay": 30, "max_retry_delay": 600}


@task(task_id="ingest_market_data", **INGEST_RETRY_ARGS)
def ingest_market_data(request: dict[str, Any]) -> dict[str, Any]:
    """Fetch the request's symbols plus ^VIX and ^GSPC from Yahoo Finance into the input files.

    ``request``: {"run_ingestion": bool, "symbols": [...], "start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    if not request.get("run_ingestion", True):
        raise AirflowSkipException("run_ingestion is false: using the input files already in storage")
    from trading_lib.ingestion import RangeNotAvailableError, ingest_market_data

    with bad_input_fails_fast():
        try:
            report = ingest_market_data(task_storage(), request["symbols"], request["start"], request["end"])
        except RangeNotAvailableError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
    return report.to_dict()


@task(task_id="validate_data", trigger_rule="none_failed")
def validate_data(request: dict[str, Any]) -> dict[str, Any] | None:
    """Validate the input files; returns {status, summary, issues, report}.

    Skipped when run_validation is false."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not request.get("run_validation", True):
        raise AirflowSkipException("run_validation is false")
    from trading_lib import pipeline

    with bad_input_fails_fast():
        return pipeline.validate(task_storage(), request.get("contracts") or None)
