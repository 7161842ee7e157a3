"""The bar store: a Delta table partitioned by session, MERGEs that keep history, versions that can be
read again, one reader for every layer."""

import pandas as pd
import pytest
from _store_data import session_bars, session_data

from trading_lib import layout
from trading_lib.analytics import BETA_WINDOW_BARS
from trading_lib.errors import BadDataError, BadInputError
from trading_lib.inputs import AnalysisWindow, InputData, InputDataError
from trading_lib.storage import CorruptInputError, Storage
from trading_lib.store import BarStore, to_store_rows

_bars, _data = session_bars, session_data


def test_one_partition_per_session_and_reading_back(tmp_path):
    store = BarStore(Storage(str(tmp_path)))
    report = store.write(_data("2024-01-02"), "test")
    store.write(_data("2024-01-03"), "test")
    assert report.sessions_written == ["2024-01-02"] and report.bars_added == 20
    assert sorted(p.name for p in (tmp_path / "bars").iterdir()) == [
        "_delta_log",
        "session=2024-01-02",
        "session=2024-01-03",
    ]
    assert store.sessions() == ["2024-01-02", "2024-01-03"]
    frame = store.read_sessions(["2024-01-02", "2024-01-03"], ["AAPL"])
    assert list(frame.columns) == layout.BAR_STORE_COLUMNS
    assert len(frame) == 10 and set(frame["symbol"]) == {"AAPL"}
    assert str(frame["timestamp"].dt.tz) == layout.EXCHANGE_TZ
    window = AnalysisWindow.parse("2024-01-03T10:30:00-05:00", "2024-01-03T12:30:00-05:00")
    data = store.input_data(window, ["MSFT"])
    # the window's sessions up to its end: 09:30 (before the window, same session), 10:30, 11:30
    assert data.contracts == ["MSFT"] and len(data.bars) == 3 and len(data.spx) == 3
    assert store.contracts(window) == ["AAPL", "MSFT"]
    assert store.latest_window(3) == AnalysisWindow.parse(
        "2024-01-03T11:30:00-05:00", "2024-01-03T14:30:00-05:00"
    )
    # a session's files are found from the log alone, and only that session's are read
    assert all("/session=2024-01-03/" in f"/{key}" for key in store.session_files(["2024-01-03"]))


def test_upsert_is_idempotent_revises_never_deletes_and_says_its_version(tmp_path):
    storage = Storage(str(tmp_path))
    store = BarStore(storage)
    first = store.write(_data(), "test")
    assert first.version == 1 and first.read_version == 0  # 0: the empty table
    again = store.write(_data(), "test")  # the same bars: nothing committed
    assert again.sessions_written == [] and again.bars_unchanged == 20 and again.bars_added == 0
    assert again.version is None and again.read_version == 1 and store.version == 1
    # a revised close for AAPL only, and a new contract: the other bars stay
    revised = _data(close=1.6, contracts=("AAPL",))
    revised = InputData(revised.bars, _bars().iloc[:0], _bars().iloc[:0], revised.window)
    report = store.upsert(to_store_rows(revised).iloc[:2], "test")
    assert report.bars_revised == 2 and report.sessions_written == ["2024-01-02"] and report.version == 2
    assert report.revised[0] == {"symbol": "AAPL", "timestamp": "2024-01-02T09:30:00-05:00"}
    frame = store.read_sessions(["2024-01-02"])
    assert len(frame) == 20  # nothing deleted
    assert frame.loc[frame["symbol"] == "AAPL", "close"].tolist() == [1.6, 1.6, 1.5, 1.5, 1.5]
    # the version before the revision reads as it was, and cannot be written to
    before = BarStore(storage, version=1)
    assert before.version == 1
    assert set(before.read_sessions(["2024-01-02"], ["AAPL"])["close"]) == {1.5}
    with pytest.raises(BadInputError, match="read-only"):
        before.write(_data(), "test")
    with pytest.raises(BadInputError, match="no version 9"):
        BarStore(storage, version=9).sessions()
    assert [c["operation"] for c in store.history()][:2] == ["MERGE", "MERGE"]
    # the same bars read back as the same frame whatever order they arrived in
    shuffled = to_store_rows(_data()).sample(frac=1.0, random_state=3)
    a, b = BarStore(Storage(str(tmp_path / "a"))), BarStore(Storage(str(tmp_path / "b")))
    a.upsert(shuffled, "test")
    b.write(_data(), "test")
    pd.testing.assert_frame_equal(a.read_sessions(["2024-01-02"]), b.read_sessions(["2024-01-02"]))


def test_a_missing_value_never_replaces_a_stored_number(tmp_path):
    """A re-fetch whose close (or volume) is NaN keeps the stored value and is not a revision; a
    value that is really new fills a stored NaN; a NaN of a new bar is stored as missing."""
    store = BarStore(Storage(str(tmp_path)))
    rows = to_store_rows(_data())
    rows.loc[rows["symbol"] == "^VIX", "close"] = float("nan")  # stored without a VIX close
    store.upsert(rows, "test")
    refetch = to_store_rows(_data(close=1.5))
    refetch.loc[refetch["symbol"] == "AAPL", ["close", "volume"]] = float("nan")
    report = store.upsert(refetch, "a re-fetch with gaps")
    # AAPL's NaNs change nothing; ^VIX's closes are new values for stored NaNs: revisions
    assert report.bars_revised == 5 and {r["symbol"] for r in report.revised} == {"^VIX"}
    frame = store.read_sessions(["2024-01-02"])
    aapl = frame[frame["symbol"] == "AAPL"]
    assert aapl["close"].tolist() == [1.5] * 5 and aapl["volume"].tolist() == [10.0] * 5
    assert frame.loc[frame["symbol"] == "^VIX", "close"].tolist() == [1.5] * 5
    again = store.upsert(refetch, "the same re-fetch")
    assert again.version is None and again.bars_revised == 0


def test_symbols_in_two_letter_cases_are_one_symbol(tmp_path):
    """``aapl`` (a file name) and ``AAPL`` are the same stock: normalised before the write, and the
    same bar given in both cases is refused as a duplicate, naming it; an invalid one is named."""
    store = BarStore(Storage(str(tmp_path)))
    rows = to_store_rows(_data())
    lower = rows.assign(symbol=rows["symbol"].str.lower())
    store.upsert(lower, "real bars")
    assert sorted(store.read_sessions(["2024-01-02"])["symbol"].unique()) == ["AAPL", "MSFT", "^GSPC", "^VIX"]
    assert store.upsert(rows, "yahoo").bars_unchanged == 20  # the same bars, not new symbols
    both = pd.concat([rows[rows["symbol"] == "AAPL"], lower[lower["symbol"] == "aapl"]], ignore_index=True)
    with pytest.raises(BadDataError, match="unique: AAPL at 2024-01-02T09:30:00-05:00"):
        store.upsert(both, "two files")
    with pytest.raises(BadDataError, match="'AA PL'"):
        store.upsert(rows.assign(symbol="AA PL"), "bad file name")


def test_a_store_of_the_previous_release_is_refused_then_migrated_once(tmp_path):
    """bars/<day>.parquet files (the previous release's layout) are named with the command that
    converts them; migrate-store converts them once, and a second run changes nothing."""
    from trading_lib.storage import Storage as S
    from trading_lib.store import LegacyStoreError, migrate_legacy_store

    storage = S(str(tmp_path))
    for day in ("2024-01-02", "2024-01-03"):
        rows = to_store_rows(_data(day)).sort_values(["symbol", "timestamp"], ignore_index=True)
        storage.write_parquet(layout.legacy_bars_key(day), rows)
    with pytest.raises(LegacyStoreError, match="migrate-store"):
        BarStore(storage).sessions()
    with pytest.raises(LegacyStoreError, match="migrate-store"):
        BarStore(storage).write(_data("2024-01-04"), "test")
    result = migrate_legacy_store(storage)
    assert result["status"] == "migrated" and result["sessions"] == 2 and result["bars_added"] == 40
    assert not list((tmp_path / "bars").glob("*.parquet"))
    store = BarStore(storage)
    assert (
        store.sessions() == ["2024-01-02", "2024-01-03"] and len(store.read_sessions(store.sessions())) == 40
    )
    assert migrate_legacy_store(storage)["status"] == "nothing to migrate"


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
    assert BarStore(Storage(str(tmp_path))).version is None  # nothing committed, not even the table
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


def test_a_corrupt_data_file_in_the_table_is_named(tmp_path):
    storage = Storage(str(tmp_path))
    store = BarStore(storage)
    store.write(_data("2024-01-02"), "test")
    (key,) = store.session_files(["2024-01-02"])
    storage.write_bytes(key, b"not parquet")
    with pytest.raises(CorruptInputError, match="session=2024-01-02"):
        BarStore(storage).read_sessions(["2024-01-02"])


def test_window_must_be_ordered():
    with pytest.raises(InputDataError, match="not before"):
        AnalysisWindow.parse("2024-01-03", "2024-01-02")


def test_a_failed_commit_leaves_the_table_as_it_was(tmp_path):
    """A write is one commit or nothing: the log folder is made immutable (even root cannot add
    to it), the write of three revised sessions fails naming the store, and every reader still
    sees the version before it, whole."""
    import subprocess

    from trading_lib.storage import StorageError

    storage = Storage(str(tmp_path))
    store = BarStore(storage)
    days = ("2024-01-02", "2024-01-03", "2024-01-04")
    store.upsert(pd.concat([to_store_rows(_data(day)) for day in days], ignore_index=True), "test")
    log = tmp_path / "bars" / "_delta_log"
    if subprocess.run(["chattr", "+i", str(log)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        revised = pd.concat([to_store_rows(_data(day, close=1.7)) for day in days], ignore_index=True)
        with pytest.raises(StorageError, match="bars"):
            store.upsert(revised, "test")
    finally:
        subprocess.run(["chattr", "-i", str(log)], check=True)
    after = BarStore(storage)
    assert after.version == 1
    assert set(after.read_sessions(list(days), ["AAPL", "MSFT"])["close"]) == {1.5}


def test_writers_in_parallel_processes_lose_no_bar(tmp_path):
    """Six processes upsert the same session at once, each its own stock plus the same ^GSPC and
    ^VIX bars (the case that lost 2 of 3 contracts with the file store): every commit lands or is
    retried against the newer version, and the table holds every bar exactly once."""
    from _store_data import upsert_concurrently

    stocks = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "TSLA"]
    reports = upsert_concurrently(str(tmp_path / "data"), stocks, tmp_path)
    store = BarStore(Storage(str(tmp_path / "data")))
    frame = store.read_sessions(["2024-01-02"])
    assert not frame.duplicated(["symbol", "timestamp"]).any()
    assert sorted(frame["symbol"].unique()) == sorted([*stocks, "^GSPC", "^VIX"])
    assert frame.groupby("symbol").size().eq(5).all()
    # the first commit brought the indices; the other five found them stored and added only theirs
    assert sorted(r["bars_added"] for r in reports) == [5] * 5 + [15]
    committed = sorted(r["version"] for r in reports)
    assert committed == list(range(committed[0], committed[0] + 6)) and store.version >= committed[-1]


def test_duckdb_reads_the_table_as_it_is(tmp_path):
    """The docs/history.md example: DuckDB queries the files of a version the log names (hive
    partitions give the session column) and sees what BarStore reads, past versions included."""
    import duckdb
    from deltalake import DeltaTable

    store = BarStore(Storage(str(tmp_path)))
    store.write(_data("2024-01-02"), "test")
    store.write(_data("2024-01-03"), "test")
    store.upsert(to_store_rows(_data("2024-01-03", close=1.7)), "a revision")

    def closes(version: int | None) -> list[tuple]:
        files = DeltaTable(str(tmp_path / "bars"), version=version).file_uris()
        return duckdb.sql(f"""
            SELECT symbol, CAST(session AS VARCHAR), count(*), last(close ORDER BY "timestamp")
            FROM read_parquet({files}, hive_partitioning = true)
            WHERE session >= '2024-01-03' AND symbol IN ('AAPL', '^GSPC')
            GROUP BY ALL ORDER BY ALL
        """).fetchall()

    assert closes(None) == [("AAPL", "2024-01-03", 5, 1.7), ("^GSPC", "2024-01-03", 5, 1.5)]
    assert closes(2) == [("AAPL", "2024-01-03", 5, 1.5), ("^GSPC", "2024-01-03", 5, 1.5)]
    frame = store.read_sessions(["2024-01-03"], ["AAPL"])
    assert frame["close"].iloc[-1] == 1.7


def test_every_write_leaves_each_session_it_touches_as_one_file(tmp_path):
    """A session written interval by interval (the schedule) stays one file: the MERGE rewrites the
    session's other bars with it, so a look-back opens ~12 files whatever the write history, and
    no separate compaction has to run beside the writers. compact-store then finds nothing to do."""
    store = BarStore(Storage(str(tmp_path)))
    rows = to_store_rows(_data("2024-01-02"))
    for _, interval in rows.groupby("timestamp"):
        store.upsert(interval, "one interval")
        assert len(store.session_files(["2024-01-02"])) == 1
    store.write(_data("2024-01-03"), "the next session")
    assert len(store.session_files(["2024-01-02", "2024-01-03"])) == 2
    before = store.read_sessions(["2024-01-02", "2024-01-03"])
    assert len(before) == 40
    assert store.compact() == 0
    pd.testing.assert_frame_equal(store.read_sessions(["2024-01-02", "2024-01-03"]), before, check_exact=True)
