"""What the DAGs and the reports plugin share: names, the asset, storage through the Airflow
connection, and turning bad input into a clean failure.

Imported at parse time and by the api-server: keep it light (pandas & co. are imported inside the
functions that need them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, AssetAlias

from trading_lib.layout import RESULTS_PREFIX
from trading_lib.settings import SCHEDULE_TIMEZONE, Settings, load_settings

SETTINGS: Settings = load_settings()

OWNER = "trading"

# DAG and task ids the plugin and the scripts look up, defined once.
ORCHESTRATOR_DAG = "trading_orchestrator"
ANALYZE_DAG = "analyze_symbol"
AGGREGATE_DAG = "aggregate_portfolio"
INGEST_DAG = "ingest_market_data"
VALIDATE_DAG = "validate_data"
LIST_TASK = "list_partitions"
# One mapped instance of it is one partition (contract x timestamp), or one chunk of consecutive
# partitions past [core] max_map_length; the same name as trading_lib's function and CLI command.
PARTITION_TASK = "analyze_partition"
START_DATE = pendulum.parse(SETTINGS.orchestrator_start_date, tz=SCHEDULE_TIMEZONE)
# The schedule's last day, included (TRADING_ORCHESTRATOR_END_DATE), or None.
END_DATE = (
    pendulum.parse(SETTINGS.orchestrator_end_date, tz=SCHEDULE_TIMEZONE).end_of("day")
    if SETTINGS.orchestrator_end_date
    else None
)


def _results_uri(settings: Settings) -> str:
    if settings.is_s3:
        return f"{settings.data_root}/{RESULTS_PREFIX}"
    return Path(settings.data_root, RESULTS_PREFIX).resolve().as_uri()


# Aggregation is scheduled on this asset. Events come from ONE place per pipeline run (the
# orchestrator's final task), from a standalone analyze_symbol run's final task, and from a
# partition that is reprocessed (its cleared mapped instance), never from every partition of a
# first run: one aggregation per pipeline run instead of one per scheduler loop that saw events.
RESULTS_ASSET = Asset(name="trading_results", uri=_results_uri(SETTINGS), group="trading")
# Tasks that decide at run time whether they emit RESULTS_ASSET declare this alias as outlet.
RESULTS_UPDATES = AssetAlias(name="trading_results_updates", group="trading")

# Retries for tasks that talk to storage or Yahoo: transient failures (S3 outage, rate limits)
# heal; bad input is raised as AirflowFailException by bad_input_fails_fast and never retried.
# Exponential from 10 s, capped at 2 minutes: 10+20+40+80+120+120 s, a 6-minute outage is covered.
IO_RETRY_ARGS = {
    "retries": 6,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=2),
}
DEFAULT_ARGS = {"owner": OWNER, **IO_RETRY_ARGS}


def connection_storage(root: str | None = None):
    """The data root (or ``root``, e.g. aggregate_portfolio's output_dir) as a trading_lib Storage,
    for tasks and the plugin; s3:// uses the credentials of the Airflow connection
    TRADING_AWS_CONN_ID (trading_lib.pipeline.open_storage is the same outside Airflow, with the
    AWS_* environment)."""
    from trading_lib.storage import Storage

    settings = load_settings()
    root = root or settings.data_root
    if not root.startswith("s3://"):
        return Storage(root)
    return _s3_storage(root, settings.aws_conn_id)


def _s3_storage(root: str, conn_id: str):
    """Storage on ``root`` with the connection's credentials, checked with one request (a HEAD) so
    that a wrong or unreachable connection fails here with a message naming the connection id,
    not later as an anonymous storage error: refused credentials fail at once (AccessDeniedError),
    an unreachable store is a StorageError, retried like any I/O failure."""
    from airflow.sdk import ObjectStoragePath

    from trading_lib.layout import BARS_PREFIX
    from trading_lib.storage import AccessDeniedError, Storage, StorageError

    storage = Storage(root, fs=ObjectStoragePath(root, conn_id=conn_id).fs)
    try:
        storage.exists(BARS_PREFIX)
    except StorageError as exc:
        if isinstance(exc, AccessDeniedError):  # wrong credentials: fail now, no retry
            raise AccessDeniedError(
                f"S3 connection {conn_id!r} was refused by {storage.endpoint}: {exc}"
            ) from exc
        raise StorageError(f"S3 connection {conn_id!r} ({storage.endpoint}) failed: {exc}") from exc
    return storage


@contextmanager
def bad_input_fails_fast() -> Iterator[None]:
    """Bad conf or bad data fails the task at once (no retry), with the library's message; every
    other error (trading_lib's TransientError included) is left to Airflow's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from trading_lib.errors import BadInputError

    try:
        yield
    except BadInputError as exc:
        raise AirflowFailException(str(exc)) from exc


def is_reprocessing(dag_run, orchestrator_run_id: str | None) -> bool:
    """True when this analyze_symbol run was cleared by someone reprocessing it (its results must
    be announced), False on its first run and when its own orchestrator run, still running, reset
    it (a retry of trigger_analyze_symbol: the orchestrator announces the results once, at the end)."""
    if not getattr(dag_run, "clear_number", 0):
        return False
    if not orchestrator_run_id:
        return True
    from trading_lib.pipeline import read_run

    record = read_run(connection_storage(), orchestrator_run_id)
    return record is None or record.get("state") != "running"


# -- the partition task's hooks, the same in local and kubernetes execution modes ---------------
def instance_timestamps(context) -> list[str]:
    """The partition timestamps of the running mapped analyze_partition instance: its chunk of
    list_partitions' result, whichever operator runs it (a TaskFlow task or a pod)."""
    ti = context["ti"]
    return list(ti.xcom_pull(task_ids=LIST_TASK, map_indexes=-1)[ti.map_index])


def name_partition_instance(context) -> None:
    """pre_execute hook: names the instance in the UI (map_index_template "{{ partition_name }}"),
    e.g. "AAPL 2024-01-22T09:30:00-05:00", before it runs, so a failed instance is named too."""
    from trading_lib.layout import partition_name

    context["partition_name"] = partition_name(context["params"]["contract"], instance_timestamps(context))


def announce_reprocessed_partition(context, result=None) -> None:
    """post_execute hook: an instance cleared to reprocess its partitions announces them (one asset
    event, so one more aggregation). On a first run it announces nothing: its run announces all of
    its partitions once, at the end (the orchestrator, or summarize_symbol of a standalone run)."""
    params = context["params"]
    orchestrator_run_id = params.get("orchestrator_run_id")
    if not is_reprocessing(context["dag_run"], orchestrator_run_id):
        return
    context["outlet_events"][RESULTS_UPDATES].add(
        RESULTS_ASSET,
        extra={
            "source": "reprocessed_partition",
            "orchestrator_run_id": orchestrator_run_id,
            "contract": params["contract"],
            "timestamps": instance_timestamps(context),
        },
    )


# Everything both partition operators (the TaskFlow task and the pod) are given alike.
PARTITION_TASK_ARGS = {
    "task_id": PARTITION_TASK,
    "map_index_template": "{{ partition_name }}",
    "pre_execute": name_partition_instance,
    "post_execute": announce_reprocessed_partition,
    "outlets": [RESULTS_UPDATES],
}
