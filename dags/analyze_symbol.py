"""
### analyze_symbol: one contract, one mapped task instance per timestamp

Layer 4 of the trading pipeline. `list_partitions` lists the contract's bars inside the analysis
window (or the `timestamps` given in conf) and `analyze_time_partition` is mapped over them: each
mapped instance is one partition (contract × timestamp), labelled "<CONTRACT> <timestamp>", and
writes `output/trading-results/<CONTRACT>/<YYYYMMDD_HHMMSS>.parquet` atomically; running it again
writes identical bytes. `summarize_symbol` writes `output/reports/symbols/<CONTRACT>.json`.

**Execution mode** (`TRADING_EXECUTION_MODE`): `local` runs `trading_lib`'s partition entry point
inside the Airflow worker; `kubernetes` runs the very same command,
`python -m trading_lib analyze-partition --contract C --timestamp T`, as one KubernetesPodOperator
pod per mapped instance, in the task image.

**Reprocess one partition**: clear its mapped instance (Grid → the instance → Clear, "downstream"
off), or trigger this DAG with `{"contract": "AAPL", "timestamps": ["2024-01-22T09:30:00-05:00"]}`.
Either way aggregate_portfolio runs again by itself.

**More bars than `[core] max_map_length`** (1024 by default; a year of hourly bars is ~1,764):
consecutive timestamps are grouped into equal chunks, one chunk per mapped instance, so a run
never exceeds the limit. Raise `AIRFLOW__CORE__MAX_MAP_LENGTH` to keep one timestamp per instance.

Runs started by trading_orchestrator carry `orchestrator_run_id`; their results are announced
once by the orchestrator, not by each symbol.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from common.runtime import (
    DEFAULT_ARGS,
    RESULTS_ASSET,
    RESULTS_UPDATES,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    is_reprocessing,
    task_storage,
)

from trading_lib.symbols import JSON_SCHEMA_PATTERN

NULLABLE_TIMESTAMP = {"type": ["null", "string"], "format": "date-time"}


def _partition_label(contract: str, timestamps: list[str]) -> str:
    if len(timestamps) == 1:
        return f"{contract} {timestamps[0]}"
    return f"{contract} {timestamps[0]} … {timestamps[-1]} ({len(timestamps)} bars)"


@dag(
    dag_id="analyze_symbol",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "layer-4"],
    default_args=DEFAULT_ARGS,
    max_active_runs=16,
    params={
        "contract": Param(
            type="string",
            pattern=JSON_SCHEMA_PATTERN,
            title="Contract",
            description="Yahoo-style ticker present in the input, e.g. AAPL",
        ),
        "timestamps": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "format": "date-time"},
            minItems=1,
            title="Timestamps",
            description="Reprocess only these bars (ISO 8601 with offset, e.g. 2024-01-22T09:30:00-05:00)",
        ),
        "window_start": Param(
            None, **NULLABLE_TIMESTAMP, description="Analysis window start (default: input's)"
        ),
        "window_end": Param(None, **NULLABLE_TIMESTAMP, description="Analysis window end, exclusive"),
        "orchestrator_run_id": Param(
            None, type=["null", "string"], description="Set by trading_orchestrator; leave empty"
        ),
    },
)
def analyze_symbol():
    @task  # bad conf fails at once (AirflowFailException); a storage outage is retried
    def list_partitions() -> list[list[str]]:
        from airflow.configuration import conf

        from trading_lib import pipeline

        params = get_current_context()["params"]
        with bad_input_fails_fast():
            storage = task_storage()
            window = None
            if params.get("timestamps") is None:
                window = pipeline.resolve_window(
                    storage, params.get("window_start"), params.get("window_end")
                )
            labels = pipeline.list_partitions(
                storage, params["contract"], window=window, timestamps=params.get("timestamps")
            )
        return pipeline.chunk_partitions(labels, conf.getint("core", "max_map_length"))

    partitions = list_partitions()

    if SETTINGS.execution_mode == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from common.kubernetes_pods import partition_pod_kwargs, partition_pod_mapping

        @task
        def pod_arguments(chunks: list[list[str]]) -> list[dict]:
            contract = get_current_context()["params"]["contract"]
            return [partition_pod_mapping(contract, chunk) for chunk in chunks]

        analyzed = KubernetesPodOperator.partial(
            task_id="analyze_time_partition",
            map_index_template="{{ task.labels['trading/contract'] }} {{ task.arguments[4] }}",
            **partition_pod_kwargs(SETTINGS),
        ).expand_kwargs(pod_arguments(partitions))
    else:

        @task(map_index_template="{{ partition_label }}", outlets=[RESULTS_UPDATES])
        def analyze_time_partition(partition_timestamps: list[str]) -> int:
            from trading_lib import pipeline

            context = get_current_context()
            contract = context["params"]["contract"]
            context["partition_label"] = _partition_label(contract, partition_timestamps)
            with bad_input_fails_fast():
                written = pipeline.run_partitions(task_storage(), contract, partition_timestamps)
            if is_reprocessing(context["dag_run"]):
                for item in written:
                    context["outlet_events"][RESULTS_UPDATES].add(
                        RESULTS_ASSET, extra={"source": "reprocessed_partition"} | item
                    )
            return len(written)

        analyzed = analyze_time_partition.expand(partition_timestamps=partitions)

    @task(outlets=[RESULTS_UPDATES])
    def summarize_symbol(chunks: list[list[str]]) -> dict:
        from trading_lib import pipeline

        context = get_current_context()
        params = context["params"]
        labels = [label for chunk in chunks for label in chunk]
        summary = pipeline.summarize_symbol(task_storage(), params["contract"], labels, context["run_id"])
        if summary["missing"]:
            raise RuntimeError(
                f"{len(summary['missing'])} partition file(s) missing: {summary['missing'][:5]}"
            )
        # Orchestrated runs are announced once by the orchestrator; a standalone or cleared run here.
        if not params.get("orchestrator_run_id") or is_reprocessing(context["dag_run"]):
            context["outlet_events"][RESULTS_UPDATES].add(
                RESULTS_ASSET,
                extra={
                    "source": "analyze_symbol",
                    "contract": params["contract"],
                    "rows": summary["written"],
                },
            )
        return summary

    analyzed >> summarize_symbol(partitions)


analyze_symbol()
