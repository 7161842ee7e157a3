"""
### trading_orchestrator: ingest → plan → validate → branch → one analyze_symbol run per contract

1. `check_request` checks the conf before anything is written (trading_lib.run_request: unknown
   keys, a bad symbol, dates not `YYYY-MM-DD`, start after end, `num_contracts` out of range fail
   here, naming the field). A scheduled run whose interval holds no bar of the exchange (a cron
   schedule on a holiday or after an early close) is skipped here, with everything after it.
2. `ingest_market_data` upserts hourly bars from Yahoo Finance into the bar store, fetching only
   the sessions the store lacks plus its latest one (scheduled and backfill runs always ingest;
   manual runs when `run_ingestion`).
3. `select_contracts` fixes the window and the contracts and writes this run's record
   (`output/runs/<run_id>/run.json`, trading_lib.run_record), which every later state change updates.
4. `validate_data` writes the PASS / WARN / FAIL report of the window and its warm-up; FAIL →
   `stop_on_validation_failure` fails the run; PASS / WARN → `trigger_analyze_symbol` starts one
   analyze_symbol run per contract and waits for them deferrably.
5. `publish_results` completes the run record and emits the `trading_results` asset once, which
   starts aggregate_portfolio (this run's report, and the cumulative one).

**Schedule** (`TRADING_ORCHESTRATOR_SCHEDULE`, default `exchange`): one run per bar of the NYSE
sessions (trading_airflow.timetables.ExchangeBarTimetable), started when the bar closes; its data
interval is that bar (09:30-10:30, ..., 15:30-16:00; 12:30-13:00 on an early close); no run on
holidays or after an early close. A cron (e.g. `30 10-16 * * 1-5`, America/New_York) is accepted
instead: its runs analyse the bars that start in their interval, and an interval with none is
skipped. Every trade closes in a later run, once its next bar is stored. The local stack leaves
the schedule off unless asked (`make demo SCHEDULE=on`).

**Deadline**: a scheduled run not finished `TRADING_ORCHESTRATOR_DEADLINE_MINUTES` (default 20)
after its bar closed (a manual or backfill run: after it was queued) is late: Airflow's
DeadlineAlert logs it and marks it late in the run record; the Pipeline run page shows it.

**Backfill** a date range with Airflow's own backfill (UI: *Backfill* on this DAG; CLI:
`airflow backfill create --dag-id trading_orchestrator --from-date 2026-04-13 --to-date 2026-04-14`):
one run per bar, like the schedule's; conf given to the backfill (`ingestion_symbols`,
`num_contracts`) is honoured. Reprocess a whole past day: the same command with
`--reprocess-behavior completed`.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Metadata, dag, task

from trading_airflow.deadlines import orchestrator_deadline
from trading_airflow.params import orchestrator_params
from trading_airflow.runtime import (
    ANALYZE_DAG,
    DEFAULT_ARGS,
    END_DATE,
    ORCHESTRATOR_DAG,
    RESULTS_ASSET,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    connection_storage,
)
from trading_airflow.tasks import ingest_market_data, validate_data
from trading_airflow.timetables import orchestrator_timetable


@dag(
    dag_id=ORCHESTRATOR_DAG,
    schedule=orchestrator_timetable(SETTINGS),
    start_date=START_DATE,
    end_date=END_DATE,
    catchup=SETTINGS.orchestrator_catchup,
    max_active_runs=1,
    deadline=orchestrator_deadline(SETTINGS),
    doc_md=__doc__,
    tags=["trading", "orchestrate"],
    default_args=DEFAULT_ARGS,
    params=orchestrator_params(list(SETTINGS.symbols)),
)
def trading_orchestrator():
    @task  # bad conf fails at once (AirflowFailException); an interval without a bar is skipped
    def check_request(params=None, dag_run=None, data_interval_start=None, data_interval_end=None):
        """The run's request, checked before anything is written (against the bar store too when
        the run analyses what is already stored)."""
        from airflow.sdk.exceptions import AirflowSkipException

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
            if request.idle:
                raise AirflowSkipException(request.idle)
            if not request.ingest:
                pipeline.plan_run(connection_storage(), request.to_dict())
        return request.to_dict()

    @task(trigger_rule="none_failed_min_one_success")  # ingestion may be skipped, the request not
    def select_contracts(request: dict, ingestion: dict | None):
        """Fix the window and the contracts; the run record starts here."""
        from trading_lib import pipeline
        from trading_lib.run_record import ingestion_summary, record_run

        with bad_input_fails_fast():
            storage = connection_storage()
            scope = pipeline.plan_run(storage, request)
            facts = {k: scope[k] for k in ("window_start", "window_end", "contracts")}
            record_run(
                storage,
                request["run_id"],
                "running",
                dag_id=ORCHESTRATOR_DAG,
                run_type=request["run_type"],
                request=request,
                ingestion=ingestion_summary(ingestion),
                **facts,
            )
        print(f"window {scope['window_start']} .. {scope['window_end']}, {len(scope['contracts'])} contracts")
        return scope

    @task.branch(trigger_rule="none_failed")
    def check_validation(validation: dict | None) -> str:
        if validation and validation["status"] == "FAIL":
            return "stop_on_validation_failure"
        return "trigger_analyze_symbol"

    @task(retries=0)
    def stop_on_validation_failure(scope: dict, validation: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from trading_lib.run_record import record_run

        record_run(connection_storage(), scope["run_id"], "failed", validation=validation)
        raise AirflowFailException(
            f"Validation failed, pipeline stopped. {validation['summary']} ({validation['report']})"
        )

    @task
    def symbol_runs(scope: dict) -> list[dict]:
        from trading_lib.run_request import analyze_symbol_runs

        return analyze_symbol_runs(scope)

    @task(outlets=[RESULTS_ASSET])
    def publish_results(scope: dict, runs: list[dict], validation: dict | None):
        from trading_lib.run_record import record_run

        run_ids = [item["trigger_run_id"] for item in runs]
        record_run(
            connection_storage(),
            scope["run_id"],
            "success",
            analyze_symbol_run_ids=run_ids,
            validation=validation,
        )
        status = validation["status"] if validation else "SKIPPED"
        extra = {"source": ORCHESTRATOR_DAG, "orchestrator_run_id": scope["run_id"], "contracts": len(runs)}
        yield Metadata(RESULTS_ASSET, extra=extra | {"status": status})

    @task(trigger_rule="one_failed", retries=0)
    def record_failure(scope: dict):
        """A symbol run or the publication failed: the run record says so (it would say "running")."""
        from trading_lib.run_record import record_run

        record_run(connection_storage(), scope["run_id"], "failed")

    request = check_request()
    scope = select_contracts(request, ingest_market_data(request))
    validation = validate_data(scope)
    runs = symbol_runs(scope)
    triggered = TriggerDagRunOperator.partial(
        task_id="trigger_analyze_symbol",
        trigger_dag_id=ANALYZE_DAG,
        logical_date=None,
        reset_dag_run=True,
        wait_for_completion=True,
        deferrable=True,
        # Airflow 3.3 fails a deferred task whose trigger fires before the scheduler has processed
        # the executor's event for the deferral (apache/airflow#72716): the second check, 10 s
        # after the first, leaves the scheduler time; one retry (the symbol runs are reset and
        # rewrite identical files) covers what is left.
        poke_interval=10,
        fail_when_dag_is_paused=True,
        retries=1,
        retry_delay=5,
    ).expand_kwargs(runs)

    check_validation(validation) >> [stop_on_validation_failure(scope, validation), triggered]
    published = publish_results(scope, runs, validation)
    triggered >> published
    [triggered, published] >> record_failure(scope)


trading_orchestrator()
