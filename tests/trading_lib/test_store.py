"""The bar store: one file per session, upserts that keep history, one reader for every layer."""

import pandas as pd
import pytest
from _store_data import session_bars, session_data

from trading_lib import layout
from trading_lib.analytics import BETA_WINDOW_BARS
from trading_lib.errors import BadDataError
from trading_lib.inputs import AnalysisWindow, InputData, InputDataError
from trading_lib.storage import CorruptInputError, Storage
from trading_lib.store import BarStore, to_store_rows

_bars, _data = session_bars, session_data


def test_one_file_per_session_and_reading_back(tmp_path):
    store = BarStore(Storage(str(tmp_path)))
    report = store.write(_data("2024-01-02"), "test")
    store.write(_data("2024-01-03"), "test")
    assert report.sessions_written == ["2024-01-02"] and report.bars_added == 20
    assert sorted(p.name for p in (tmp_path / "bars").iterdir()) == [
        "2024-01-02.parquet",
        "2024-01-03.parquet",
    ]
    assert store.sessions() == ["2024-01-02", "2024-01-03"]
    frame = store.read_sessions(["2024-01-02", "2024-01-03"], ["AAPL"])
    assert list(frame.columns) == layout.BAR_STORE_COLUMNS
    assert len(frame) == 10 and set(frame["symbol"]) == {"AAPL"}
    assert str(frame["timestamp"].dt.tz) == layout.EXCHANGE_TZ
    window = AnalysisWindow.parse("2024-01-03T10:30:00-05:00", "2024-01-03T12:30:00-05:00")
    data = store.input_data(window, ["MSFT"])
    # the window's sessions up to its end: 09:30 (before the window, same session), 10:30, 11:30
    assert data.contracts == ["MSFT"] and len(data.holdings) == 3 and len(data.spx) == 3
    assert store.contracts(window) == ["AAPL", "MSFT"]
    assert store.latest_window(3) == AnalysisWindow.parse(
        "2024-01-03T11:30:00-05:00", "2024-01-03T14:30:00-05:00"
    )


def test_upsert_is_idempotent_revises_and_never_deletes(tmp_path):
    storage = Storage(str(tmp_path))
    store = BarStore(storage)
    store.write(_data(), "test")
    key = layout.bars_key("2024-01-02")
    first = storage.read_bytes(key)
    mtime = (tmp_path / key).stat().st_mtime_ns
    again = store.write(_data(), "test")  # the same bars: nothing rewritten
    assert again.sessions_written == [] and again.bars_unchanged == 20 and again.bars_added == 0
    assert (tmp_path / key).stat().st_mtime_ns == mtime
    # a revised close for AAPL only, and a new contract: the other bars stay
    revised = _data(close=1.6, contracts=("AAPL",))
    revised = InputData(revised.holdings, _bars().iloc[:0], _bars().iloc[:0], revised.window)
    report = store.upsert(to_store_rows(revised).iloc[:2], "test")
    assert report.bars_revised == 2 and report.sessions_written == ["2024-01-02"]
    assert report.revised[0] == {"symbol": "AAPL", "timestamp": "2024-01-02T09:30:00-05:00"}
    frame = store.read_sessions(["2024-01-02"])
    assert len(frame) == 20  # nothing deleted
    assert frame.loc[frame["symbol"] == "AAPL", "close"].tolist() == [1.6, 1.6, 1.5, 1.5, 1.5]
    # the same bars give the same bytes whatever order they arrive in
    store.write(_data(), "test")
    assert storage.read_bytes(key) == first
    shuffled = to_store_rows(_data()).sample(frac=1.0, random_state=3)
    other = BarStore(Storage(str(tmp_path / "other")))
    other.upsert(shuffled, "test")
    assert other.storage.read_bytes(key) == first


def test_bad_rows_change_nothing_and_name_the_bar(tmp_path):
    store = BarStore(Storage(str(tmp_path)))
    rows = to_store_rows(_data())
    bad = rows.copy()
    bad.loc[3, "close"] = float("inf")
    with pytest.raises(BadDataError, match=r"close.*MSFT|MSFT.*close"):
        store.upsert(bad, "yahoo")
    duplicated = pd.concat([rows, rows.iloc[[0]]], ignore_index=True)
    with pytest.raises(BadDataError, match="must be unique: MSFT at 2024-01-02T09:30:00-05:00"):
        store.upsert(duplicated, "yahoo")
    assert not (tmp_path / "bars").exists()
    with pytest.raises(InputDataError, match="missing column"):
        store.upsert(rows.drop(columns="volume"), "yahoo")


def test_lookback_reads_enough_history_and_no_later_bar(tmp_path):
    days = pd.bdate_range("2024-02-01", periods=16)
    store = BarStore(Storage(str(tmp_path)))
    for i, day in enumerate(days):
        data = _data(str(day.date()), close=1.0 + i / 100)
        if i == 3:  # AAPL has no bar on this day: its previous bar is further back
            data = _data(str(day.date()), close=1.0 + i / 100, contracts=("MSFT",))
        store.write(data, "test")
    ts = pd.Timestamp(f"{days[-1].date()} 10:30", tz="America/New_York")
    frame = store.lookback("AAPL", ts, BETA_WINDOW_BARS + 1)
    market = frame[frame["symbol"] == "^GSPC"]
    assert len(market) >= BETA_WINDOW_BARS + 1
    assert frame["timestamp"].max() == ts  # nothing after the partition's bar
    stock = frame[frame["symbol"] == "AAPL"]
    assert (stock["timestamp"] < market["timestamp"].iloc[-(BETA_WINDOW_BARS + 1)]).any()
    assert set(frame["symbol"]) == {"AAPL", "^GSPC", "^VIX"}


class CountingStorage(Storage):
    """A real local Storage that records which files each parquet read asked for."""

    def __init__(self, root: str):
        super().__init__(root)
        self.read_keys: list[str] = []

    def read_parquet_many(self, keys, columns=None, filters=None):
        keys = list(keys)
        self.read_keys += keys
        return super().read_parquet_many(keys, columns=columns, filters=filters)


def test_lookbacks_of_a_chunk_equal_each_partitions_own_lookback_and_read_each_file_once(tmp_path):
    days = pd.bdate_range("2024-02-01", periods=40)
    storage = CountingStorage(str(tmp_path))
    store = BarStore(storage)
    for i, day in enumerate(days):
        # AAPL trades nowhere in sessions 14-27: partitions after the gap reach back past it
        contracts = ("MSFT",) if 14 <= i < 28 else ("AAPL", "MSFT")
        store.write(_data(str(day.date()), close=1.0 + i / 100, contracts=contracts), "test")
    stored = store.sessions()
    timestamps = list(
        store.bar_times(
            "AAPL",
            AnalysisWindow(
                pd.Timestamp(f"{days[0].date()} 09:30", tz="America/New_York"),
                pd.Timestamp(f"{days[-1].date()} 16:00", tz="America/New_York"),
            ),
        )
    )
    storage.read_keys.clear()
    chunk = list(store.lookbacks("AAPL", timestamps, BETA_WINDOW_BARS + 1))
    assert sorted(storage.read_keys) == sorted(set(storage.read_keys))  # every file once
    assert len(chunk) == len(timestamps) == 26 * 5
    reached_past_the_gap = 0
    for ts, frame in zip(timestamps, chunk, strict=True):
        # the reference: what one partition alone reads (the sessions it needs, doubling back)
        before = [d for d in stored if d <= layout.session_date(ts)]
        count = 12
        while True:
            expected = store.read_sessions(
                before[-count:], ["AAPL", "^GSPC", "^VIX"], ["symbol", "timestamp", "close"]
            )
            expected = expected[expected["timestamp"] <= ts].reset_index(drop=True)
            market = expected.loc[expected["symbol"] == "^GSPC", "timestamp"]
            stock = expected.loc[expected["symbol"] == "AAPL", "timestamp"]
            if (
                len(market) >= BETA_WINDOW_BARS + 1 and (stock < market.iloc[-BETA_WINDOW_BARS - 1]).any()
            ) or (count >= len(before)):
                break
            count *= 2
        reached_past_the_gap += count > 12
        pd.testing.assert_frame_equal(frame, expected, check_exact=True)
        assert store.lookback("AAPL", ts, BETA_WINDOW_BARS + 1).equals(frame)
    assert reached_past_the_gap > 0


def test_a_foreign_file_in_the_store_is_named(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_bytes(layout.bars_key("2024-01-02"), b"not parquet")
    with pytest.raises(CorruptInputError, match="2024-01-02"):
        BarStore(storage).read_sessions(["2024-01-02"])


def test_window_must_be_ordered():
    with pytest.raises(InputDataError, match="not before"):
        AnalysisWindow.parse("2024-01-03", "2024-01-02")


def test_a_failure_on_the_last_write_leaves_every_session_file_whole(tmp_path):
    """Each session file is replaced whole or not at all. The last of three session writes fails
    (its file is made immutable: even root cannot replace it); the two before it are complete and
    new, the last one still holds its old bytes, no temporary file is left, and the error names
    the file."""
    import subprocess

    from trading_lib.storage import StorageError

    storage = Storage(str(tmp_path))
    store = BarStore(storage)
    days = ("2024-01-02", "2024-01-03", "2024-01-04")
    for day in days:
        store.write(_data(day), "test")
    before = {day: storage.read_bytes(layout.bars_key(day)) for day in days}
    last = tmp_path / layout.bars_key(days[-1])
    if subprocess.run(["chattr", "+i", str(last)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        revised = pd.concat([to_store_rows(_data(day, close=1.7)) for day in days], ignore_index=True)
        with pytest.raises(StorageError, match="cannot write .*bars/2024-01-04.parquet"):
            store.upsert(revised, "test")
    finally:
        subprocess.run(["chattr", "-i", str(last)], check=True)
    after = {day: storage.read_bytes(layout.bars_key(day)) for day in days}
    assert after[days[0]] != before[days[0]] and after[days[1]] != before[days[1]]
    assert after[days[2]] == before[days[2]]
    for day in days[:2]:
        stocks = store.read_sessions([day], ["AAPL", "MSFT"])
        assert set(stocks["close"]) == {1.7}  # whole new files, never a mix
    assert not [p for p in (tmp_path / "bars").iterdir() if p.name.startswith(".")]
