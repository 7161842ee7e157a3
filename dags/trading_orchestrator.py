"""
### trading_orchestrator: ingest → plan → validate → branch → one analyze_symbol run per contract

1. `check_request` checks the conf before anything is written (trading_lib.run_request), naming
   the field; a scheduled run whose interval holds no exchange bar (a cron schedule on a holiday
   or after an early close) is skipped here, with everything after it.
2. `ingest_market_data` upserts the missing hourly bars from Yahoo Finance (scheduled and backfill
   runs always; manual runs when `run_ingestion`).
3. `select_contracts` fixes the window and the contracts and starts the run record
   (`output/runs/<run_id>/run.json`, trading_lib.run_record); each later state change updates it.
   When stored bars changed since the last run (any writer's revisions or back-fills), it also
   names the analysed partitions whose result depends on them: one more analyze_symbol run per
   contract (`<run_id>__<CONTRACT>__revised`) analyses them again (docs/history.md).
4. `validate_data` reports PASS / WARN / FAIL; FAIL → `stop_on_validation_failure` fails the run;
   else `trigger_analyze_symbol` starts one analyze_symbol run per contract and waits for them.
5. `publish_results` completes the record and emits `trading_results` once (aggregate_portfolio).

**Schedule** (`TRADING_ORCHESTRATOR_SCHEDULE`, default `exchange`): one run per bar of the NYSE
sessions, when the bar closes; its data interval is the bar (09:30-10:30 ... 15:30-16:00, 12:30-13:00
on an early close); none on holidays. A cron (America/New_York) may be set instead.
**Deadline**: a run not finished `TRADING_ORCHESTRATOR_DEADLINE_MINUTES` (20) after its bar closed
(manual runs: after being queued; backfills: none) is marked late in its record (Pipeline run page).
**Backfill** (`airflow backfill create --dag-id trading_orchestrator --from-date ... --to-date ...`)
runs each bar of the range like the schedule, with the conf given; see docs/history.md.
"""

from __future__ import annotations

from airflow.sdk import Metadata, dag, task

from trading_airflow.deadlines import orchestrator_deadline
from trading_airflow.params import orchestrator_params
from trading_airflow.runtime import (
    DEFAULT_ARGS,
    END_DATE,
    ORCHESTRATOR_DAG,
    RESULTS_ASSET,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    connection_storage,
)
from trading_airflow.tasks import ingest_market_data, trigger_symbol_runs, validate_data
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
        """The run's request, checked (against the bar store too if it ingests nothing)."""
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
        from trading_lib.run_record import record_run, started_facts

        with bad_input_fails_fast():
            storage = connection_storage()
            plan = pipeline.plan_run(storage, request)
            facts = started_facts(ORCHESTRATOR_DAG, request, plan, ingestion)
            record_run(storage, plan["run_id"], "running", **facts)
        print(f"window {plan['window_start']} .. {plan['window_end']}, {len(plan['contracts'])} contracts")
        return plan

    @task.branch(trigger_rule="none_failed_min_one_success")  # after select_contracts, validated or not
    def check_validation(validation: dict | None) -> str:
        if validation and validation["status"] == "FAIL":
            return "stop_on_validation_failure"
        return "trigger_analyze_symbol"

    @task(retries=0)
    def stop_on_validation_failure(plan: dict, validation: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from trading_lib.run_record import record_run

        record_run(connection_storage(), plan["run_id"], "failed", validation=validation)
        raise AirflowFailException(
            f"Validation failed, pipeline stopped. {validation['summary']} ({validation['report']})"
        )

    @task
    def symbol_runs(plan: dict) -> list[dict]:
        from trading_lib.run_request import analyze_symbol_runs

        return analyze_symbol_runs(plan)

    @task(outlets=[RESULTS_ASSET])
    def publish_results(plan: dict, runs: list[dict], validation: dict | None):
        from trading_lib.run_record import record_run

        ids = [item["trigger_run_id"] for item in runs]
        storage, run_id = connection_storage(), plan["run_id"]
        record_run(storage, run_id, "success", analyze_symbol_run_ids=ids, validation=validation)
        status = validation["status"] if validation else "SKIPPED"
        extra = {"source": ORCHESTRATOR_DAG, "orchestrator_run_id": plan["run_id"], "contracts": len(runs)}
        yield Metadata(RESULTS_ASSET, extra=extra | {"status": status})

    @task(trigger_rule="one_failed", retries=0)
    def record_failure(plan: dict):
        """A symbol run or the publication failed: the run record says so (it would say "running")."""
        from trading_lib.run_record import record_run

        record_run(connection_storage(), plan["run_id"], "failed")

    request = check_request()
    plan = select_contracts(request, ingest_market_data(request))
    validation, runs = validate_data(plan), symbol_runs(plan)
    triggered = trigger_symbol_runs(runs)
    plan >> check_validation(validation) >> [stop_on_validation_failure(plan, validation), triggered]
    published = publish_results(plan, runs, validation)
    triggered >> published
    [triggered, published] >> record_failure(plan)


trading_orchestrator()
