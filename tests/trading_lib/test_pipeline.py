"""Pipeline operations on small hand-made inputs (the full paths run in tests/dags and tests/e2e)."""

import re

import pandas as pd
import pytest
from _frames import real

from trading_lib import layout, pipeline
from trading_lib.analytics import compute_signals
from trading_lib.errors import BadDataError, RequestError
from trading_lib.inputs import AnalysisWindow, InputData
from trading_lib.run_request import reanalysis_runs
from trading_lib.storage import MissingInputError, Storage
from trading_lib.store import BarStore


@pytest.fixture
def storage(tmp_path):
    ts = pd.date_range("2024-01-02 09:30", periods=6, freq="h", tz="America/New_York")
    bars = pd.DataFrame({"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0})
    contract_bars = pd.concat([bars.assign(contract=c) for c in ("MSFT", "AAPL")], ignore_index=True)
    storage = Storage(str(tmp_path))
    BarStore(storage).write(InputData(contract_bars, bars, bars, AnalysisWindow(ts[0], ts[5])), source="test")
    return storage


def test_list_partitions_defaults_to_the_last_stored_bars(storage):
    window = pipeline.resolve_window(storage, bars=3)
    assert pipeline.list_partitions(storage, "aapl", window=window) == [
        "2024-01-02T12:30:00-05:00",
        "2024-01-02T13:30:00-05:00",
        "2024-01-02T14:30:00-05:00",
    ]
    window = pipeline.resolve_window(storage, "2024-01-02T09:30:00-05:00", "2024-01-02T10:30:00-05:00")
    assert pipeline.list_partitions(storage, "AAPL", window=window) == ["2024-01-02T09:30:00-05:00"]


def test_list_partitions_with_explicit_timestamps(storage):
    # Any notation of the same instant names the same partition; duplicates collapse.
    chosen = pipeline.list_partitions(
        storage,
        "MSFT",
        timestamps=["2024-01-02T15:30:00+00:00", "2024-01-02 10:30", "2024-01-02T10:30:00-05:00"],
    )
    assert chosen == ["2024-01-02T10:30:00-05:00"]


@pytest.mark.parametrize(
    ("contract", "timestamps", "message"),
    [
        ("ZZZZ", None, "contract: 'ZZZZ' has no stored bar"),
        ("../x", None, "contract: symbol '../x'"),
        (
            "AAPL",
            ["2024-01-03T09:30:00-05:00"],
            "timestamps[0]: '2024-01-03T09:30:00-05:00' is not a stored bar of AAPL",
        ),
        ("AAPL", ["2024-01-02T10:30:00-05:00", "noon"], "timestamps[1]"),
        ("AAPL", [], "must be a non-empty list"),
        ("AAPL", "2024-01-02T10:30:00-05:00", "must be a non-empty list"),
    ],
)
def test_bad_requests_name_the_field(storage, contract, timestamps, message):
    with pytest.raises(RequestError) as excinfo:
        pipeline.list_partitions(
            storage, contract, window=pipeline.resolve_window(storage), timestamps=timestamps
        )
    assert message in str(excinfo.value)


def test_select_contracts(storage):
    window = pipeline.resolve_window(storage)
    assert pipeline.select_contracts(storage, 2, window) == ["AAPL", "MSFT"]
    for bad in (0, 4, -1, True):
        with pytest.raises(RequestError, match="num_contracts"):
            pipeline.select_contracts(storage, bad, window)


def test_resolve_window_errors(storage):
    with pytest.raises(RequestError, match="together"):
        pipeline.resolve_window(storage, "2024-01-02", None)
    with pytest.raises(RequestError, match="window"):
        pipeline.resolve_window(storage, "2024-01-03", "2024-01-02")
    with pytest.raises(RequestError, match="window"):
        pipeline.resolve_window(storage, "soon", "later")


def test_nothing_to_aggregate_is_an_error(tmp_path):
    with pytest.raises(MissingInputError):
        pipeline.aggregate(Storage(str(tmp_path)))
    # an output_dir that does not exist (a typo) is refused, and the good report stays
    storage = Storage(str(tmp_path))
    storage.write_json(layout.report_key("portfolio"), {"good": True})
    with pytest.raises(MissingInputError, match="holds no partition results"):
        pipeline.aggregate(storage, results_storage=Storage(str(tmp_path / "typo")))
    assert storage.read_json(layout.report_key("portfolio")) == {"good": True}


def test_run_records_accumulate_and_latest_points_at_the_newest(storage):
    pipeline.record_run(storage, "r1", contracts=["AAPL"], state="running")
    pipeline.record_run(storage, "r2", contracts=["MSFT"], state="running")
    pipeline.record_run(storage, "r1", state="success")  # an update of the older run
    assert pipeline.read_run(storage, "r1")["state"] == "success"
    assert pipeline.read_run(storage, "r1")["contracts"] == ["AAPL"]
    assert pipeline.read_run(storage, "r2")["contracts"] == ["MSFT"]
    assert storage.read_json(layout.LATEST_RUN_KEY)["run_id"] == "r2"
    with pytest.raises(ValueError, match="bad run id"):
        pipeline.record_run(storage, "../x")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate", "must be unique: AAPL at 2024-01-02T12:30:00-05:00"),
        ("inf", "close must be finite and > 0: AAPL at 2024-01-02T12:30:00-05:00 is inf"),
        ("negative", "close must be finite and > 0: AAPL at 2024-01-02T12:30:00-05:00 is -12.5"),
    ],
)
def test_the_partition_path_refuses_bad_stored_bars(storage, change, message):
    """A bad bar that reached a session file some other way (written by hand, an older version)
    never becomes a result: the partition checks the rows it read against the data contract."""
    (key,) = BarStore(storage).session_files(["2024-01-02"])  # the session's one data file
    rows = storage.read_parquet(key)
    rows["timestamp"] = layout.to_exchange_time(rows["timestamp"])  # the table stores UTC
    at = rows.index[(rows["symbol"] == "AAPL") & (rows["timestamp"].dt.hour == 12)][0]
    if change == "duplicate":  # a conflicting copy of the bar: another close
        rows = pd.concat([rows, rows.loc[[at]].assign(close=2.25)], ignore_index=True)
    else:
        rows.loc[at, "close"] = float("inf") if change == "inf" else -12.5
    storage.write_parquet(key, rows)  # around the store's own checks
    with pytest.raises(BadDataError, match=re.escape(message)):
        pipeline.analyze_partition(storage, "AAPL", ["2024-01-02T13:30:00-05:00"])
    assert storage.list_keys(layout.RESULTS_PREFIX) == []


def test_generate_inputs_writes_a_year_of_bars_that_chunk_within_the_map_limit(tmp_path):
    """The scale benchmark's "10 contracts x a year": 1,764 window bars per contract, grouped into
    chunks of two under Airflow's default max_map_length of 1024."""
    storage = Storage(str(tmp_path))
    written = pipeline.generate_inputs(storage, num_contracts=2, window_bars=1764)
    window = AnalysisWindow.parse(written["window_start"], written["window_end"])
    labels = pipeline.list_partitions(storage, written["contracts"][0], window=window)
    assert len(labels) == 1764
    assert pipeline.resolve_window(storage, bars=1764) == window
    chunks = layout.chunk_partitions(labels, 1024)
    assert len(chunks) == 882 and {len(c) for c in chunks} == {2}


def test_the_portfolio_report_names_the_trade_before_a_missing_session(tmp_path):
    # The real 2022 bars in the store lack Monday 2022-03-21; Friday 03-18's partitions are
    # aggregated: its 15:30 trades stay open (they used to close against Tuesday 09:30).
    data = real()
    storage = Storage(str(tmp_path))
    BarStore(storage).write(data, source="real bars")
    results = compute_signals(data.bars, data.spx, data.vix)
    friday = results[results["timestamp"].dt.strftime("%Y-%m-%d") == "2022-03-18"]
    for _, row in friday.iterrows():  # seven bars x five contracts: the files a run would write
        storage.write_parquet(layout.result_key(row["contract"], row["timestamp"]), friday.loc[[row.name]])
    summary = pipeline.aggregate(storage)
    report = storage.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    last = friday[friday["timestamp"] == friday["timestamp"].max()]
    traded = last[last["signal"] != "HOLD"]
    assert sorted(traded["contract"]) == ["AAPL", "FB"]
    assert [(t["contract"], t["timestamp"], t["next_bar"]) for t in report["open_trades"]] == [
        (c, "2022-03-18T15:30:00-04:00", "2022-03-21T09:30:00-04:00") for c in sorted(traded["contract"])
    ]
    assert summary["open_trades"] == summary["open_trades_missing_bar"] == 2
    assert summary["closed_trades"] == summary["trades"] - 2


def test_the_revision_baseline_is_what_every_result_already_reflects():
    # the last run succeeded: what it read; it failed or is running: where it started from, so
    # what it was to re-analyse is planned again; no run or no version: nothing is known
    assert pipeline.revision_baseline({"state": "success", "bar_store_version": 7}) == 7
    failed = {"state": "failed", "bar_store_version": 7, "revisions": {"since_version": 4}}
    assert pipeline.revision_baseline(failed) == 4
    assert pipeline.revision_baseline({"state": "running", "bar_store_version": 7}) is None
    assert pipeline.revision_baseline(None) is None


def test_reanalysis_runs_name_their_contract_and_orchestrator_run():
    plan = {"timestamps": {"^GSPC": ["t1"], "AAPL": ["t2", "t3"]}}
    assert reanalysis_runs("r9", plan) == [
        {
            "trigger_run_id": "r9__AAPL__revised",
            "conf": {"contract": "AAPL", "timestamps": ["t2", "t3"], "orchestrator_run_id": "r9"},
        },
        {
            "trigger_run_id": "r9___GSPC__revised",
            "conf": {"contract": "^GSPC", "timestamps": ["t1"], "orchestrator_run_id": "r9"},
        },
    ]
    assert reanalysis_runs("r9", None) == []
