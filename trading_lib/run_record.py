"""The run record: one JSON file per orchestrator run (``output/runs/<run_id>/run.json``) saying
what the run analysed and where it stands, and ``output/runs/latest.json``, a copy of the newest.

:func:`record_run` is its one writer. The orchestrator calls it at each change of the run: the
window and contracts are fixed (``running``), validation stopped it or a symbol run failed
(``failed``), the results are published (``success``), and the deadline alert found it late
(``late``, whatever its state). The CLI's ``run`` command writes the same record the same way.

The late mark is the one fact written while the run's tasks may be writing too (the deadline
callback runs on the triggerer, at any moment): it goes to its own file beside the record,
``output/runs/<run_id>/late.json``, so that neither writer's read-modify-write can drop the
other's update; the readers below return it inside the record as ``late``.

Light imports only: the triggerer imports this module to record a late run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from trading_lib import layout
from trading_lib.storage import MissingInputError, Storage

RUN_STATES = ("running", "failed", "success")
LATE = "late"  # output/runs/<run_id>/late.json


def record_run(
    storage: Storage,
    run_id: str,
    state: str | None = None,
    *,
    late: dict[str, Any] | None = None,
    **facts: Any,
) -> dict[str, Any]:
    """Create or update the record of run ``run_id``: its ``state`` (one of RUN_STATES; None keeps
    it) and ``facts`` (merged over the stored ones); or, with ``late`` (late_facts()), mark it late.
    The newest record by creation is copied to output/runs/latest.json. Returns the record."""
    if state is not None and state not in RUN_STATES:
        raise ValueError(f"run state {state!r}: expected one of {', '.join(RUN_STATES)}")
    if late is not None:
        if state is not None or facts:
            raise ValueError("a late mark is recorded on its own (the deadline callback's write)")
        storage.write_json(layout.run_key(run_id, LATE), late)
        return read_run(storage, run_id) or {"run_id": run_id, "late": late}
    key = layout.run_key(run_id, "run")
    now = _now()
    record = storage.read_json(key) if storage.exists(key) else {"run_id": run_id, "created_at": now}
    record.update(facts)
    if state is not None:
        record["state"] = state
    record["updated_at"] = now
    storage.write_json(key, record)
    latest = storage.read_json(layout.LATEST_RUN_KEY) if storage.exists(layout.LATEST_RUN_KEY) else None
    if (
        latest is None
        or latest.get("run_id") == run_id
        or latest.get("created_at", "") <= record["created_at"]
    ):
        storage.write_json(layout.LATEST_RUN_KEY, record)
    return _with_late(storage, record)


def read_run(storage: Storage, run_id: str, name: str = "run") -> dict[str, Any] | None:
    """A file of orchestrator run ``run_id`` (name "run": its record, "portfolio": its report,
    "validation"), or None when there is none; a malformed run id raises ValueError."""
    try:
        found = storage.read_json(layout.run_key(run_id, name))
    except MissingInputError:
        found = None
    if name != "run":
        return found
    if found is None:  # late before its record was written (stuck before select_contracts)
        late = _read_late(storage, run_id)
        return {"run_id": run_id, "late": late} if late else None
    return _with_late(storage, found)


def latest_run(storage: Storage) -> dict[str, Any] | None:
    """The record of the newest orchestrator run (output/runs/latest.json), or None."""
    try:
        return _with_late(storage, storage.read_json(layout.LATEST_RUN_KEY))
    except MissingInputError:
        return None


def started_facts(
    dag_id: str, request: dict[str, Any], plan: dict[str, Any], ingestion: dict[str, Any] | None
) -> dict[str, Any]:
    """What the record says when the run starts analysing: its DAG and type, the request, the
    window and contracts fixed (pipeline.plan_run), what the ingestion did, and the bar
    store version the plan read with what it re-analyses because bars changed before it."""
    revisions = plan.get("revisions") or {}
    return {
        "dag_id": dag_id,
        "run_type": request["run_type"],
        "request": request,
        "window_start": plan["window_start"],
        "window_end": plan["window_end"],
        "contracts": plan["contracts"],
        "ingestion": ingestion_summary(ingestion),
        "revisions": {k: v for k, v in revisions.items() if k != "timestamps"},
        "bar_store_version": revisions.get("until_version"),
    }


def ingestion_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the run record keeps of an ingestion report (IngestionReport.to_dict()): its status,
    sessions, what was written and which tickers failed. None: the run did not ingest."""
    if not report:
        return None
    written = report.get("written") or {}
    return {
        "status": report.get("status"),
        "start": report.get("start"),
        "end": report.get("end"),
        "fetch_start": report.get("fetch_start"),
        "sessions_written": written.get("sessions_written", []),
        "bars_added": written.get("bars_added", 0),
        "bars_revised": written.get("bars_revised", 0),
        "failed": [t["symbol"] for t in report.get("tickers", []) if t.get("status") == "failed"],
    }


def late_facts(deadline: object, state: object, noticed_at: object = None) -> dict[str, Any]:
    """The late mark of a run that missed its deadline: when the deadline was, the run's Airflow
    state then, and when it was noticed (default: now). ISO 8601 strings."""
    return {
        "deadline": _iso(deadline),
        "state_at_deadline": str(state) if state is not None else None,
        "noticed_at": _iso(noticed_at) if noticed_at is not None else _now(),
    }


def _read_late(storage: Storage, run_id: str) -> dict[str, Any] | None:
    try:
        return storage.read_json(layout.run_key(run_id, LATE))
    except MissingInputError:
        return None


def _with_late(storage: Storage, record: dict[str, Any]) -> dict[str, Any]:
    late = _read_late(storage, record["run_id"]) if record.get("run_id") else None
    return record | {"late": late} if late else record


def _iso(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
