"""The DeadlineAlert of trading_orchestrator on a real Airflow (scheduler, triggerer): a run that is
deliberately slow is recorded late, once its deadline has passed.

The slow runs: Yahoo is a loopback port that nothing serves, so the ingestion of a scheduled run
fails its attempts and waits for its retries (a Yahoo outage); the manual run queued behind it
(max_active_runs=1) waits too. The schedule is the exchange's bars without catchup: the scheduler
creates the run of the last bar that closed, whose deadline (bar close + 1 minute) is already
past; the manual run's deadline is 1 minute after it was queued.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from local_airflow import free_port

from trading_lib import run_record
from trading_lib.storage import Storage

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
DEADLINE_MINUTES = 1


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deadline-data")


@pytest.fixture(scope="module")
def airflow(running_airflow, data_root):
    with running_airflow(
        "deadline",
        data_root,
        TRADING_ORCHESTRATOR_SCHEDULE="exchange",
        TRADING_ORCHESTRATOR_DEADLINE_MINUTES=str(DEADLINE_MINUTES),
        TRADING_YAHOO_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    ) as instance:
        yield instance


def _late(storage: Storage, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = run_record.read_run(storage, run_id)
        if record and record.get("late"):
            return record
        time.sleep(2)
    raise TimeoutError(f"run {run_id} was not recorded late within {timeout:.0f} s")


def test_slow_runs_are_recorded_late_after_their_deadline(airflow, data_root):
    client = airflow.client()
    client.wait_for_dag("trading_orchestrator")
    started = time.monotonic()
    while not (
        scheduled := [r for r in client.dag_runs("trading_orchestrator") if r["run_type"] == "scheduled"]
    ):
        assert time.monotonic() - started < 180, "the scheduler created no run of the exchange's last bar"
        time.sleep(2)
    (bar_run,) = scheduled
    manual = client.trigger("trading_orchestrator", {"run_ingestion": True})
    storage = Storage(str(data_root))

    # The scheduled run: its bar closed before the stack started, so its deadline has passed.
    record = _late(storage, bar_run["dag_run_id"], timeout=240)
    bar_end = pd.Timestamp(bar_run["data_interval_end"])
    assert pd.Timestamp(record["late"]["deadline"]) == bar_end + pd.Timedelta(minutes=DEADLINE_MINUTES)
    assert record["late"]["state_at_deadline"] in ("queued", "running")
    assert client.dag_run("trading_orchestrator", bar_run["dag_run_id"])["state"] == "running"  # still slow

    # The manual run: one minute after it was queued, not earlier.
    record = _late(storage, manual["dag_run_id"], timeout=240)
    queued = pd.Timestamp(client.dag_run("trading_orchestrator", manual["dag_run_id"])["queued_at"])
    deadline = pd.Timestamp(record["late"]["deadline"])
    assert deadline == queued + pd.Timedelta(minutes=DEADLINE_MINUTES)
    assert pd.Timestamp(record["late"]["noticed_at"]) >= deadline

    for run_id in (bar_run["dag_run_id"], manual["dag_run_id"]):  # end the outage's runs now
        client.patch(
            f"/api/v2/dags/trading_orchestrator/dagRuns/{quote(run_id, safe='')}", {"state": "failed"}
        )
