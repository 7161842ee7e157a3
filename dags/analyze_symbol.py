"""
### analyze_symbol: one contract, one mapped task instance per partition

`list_partitions` lists the contract's stored bars inside the analysis window (or the
`timestamps` given in conf), and `analyze_partition` is mapped over them: each mapped instance
is one partition (contract × timestamp), named "<CONTRACT> <timestamp>" in the UI. It reads the
bar and its look-back from the bar store (any bar ever stored can be analysed again) and writes
`output/trading-results/<YYYY-MM-DD>/<CONTRACT>_<HHMMSS>.parquet` atomically; while the stored
bars are unchanged, running it again writes identical bytes. `summarize_symbol` writes
`output/reports/symbols/<CONTRACT>.json`.

**Execution mode** (`TRADING_EXECUTION_MODE`): `local` runs `trading_lib`'s
`pipeline.analyze_partition` inside the Airflow worker; `kubernetes` runs the very same function
as one KubernetesPodOperator pod per mapped instance, in the task image
(`python -m trading_lib analyze-partition --contract C --timestamp T`). Both modes name the
instances alike and announce a reprocessed partition alike.

**Reprocess one partition** (both modes): clear its mapped instance (Grid → the instance →
Clear; "Downstream" may be on or off). The instance announces its results and aggregate_portfolio
runs once more. Or trigger this DAG with
`{"contract": "AAPL", "timestamps": ["2024-01-22T09:30:00-05:00"]}`.

**More bars than `[core] max_map_length`** (1024 by default; a year of hourly bars is ~1,764):
consecutive partitions are grouped into equal chunks, one chunk per mapped instance, so a run
never exceeds the limit. Raise `AIRFLOW__CORE__MAX_MAP_LENGTH` to keep one partition per instance,
or set `TRADING_PARTITIONS_PER_TASK` to put more partitions in each instance: a chunk reads its
look-back once, and fewer instances cost the scheduler and the executor less.

Runs started by trading_orchestrator carry `orchestrator_run_id`; their results are announced
once by the orchestrator, not by each symbol.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from trading_airflow.params import window_params
from trading_airflow.runtime import (
    ANALYZE_DAG,
    DEFAULT_ARGS,
    PARTITION_TASK_ARGS,
    RESULTS_ASSET,
    RESULTS_UPDATES,
    SETTINGS,
    START_DATE,
    bad_input_fails_fast,
    connection_storage,
)
from trading_lib.run_request import DATE_TIME_PATTERN
from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id=ANALYZE_DAG,
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
        **window_params("the last 24 stored bars."),
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

        from trading_lib import layout, pipeline
        from trading_lib.run_request import check_keys

        with bad_input_fails_fast():
            check_keys(
                dag_run.conf, ("contract", "timestamps", "window_start", "window_end", "orchestrator_run_id")
            )
            storage = connection_storage()
            window = None
            if params.get("timestamps") is None:
                window = pipeline.resolve_window(
                    storage, params.get("window_start"), params.get("window_end")
                )
            timestamps = pipeline.list_partitions(
                storage, params["contract"], window=window, timestamps=params.get("timestamps")
            )
        return layout.chunk_partitions(
            timestamps, conf.getint("core", "max_map_length"), SETTINGS.partitions_per_task
        )

    chunks = list_partitions()

    if SETTINGS.execution_mode == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from trading_airflow.kubernetes_pods import partition_pod_kwargs, partition_pod_mapping

        @task
        def pod_arguments(chunks: list[list[str]], params=None) -> list[dict]:
            return [partition_pod_mapping(params["contract"], chunk) for chunk in chunks]

        analyzed = KubernetesPodOperator.partial(
            **PARTITION_TASK_ARGS, **partition_pod_kwargs(SETTINGS)
        ).expand_kwargs(pod_arguments(chunks))
    else:

        @task(**PARTITION_TASK_ARGS)
        def analyze_partition(timestamps: list[str], params=None) -> int:
            from trading_lib import pipeline

            with bad_input_fails_fast():
                written = pipeline.analyze_partition(connection_storage(), params["contract"], timestamps)
            for item in written:
                print(
                    f"partition {item['contract']} {item['timestamp']}: signal {item['signal']}, "
                    f"beta {item['beta'] if item['beta'] is None else round(item['beta'], 4)}, "
                    f"wrote {item['key']} ({item['bytes']} bytes)"
                )
            return len(written)

        analyzed = analyze_partition.expand(timestamps=chunks)

    @task(outlets=[RESULTS_UPDATES])
    def summarize_symbol(chunks: list[list[str]], params=None, dag_run=None, run_id=None):
        from trading_lib import pipeline

        timestamps = [timestamp for chunk in chunks for timestamp in chunk]
        summary = pipeline.summarize_symbol(connection_storage(), params["contract"], timestamps, run_id)
        if summary["missing"]:
            raise RuntimeError(
                f"{len(summary['missing'])} partition file(s) missing: {summary['missing'][:5]}"
            )
        # A first standalone run announces its results here; an orchestrated run is announced once
        # by the orchestrator, and a cleared partition instance announces itself.
        if not params.get("orchestrator_run_id") and not dag_run.clear_number:
            get_current_context()["outlet_events"][RESULTS_UPDATES].add(
                RESULTS_ASSET,
                extra={
                    "source": ANALYZE_DAG,
                    "contract": params["contract"],
                    "rows": summary["written"],
                },
            )
        return summary

    analyzed >> summarize_symbol(chunks)


analyze_symbol()
