import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from trading_lib import layout, sessions
from trading_lib.inputs import InputDataError
from trading_lib.sample_data import (
    BETA_RANGE,
    OUTLIER_JUMP_SIGMA,
    Anomalies,
    contract_names,
    generate_sample_data,
    load_real_bars,
)
from trading_lib.storage import Storage
from trading_lib.store import BarStore
from trading_lib.symbols import validate_symbol

REAL_BARS = "input/yahoo-1h-2022"
NYSE = xcals.get_calendar("XNYS")


def _is_nyse_bar_start(timestamps: pd.Series) -> pd.Series:
    """Straight from the calendar: a session day, at or after its open, before its close, on the half hour."""
    utc = timestamps.dt.tz_convert("UTC")
    days = pd.DatetimeIndex(timestamps.dt.tz_localize(None).dt.normalize())
    opens = pd.Series(NYSE.opens.reindex(days).to_numpy(), index=timestamps.index)
    closes = pd.Series(NYSE.closes.reindex(days).to_numpy(), index=timestamps.index)
    on_the_hour_from_open = ((utc - opens) % pd.Timedelta(hours=1)) == pd.Timedelta(0)
    return opens.notna() & (utc >= opens) & (utc < closes) & on_the_hour_from_open


def test_default_shape_grid_and_window():
    data = generate_sample_data()
    assert data.contracts == sorted(contract_names(10))
    assert data.contracts == sorted(
        ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH"]
    )
    assert (data.bars.groupby("contract").size() == 77 + 24).all()
    assert _is_nyse_bar_start(data.bars["timestamp"]).all()
    assert not data.bars.duplicated(["contract", "timestamp"]).any()
    for frame in (data.spx, data.vix):
        assert frame["timestamp"].tolist() == sorted(data.bars["timestamp"].unique())
        assert str(frame["timestamp"].dt.tz) == layout.EXCHANGE_TZ
    in_window = data.window.contains(data.spx["timestamp"])
    assert in_window.sum() == 24 and (data.spx["timestamp"] < data.window.start).sum() == 77
    assert in_window.iloc[-24:].all()  # the window is the last 24 bars
    assert data.window.end == data.spx["timestamp"].iloc[-1] + pd.Timedelta(hours=1)
    whole_sessions = generate_sample_data(num_contracts=1, window_bars=21)  # 98 bars: 14 sessions
    last = whole_sessions.spx["timestamp"].iloc[-1]
    assert last.strftime("%H:%M") == "15:30"
    assert whole_sessions.window.end == last.normalize() + pd.Timedelta(hours=16)  # it ends at the close


def test_window_ends_at_an_early_close():
    # 2024-11-28 Thanksgiving (closed), 2024-11-29 closes at 13:00: its last bar is 12:30-13:00.
    data = generate_sample_data(num_contracts=1, window_bars=4, warmup_bars=7, start="2024-11-27")
    assert data.window.start == pd.Timestamp("2024-11-29 09:30", tz=layout.EXCHANGE_TZ)
    assert data.window.end == pd.Timestamp("2024-11-29 13:00", tz=layout.EXCHANGE_TZ)
    assert data.window.contains(data.spx["timestamp"]).sum() == 4


def test_grid_follows_the_exchange_calendar():
    grid = sessions.bar_starts_from("2024-11-27", 7 + 4 + 7)
    days = pd.Series(grid.date).value_counts().sort_index()
    assert [str(d) for d in days.index] == ["2024-11-27", "2024-11-29", "2024-12-02"]
    assert days.tolist() == [7, 4, 7]
    assert grid[grid.date == pd.Timestamp("2024-11-29").date()].strftime("%H:%M").tolist() == [
        "09:30", "10:30", "11:30", "12:30"
    ]  # fmt: skip
    # A start on a weekend moves to the next session; daylight saving changes keep 09:30 local.
    grid = sessions.bar_starts_from("2024-03-09", 3 * 7)  # DST began 2024-03-10
    assert grid[0] == pd.Timestamp("2024-03-11 09:30", tz=layout.EXCHANGE_TZ)
    assert set(grid.strftime("%H:%M")) == {f"{h:02d}:30" for h in range(9, 16)}
    assert _is_nyse_bar_start(pd.Series(sessions.bar_starts_from("2023-12-20", 400))).all()


def test_prices_follow_the_one_factor_model():
    data = generate_sample_data(num_contracts=12, window_bars=300)
    h = data.bars
    assert (h["low"] <= h[["open", "close"]].min(axis=1)).all()
    assert (h["high"] >= h[["open", "close"]].max(axis=1)).all()
    assert (h["volume"] > 0).all() and (h["volume"] == h["volume"].round()).all()
    assert (data.spx["volume"] == 0).all() and (data.vix["volume"] == 0).all()
    market = np.log(data.spx["close"]).diff()
    assert 0.0015 < market.std() < 0.003 and 4000 < data.spx["close"].iloc[0] < 5500
    assert data.vix["close"].between(12, 30).all()
    assert market.corr(np.log(data.vix["close"]).diff()) < -0.3  # VIX moves against the index
    stock = np.log(h.pivot(index="timestamp", columns="contract", values="close")).diff()
    betas = stock.apply(lambda column: np.cov(column[1:], market[1:])[0, 1] / market[1:].var())
    assert betas.between(BETA_RANGE[0] - 0.25, BETA_RANGE[1] + 0.25).all()
    assert betas.max() - betas.min() > 0.8  # spread, not one beta for all


def test_generation_is_deterministic_to_the_byte(tmp_path):
    a, b = Storage(str(tmp_path / "a")), Storage(str(tmp_path / "b"))
    # (duplicated bars are left out: the bar store refuses them, see test_store)
    anomalies = Anomalies(nan_runs=1, outliers=1, missing_bars=1, missing_market_bars=1)
    BarStore(a).write(generate_sample_data(seed=7, anomalies=anomalies), "sample")
    BarStore(b).write(generate_sample_data(seed=7, anomalies=anomalies), "sample")
    # the Delta table's file names and commit times differ by nature; the bars must not
    stored_a, stored_b = BarStore(a), BarStore(b)
    assert stored_a.sessions() and stored_a.sessions() == stored_b.sessions()
    days = stored_a.sessions()
    frames = stored_a.read_sessions(days), stored_b.read_sessions(days)
    pd.testing.assert_frame_equal(*frames, check_exact=True)
    first, second = generate_sample_data(seed=7), generate_sample_data(seed=7)
    for name in ("bars", "spx", "vix"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), check_exact=True)
    assert first.window == second.window
    assert not generate_sample_data(seed=8).bars.equals(first.bars)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"num_contracts": 0}, "num_contracts"),
        ({"num_contracts": "10"}, "num_contracts"),
        ({"num_contracts": True}, "num_contracts"),
        ({"window_bars": 0}, "window_bars"),
        ({"warmup_bars": -1}, "warmup_bars"),
        ({"seed": -3}, "seed"),
        ({"start": "not a date"}, "start"),
        ({"start": "2090-01-02"}, "start"),  # beyond the calendar
        ({"anomalies": Anomalies(duplicated_bars=10_000)}, "anomalies"),
    ],
)
def test_bad_arguments_are_named(arguments, named):
    with pytest.raises(InputDataError, match=named):
        generate_sample_data(**arguments)


def test_anomalies_are_where_and_what_they_say():
    clean = generate_sample_data()
    data = generate_sample_data(
        anomalies=Anomalies(nan_runs=2, outliers=1, missing_bars=2, duplicated_bars=1, missing_market_bars=3)
    )
    nan_rows = data.bars[data.bars["close"].isna()]
    assert len(nan_rows) == 6 and data.window.contains(nan_rows["timestamp"]).all()
    assert (nan_rows.groupby("contract").size() % 3 == 0).all()
    assert len(data.bars) == len(clean.bars) - 2 + 1
    assert data.bars.duplicated(["contract", "timestamp"]).sum() == 1
    # Three events: both indices, then ^GSPC alone, then ^VIX alone.
    assert len(data.spx) == len(clean.spx) - 2 and len(data.vix) == len(clean.vix) - 2
    assert data.window.contains(
        clean.spx["timestamp"][~clean.spx["timestamp"].isin(data.spx["timestamp"])]
    ).all()

    merged = clean.bars.merge(data.bars.drop_duplicates(), on=["contract", "timestamp"], suffixes=("", "_x"))
    moved = merged[np.isfinite(merged["close_x"]) & (merged["close"] != merged["close_x"])]
    assert len(moved) == 1 and data.window.contains(moved["timestamp"]).all()
    returns = np.log(clean.bars[clean.bars["contract"] == moved["contract"].iloc[0]]["close"]).diff()
    robust_sigma = (returns - returns.median()).abs().median() * 1.4826
    jump = abs(np.log(moved["close_x"] / moved["close"]).iloc[0]) / robust_sigma
    assert jump == pytest.approx(OUTLIER_JUMP_SIGMA, rel=0.01)
    assert (moved["high_x"] >= moved["close_x"]).all() and (moved["low_x"] <= moved["close_x"]).all()


def test_many_contracts_get_distinct_valid_names():
    names = contract_names(50)
    assert len(set(names)) == 50 and names[:10] == contract_names(10)
    assert [validate_symbol(n) for n in names] == names
    assert generate_sample_data(num_contracts=50).bars["contract"].nunique() == 50


def test_real_bars():
    from trading_lib.analytics import BETA_WINDOW_BARS

    data = load_real_bars(REAL_BARS)
    assert data.contracts == ["AAPL", "FB", "GOOG", "NFLX", "TSLA"]
    assert len(data.bars) == 5 * 154 and len(data.spx) == 154 and len(data.vix) == 154
    warmup = data.spx["timestamp"] < data.window.start
    assert warmup.sum() == BETA_WINDOW_BARS + 7 == 77
    assert data.window.start == pd.Timestamp("2022-03-31 09:30", tz=layout.EXCHANGE_TZ)
    assert data.window.end == pd.Timestamp("2022-04-18 16:00", tz=layout.EXCHANGE_TZ)
    assert data.window.contains(data.spx["timestamp"]).sum() == 154 - 77
    source = pd.read_csv(f"{REAL_BARS}/AAPL_1h.csv")
    aapl = data.bars[data.bars["contract"] == "AAPL"]
    assert aapl["close"].tolist() == source["Close"].tolist()
    assert aapl["timestamp"].tolist() == pd.to_datetime(source["Datetime"]).tolist()
    assert load_real_bars(REAL_BARS, ["tsla"]).contracts == ["TSLA"]


def _copy_real_bars(folder, *symbols):
    for symbol in symbols:
        (folder / f"{symbol}_1h.csv").write_bytes(open(f"{REAL_BARS}/{symbol}_1h.csv", "rb").read())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Datetime,Open,High,Low,Close,Volume\nnot a date,1,1,1,1,1\n", "Datetime"),
        ("Date,Open,High,Low,Close,Volume\n2022-03-14 09:30:00-04:00,1,1,1,1,1\n", "missing column Datetime"),
        ("Datetime,Open,High,Low,Volume\n2022-03-14 09:30:00-04:00,1,1,1,1\n", "missing column"),
        (
            "Datetime,Open,High,Low,Close,Volume\n2022-03-14 09:30:00-04:00,1,1,1,abc,1\n",
            "close is not numeric",
        ),
        ("Datetime,Open,High,Low,Close,Volume\n", "no bars"),
        ("", "not a CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "not a CSV"),
    ],
)
def test_corrupt_csv_is_named(tmp_path, content, message):
    _copy_real_bars(tmp_path, "^GSPC", "^VIX")
    corrupt = tmp_path / "AAPL_1h.csv"
    corrupt.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputDataError, match=message) as raised:
        load_real_bars(tmp_path)
    assert "AAPL_1h.csv" in str(raised.value)


def test_missing_folder_files_and_contracts_are_named(tmp_path):
    with pytest.raises(InputDataError, match="no such folder"):
        load_real_bars(tmp_path / "nothere")
    with pytest.raises(InputDataError, match=r"missing \^GSPC_1h.csv"):
        load_real_bars(tmp_path)
    _copy_real_bars(tmp_path, "^GSPC")
    with pytest.raises(InputDataError, match=r"missing \^VIX_1h.csv"):
        load_real_bars(tmp_path)
    _copy_real_bars(tmp_path, "^VIX")
    with pytest.raises(InputDataError, match="no stock"):
        load_real_bars(tmp_path)
    (tmp_path / "bad name_1h.csv").write_text("Datetime,Open,High,Low,Close,Volume\n")
    with pytest.raises(InputDataError, match="bad name_1h.csv"):
        load_real_bars(tmp_path)
    with pytest.raises(InputDataError, match="ZZZ"):
        load_real_bars(REAL_BARS, ["ZZZ"])


def test_too_few_sessions_for_the_warm_up(tmp_path):
    for symbol in ("^GSPC", "^VIX", "AAPL"):
        lines = open(f"{REAL_BARS}/{symbol}_1h.csv").read().splitlines()
        (tmp_path / f"{symbol}_1h.csv").write_text("\n".join(lines[: 1 + 7 * 5]) + "\n")  # five sessions
    with pytest.raises(InputDataError, match="5 sessions"):
        load_real_bars(tmp_path)


def test_rows_are_in_input_data_order():
    for anomalies in (None, Anomalies(missing_bars=2, duplicated_bars=2)):
        bars = generate_sample_data(num_contracts=12, anomalies=anomalies).bars
        assert bars.index.equals(pd.RangeIndex(len(bars)))
        assert bars.equals(bars.sort_values(["contract", "timestamp"], kind="stable"))
