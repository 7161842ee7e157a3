"""
### analyze_symbol: one contract, one mapped task instance per timestamp

`list_partitions` lists the contract's stored bars inside the analysis window (or the
`timestamps` given in conf) and `analyze_time_partition` is mapped over them: each mapped instance
is one partition (contract × timestamp), labelled "<CONTRACT> <timestamp>". It reads its own bar
and look-back from the bar store (any bar ever stored can be analysed again) and writes
`output/trading-results/<YYYY-MM-DD>/<CONTRACT>_<HHMMSS>.parquet` atomically; while the stored
bars are unchanged, running it again writes identical bytes. `summarize_symbol` writes
`output/reports/symbols/<CONTRACT>.json`.

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

from trading_lib.run_request import DATE_TIME_PATTERN
from trading_lib.symbols import JSON_SCHEMA_PATTERN

NULLABLE_TIMESTAMP = {"type": ["null", "string"], "format": "date-time", "pattern": DATE_TIME_PATTERN}


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
    tags=["trading", "analyze"],
    default_args=DEFAULT_ARGS,
    max_active_runs=16,
    params={
        "contract": Param(
            type="string",
            pattern=JSON_SCHEMA_PATTERN,
            title="Contract",
            description="Yahoo-style ticker with bars in the store, e.g. AAPL (letters/digits, optional ^, "
            "parts joined by - . =).",
        ),
        "timestamps": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN},
            minItems=1,
            title="Timestamps",
            description="Analyse only these stored bars: ISO 8601 bar starts with offset, e.g. "
            "2024-01-22T09:30:00-05:00. Overrides the window.",
        ),
        "window_start": Param(
            None,
            **NULLABLE_TIMESTAMP,
            title="Window start",
            description="Analyse the bars starting at or after this ISO 8601 date-time with offset "
            "(with Window end). Default: the last 24 stored bars.",
        ),
        "window_end": Param(
            None,
            **NULLABLE_TIMESTAMP,
            title="Window end",
            description="Analyse the bars starting before this ISO 8601 date-time with offset (exclusive).",
        ),
        "orchestrator_run_id": Param(
            None,
            type=["null", "string"],
            title="Orchestrator run",
            description="Set by trading_orchestrator (ties this run to its record); leave empty.",
        ),
    },
)
def analyze_symbol():
    @task  # bad conf fails at once (AirflowFailException); a storage outage is retried
    def list_partitions(params=None, dag_run=None) -> list[list[str]]:
        from airflow.configuration import conf

        from trading_lib import pipeline
        from trading_lib.run_request import check_keys

        with bad_input_fails_fast():
            check_keys(
                dag_run.conf, ("contract", "timestamps", "window_start", "window_end", "orchestrator_run_id")
            )
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
                storage = task_storage()
                written = pipeline.analyze_partition(storage, contract, partition_timestamps)
            for item in written:
                print(
                    f"partition {item['contract']} {item['timestamp']}: signal {item['signal']}, "
                    f"beta {item['beta'] if item['beta'] is None else round(item['beta'], 4)}, "
                    f"wrote {item['key']} ({item['bytes']} bytes)"
                )
            orchestrator_run_id = context["params"].get("orchestrator_run_id")
            if is_reprocessing(context["dag_run"], orchestrator_run_id, storage):
                for item in written:
                    context["outlet_events"][RESULTS_UPDATES].add(
                        RESULTS_ASSET,
                        extra={"source": "reprocessed_partition", "orchestrator_run_id": orchestrator_run_id}
                        | item,
                    )
            return len(written)

        analyzed = analyze_time_partition.expand(partition_timestamps=partitions)

    @task(outlets=[RESULTS_UPDATES])
    def summarize_symbol(chunks: list[list[str]]):
        from trading_lib import pipeline

        context = get_current_context()
        params = context["params"]
        labels = [label for chunk in chunks for label in chunk]
        storage = task_storage()
        summary = pipeline.summarize_symbol(storage, params["contract"], labels, context["run_id"])
        if summary["missing"]:
            raise RuntimeError(
                f"{len(summary['missing'])} partition file(s) missing: {summary['missing'][:5]}"
            )
        # Orchestrated runs are announced once by the orchestrator; a standalone or cleared run here.
        orchestrator_run_id = params.get("orchestrator_run_id")
        if not orchestrator_run_id or is_reprocessing(context["dag_run"], orchestrator_run_id, storage):
            context["outlet_events"][RESULTS_UPDATES].add(
                RESULTS_ASSET,
                extra={
                    "source": "analyze_symbol",
                    "orchestrator_run_id": params.get("orchestrator_run_id"),
                    "contract": params["contract"],
                    "rows": summary["written"],
                },
            )
        return summary

    analyzed >> summarize_symbol(partitions)


analyze_symbol()
