"""The deadline reference of trading_orchestrator against DagRun rows of a real metadata DB
(SQLite), and the callback's record. The alert firing on a real scheduler: tests/e2e/test_deadline.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from trading_lib.run_record import read_run, record_run
from trading_lib.storage import Storage

pytestmark = pytest.mark.airflow

BAR_END = datetime(2024, 11, 29, 18, 0, tzinfo=UTC)  # the 13:00 close of 2024-11-29
QUEUED = datetime(2024, 12, 2, 7, 0, tzinfo=UTC)


@pytest.fixture
def runs(airflow_db):
    """Add dag_id "deadline_check" runs: add(run_type) -> run_id."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType
    from sqlalchemy import delete

    def add(run_type: str, interval: bool = True) -> str:
        run_id = f"{run_type}__{interval}"
        with create_session() as session:
            session.add(
                DagRun(
                    dag_id="deadline_check",
                    run_id=run_id,
                    run_type=DagRunType(run_type),
                    state="queued",
                    queued_at=QUEUED,
                    run_after=BAR_END,
                    # unique per run ((dag_id, logical_date) is), the interval's end is the bar's
                    logical_date=BAR_END - timedelta(minutes=30, seconds=len(added)) if interval else None,
                    data_interval=(BAR_END - timedelta(minutes=30), BAR_END) if interval else None,
                )
            )
        added.append(run_id)
        return run_id

    added: list[str] = []
    yield add
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == "deadline_check"))


def _reference(run_id: str):
    from airflow.utils.session import create_session

    from trading_airflow.deadlines import BarCloseOrQueuedAt

    with create_session() as session:
        return BarCloseOrQueuedAt()._evaluate_with(session=session, dag_id="deadline_check", run_id=run_id)


def test_a_scheduled_run_counts_from_its_bar_close_a_manual_one_from_its_queueing(runs):
    assert _reference(runs("scheduled")) == BAR_END
    assert _reference(runs("manual", interval=False)) == QUEUED
    assert _reference(runs("manual")) == QUEUED  # a manual run with a logical date: queued too
    assert _reference(runs("backfill")) is None  # no deadline: Airflow creates none for it
    assert _reference("no-such-run") is None


def test_the_callback_marks_the_run_late_in_its_record(tmp_path, monkeypatch):
    from trading_airflow.deadlines import record_late_run

    monkeypatch.setenv("TRADING_DATA_ROOT", str(tmp_path))
    storage = Storage(str(tmp_path))
    record_run(storage, "scheduled__2024-11-29T18:00:00+00:00", "running", contracts=["AAPL"])
    context = {  # what Airflow 3.3's scheduler gives the callback (Deadline.handle_miss)
        "dag_run": {"dag_id": "trading_orchestrator", "dag_run_id": "scheduled__2024-11-29T18:00:00+00:00",
                    "state": "running", "data_interval_end": "2024-11-29T18:00:00Z", "queued_at": None},
        "deadline": {"id": "x", "deadline_time": BAR_END + timedelta(minutes=20)},
    }  # fmt: skip
    asyncio.run(record_late_run(context=context))
    record = read_run(storage, "scheduled__2024-11-29T18:00:00+00:00")
    assert record["state"] == "running" and record["contracts"] == ["AAPL"]
    assert record["late"]["deadline"] == "2024-11-29T18:20:00+00:00"
    assert record["late"]["state_at_deadline"] == "running"
