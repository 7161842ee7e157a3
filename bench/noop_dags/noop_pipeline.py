"""
### No-op pipeline: the same shape as the trading pipeline, tasks that do nothing

Airflow's own floor for this shape, measured by bench/bench_pipeline.py against the real pipeline:
an orchestrator (check → ingest (skipped) → validate → branch → select → mapped
TriggerDagRunOperator waiting deferrably → publish an asset), one per-symbol run per contract
mapping a no-op over `window_bars` timestamps (24 by default; grouped, past `[core] max_map_length` or
by `TRADING_PARTITIONS_PER_TASK`, into equal chunks as analyze_symbol does), and an asset-scheduled
aggregation.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, Param, dag, get_current_context, task

NOOP_RESULTS = Asset(name="noop_results", uri="file:///tmp/noop-results", group="bench")
START = pendulum.datetime(2024, 1, 1, tz="America/New_York")
ARGS = {"owner": "bench"}


@dag(
    dag_id="noop_orchestrator",
    schedule=None,
    start_date=START,
    catchup=False,
    doc_md=__doc__,
    tags=["bench"],
    default_args=ARGS,
    params={
        "num_contracts": Param(10, type="integer", minimum=1),
        "window_bars": Param(24, type="integer", minimum=1),
    },
)
def noop_orchestrator():
    @task
    def check_request() -> dict:
        params = get_current_context()["params"]
        return {"num_contracts": params["num_contracts"], "window_bars": params["window_bars"]}

    @task
    def ingest_market_data(request: dict) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("no-op")

    @task(trigger_rule="none_failed")
    def validate_data(request: dict) -> dict:
        return {"status": "PASS"}

    @task.branch(trigger_rule="none_failed")
    def check_validation() -> str:
        return "select_contracts"

    @task
    def stop_on_validation_failure() -> None:
        raise RuntimeError("unreachable")

    @task
    def select_contracts(request: dict) -> list[dict]:
        run_id = get_current_context()["run_id"]
        return [
            {
                "trigger_run_id": f"{run_id}__C{i}",
                "conf": {"contract": f"C{i}", "bars": request["window_bars"]},
            }
            for i in range(request["num_contracts"])
        ]

    @task(outlets=[NOOP_RESULTS])
    def publish_results(selected: list[dict]) -> None:
        pass

    request = check_request()
    selected = select_contracts(request)
    triggered = TriggerDagRunOperator.partial(
        task_id="trigger_noop_symbol",
        trigger_dag_id="noop_symbol",
        logical_date=None,
        wait_for_completion=True,
        deferrable=True,
        poke_interval=10,  # as trading_orchestrator (apache/airflow#72716): the same shape
    ).expand_kwargs(selected)
    (
        ingest_market_data(request)
        >> validate_data(request)
        >> check_validation()
        >> [
            stop_on_validation_failure(),
            selected,
        ]
    )
    triggered >> publish_results(selected)


@dag(
    dag_id="noop_symbol",
    schedule=None,
    start_date=START,
    catchup=False,
    doc_md=__doc__,
    tags=["bench"],
    default_args=ARGS,
    max_active_runs=16,
    params={"contract": Param("C0", type="string"), "bars": Param(24, type="integer", minimum=1)},
)
def noop_symbol():
    @task
    def list_partitions() -> list[list[str]]:
        from airflow.configuration import conf

        from trading_lib.layout import chunk_partitions
        from trading_lib.settings import load_settings

        labels = [f"t{i}" for i in range(get_current_context()["params"]["bars"])]
        return chunk_partitions(
            labels, conf.getint("core", "max_map_length"), load_settings().partitions_per_task
        )

    @task(map_index_template="{{ format_timestamp }}")
    def analyze_partition(partition_timestamps: list[str]) -> int:
        get_current_context()["format_timestamp"] = partition_timestamps[0]
        return 1

    @task
    def summarize_symbol(chunks: list[list[str]]) -> None:
        pass

    partitions = list_partitions()
    analyze_partition.expand(partition_timestamps=partitions) >> summarize_symbol(partitions)


@dag(
    dag_id="noop_aggregate",
    schedule=[NOOP_RESULTS],
    start_date=START,
    catchup=False,
    doc_md=__doc__,
    tags=["bench"],
    default_args=ARGS,
    max_active_runs=1,
)
def noop_aggregate():
    @task
    def aggregate() -> None:
        pass

    aggregate()


noop_orchestrator()
noop_symbol()
noop_aggregate()
