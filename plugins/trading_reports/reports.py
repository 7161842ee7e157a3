"""What the pages show: the reports the DAGs write (through trading_lib's Storage, local or S3) and
the task and run states of the last pipeline run (Airflow's metadata DB, read in the api-server).

dags/ is not importable in the api-server, so the S3 connection rule of dags/common/runtime.py
is repeated here: an s3:// data root is read with the Airflow connection TRADING_AWS_CONN_ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANALYZE_DAG = "analyze_symbol"
PARTITION_TASK = "analyze_time_partition"
LIST_TASK = "list_partitions"
ORCHESTRATOR_DAG = "trading_orchestrator"


def storage():
    from trading_lib.settings import load_settings
    from trading_lib.storage import Storage

    settings = load_settings()
    if not settings.is_s3:
        return Storage(settings.data_root)
    from airflow.sdk import ObjectStoragePath

    return Storage(
        settings.data_root, fs=ObjectStoragePath(settings.data_root, conn_id=settings.aws_conn_id).fs
    )


def read_report(name: str, store=None) -> dict[str, Any] | None:
    """The report ``output/reports/<name>.json``, or None when the pipeline has not written it yet."""
    from trading_lib.layout import report_key
    from trading_lib.storage import MissingInputError

    try:
        return (store or storage()).read_json(report_key(name))
    except MissingInputError:
        return None


def symbol_reports(contracts: list[str], store=None) -> dict[str, dict[str, Any]]:
    """The per-symbol summaries (reports/symbols/<SEGMENT>.json) of ``contracts`` that exist."""
    from trading_lib.symbols import symbol_to_segment

    store = store or storage()
    found = {c: read_report(f"symbols/{symbol_to_segment(c)}", store) for c in contracts}
    return {contract: report for contract, report in found.items() if report is not None}


@dataclass(frozen=True)
class TaskCell:
    """Where a partition ran: its mapped task instance, and that instance's state."""

    run_id: str
    map_index: int
    state: str | None


def partition_index(chunks: list[list[str]]) -> dict[str, int]:
    """timestamp label -> map index, from list_partitions' return value (one chunk per mapped
    instance: one timestamp each unless a run has more bars than [core] max_map_length)."""
    return {label: index for index, chunk in enumerate(chunks) for label in chunk}


def partition_cells(last_run: dict[str, Any] | None) -> dict[tuple[str, str], TaskCell]:
    """(contract, timestamp label) -> its mapped analyze_time_partition instance in the runs of
    ``last_run`` (reports/pipeline/last_run.json). The map index comes from each run's own list
    of partitions (its XCom), so chunked runs and Kubernetes pod labels need no parsing."""
    if not last_run:
        return {}
    contract_of = dict(
        zip(last_run.get("analyze_symbol_run_ids", []), last_run.get("contracts", []), strict=True)
    )
    if not contract_of:
        return {}
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        listed = session.execute(
            select(XComModel.run_id, XComModel.value).where(
                XComModel.dag_id == ANALYZE_DAG,
                XComModel.task_id == LIST_TASK,
                XComModel.key == "return_value",
                XComModel.map_index == -1,
                XComModel.run_id.in_(contract_of),
            )
        ).all()
        states = session.execute(
            select(TaskInstance.run_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == ANALYZE_DAG,
                TaskInstance.task_id == PARTITION_TASK,
                TaskInstance.run_id.in_(contract_of),
            )
        ).all()
    state_of = {(run_id, index): (str(state) if state else None) for run_id, index, state in states}
    cells = {}
    for row in listed:
        run_id, chunks = row.run_id, XComModel.deserialize_value(row)
        if not isinstance(chunks, list):
            continue  # a custom XCom backend stores a reference, not the list
        for label, index in partition_index(chunks).items():
            cells[(contract_of[run_id], label)] = TaskCell(run_id, index, state_of.get((run_id, index)))
    return cells


def run_states(dag_runs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(dag_id, run_id) -> state of those DAG runs that exist in the metadata DB."""
    if not dag_runs:
        return {}
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select, tuple_

    with create_session() as session:
        rows = session.execute(
            select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
                tuple_(DagRun.dag_id, DagRun.run_id).in_(dag_runs)
            )
        ).all()
    return {(dag_id, run_id): str(state) for dag_id, run_id, state in rows}
