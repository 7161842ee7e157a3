"""A backfill across Thanksgiving 2025 (no session) and the 13:00 close of the day after, on a real
Airflow with the exchange's bar timetable: one run per bar of the exchange, none failed, exactly
the exchange's bars ingested and analysed, and none of the runs marked late by the deadline alert
(backfill runs have no deadline; the one set here is shorter than the backfill).

Yahoo is the loopback replay of the real 2022 bars (tests/trading_lib/yahoo_replay.py), shifted by
whole weeks so that 2022-03-30 .. 2022-04-04 become 2025-11-26 .. 2025-12-01; as Yahoo does, it
serves no bar on the holiday and none after the early close (the replay's "drop" scenario).
"""

from __future__ import annotations

import time
from pathlib import Path

import exchange_calendars as xcals
import pandas as pd
import pytest
from airflow_rest import AirflowError
from yahoo_replay import YahooReplay, load_bars

from trading_lib import layout, run_record
from trading_lib.storage import Storage
from trading_lib.store import BarStore

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
NY = layout.EXCHANGE_TZ
SYMBOLS = ["AAPL", "GOOG"]
WEEKS = (pd.Timestamp("2025-11-26") - pd.Timestamp("2022-03-30")).days // 7  # Wednesday to Wednesday
HOLIDAY, EARLY_CLOSE = "2025-11-27", "2025-11-28"
FROM, TO = pd.Timestamp("2025-11-26 15:00", tz=NY), pd.Timestamp("2025-11-28 23:00", tz=NY)


def _exchange_bars(first: pd.Timestamp, last: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """exchange_calendars' hourly bars starting in [first, last]: from the open while before the close."""
    calendar = xcals.get_calendar("XNYS")
    bars = []
    for session in calendar.sessions_in_range(str(first.date()), str(last.date())):
        start, close = calendar.session_open(session), calendar.session_close(session)
        while start < close:
            if first <= start <= last:
                bars.append((start, min(start + pd.Timedelta(hours=1), close)))
            start += pd.Timedelta(hours=1)
    return bars


@pytest.fixture(scope="module")
def replay():
    with YahooReplay(WEEKS) as server:
        for symbol in [*SYMBOLS, "^VIX", "^GSPC"]:  # Yahoo has no bar where the exchange was closed
            served = load_bars(symbol, WEEKS)["timestamp"]
            local = served.dt.tz_convert(NY)
            closed = (local.dt.strftime("%Y-%m-%d") == HOLIDAY) | (
                (local.dt.strftime("%Y-%m-%d") == EARLY_CLOSE) & (local.dt.strftime("%H:%M") >= "13:00")
            )
            server.scenarios[symbol] = ("drop", set(served[closed]))
        yield server


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exchange-schedule-data")


@pytest.fixture(scope="module")
def airflow(running_airflow, data_root, replay):
    with running_airflow(
        "exchange-schedule",
        data_root,
        TRADING_ORCHESTRATOR_SCHEDULE="exchange",
        # no scheduled run of today's bars (the replay has none): the schedule ends before them
        TRADING_ORCHESTRATOR_START_DATE="2025-11-03",
        TRADING_ORCHESTRATOR_END_DATE=EARLY_CLOSE,
        # a deadline shorter than the backfill: its runs must still not be marked late
        TRADING_ORCHESTRATOR_DEADLINE_MINUTES="1",
        TRADING_SYMBOLS=",".join(SYMBOLS),
        TRADING_YAHOO_ENDPOINT=f"http://127.0.0.1:{replay.port}",
    ) as instance:
        yield instance


def _create_backfill(airflow, body: dict) -> dict:
    """POST /backfills; SQLite's lock answers 503 (or 409 for a failed creation's leftover) at
    times under load: ask again (tests/e2e/test_history.py says more)."""
    client = airflow.client()
    for _ in range(20):
        try:
            backfill = client.post("/api/v2/backfills", body)
            break
        except AirflowError as exc:
            if exc.status not in (409, 503) and not (exc.status == 500 and "Database error" in exc.body):
                raise
            time.sleep(3)
    else:
        raise AssertionError("backfill creation kept answering 503/409")
    time.sleep(5)
    if not airflow.running():
        airflow.start(timeout=600)
    return backfill


def test_a_backfill_across_a_holiday_and_an_early_close_runs_exactly_the_exchanges_bars(airflow, data_root):
    client = airflow.client()
    client.wait_for_dag("trading_orchestrator")
    body = {
        "dag_id": "trading_orchestrator",
        "from_date": FROM.isoformat(),
        "to_date": TO.isoformat(),
        "max_active_runs": 1,
        "reprocess_behavior": "none",
        "dag_run_conf": {"ingestion_symbols": SYMBOLS, "num_contracts": len(SYMBOLS)},
    }
    backfill = _create_backfill(airflow, body)
    deadline = time.monotonic() + 1500
    while not client.get(f"/api/v2/backfills/{backfill['id']}").get("completed_at"):
        assert time.monotonic() < deadline, "the backfill did not complete"
        time.sleep(3)

    runs = sorted(client.dag_runs("trading_orchestrator"), key=lambda r: r["data_interval_start"])
    assert [r["state"] for r in runs] == ["success"] * len(runs), [
        (r["dag_run_id"], r["state"]) for r in runs
    ]
    assert {r["run_type"] for r in runs} == {"backfill"}
    expected = _exchange_bars(FROM, TO)
    assert len(expected) == 1 + 4  # 15:30 of the 26th; 09:30 .. 12:30 of the 28th (13:00 close)
    intervals = [(pd.Timestamp(r["data_interval_start"]), pd.Timestamp(r["data_interval_end"])) for r in runs]
    assert intervals == expected

    # Ingested: the exchange's bars of the two sessions, nothing of the holiday or after 13:00.
    storage = Storage(str(data_root))
    rows = BarStore(storage).read_sessions(BarStore(storage).sessions())
    rows = rows[rows["timestamp"] >= pd.Timestamp("2025-11-26", tz=NY)]
    session_bars = _exchange_bars(pd.Timestamp("2025-11-26", tz=NY), pd.Timestamp("2025-11-28 23:59", tz=NY))
    for symbol in [*SYMBOLS, "^GSPC"]:
        stored = sorted(rows.loc[rows["symbol"] == symbol, "timestamp"])
        assert stored == [start for start, _ in session_bars], symbol

    # Analysed: one partition per contract and bar of a run, each run's record its own bar.
    results = sorted(
        str(p.relative_to(data_root / layout.RESULTS_PREFIX))
        for p in (data_root / layout.RESULTS_PREFIX).glob("*/*.parquet")
    )
    assert results == sorted(
        layout.result_relative_key(symbol, start.tz_convert(NY))
        for start, _ in expected
        for symbol in SYMBOLS
    )
    assert not list((data_root / layout.RUNS_PREFIX).glob("*/late.json"))  # backfill runs have no deadline
    for run, (start, end) in zip(runs, expected, strict=True):
        record = run_record.read_run(storage, run["dag_run_id"])
        assert record["state"] == "success" and record["contracts"] == SYMBOLS
        assert (record["window_start"], record["window_end"]) == (
            start.tz_convert(NY).isoformat(),
            end.tz_convert(NY).isoformat(),
        )
