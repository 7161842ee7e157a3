"""The run record's one writer: states, facts merged, latest.json, and the late mark beside it."""

import pytest

from trading_lib import layout
from trading_lib.run_record import (
    ingestion_summary,
    late_facts,
    latest_run,
    read_run,
    record_run,
    started_facts,
)
from trading_lib.storage import Storage


@pytest.fixture
def storage(tmp_path):
    return Storage(str(tmp_path))


def test_each_state_change_updates_the_one_record(storage):
    request = {"run_type": "scheduled", "num_contracts": None}
    plan = {"window_start": "s", "window_end": "e", "contracts": ["AAPL"]}
    record_run(storage, "r1", "running", **started_facts("trading_orchestrator", request, plan, None))
    record_run(storage, "r1", "success", analyze_symbol_run_ids=["r1__AAPL"])
    record = read_run(storage, "r1")
    assert record["state"] == "success" and record["contracts"] == ["AAPL"] and record["ingestion"] is None
    assert record["analyze_symbol_run_ids"] == ["r1__AAPL"] and record["run_type"] == "scheduled"
    assert latest_run(storage)["run_id"] == "r1"
    with pytest.raises(ValueError, match="run state 'late'"):
        record_run(storage, "r1", "late")


def test_the_late_mark_has_its_own_file_and_survives_the_tasks_writes(storage):
    record_run(storage, "r1", "running", contracts=["AAPL"])
    record_run(storage, "r1", late=late_facts("2024-11-29T18:20:00+00:00", "running"))
    record_run(storage, "r1", "success")  # a task's read-modify-write after the mark: it stays
    record = read_run(storage, "r1")
    assert record["state"] == "success"
    assert record["late"]["deadline"] == "2024-11-29T18:20:00+00:00"
    assert record["late"]["state_at_deadline"] == "running" and record["late"]["noticed_at"]
    assert "late" not in storage.read_json(layout.run_key("r1", "run"))
    assert latest_run(storage)["late"] == record["late"]
    with pytest.raises(ValueError, match="on its own"):
        record_run(storage, "r1", "failed", late=record["late"])


def test_a_run_late_before_its_record_exists(storage):
    record_run(storage, "stuck", late=late_facts("2024-11-29T18:20:00+00:00", "queued"))
    record = read_run(storage, "stuck")
    assert set(record) == {"run_id", "late"} and record["late"]["state_at_deadline"] == "queued"
    assert read_run(storage, "nothing") is None


def test_ingestion_summary_keeps_what_the_run_page_shows():
    report = {
        "status": "partial",
        "start": "2024-01-02",
        "end": "2024-01-03",
        "fetch_start": "2023-12-14",
        "written": {"sessions_written": ["2024-01-02"], "bars_added": 7, "bars_revised": 0},
        "tickers": [{"symbol": "AAPL", "status": "ok"}, {"symbol": "ZZZZ", "status": "failed"}],
    }
    summary = ingestion_summary(report)
    assert summary["failed"] == ["ZZZZ"] and summary["bars_added"] == 7
    assert summary["sessions_written"] == ["2024-01-02"]
    assert ingestion_summary(None) is None
