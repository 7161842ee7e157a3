import empyrical
import numpy as np
import pandas as pd
import pytest
from _frames import bar_grid, bars, one_factor, real, with_gaps

from trading_lib import analytics, layout, pipeline
from trading_lib.analytics import PartitionNotFoundError, compute_signals
from trading_lib.inputs import InputData
from trading_lib.storage import Storage
from trading_lib.store import BarStore
from trading_lib.symbols import SymbolError


@pytest.fixture(scope="module")
def synthetic() -> InputData:
    return with_gaps(one_factor(sessions=16)[0])


@pytest.fixture(scope="module")
def real_bars() -> InputData:
    return real()


def _signals(data: InputData) -> pd.DataFrame:
    return compute_signals(data.bars, data.spx, data.vix)


def _stored(tmp_path, data: InputData) -> Storage:
    storage = Storage(str(tmp_path))
    BarStore(storage).write(data, source="test")
    return storage


def analyze_partition(storage: Storage, contract: str, timestamp) -> pd.DataFrame:
    """The partition's row as the pipeline writes it (bar store look-back, kernel, parquet file)."""
    (written,) = pipeline.analyze_partition(storage, contract, [timestamp])
    return storage.read_parquet(written["key"])


def _returns(close: pd.Series) -> pd.Series:
    return close / close.shift(1) - 1.0


@pytest.mark.parametrize("which", ["synthetic", "real_bars"])
def test_every_partition_is_bit_identical_to_the_vectorized_kernel(tmp_path, request, which):
    data = request.getfixturevalue(which)
    storage = _stored(tmp_path, data)
    full = _signals(data)
    for i, (c, t) in enumerate(zip(full["contract"], full["timestamp"], strict=True)):
        (written,) = pipeline.analyze_partition(storage, c, [t])
        # the file holds exactly the kernel's row for (c, t), byte for byte
        assert storage.read_bytes(written["key"]) == storage.parquet_bytes(
            full.iloc[[i]].reset_index(drop=True)
        )
    assert full["beta"].notna().sum() > len(full) / 2  # the comparison covers real betas, not only NaN


def test_results_do_not_depend_on_where_the_history_starts(synthetic):
    """Rows whose beta window lies after a cut are bit-identical with or without the history
    before it (a window sum taken as a difference of running sums would not be)."""
    cut = synthetic.spx["timestamp"].iloc[10]
    trimmed = [frame[frame["timestamp"] >= cut] for frame in (synthetic.bars, synthetic.spx, synthetic.vix)]
    full, short = _signals(synthetic), compute_signals(*trimmed)
    settled = synthetic.spx["timestamp"].iloc[10 + analytics.BETA_WINDOW_BARS]
    rows_full, rows_short = full[full["timestamp"] >= settled], short[short["timestamp"] >= settled]
    assert len(rows_full) > 50 and rows_full["beta"].notna().all()
    pd.testing.assert_frame_equal(
        rows_short.reset_index(drop=True), rows_full.reset_index(drop=True), check_exact=True
    )


def test_result_schema_and_order(synthetic):
    result = _signals(synthetic)
    assert list(result.columns) == layout.RESULT_COLUMNS
    assert len(result) == len(synthetic.bars)
    assert result["beta_observations"].dtype == np.int64
    assert str(result["timestamp"].dt.tz) == layout.EXCHANGE_TZ
    assert set(result["signal"]) == set(layout.SIGNALS)
    shuffled = synthetic.bars.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(
        compute_signals(shuffled, synthetic.spx, synthetic.vix), result, check_exact=True
    )


def test_returns_are_on_each_series_own_previous_bar(synthetic):
    result = _signals(synthetic).set_index(["contract", "timestamp"])
    for contract, bars_ in synthetic.bars.groupby("contract"):
        expected = _returns(bars_.set_index("timestamp")["close"])
        np.testing.assert_array_equal(result.loc[contract, "bar_return"].to_numpy(), expected.to_numpy())
    market = _returns(synthetic.spx.set_index("timestamp")["close"])
    joined = market.reindex(result.index.get_level_values("timestamp"))
    np.testing.assert_array_equal(result["market_return"].to_numpy(), joined.to_numpy())


@pytest.mark.parametrize("which", ["synthetic", "real_bars"])
def test_beta_equals_empyrical_on_the_trailing_window(request, which):
    data = request.getfixturevalue(which)
    result = _signals(data)
    market = _returns(data.spx.set_index("timestamp")["close"])
    checked = 0
    for contract in sorted(data.bars["contract"].unique()):
        stock = _returns(data.bars[data.bars["contract"] == contract].set_index("timestamp")["close"])
        rows = result[(result["contract"] == contract) & result["beta"].notna()]
        for row in rows.iloc[:: max(1, len(rows) // 8)].itertuples():
            window = market.loc[: row.timestamp].tail(analytics.BETA_WINDOW_BARS).index
            x, y = market.reindex(window), stock.reindex(window)
            assert row.beta == pytest.approx(empyrical.beta(y, x), rel=1e-9, abs=0)
            assert row.beta_observations == int((x.notna() & y.notna()).sum())
            checked += 1
    assert checked >= 25


def test_beta_recovers_the_one_factor_model():
    data, true_betas = one_factor(
        contracts=("LOW", "MID", "HIGH"), sessions=30, betas=[0.3, 1.0, 1.8], seed=3
    )
    betas = _signals(data).groupby("contract")["beta"].median()
    for contract, beta in true_betas.items():
        assert betas[contract] == pytest.approx(beta, abs=0.15)


def test_beta_uses_only_data_up_to_t(synthetic):
    cut = synthetic.bars["timestamp"].iloc[50]
    later = synthetic.bars["timestamp"] > cut
    bars = synthetic.bars.copy()
    bars.loc[later, "close"] *= np.linspace(0.5, 1.5, later.sum())
    spx, vix = synthetic.spx.copy(), synthetic.vix.copy()
    spx.loc[spx["timestamp"] > cut, "close"] *= 1.3
    vix.loc[vix["timestamp"] > cut, "close"] = 80.0
    before, after = _signals(synthetic), compute_signals(bars, spx, vix)
    upto = before["timestamp"] <= cut
    pd.testing.assert_frame_equal(before[upto], after[upto], check_exact=True)
    assert not before[~upto]["beta"].equals(after[~upto]["beta"])  # the change did reach later rows


def test_beta_needs_enough_pairs_and_market_variance():
    grid = bar_grid(sessions=2)
    rng = np.random.default_rng(5)
    market = rng.normal(0.0, 0.004, len(grid))
    stock = bars(grid, 50.0 * np.cumprod(1.0 + 1.5 * market)).assign(contract="AAA")
    few = compute_signals(
        stock, bars(grid, 4000.0 * np.cumprod(1.0 + market)), bars(grid, np.full(len(grid), 20.0))
    )
    # the first bar has no return: 13 pairs at most in two sessions, below the minimum
    assert few["beta"].isna().all() and few["beta_observations"].max() == len(grid) - 1
    grid = bar_grid(sessions=5)
    flat = bars(grid, 4000.0 * 1.001 ** np.arange(len(grid)))  # the same market return every bar
    stock = bars(grid, 50.0 * np.cumprod(1.0 + rng.normal(0.0, 0.004, len(grid)))).assign(contract="AAA")
    result = compute_signals(stock, flat, bars(grid, np.full(len(grid), 20.0)))
    assert result["beta_observations"].max() >= analytics.BETA_MIN_OBSERVATIONS
    assert result["beta"].isna().all() and (result["signal"] == "HOLD").all()


def test_thresholds_widen_with_vix(synthetic):
    counts = []
    for level, factor in [(5.0, 0.5), (20.0, 1.0), (30.0, 1.5), (50.0, 2.5), (200.0, 3.0)]:
        result = compute_signals(synthetic.bars, synthetic.spx, synthetic.vix.assign(close=level))
        quoted = result["vix"].notna()  # the with_gaps data lacks VIX on one bar
        assert np.allclose(result.loc[quoted, "buy_threshold"], 0.002 * factor, rtol=1e-15)
        assert result.loc[~quoted, "buy_threshold"].isna().all() and (~quoted).sum() == 3
        assert (result["sell_threshold"] == -result["buy_threshold"])[quoted].all()
        assert (result.loc[quoted, "vix"] == level).all()
        counts.append(int((result["signal"] != "HOLD").sum()))
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_signal_follows_excess_return_against_thresholds():
    # The stock moves exactly twice the market until three crafted bars at the end.
    grid = bar_grid(sessions=5)
    market = np.resize([0.01, -0.01], len(grid))
    stock = 2.0 * market
    stock[-3:] += [0.005, -0.005, 0.001]  # at VIX 20 the band is +-0.2 %
    result = compute_signals(
        bars(grid, 50.0 * np.cumprod(1.0 + stock)).assign(contract="AAA"),
        bars(grid, 4000.0 * np.cumprod(1.0 + market)),
        bars(grid, np.full(len(grid), 20.0)),
    )
    assert result["signal"].tolist()[-3:] == ["BUY", "SELL", "HOLD"]
    assert (result["signal"].iloc[1:-3] == "HOLD").all()
    returns = _returns(result["close"])
    for i in (-3, -2, -1):  # excess from an independent OLS fit on the same window
        window = slice(max(1, len(grid) + i + 1 - analytics.BETA_WINDOW_BARS), len(grid) + i + 1)
        slope = np.polyfit(market[window], returns.to_numpy()[window], 1)[0]
        assert result["beta"].iloc[i] == pytest.approx(slope, rel=1e-9)
        assert result["excess_return"].iloc[i] == pytest.approx(returns.iloc[i] - slope * market[i], rel=1e-9)


def test_signal_rule_on_every_row(synthetic):
    result = _signals(synthetic)
    buy = result["excess_return"] > result["buy_threshold"]
    sell = result["excess_return"] < result["sell_threshold"]
    expected = np.where(buy, "BUY", np.where(sell, "SELL", "HOLD"))
    assert (result["signal"].to_numpy() == expected).all()
    assert buy.any() and sell.any()


def test_missing_values_give_nan_and_hold(synthetic):
    result = _signals(synthetic).set_index(["contract", "timestamp"])
    bars = synthetic.bars
    first = bars["contract"].iloc[0]
    closes = bars[bars["contract"] == first].set_index("timestamp")["close"]
    nan_bar = closes.index[closes.isna()][0]
    after_nan = closes.index[closes.index.get_loc(nan_bar) + 1]
    for ts in (nan_bar, after_nan):  # a NaN close spoils its own return and the next one
        row = result.loc[(first, ts)]
        assert np.isnan(row["bar_return"]) and np.isnan(row["excess_return"]) and row["signal"] == "HOLD"
    # a missing bar: the next return spans the gap
    grid = synthetic.spx["timestamp"]
    gap = grid[~grid.isin(closes.index) & (grid > closes.index[0]) & (grid < closes.index[-1])].iloc[0]
    before, after = closes.index[closes.index < gap][-1], closes.index[closes.index > gap][0]
    assert result.loc[(first, after), "bar_return"] == closes[after] / closes[before] - 1.0
    # a stock bar without a ^GSPC bar: no market return, but beta over the last 70 market bars
    all_bars = pd.DatetimeIndex(bars["timestamp"].unique())
    no_market = all_bars[~all_bars.isin(grid)][0]
    row = result.loc[("BBB", no_market)]
    assert np.isnan(row["market_return"]) and np.isfinite(row["beta"]) and row["signal"] == "HOLD"
    # a bar without VIX: no thresholds
    no_vix = all_bars[~all_bars.isin(synthetic.vix["timestamp"])][0]
    row = result.loc[("BBB", no_vix)]
    assert np.isnan(row["vix"]) and np.isnan(row["buy_threshold"]) and row["signal"] == "HOLD"
    # the late-listed contract: NaN first return, and beta only once it has 20 pairs
    late = result.loc["CCC"]
    assert np.isnan(late["bar_return"].iloc[0])
    assert late["beta"].isna().iloc[: analytics.BETA_MIN_OBSERVATIONS].all()
    assert late["beta"].notna().iloc[analytics.BETA_MIN_OBSERVATIONS + 1 :].all()


def test_partition_timestamp_forms(tmp_path, synthetic):
    storage = _stored(tmp_path, synthetic)
    ts = synthetic.bars["timestamp"].iloc[100]
    contract = synthetic.bars["contract"].iloc[100]
    expected = analyze_partition(storage, contract, ts)
    for form in (ts.isoformat(), ts.tz_convert("UTC").isoformat(), ts.tz_localize(None).isoformat()):
        pd.testing.assert_frame_equal(
            analyze_partition(storage, contract.lower(), form), expected, check_exact=True
        )


def test_unknown_partition_names_contract_and_timestamp(tmp_path, synthetic):
    storage = _stored(tmp_path, synthetic)
    with pytest.raises(PartitionNotFoundError, match=r"'AAA'.*2030-01-02T09:30:00-05:00"):
        analyze_partition(storage, "AAA", "2030-01-02T09:30:00-05:00")
    with pytest.raises(PartitionNotFoundError, match=r"'ZZZZ'"):
        analyze_partition(storage, "ZZZZ", synthetic.window.start)
    # a bar another contract has but this one lacks (CCC is listed late)
    first_bar = synthetic.window.start
    with pytest.raises(PartitionNotFoundError, match=r"'CCC'.*" + first_bar.isoformat()):
        analyze_partition(storage, "CCC", first_bar)
    with pytest.raises(layout.PartitionKeyError, match="not-a-time"):
        analyze_partition(storage, "AAA", "not-a-time")
    with pytest.raises(SymbolError, match="AA/A"):
        analyze_partition(storage, "AA/A", first_bar)


def test_empty_and_unsorted_market_inputs():
    data, _ = one_factor(sessions=12, seed=9)
    empty = compute_signals(data.bars.iloc[:0], data.spx, data.vix)
    assert list(empty.columns) == layout.RESULT_COLUMNS and empty.empty
    reversed_ = compute_signals(data.bars, data.spx.iloc[::-1], data.vix.iloc[::-1])
    pd.testing.assert_frame_equal(reversed_, _signals(data), check_exact=True)
