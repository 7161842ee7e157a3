import numpy as np
import pandas as pd
import pytest

from trading_lib import layout
from trading_lib.inputs import InputDataError, write_inputs
from trading_lib.sample_data import (
    Anomalies,
    contract_names,
    exchange_bar_starts,
    generate_sample_data,
    load_real_bars,
)
from trading_lib.storage import Storage

REAL_BARS = "input/yahoo-1h-2022"


def test_default_shape_grid_and_window():
    data = generate_sample_data()
    assert data.contracts == sorted(contract_names(10))
    per_contract = data.holdings.groupby("contract").size()
    assert (per_contract == 77 + 24).all()
    window = data.holdings[data.window.contains(data.holdings["timestamp"])]
    assert (window.groupby("contract").size() == 24).all()
    assert (
        (data.holdings["timestamp"] < data.window.start).groupby(data.holdings["contract"]).sum().eq(77).all()
    )
    local = data.spx["timestamp"].dt
    assert set(local.minute) == {30} and local.hour.between(9, 15).all()
    assert local.day_of_week.lt(5).all()
    assert str(data.spx["timestamp"].dt.tz) == layout.EXCHANGE_TZ


def test_prices_are_consistent_and_betas_spread():
    data = generate_sample_data(num_contracts=12)
    h = data.holdings
    assert (h["low"] <= h[["open", "close"]].min(axis=1)).all() and (
        h["high"] >= h[["open", "close"]].max(axis=1)
    ).all()
    assert (h["volume"] > 0).all() and (data.spx["volume"] == 0).all()
    assert data.vix["close"].between(9, 80).all()
    market = np.log(data.spx["close"]).diff()
    vix = np.log(data.vix["close"]).diff()
    assert market.corr(vix) < -0.3  # VIX moves against the index


def test_generation_is_deterministic_to_the_byte(tmp_path):
    a, b = Storage(str(tmp_path / "a")), Storage(str(tmp_path / "b"))
    write_inputs(a, generate_sample_data(seed=7))
    write_inputs(b, generate_sample_data(seed=7))
    for key in layout.INPUT_KEYS:
        assert a.read_bytes(key) == b.read_bytes(key)
    pd.testing.assert_frame_equal(
        generate_sample_data(seed=7).holdings, generate_sample_data(seed=7).holdings
    )
    assert not generate_sample_data(seed=8).holdings.equals(generate_sample_data(seed=7).holdings)


def test_grid_follows_the_exchange_calendar():
    # 2024-11-28 Thanksgiving (closed), 2024-11-29 early close at 13:00.
    grid = exchange_bar_starts("2024-11-27", 7 + 4 + 7)
    days = pd.Series(grid.date).value_counts().sort_index()
    assert [str(d) for d in days.index] == ["2024-11-27", "2024-11-29", "2024-12-02"]
    assert days.tolist() == [7, 4, 7]
    assert grid[grid.date == pd.Timestamp("2024-11-29").date()].strftime("%H:%M").tolist() == [
        "09:30", "10:30", "11:30", "12:30"
    ]  # fmt: skip


@pytest.mark.parametrize("bad", [0, -1, "10", True])
def test_bad_arguments_are_named(bad):
    with pytest.raises(InputDataError, match="num_contracts"):
        generate_sample_data(num_contracts=bad)


def test_anomalies_land_in_the_window():
    clean = generate_sample_data()
    data = generate_sample_data(
        anomalies=Anomalies(nan_runs=1, missing_bars=2, duplicated_bars=1, missing_market_bars=1)
    )
    assert data.holdings["close"].isna().sum() == 3
    assert len(data.holdings) == len(clean.holdings) - 2 + 1
    assert len(data.spx) == len(clean.spx) - 1 and len(data.vix) == len(clean.vix) - 1
    nan_rows = data.holdings[data.holdings["close"].isna()]
    assert data.window.contains(nan_rows["timestamp"]).all() and nan_rows["contract"].nunique() == 1


def test_many_contracts_get_distinct_valid_names():
    names = contract_names(45)
    assert len(set(names)) == 45 and names[:10] == contract_names(10)


def test_real_bars():
    data = load_real_bars(REAL_BARS)
    assert data.contracts == ["AAPL", "FB", "GOOG", "NFLX", "TSLA"]
    assert len(data.holdings) == 5 * 154 and len(data.spx) == 154 and len(data.vix) == 154
    assert data.window.start == pd.Timestamp("2022-03-31 09:30", tz=layout.EXCHANGE_TZ)
    source = pd.read_csv(f"{REAL_BARS}/AAPL_1h.csv")
    aapl = data.holdings[data.holdings["contract"] == "AAPL"]
    assert aapl["close"].tolist() == source["Close"].tolist()
    assert load_real_bars(REAL_BARS, ["TSLA"]).contracts == ["TSLA"]


def test_real_bars_errors(tmp_path):
    with pytest.raises(InputDataError, match="no such folder"):
        load_real_bars(tmp_path / "nothere")
    with pytest.raises(InputDataError, match=r"missing \^GSPC_1h.csv"):
        load_real_bars(tmp_path)
    for name in ("^GSPC", "^VIX", "AAPL"):
        (tmp_path / f"{name}_1h.csv").write_text(
            "Datetime,Open,High,Low,Close,Volume\nnot a date,1,1,1,1,1\n"
        )
    with pytest.raises(InputDataError, match="AAPL_1h.csv"):
        load_real_bars(tmp_path)
    with pytest.raises(InputDataError, match="ZZZ"):
        load_real_bars(REAL_BARS, ["ZZZ"])
