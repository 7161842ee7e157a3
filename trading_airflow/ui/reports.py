"""What the pages show: the run records and reports the DAGs write (through trading_lib's Storage,
local or S3) and the task and run states of Airflow's metadata DB (read in the api-server).

Keys, relative to the data root (trading_lib.layout):
    output/runs/<run_id>/run.json        one record per trading_orchestrator run
    output/runs/<run_id>/portfolio.json  that run's portfolio report
    output/runs/latest.json              a copy of the newest run record
    output/reports/<name>.json           the latest reports (portfolio over the period, validation, ...)

Storage is opened as the tasks open it (trading_airflow.runtime.connection_storage: an s3:// data
root through the Airflow connection TRADING_AWS_CONN_ID); the DAG and task names come from there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from trading_airflow.runtime import (
    ANALYZE_DAG,
    LIST_TASK,
    ORCHESTRATOR_DAG,
    PARTITION_TASK,
    connection_storage,
)
from trading_lib.layout import EXCHANGE_TZ, RUNS_PREFIX

EXCHANGE_ZONE = ZoneInfo(EXCHANGE_TZ)


def read_report(name: str, storage=None) -> dict[str, Any] | None:
    """The report ``output/reports/<name>.json``, or None when the pipeline has not written it yet."""
    from trading_lib.layout import report_key
    from trading_lib.storage import MissingInputError

    try:
        return (storage or connection_storage()).read_json(report_key(name))
    except MissingInputError:
        return None


def read_run(run_id: str, name: str = "run", storage=None) -> dict[str, Any] | None:
    """``output/runs/<run_id>/<name>.json`` (name "run": the record, "portfolio": its report), or
    None when there is none or ``run_id`` cannot be a run id (it comes from the URL)."""
    from trading_lib import pipeline

    try:
        return pipeline.read_run(storage or connection_storage(), run_id, name)
    except ValueError:
        return None


def latest_run(storage=None) -> dict[str, Any] | None:
    """The record of the newest trading_orchestrator run (output/runs/latest.json)."""
    from trading_lib import pipeline

    return pipeline.latest_run(storage or connection_storage())


def _records(storage, file_name: str) -> list[dict[str, Any]]:
    """The run record of every run folder holding ``file_name`` (run.json, late.json)."""
    try:
        keys = storage.list_keys(RUNS_PREFIX, suffix=f"/{file_name}")
    except Exception:  # noqa: BLE001 - no runs folder yet (or a listing the storage refuses)
        keys = []
    found = (read_run(key.split("/")[-2], storage=storage) for key in keys)
    return [r for r in found if isinstance(r, dict)]


def run_records(storage=None) -> list[dict[str, Any]]:
    """Every stored run record, newest first (by created_at, then run id)."""
    storage = storage or connection_storage()
    records = [r for r in _records(storage, "run.json") if r.get("run_id")]
    latest = latest_run(storage)
    if latest and latest.get("run_id") and all(r["run_id"] != latest["run_id"] for r in records):
        records.append(latest)
    return sorted(records, key=lambda r: (str(r.get("created_at") or ""), r["run_id"]), reverse=True)


def late_runs(storage=None, limit: int = 20) -> list[dict[str, Any]]:
    """The records of the runs the deadline alert marked late (output/runs/<run_id>/late.json),
    the latest deadline first, at most ``limit``."""
    records = [r for r in _records(storage or connection_storage(), "late.json") if r.get("late")]
    records.sort(key=lambda r: str(r["late"].get("deadline") or ""), reverse=True)
    return records[:limit]


def symbol_reports(contracts: list[str], storage=None) -> dict[str, dict[str, Any]]:
    """The per-symbol summaries (reports/symbols/<SEGMENT>.json) of ``contracts`` that exist."""
    from trading_lib.symbols import symbol_to_segment

    storage = storage or connection_storage()
    found = {c: read_report(f"symbols/{symbol_to_segment(c)}", storage) for c in contracts}
    return {contract: report for contract, report in found.items() if report is not None}


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp or date as an aware datetime (a naive one is exchange time), else None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=EXCHANGE_ZONE)


@dataclass(frozen=True)
class TaskCell:
    """Where a partition ran: its mapped task instance, and that instance's state and try."""

    run_id: str
    map_index: int
    state: str | None
    try_number: int | None = None


def partition_index(chunks: list[list[str]]) -> dict[str, int]:
    """partition timestamp -> map index, from list_partitions' return value (one chunk per mapped
    instance: one timestamp each unless a run has more bars than [core] max_map_length)."""
    return {timestamp: index for index, chunk in enumerate(chunks) for timestamp in chunk}


def run_of_partition(
    records: list[dict[str, Any]], contract: str, timestamp: str
) -> tuple[dict[str, Any], str] | None:
    """(run record, analyze_symbol run id) of the newest run whose contracts and window
    [window_start, window_end) contain the partition, or None. ``records`` newest first."""
    when = parse_time(timestamp)
    for record in records:
        contracts = record.get("contracts") or []
        run_ids = record.get("analyze_symbol_run_ids") or []
        if contract not in contracts or len(run_ids) != len(contracts):
            continue
        start, end = parse_time(record.get("window_start")), parse_time(record.get("window_end"))
        if when is not None and (start and when < start or end and when >= end):
            continue
        return record, run_ids[contracts.index(contract)]
    return None


def partition_cells(
    partitions: list[tuple[str, str]], records: list[dict[str, Any]]
) -> dict[tuple[str, str], TaskCell]:
    """(contract, timestamp label) -> its mapped analyze_partition instance, for the
    partitions given. The run is the newest record containing the partition (run_of_partition);
    the map index comes from that run's own list of partitions (its XCom), so chunked runs and
    Kubernetes pod labels need no parsing."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for contract, timestamp in partitions:
        found = run_of_partition(records, contract, timestamp)
        if found:
            wanted.setdefault(found[1], []).append((contract, timestamp))
    if not wanted:
        return {}
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        listed = _listed_partitions(session, list(wanted))
        states = session.execute(
            select(
                TaskInstance.run_id, TaskInstance.map_index, TaskInstance.state, TaskInstance.try_number
            ).where(
                TaskInstance.dag_id == ANALYZE_DAG,
                TaskInstance.task_id == PARTITION_TASK,
                TaskInstance.run_id.in_(wanted),
            )
        ).all()
    state_of = {
        (run_id, index): (str(state) if state else None, tries) for run_id, index, state, tries in states
    }
    cells = {}
    for run_id, chunks in listed.items():
        index = partition_index(chunks)
        for contract, label in wanted[run_id]:
            if label in index:
                state, tries = state_of.get((run_id, index[label]), (None, None))
                cells[(contract, label)] = TaskCell(run_id, index[label], state, tries)
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


@dataclass(frozen=True)
class DagRunInfo:
    run_id: str
    state: str
    run_after: datetime | None


def newest_orchestrator_run() -> DagRunInfo | None:
    """The newest trading_orchestrator run of the metadata DB (by run_after), whatever its state."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(DagRun.run_id, DagRun.state, DagRun.run_after)
            .where(DagRun.dag_id == ORCHESTRATOR_DAG)
            .order_by(DagRun.run_after.desc(), DagRun.id.desc())
            .limit(1)
        ).first()
    return DagRunInfo(row.run_id, str(row.state), row.run_after) if row else None


def _listed_partitions(session, run_ids: list[str]) -> dict[str, list]:
    """{analyze_symbol run id: the chunks its list_partitions task returned} for ``run_ids``;
    a run whose XCom is not the list itself (a custom XCom backend stores a reference) is left out."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    rows = session.execute(
        select(XComModel.run_id, XComModel.value).where(
            XComModel.dag_id == ANALYZE_DAG,
            XComModel.task_id == LIST_TASK,
            XComModel.key == "return_value",
            XComModel.map_index == -1,
            XComModel.run_id.in_(run_ids),
        )
    ).all()
    listed = {row.run_id: XComModel.deserialize_value(row) for row in rows}
    return {run_id: chunks for run_id, chunks in listed.items() if isinstance(chunks, list)}


def partitions_of_map_index(run_id: str, map_index: int) -> list[str]:
    """The timestamp labels one mapped analyze_partition instance processes."""
    from airflow.utils.session import create_session

    with create_session() as session:
        chunks = _listed_partitions(session, [run_id]).get(run_id)
    if chunks is None or not 0 <= map_index < len(chunks):
        return []
    chunk = chunks[map_index]
    return [str(label) for label in chunk] if isinstance(chunk, list) else [str(chunk)]
