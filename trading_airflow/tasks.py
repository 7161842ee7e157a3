"""Tasks used by more than one DAG: ingestion and validation run inside trading_orchestrator and as
the standalone ingest_market_data / validate_data DAGs, from these same definitions."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from trading_airflow.runtime import ANALYZE_DAG, IO_RETRY_ARGS, bad_input_fails_fast, connection_storage

# Yahoo rate-limits bursts: back off exponentially, starting at 30 s, up to 10 minutes.
INGEST_RETRY_ARGS = IO_RETRY_ARGS | {"retries": 4, "retry_delay": 30, "max_retry_delay": 600}


@task(task_id="ingest_market_data", **INGEST_RETRY_ARGS)
def ingest_market_data(request: dict[str, Any]):
    """Fetch what the bar store lacks of the request's symbols plus ^VIX and ^GSPC from Yahoo
    Finance (sessions [start, end) and their warm-up), and upsert it into the store.

    ``request``: {"ingest": bool, "symbols": [...], "ingestion_start": "YYYY-MM-DD", "ingestion_end": ...}.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    if not request.get("ingest", True):
        raise AirflowSkipException("run_ingestion is false: analysing the bars already stored")
    from trading_lib.ingestion import ingest_market_data as ingest
    from trading_lib.ingestion import yahoo_session
    from trading_lib.settings import load_settings

    with bad_input_fails_fast():
        report = ingest(
            connection_storage(),
            request["symbols"],
            request["ingestion_start"],
            request["ingestion_end"],
            allow_partial=bool(request.get("allow_partial")),
            until=request.get("ingestion_until"),
            session=yahoo_session(load_settings().yahoo_endpoint),
        )
    written = report.written or {}
    print(
        f"ingestion {report.status}: sessions {report.start}..{report.end} (fetched from "
        f"{report.fetch_start or '-'}), {len(written.get('sessions_written', []))} session file(s) written, "
        f"{written.get('bars_added', 0)} bars added, {written.get('bars_revised', 0)} revised"
    )
    return report.to_dict()


# none_failed_min_one_success: runs after a skipped ingestion, not after a skipped request
@task(task_id="validate_data", trigger_rule="none_failed_min_one_success")
def validate_data(plan: dict[str, Any]):
    """Validate the plan's bars (its window and the warm-up sessions before it) in the bar store;
    returns {status, summary, issues, report}. Skipped when validate is false.

    ``plan``: {"validate": bool, "window_start", "window_end", "contracts": [...] or None, "run_id"}."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not plan.get("validate", True):
        raise AirflowSkipException("run_validation is false")
    from trading_lib import pipeline
    from trading_lib.inputs import AnalysisWindow

    with bad_input_fails_fast():
        storage = connection_storage()
        window = (
            AnalysisWindow.parse(plan["window_start"], plan["window_end"])
            if plan.get("window_start")
            else pipeline.resolve_window(storage)
        )
        return pipeline.validate(storage, window, plan.get("contracts"), plan.get("run_id"))


def trigger_symbol_runs(runs):
    """trading_orchestrator's trigger_analyze_symbol: one analyze_symbol run per item of ``runs``
    ({trigger_run_id, conf}: trading_lib.run_request.analyze_symbol_runs), waited for deferrably."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    return TriggerDagRunOperator.partial(
        task_id="trigger_analyze_symbol",
        trigger_dag_id=ANALYZE_DAG,
        logical_date=None,
        reset_dag_run=True,
        wait_for_completion=True,
        deferrable=True,
        # Airflow 3.3 fails a deferred task whose trigger fires before the scheduler has processed
        # the executor's event for the deferral (apache/airflow#72716). The first check runs at
        # once (the run is not done yet), the next one 10 s later: enough for the scheduler on a
        # loaded 2-core machine. One retry (the symbol runs are reset; they rewrite identical
        # files and announce nothing while this run is running) covers what is left.
        poke_interval=10,
        fail_when_dag_is_paused=True,
        retries=1,
        retry_delay=5,
    ).expand_kwargs(runs)
