"""A trading day on a real Airflow, run by its scheduler: seven consecutive scheduled intervals of
trading_orchestrator build the history, then a past partition is reprocessed and two past days are
backfilled (twice).

Yahoo is the loopback replay of the real 2022 bars (tests/trading_lib/yahoo_replay.py), shifted by
whole weeks into Yahoo's 730-day window; the Airflow workers reach it through
TRADING_YAHOO_ENDPOINT. The schedule is the production cron; TRADING_ORCHESTRATOR_START_DATE /
END_DATE / CATCHUP make the scheduler run exactly one past day of intervals.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from yahoo_replay import YahooReplay, weeks_into_window

from trading_lib import layout, pipeline
from trading_lib.storage import Storage
from trading_lib.store import BarStore

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
SYMBOLS = ["AAPL", "GOOG", "TSLA"]
BACKFILL_SYMBOLS = ["AAPL", "GOOG"]
INTERVALS = 7  # 10:30 .. 15:30 of the day, and the next day's 09:30 (the interval after 16:30)
QUIET_PERIOD = 8
# (day before yesterday, yesterday, the day, the next day) in the 2022 data, all trading days there
CANDIDATES = [
    ("2022-04-08", "2022-04-11", "2022-04-12", "2022-04-13"),
    ("2022-04-04", "2022-04-05", "2022-04-07", "2022-04-08"),
    ("2022-03-30", "2022-03-31", "2022-04-01", "2022-04-04"),
]


def _days(weeks: int) -> list[str]:
    """The first candidate whose four days, shifted, are all NYSE sessions."""
    import exchange_calendars as xcals

    calendar = xcals.get_calendar("XNYS")
    for candidate in CANDIDATES:
        shifted = [str((pd.Timestamp(d) + pd.Timedelta(weeks=weeks)).date()) for d in candidate]
        if all(calendar.is_session(d) for d in shifted):
            return shifted
    raise AssertionError("no candidate day falls on NYSE sessions after the shift")


@pytest.fixture(scope="module")
def replay():
    with YahooReplay(weeks_into_window(pd.Timestamp.now(tz="UTC"))) as server:
        yield server


@pytest.fixture(scope="module")
def days(replay) -> list[str]:
    return _days(replay.weeks)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("history-data")  # empty: the first scheduled run fills the store


@pytest.fixture(scope="module")
def airflow(running_airflow, data_root, replay, days):
    with running_airflow(
        "history",
        data_root,
        TRADING_ORCHESTRATOR_SCHEDULE="30 10-16 * * 1-5",
        TRADING_ORCHESTRATOR_START_DATE=days[2],
        TRADING_ORCHESTRATOR_END_DATE=days[2],
        TRADING_ORCHESTRATOR_CATCHUP="true",
        TRADING_SYMBOLS=",".join(SYMBOLS),
        TRADING_YAHOO_ENDPOINT=f"http://127.0.0.1:{replay.port}",
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def client(airflow):
    return airflow.client()


def _runs(client, run_type: str) -> list[dict]:
    runs = [r for r in client.dag_runs("trading_orchestrator") if r["run_type"] == run_type]
    return sorted(runs, key=lambda r: r["data_interval_start"])


def _failure_logs(client, run: dict) -> str:
    failed = [
        ti
        for ti in client.task_instances("trading_orchestrator", run["dag_run_id"])
        if ti["state"] == "failed"
    ]
    out = []
    for ti in failed:
        path = (
            f"/api/v2/dags/trading_orchestrator/dagRuns/{quote(run['dag_run_id'], safe='')}"
            f"/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}?full_content=true"
            + (f"&map_index={ti['map_index']}" if ti["map_index"] >= 0 else "")
        )
        content = client.get(path).get("content", "")
        out.append(f"{ti['task_id']}: {str(content)[-3000:]}")
    return "\n".join(out)


def _wait_for_runs(client, run_type: str, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(client, run_type)
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, _failure_logs(client, failed[0])
        if len(runs) >= count and all(r["state"] == "success" for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"{run_type} runs: {[(r['dag_run_id'], r['state']) for r in _runs(client, run_type)]}")


def _wait_for_aggregations(client, known: set[str], timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    last_change, seen = time.monotonic(), set()
    while time.monotonic() < deadline:
        new = [r for r in client.dag_runs("aggregate_portfolio") if r["dag_run_id"] not in known]
        ids = {r["dag_run_id"] for r in new}
        if ids != seen:
            seen, last_change = ids, time.monotonic()
        if new and all(r["state"] in ("success", "failed") for r in new):
            if time.monotonic() - last_change >= QUIET_PERIOD:
                return new
        time.sleep(1)
    raise TimeoutError(f"aggregation runs did not settle: {seen}")


def _partition_files(root: Path) -> dict[str, tuple[bytes, int]]:
    results = root / layout.RESULTS_PREFIX
    return {
        str(p.relative_to(results)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in results.glob("*/*.parquet")
    }


def _bar_files(root: Path) -> tuple[int | None, str]:
    """The bar store's version and every bar in it: equal when nothing was committed."""
    store = BarStore(Storage(str(root)))
    return store.version, store.read_sessions(store.sessions()).to_csv()


@pytest.fixture(scope="module")
def scheduled_day(client):
    """The scheduler runs the day's seven intervals (catchup), one after the other."""
    for dag_id in ("trading_orchestrator", "analyze_symbol", "aggregate_portfolio"):
        client.wait_for_dag(dag_id)
    runs = _wait_for_runs(client, "scheduled", INTERVALS, timeout=900)
    _wait_for_aggregations(client, set())
    return runs


def test_seven_scheduled_intervals_build_the_history(client, data_root, replay, days, scheduled_day):
    assert len(scheduled_day) == INTERVALS
    storage = Storage(str(data_root))
    first_interval = pd.Timestamp(scheduled_day[0]["data_interval_start"]).tz_convert(layout.EXCHANGE_TZ)
    assert first_interval == pd.Timestamp(f"{days[2]} 10:30", tz=layout.EXCHANGE_TZ)

    # The store holds every bar exactly once: the replayed bars of each stored session up to the
    # last interval's end (10:30 of the next day), no bar from after it.
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    assert not rows.duplicated(["symbol", "timestamp"]).any()
    end = pd.Timestamp(f"{days[3]} 10:30", tz=layout.EXCHANGE_TZ)
    assert rows["timestamp"].max() == pd.Timestamp(f"{days[3]} 09:30", tz=layout.EXCHANGE_TZ)
    for symbol in ["AAPL", "^GSPC"]:
        expected = replay.expected(symbol)
        expected = expected[
            (expected["timestamp"] >= rows["timestamp"].min()) & (expected["timestamp"] < end)
        ]
        stored = rows[rows["symbol"] == symbol]
        assert stored["timestamp"].tolist() == expected["timestamp"].tolist(), symbol
        assert stored["close"].to_numpy() == pytest.approx(expected["Close"].to_numpy(), rel=1e-12)

    # One record per run, keyed by run id; each analysed its own interval's bar.
    for run in scheduled_day:
        record = pipeline.read_run(storage, run["dag_run_id"])
        assert record["state"] == "success" and record["run_type"] == "scheduled"
        assert record["contracts"] == SYMBOLS
        assert (
            record["window_start"]
            == pd.Timestamp(run["data_interval_start"]).tz_convert(layout.EXCHANGE_TZ).isoformat()
        )
    assert len(_partition_files(data_root)) == INTERVALS * len(SYMBOLS)

    # The cumulative report closes every trade but those of the last bar (its next bar is not stored yet).
    report = storage.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    summary = report["summary"]
    assert summary["partitions"] == INTERVALS * len(SYMBOLS)
    last_bar = pd.Timestamp(f"{days[3]} 09:30", tz=layout.EXCHANGE_TZ).isoformat()
    open_trades = sum(1 for p in report["partitions"] if p["timestamp"] == last_bar and p["signal"] != "HOLD")
    assert summary["trades"] > open_trades
    assert summary["closed_trades"] == summary["trades"] - open_trades
    assert summary["sharpe_returns"] == INTERVALS - 1
    assert report["scope"]["period_start"] == days[2] and report["scope"]["period_end"] == days[3]
    assert [d["date"] for d in report["daily"]] == [days[2], days[3]]


def test_the_history_equals_a_one_shot_run_over_the_same_bars(data_root, days, scheduled_day, tmp_path):
    one_shot = tmp_path / "one-shot"
    shutil.copytree(data_root / layout.BARS_PREFIX, one_shot / layout.BARS_PREFIX)
    window_start = pd.Timestamp(f"{days[2]} 10:30", tz=layout.EXCHANGE_TZ).isoformat()
    window_end = pd.Timestamp(f"{days[3]} 10:30", tz=layout.EXCHANGE_TZ).isoformat()
    command = [
        sys.executable, "-m", "trading_lib", "--data-root", str(one_shot),
        "run", "--contracts", str(len(SYMBOLS)),
        "--window-start", window_start, "--window-end", window_end, "--run-id", "one-shot",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    scheduled = {k: v[0] for k, v in _partition_files(data_root).items()}
    assert {k: v[0] for k, v in _partition_files(one_shot).items()} == scheduled  # byte-identical files
    history = Storage(str(data_root)).read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    direct = Storage(str(one_shot)).read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    for part in ("summary", "contracts", "timeseries", "daily", "partitions"):
        assert history[part] == direct[part], part


def test_clearing_a_partition_of_the_first_interval_reprocesses_it(client, data_root, scheduled_day):
    first = scheduled_day[0]["dag_run_id"]
    symbol_run = f"{first}__AAPL"
    (instance,) = client.task_instances("analyze_symbol", symbol_run, "analyze_partition")
    timestamp = instance["rendered_map_index"].split(" ", 1)[1]
    key = layout.result_relative_key("AAPL", layout.parse_partition_timestamp(timestamp))
    before = _partition_files(data_root)
    known = {r["dag_run_id"] for r in client.dag_runs("aggregate_portfolio")}

    client.clear_mapped_instance("analyze_symbol", symbol_run, "analyze_partition", instance["map_index"])
    assert client.wait_for_run("analyze_symbol", symbol_run, timeout=180)["state"] == "success"
    after = _partition_files(data_root)
    assert after[key][0] == before[key][0], "reprocessing must rewrite identical bytes"
    assert after[key][1] > before[key][1], "the partition file was not rewritten"
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}

    aggregations = _wait_for_aggregations(client, known)
    assert [r["state"] for r in aggregations] == ["success"], "exactly one aggregation"
    storage = Storage(str(data_root))
    run_report = storage.read_json(layout.run_key(first, pipeline.PORTFOLIO_REPORT))
    assert run_report["aggregation_run_id"] == aggregations[0]["dag_run_id"]
    assert {(p["contract"], p["timestamp"]) for p in run_report["partitions"]} >= {("AAPL", timestamp)}
    cumulative = storage.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    assert cumulative["aggregation_run_id"] == aggregations[0]["dag_run_id"]
    assert ("AAPL", timestamp) in {(p["contract"], p["timestamp"]) for p in cumulative["partitions"]}


def _backfill(airflow, body: dict) -> dict:
    """Create a backfill with one POST, as docs/history.md says: on PostgreSQL (the stack's
    default) it needs no retry (SQLite answered 503/409/500 and could crash the scheduler), and no
    component of the stack exits meanwhile."""
    backfill = airflow.client().post("/api/v2/backfills", body)
    time.sleep(5)
    restarts = {name: c["restarts"] for name, c in airflow.component_states().items() if c["restarts"]}
    assert restarts == {} and airflow.running(), (restarts, airflow.events())
    return backfill


def _wait_for_backfill(client, backfill_id: int, timeout: float = 1200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/v2/backfills/{backfill_id}").get("completed_at"):
            return
        time.sleep(3)
    raise TimeoutError(f"backfill {backfill_id} did not complete")


def _most_at_once(runs: list[dict]) -> int:
    """The most runs that were running at the same moment."""
    edges = sorted(
        [(pd.Timestamp(r["start_date"]), 1) for r in runs] + [(pd.Timestamp(r["end_date"]), -1) for r in runs]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_a_backfill_of_two_older_days_runs_them_at_once_and_running_it_again_changes_nothing(
    airflow, client, data_root, replay, days, scheduled_day
):
    body = {
        "dag_id": "trading_orchestrator",
        "from_date": pd.Timestamp(f"{days[0]} 00:00", tz=layout.EXCHANGE_TZ).isoformat(),
        "to_date": pd.Timestamp(f"{days[1]} 16:00", tz=layout.EXCHANGE_TZ).isoformat(),
        # no max_active_runs: Airflow's default (10) runs the intervals at once, every one of them
        # ingesting into the same sessions of the bar store
        "reprocess_behavior": "none",
        "dag_run_conf": {"ingestion_symbols": BACKFILL_SYMBOLS, "num_contracts": len(BACKFILL_SYMBOLS)},
    }
    backfill = _backfill(airflow, body)
    _wait_for_backfill(client, backfill["id"])
    runs = _runs(client, "backfill")
    assert runs and all(r["state"] == "success" for r in runs), _failure_logs(client, runs[0])
    # 10:30 .. 15:30 of the first day, then 09:30 .. 15:30 of the second: 13 bars
    assert len(runs) == 13
    storage = Storage(str(data_root))
    for run in runs:
        record = pipeline.read_run(storage, run["dag_run_id"])
        assert (
            record["run_type"] == "backfill" and record["contracts"] == BACKFILL_SYMBOLS
        )  # its conf honoured
    assert _most_at_once(runs) >= 2, "the backfill ran its intervals one at a time"
    files = _partition_files(data_root)
    filled = {k for k in files if k.split("/")[0] in days[:2]}
    assert len(filled) == 13 * len(BACKFILL_SYMBOLS)
    # The two older days are stored whole, every bar exactly once, though the scheduled day was
    # stored first and up to ten ingestions merged into the same sessions at once.
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    assert not rows.duplicated(["symbol", "timestamp"]).any()
    sessions = rows["timestamp"].dt.tz_convert(layout.EXCHANGE_TZ).dt.strftime("%Y-%m-%d")
    for symbol in [*BACKFILL_SYMBOLS, "^GSPC", "^VIX"]:
        expected = replay.expected(symbol)
        expected_days = expected["timestamp"].dt.tz_convert(layout.EXCHANGE_TZ).dt.strftime("%Y-%m-%d")
        expected = expected[expected_days.isin(days[:2])]
        stored = rows[(rows["symbol"] == symbol) & sessions.isin(days[:2])]
        assert stored["timestamp"].tolist() == expected["timestamp"].tolist(), symbol
        assert len(stored) == 14, symbol  # two full sessions of seven bars
    bars, contents = _bar_files(data_root), {k: v[0] for k, v in files.items()}

    again = _backfill(airflow, body | {"reprocess_behavior": "completed"})
    _wait_for_backfill(client, again["id"])
    assert all(r["state"] == "success" for r in _runs(client, "backfill"))
    assert len(_runs(client, "backfill")) == 13  # the same runs, run again
    assert {k: v[0] for k, v in _partition_files(data_root).items()} == contents
    assert _bar_files(data_root) == bars
