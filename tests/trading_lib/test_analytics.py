import empyrical
import numpy as np
import pandas as pd
import pytest

from trading_lib import analytics, layout
from trading_lib.analytics import PartitionNotFoundError, analyze_partition, compute_signals
from trading_lib.inputs import write_inputs
from trading_lib.sample_data import generate_sample_data, load_real_bars
from trading_lib.storage import Storage

REAL_BARS = "input/yahoo-1h-2022"


@pytest.fixture(scope="module")
def sample():
    return generate_sample_data(num_contracts=4, window_bars=10)


@pytest.fixture(scope="module")
def real():
    return load_real_bars(REAL_BARS)


@pytest.mark.parametrize("which", ["sample", "real"])
def test_every_partition_is_bit_identical_to_the_vectorized_kernel(tmp_path, request, which):
    data = request.getfixturevalue(which)
    storage = Storage(str(tmp_path))
    write_inputs(storage, data)
    full = compute_signals(data.holdings, data.spx, data.vix)
    window = full[data.window.contains(full["timestamp"])].reset_index(drop=True)
    rows = [
        analyze_partition(storage, c, t) for c, t in zip(window["contract"], window["timestamp"], strict=True)
    ]
    pd.testing.assert_frame_equal(pd.concat(rows, ignore_index=True), window, check_exact=True)


def test_result_schema(sample):
    result = compute_signals(sample.holdings, sample.spx, sample.vix)
    assert list(result.columns) == layout.RESULT_COLUMNS
    assert len(result) == len(sample.holdings)
    assert set(result["signal"]) <= set(layout.SIGNALS)


def test_beta_is_the_ols_slope_of_the_trailing_window(real):
    result = compute_signals(real.holdings, real.spx, real.vix)
    market = real.spx.set_index("timestamp")["close"].pct_change()
    checked = 0
    for contract in ("AAPL", "TSLA"):
        bars = (
            real.holdings[real.holdings["contract"] == contract].set_index("timestamp")["close"].pct_change()
        )
        rows = result[(result["contract"] == contract) & result["beta"].notna()]
        for _, row in rows.iloc[:: max(1, len(rows) // 12)].iterrows():
            window = market.loc[: row["timestamp"]].tail(analytics.BETA_WINDOW_BARS).index
            expected = empyrical.beta(bars.reindex(window), market.reindex(window))
            assert row["beta"] == pytest.approx(expected, rel=1e-9)
            assert row["beta_observations"] == int(
                (bars.reindex(window).notna() & market.reindex(window).notna()).sum()
            )
            checked += 1
    assert checked >= 20


def test_generated_betas_recover_the_model(sample):
    result = compute_signals(sample.holdings, sample.spx, sample.vix)
    in_window = result[sample.window.contains(result["timestamp"])]
    betas = in_window.groupby("contract")["beta"].mean()
    assert betas.min() > 0.2 and betas.max() < 2.3
    assert betas.notna().all()


def test_no_look_ahead(sample):
    """Changing prices after t changes nothing at or before t."""
    cut = sample.window.start
    changed = sample.holdings.copy()
    later = changed["timestamp"] > cut
    changed.loc[later, "close"] *= np.linspace(0.5, 1.5, later.sum())
    spx = sample.spx.copy()
    spx.loc[spx["timestamp"] > cut, "close"] *= 1.3
    before = compute_signals(sample.holdings, sample.spx, sample.vix)
    after = compute_signals(changed, spx, sample.vix)
    upto = before["timestamp"] <= cut
    pd.testing.assert_frame_equal(before[upto], after[upto], check_exact=True)


def test_thresholds_widen_with_vix(sample):
    calm, stressed = sample.vix.copy(), sample.vix.copy()
    calm["close"], stressed["close"] = 12.0, 40.0
    low = compute_signals(sample.holdings, sample.spx, calm)
    high = compute_signals(sample.holdings, sample.spx, stressed)
    assert (high["buy_threshold"] > low["buy_threshold"]).all()
    assert (high["sell_threshold"] == -high["buy_threshold"]).all()
    assert high["buy_threshold"].iloc[0] == pytest.approx(analytics.BASE_THRESHOLD * 2.0)
    extreme = sample.vix.assign(close=500.0)
    capped = compute_signals(sample.holdings, sample.spx, extreme)["buy_threshold"]
    assert capped.iloc[0] == pytest.approx(analytics.BASE_THRESHOLD * analytics.VIX_FACTOR_BOUNDS[1])
    assert (high["signal"] != "HOLD").sum() < (low["signal"] != "HOLD").sum()


def test_signal_rule(sample):
    result = compute_signals(sample.holdings, sample.spx, sample.vix).dropna(subset=["excess_return"])
    buys = result["excess_return"] > result["buy_threshold"]
    sells = result["excess_return"] < result["sell_threshold"]
    assert (result.loc[buys, "signal"] == "BUY").all()
    assert (result.loc[sells, "signal"] == "SELL").all()
    assert (result.loc[~buys & ~sells, "signal"] == "HOLD").all()
    assert buys.any() and sells.any()


def test_missing_values_give_hold_not_errors(sample):
    holdings = sample.holdings.copy()
    holdings.loc[holdings.index[5:8], "close"] = np.nan
    result = compute_signals(holdings, sample.spx, sample.vix)
    affected = result.iloc[5:9]
    assert affected["bar_return"].isna().all()
    assert (affected["signal"] == "HOLD").all()
    # a stock bar missing from the market grid has no market return and no beta
    spx = sample.spx.drop(index=sample.spx.index[50])
    gap = compute_signals(sample.holdings, spx, sample.vix)
    row = gap[gap["timestamp"] == sample.spx["timestamp"].iloc[50]].iloc[0]
    assert np.isnan(row["market_return"]) and np.isnan(row["beta"]) and row["signal"] == "HOLD"


def test_beta_needs_enough_observations():
    data = generate_sample_data(num_contracts=1, window_bars=5, warmup_bars=10)
    result = compute_signals(data.holdings, data.spx, data.vix)
    assert result["beta"].isna().all()
    assert (result["beta_observations"] < analytics.BETA_MIN_OBSERVATIONS).all()


def test_unknown_partition_names_contract_and_timestamp(tmp_path, sample):
    storage = Storage(str(tmp_path))
    write_inputs(storage, sample)
    with pytest.raises(PartitionNotFoundError, match=r"'AAPL'.*2030-01-02T09:30:00-05:00"):
        analyze_partition(storage, "AAPL", "2030-01-02T09:30:00-05:00")
    with pytest.raises(PartitionNotFoundError, match="'ZZZZ'"):
        analyze_partition(storage, "ZZZZ", sample.window.start)
