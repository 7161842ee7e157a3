"""
### trading_orchestrator: ingest → validate → branch → one analyze_symbol run per contract

Layer 3 of the trading pipeline.

1. `check_request` checks the conf against the data before anything is written (a bad symbol,
   start after end, `num_contracts` larger than the universe: the run fails here, naming the field).
2. `ingest_market_data` fetches hourly bars from Yahoo Finance (skipped unless `run_ingestion`).
3. `validate_data` writes the PASS / WARN / FAIL report (skipped unless `run_validation`).
4. `check_validation` branches: FAIL → `stop_on_validation_failure` fails the run with the
   validation summary; PASS / WARN → `select_contracts` (WARN is recorded in the manifest).
5. `trigger_analyze_symbol` (a TriggerDagRunOperator mapped over the contracts) starts one
   analyze_symbol run per contract and waits for them deferrably (in the triggerer, holding no
   worker slot), so this run's final state is the pipeline's.
6. `publish_results` writes the run report and emits the `trading_results` asset once, which
   starts aggregate_portfolio.

**Schedule**: `30 10-16 * * 1-5` in America/New_York: each weekday, after every hourly bar of the
regular session has closed (the 09:30 bar closes at 10:30, ..., the 15:30 bar at 16:00; the 16:30
tick picks it up). A scheduled run always ingests and analyses the bars of its data interval; a
manual run does what its conf says (by default it analyses the input already in storage).
Set `TRADING_ORCHESTRATOR_SCHEDULE=none` for manual runs only. Catchup is off.

`airflow dags test trading_orchestrator` queues the analyze_symbol runs but does not execute them
(a scheduler does): use `make demo` to run the whole pipeline.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, Metadata, Param, dag, get_current_context, task
from common.runtime import (
    DEFAULT_ARGS,
    RESULTS_ASSET,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    task_storage,
)
from common.tasks import ingest_market_data, validate_data

from trading_lib.settings import SCHEDULE_TIMEZONE
from trading_lib.symbols import JSON_SCHEMA_PATTERN

MAX_CONTRACTS = 500
DEFAULT_SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH"]


@dag(
    dag_id="trading_orchestrator",
    schedule=(
        CronDataIntervalTimetable(SETTINGS.orchestrator_schedule, timezone=SCHEDULE_TIMEZONE)
        if SETTINGS.orchestrator_schedule
        else None
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["trading", "layer-3", "orchestrator"],
    default_args=DEFAULT_ARGS,
    params={
        "num_contracts": Param(
            10,
            type="integer",
            minimum=1,
            maximum=MAX_CONTRACTS,
            title="Number of contracts",
            description="How many contracts of the input to analyse (at most the size of the universe)",
        ),
        "run_ingestion": Param(
            False, type="boolean", description="Fetch fresh bars from Yahoo Finance first"
        ),
        "run_validation": Param(True, type="boolean", description="Check the data; stop the run on FAIL"),
        "ingestion_symbols": Param(
            DEFAULT_SYMBOLS,
            type="array",
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            minItems=1,
            maxItems=MAX_CONTRACTS,
            uniqueItems=True,
            description="Stocks to ingest (^VIX and ^GSPC are always added)",
        ),
        "ingestion_start_date": Param(
            None, type=["null", "string"], format="date", description="First session to ingest (YYYY-MM-DD)"
        ),
        "ingestion_end_date": Param(
            None, type=["null", "string"], format="date", description="End date, exclusive (YYYY-MM-DD)"
        ),
    },
)
def trading_orchestrator():
    @task  # bad conf fails at once (AirflowFailException); a storage outage is retried
    def check_request() -> dict:
        """Everything a run needs, checked against the data: fail here, before anything is written."""
        import pandas as pd

        from trading_lib.inputs import read_contracts
        from trading_lib.pipeline import PipelineInputError
        from trading_lib.symbols import validate_symbols

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        scheduled = dag_run.run_type == "scheduled"
        request = {
            "run_ingestion": bool(params["run_ingestion"]) or scheduled,
            "run_validation": bool(params["run_validation"]),
            "num_contracts": params["num_contracts"],
            "window_start": None,
            "window_end": None,
        }
        with bad_input_fails_fast():
            try:
                request["symbols"] = validate_symbols(params["ingestion_symbols"])
            except ValueError as exc:
                raise PipelineInputError(f"ingestion_symbols: {exc}") from None
            start, end = params.get("ingestion_start_date"), params.get("ingestion_end_date")
            if scheduled:
                interval_start, interval_end = context["data_interval_start"], context["data_interval_end"]
                request["window_start"] = interval_start.isoformat()
                request["window_end"] = interval_end.isoformat()
                start = start or interval_start.in_timezone(SCHEDULE_TIMEZONE).to_date_string()
                end = end or interval_end.in_timezone(SCHEDULE_TIMEZONE).add(days=1).to_date_string()
            if (start is None) != (end is None):
                raise PipelineInputError("ingestion_start_date and ingestion_end_date must be given together")
            if start is not None:
                try:
                    start_day, end_day = pd.Timestamp(start), pd.Timestamp(end)
                except ValueError as exc:
                    raise PipelineInputError(f"ingestion_start_date/ingestion_end_date: {exc}") from None
                if start_day >= end_day:
                    raise PipelineInputError(
                        f"ingestion_start_date ({start}) must be before ingestion_end_date ({end})"
                    )
            elif request["run_ingestion"]:
                from trading_lib.ingestion import default_window

                start, end = (t.date().isoformat() for t in default_window())
            request["start"], request["end"] = start, end
            universe = request["symbols"] if request["run_ingestion"] else read_contracts(task_storage())
            if request["num_contracts"] > len(universe):
                raise PipelineInputError(
                    f"num_contracts={request['num_contracts']} is larger than the universe "
                    f"({len(universe)} contracts "
                    f"{'to ingest' if request['run_ingestion'] else 'in the input'})"
                )
        return request

    @task.branch(trigger_rule="none_failed")
    def check_validation() -> str:
        validation = get_current_context()["ti"].xcom_pull(task_ids="validate_data")
        if validation and validation["status"] == "FAIL":
            return "stop_on_validation_failure"
        return "select_contracts"

    @task(retries=0)
    def stop_on_validation_failure() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        validation = get_current_context()["ti"].xcom_pull(task_ids="validate_data")
        raise AirflowFailException(
            f"Validation failed, pipeline stopped. {validation['summary']} ({validation['report']})"
        )

    @task
    def select_contracts(request: dict) -> list[dict]:
        from trading_lib import pipeline
        from trading_lib.symbols import symbol_to_segment

        context = get_current_context()
        run_id = context["run_id"]
        validation = context["ti"].xcom_pull(task_ids="validate_data")
        with bad_input_fails_fast():
            storage = task_storage()
            contracts = pipeline.select_contracts(storage, request["num_contracts"])
            window = pipeline.resolve_window(storage, request["window_start"], request["window_end"])
            pipeline.write_manifest(
                storage,
                contracts=contracts,
                window=window,
                orchestrator_run_id=run_id,
                validation_status=validation["status"] if validation else "SKIPPED",
            )
        return [
            {
                "trigger_run_id": f"{run_id}__{symbol_to_segment(contract)}",
                "conf": {
                    "contract": contract,
                    "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(),
                    "orchestrator_run_id": run_id,
                },
            }
            for contract in contracts
        ]

    @task(outlets=[RESULTS_ASSET])
    def publish_results(selected: list[dict]):
        from trading_lib import layout

        context = get_current_context()
        validation = context["ti"].xcom_pull(task_ids="validate_data")
        report = {
            "orchestrator_run_id": context["run_id"],
            "contracts": [item["conf"]["contract"] for item in selected],
            "analyze_symbol_run_ids": [item["trigger_run_id"] for item in selected],
            "window_start": selected[0]["conf"]["window_start"] if selected else None,
            "window_end": selected[0]["conf"]["window_end"] if selected else None,
            "validation": validation,
        }
        task_storage().write_json(layout.report_key("pipeline/last_run"), report)
        yield Metadata(
            RESULTS_ASSET,
            extra={
                "source": "trading_orchestrator",
                "orchestrator_run_id": context["run_id"],
                "contracts": len(selected),
                "status": validation["status"] if validation else "SKIPPED",
            },
        )

    request = check_request()
    ingested = ingest_market_data(request)
    validated = validate_data(request)
    branch = check_validation()
    selected = select_contracts(request)
    triggered = TriggerDagRunOperator.partial(
        task_id="trigger_analyze_symbol",
        trigger_dag_id="analyze_symbol",
        logical_date=None,
        reset_dag_run=True,
        wait_for_completion=True,
        deferrable=True,
        poke_interval=2,
        fail_when_dag_is_paused=True,
        retries=0,
    ).expand_kwargs(selected)

    ingested >> validated >> branch >> [stop_on_validation_failure(), selected]
    triggered >> publish_results(selected)


trading_orchestrator()
