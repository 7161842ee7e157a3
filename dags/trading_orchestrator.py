"""
### trading_orchestrator: ingest → select → validate → branch → one analyze_symbol run per contract

1. `check_request` checks the conf before anything is written (trading_lib.run_request: unknown
   keys, a bad symbol, dates not `YYYY-MM-DD`, start after end, `num_contracts` out of range fail
   here, naming the field).
2. `ingest_market_data` upserts hourly bars from Yahoo Finance into the bar store, fetching only
   the sessions the store lacks plus its latest one (scheduled and backfill runs always ingest;
   manual runs when `run_ingestion`).
3. `select_contracts` fixes the window and the contracts, and writes this run's record
   (`output/runs/<run_id>/run.json`). When stored bars changed since the last run (this run's
   ingestion or any other writer revised or back-filled them), it also names the analysed
   partitions whose result depends on them: they are analysed again by one more analyze_symbol
   run per contract (`<run_id>__<CONTRACT>__revised`), and the record and the reports count them
   (`revisions`, `reanalysed_partitions`; docs/history.md).
4. `validate_data` writes the PASS / WARN / FAIL report of the window and its warm-up; FAIL →
   `stop_on_validation_failure` fails the run; PASS / WARN → `trigger_analyze_symbol` starts one
   analyze_symbol run per contract and waits for them deferrably.
5. `publish_results` completes the run record and emits the `trading_results` asset once, which
   starts aggregate_portfolio (this run's report, and the cumulative one).

**Schedule** (`TRADING_ORCHESTRATOR_SCHEDULE`, default `30 10-16 * * 1-5` America/New_York):
each run's data interval holds one hourly bar (the 09:30 bar closes at 10:30, ..., the 15:30 bar
at 16:00, picked up at 16:30); the run ingests and analyses the bars that START in its interval.
Every trade closes in a later run, once its next bar is stored. The local stack leaves the
schedule off unless asked (`make demo SCHEDULE=on`).

**Backfill** a date range with Airflow's own backfill (UI: *Backfill* on this DAG; CLI:
`airflow backfill create --dag-id trading_orchestrator --from-date 2026-04-13 --to-date 2026-04-14`):
each interval is a run like a scheduled one; conf given to the backfill (`ingestion_symbols`,
`num_contracts`) is honoured. Reprocess a whole past day: the same command with
`--reprocess-behavior completed`.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, Metadata, Param, dag, task

from trading_airflow.runtime import (
    DEFAULT_ARGS,
    RESULTS_ASSET,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    connection_storage,
)
from trading_airflow.tasks import ingest_market_data, validate_data
from trading_lib.run_request import (
    DATE_PATTERN,
    DATE_TIME_PATTERN,
    DEFAULT_WINDOW_BARS,
    MAX_CONTRACTS,
    MAX_WINDOW_BARS,
)
from trading_lib.settings import SCHEDULE_TIMEZONE
from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id="trading_orchestrator",
    schedule=(
        CronDataIntervalTimetable(SETTINGS.orchestrator_schedule, timezone=SCHEDULE_TIMEZONE)
        if SETTINGS.orchestrator_schedule
        else None
    ),
    start_date=START_DATE,
    end_date=(
        __import__("pendulum").parse(SETTINGS.orchestrator_end_date, tz=SCHEDULE_TIMEZONE).end_of("day")
        if SETTINGS.orchestrator_end_date
        else None
    ),
    catchup=SETTINGS.orchestrator_catchup,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["trading", "orchestrate"],
    default_args=DEFAULT_ARGS,
    params={
        "num_contracts": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=MAX_CONTRACTS,
            title="Number of contracts",
            description=f"How many contracts to analyse, 1 to {MAX_CONTRACTS}: the first ones (sorted) with "
            "bars in the window; at most the number of symbols ingested. Empty: all of them.",
        ),
        "run_ingestion": Param(
            False,
            type="boolean",
            title="Fetch from Yahoo first",
            description="Manual runs: fetch missing bars from Yahoo Finance before analysing. "
            "Scheduled and backfill runs always do.",
        ),
        "run_validation": Param(
            True,
            type="boolean",
            title="Validate",
            description="Check the window's bars first and stop the run on FAIL.",
        ),
        "ingestion_symbols": Param(
            list(SETTINGS.symbols),
            type="array",
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            minItems=1,
            maxItems=MAX_CONTRACTS,
            uniqueItems=True,
            title="Symbols to ingest",
            description=f"Yahoo tickers (letters/digits, optional ^, parts joined by - . =), 1 to "
            f"{MAX_CONTRACTS}, no repeats. ^VIX and ^GSPC are always added.",
        ),
        "ingestion_start_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Ingest from",
            description="First session to ingest, YYYY-MM-DD, with Ingest until. Default: the run's "
            "data interval (scheduled) or the last 5 sessions. Yahoo keeps 1h bars for 730 days.",
        ),
        "ingestion_end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Ingest until",
            description="End date, exclusive, YYYY-MM-DD, after Ingest from.",
        ),
        "window_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=DATE_TIME_PATTERN,
            title="Window start",
            description="Analyse bars starting at or after this ISO 8601 date-time with offset, e.g. "
            "2024-01-22T09:30:00-05:00 (with Window end). Default: the data interval (scheduled), "
            "else the last 'Bars to analyse' stored bars.",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=DATE_TIME_PATTERN,
            title="Window end",
            description="Analyse bars starting before this ISO 8601 date-time with offset (exclusive).",
        ),
        "window_bars": Param(
            DEFAULT_WINDOW_BARS,
            type="integer",
            minimum=1,
            maximum=MAX_WINDOW_BARS,
            title="Bars to analyse",
            description=f"Manual runs without a window: the last N stored bars, 1 to {MAX_WINDOW_BARS}.",
        ),
    },
)
def trading_orchestrator():
    @task  # bad conf fails at once (AirflowFailException); nothing else can fail here
    def check_request(params=None, dag_run=None, data_interval_start=None, data_interval_end=None):
        """The run's request, checked before anything is written."""
        from trading_lib import pipeline
        from trading_lib.run_request import orchestrator_request

        with bad_input_fails_fast():
            request = orchestrator_request(
                params,
                run_id=dag_run.run_id,
                run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
                conf=dag_run.conf,
                data_interval=(data_interval_start, data_interval_end),
                default_symbols=SETTINGS.symbols,
            )
            if not request.ingest:  # the data is already stored: check the request against it now
                storage = connection_storage()
                window = pipeline.resolve_window(
                    storage, request.window_start, request.window_end, request.window_bars
                )
                pipeline.select_contracts(storage, request.num_contracts, window)
        return request.to_dict()

    @task(trigger_rule="none_failed")
    def select_contracts(request: dict, ingestion: dict | None):
        """Fix the window and the contracts; write the run record."""
        from trading_lib import pipeline

        with bad_input_fails_fast():
            storage = connection_storage()
            window = pipeline.resolve_window(
                storage, request["window_start"], request["window_end"], request["window_bars"]
            )
            contracts = pipeline.select_contracts(storage, request["num_contracts"], window)
            # Partitions outside this run whose result bars stored since the last run changed.
            since = pipeline.revision_baseline(pipeline.latest_run(storage))
            revisions = pipeline.reanalysis_plan(storage, since, window, contracts)
            scope = {
                "run_id": request["run_id"],
                "window_start": window.start.isoformat(),
                "window_end": window.end.isoformat(),
                "contracts": contracts,
                "validate": request["validate"],
                "revisions": revisions,
            }
            pipeline.record_run(
                storage,
                request["run_id"],
                dag_id="trading_orchestrator",
                run_type=request["run_type"],
                request=request,
                window_start=scope["window_start"],
                window_end=scope["window_end"],
                contracts=contracts,
                ingestion=_ingestion_summary(ingestion),
                revisions={k: v for k, v in revisions.items() if k != "timestamps"},
                bar_store_version=revisions["until_version"],
                state="running",
            )
        print(f"window {scope['window_start']} .. {scope['window_end']}, {len(contracts)} contracts")
        return scope

    @task.branch(trigger_rule="none_failed")
    def check_validation(validation: dict | None) -> str:
        if validation and validation["status"] == "FAIL":
            return "stop_on_validation_failure"
        return "trigger_analyze_symbol"

    @task(retries=0)
    def stop_on_validation_failure(scope: dict, validation: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from trading_lib import pipeline

        pipeline.record_run(connection_storage(), scope["run_id"], validation=validation, state="failed")
        raise AirflowFailException(
            f"Validation failed, pipeline stopped. {validation['summary']} ({validation['report']})"
        )

    @task
    def symbol_runs(scope: dict) -> list[dict]:
        """One analyze_symbol run per contract, with a run id derived from this run's, and one per
        contract with partitions to re-analyse because of revised bars."""
        from trading_lib.pipeline import reanalysis_runs
        from trading_lib.symbols import symbol_to_segment

        return [
            {
                "trigger_run_id": f"{scope['run_id']}__{symbol_to_segment(contract)}",
                "conf": {
                    "contract": contract,
                    "window_start": scope["window_start"],
                    "window_end": scope["window_end"],
                    "orchestrator_run_id": scope["run_id"],
                },
            }
            for contract in scope["contracts"]
        ] + reanalysis_runs(scope["run_id"], scope.get("revisions"))

    @task(outlets=[RESULTS_ASSET])
    def publish_results(scope: dict, runs: list[dict], validation: dict | None):
        from trading_lib import pipeline

        pipeline.record_run(
            connection_storage(),
            scope["run_id"],
            analyze_symbol_run_ids=[item["trigger_run_id"] for item in runs],
            validation=validation,
            state="success",
        )
        yield Metadata(
            RESULTS_ASSET,
            extra={
                "source": "trading_orchestrator",
                "orchestrator_run_id": scope["run_id"],
                "contracts": len(runs),
                "status": validation["status"] if validation else "SKIPPED",
            },
        )

    @task(trigger_rule="one_failed", retries=0)
    def record_failure(scope: dict):
        """A symbol run or the publication failed: the run record says so (it would say "running")."""
        from trading_lib import pipeline

        pipeline.record_run(connection_storage(), scope["run_id"], state="failed")

    request = check_request()
    ingestion = ingest_market_data(request)
    scope = select_contracts(request, ingestion)
    validation = validate_data(scope)
    branch = check_validation(validation)
    runs = symbol_runs(scope)
    triggered = TriggerDagRunOperator.partial(
        task_id="trigger_analyze_symbol",
        trigger_dag_id="analyze_symbol",
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

    branch >> [stop_on_validation_failure(scope, validation), triggered]
    published = publish_results(scope, runs, validation)
    triggered >> published
    [triggered, published] >> record_failure(scope)


def _ingestion_summary(ingestion: dict | None):
    if not ingestion:
        return None
    written = ingestion.get("written") or {}
    return {
        "status": ingestion.get("status"),
        "start": ingestion.get("start"),
        "end": ingestion.get("end"),
        "fetch_start": ingestion.get("fetch_start"),
        "sessions_written": written.get("sessions_written", []),
        "bars_added": written.get("bars_added", 0),
        "bars_revised": written.get("bars_revised", 0),
        "failed": [t["symbol"] for t in ingestion.get("tickers", []) if t.get("status") == "failed"],
    }


trading_orchestrator()
