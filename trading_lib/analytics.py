"""Per-partition analytics: bar returns, beta against the S&P 500, VIX-adjusted thresholds, signal.

One kernel, :func:`compute_signals`, vectorized over whole frames. :func:`partition_row` applies
the same kernel to the look-back slice one (contract, timestamp) needs (the bar store reads it).
Both give bit-identical rows: the trailing-window sums are accumulated offset by offset in a fixed
order, so a window sum does not depend on how much history precedes it or how many contracts sit
beside it (a cumulative sum would). Formulas and their rationale: docs/formulas.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.errors import BadInputError

BETA_WINDOW_BARS = 70  # trailing window in ^GSPC bars ending at t inclusive: 10 sessions of 7 bars
BETA_MIN_OBSERVATIONS = 20  # fewer valid (stock, market) return pairs in the window -> beta NaN
BASE_THRESHOLD = 0.002  # |excess return| that makes a signal at the reference VIX: 0.2 % per bar
VIX_REFERENCE = 20.0  # long-run average level of the VIX
VIX_FACTOR_BOUNDS = (0.5, 3.0)

# The signal column is built by indexing this array with 0 (BUY), 1 (SELL) or 2 (HOLD).
_SIGNAL_NAMES = pd.array(["BUY", "SELL", "HOLD"], dtype="str")
# Market returns spreading less than this per bar count as a flat market (zero variance): a
# return computed from float prices carries ~1e-16 of rounding, while the smallest real move of
# ^GSPC (one 0.01 tick at ~4,000) is 2.5e-6.
_FLAT_MARKET_SPREAD = 1e-12
# Contracts per block of the beta computation: a block's working set stays in cache (~2x faster
# than whole-universe matrices at 500 contracts). Columns are independent, so blocks do not
# change any result.
_CONTRACTS_PER_BLOCK = 64


class PartitionNotFoundError(BadInputError, LookupError):
    """No bar for this (contract, timestamp) in the bar store; the message names both."""


def _utc(timestamps: pd.Series) -> np.ndarray:
    """Timestamps (naive = exchange time) as a UTC datetime64[us] array: fast to search and compare."""
    values = timestamps.array
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = layout.to_exchange_time(timestamps).array
    return values.asi8.view(f"M8[{values.unit}]").astype(f"M8[{layout.TIMESTAMP_UNIT}]", copy=False)


def _returns(close: np.ndarray, first_of_series: np.ndarray) -> np.ndarray:
    """close_t / close_prev - 1 along rows sorted by (series, time); NaN on each series' first row."""
    out = np.empty(close.shape)
    out[:1] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(close[1:], close[:-1], out=out[1:])
    out[1:] -= 1.0
    out[first_of_series] = np.nan
    return out


def _trailing_sum(term: np.ndarray, window: int) -> np.ndarray:
    """Sum over axis 0 of term[t-k] for k = 0 .. window-1 (rows before 0 count as nothing).

    A loop over window offsets, each step over the whole matrix (never a loop over rows), always
    in the order k = 0, 1, ...: a window's sum is the same additions in the same order in any
    frame that holds it, so the result at row t does not depend on the array's start or width.
    """
    total = term.copy()
    rows = len(term)
    for k in range(1, min(window, rows)):
        total[k:] += term[: rows - k]
    return total


def _rolling_beta(market: np.ndarray, stock: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """OLS slope of stock (T, C) on market (T,) over each trailing window, and the pair count.

    Two passes: the window means, then the centred sums Σ(x-x̄)(y-ȳ) and Σ(x-x̄)², which lose no
    precision to cancellation (Σxy - ΣxΣy/n does when the mean is large against the spread).
    """
    valid = np.isfinite(stock) & np.isfinite(market)[:, None]
    weight = valid.astype(np.float64)
    x = np.where(np.isfinite(market), market, 0.0)[:, None] * weight
    y = np.where(valid, stock, 0.0)
    n = _trailing_sum(weight, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = _trailing_sum(x, window) / n
        mean_y = _trailing_sum(y, window) / n
    # Second pass: offset k pairs row t-k's values with row t's window means; invalid pairs
    # weigh 0 (the means are NaN only where n == 0, which the minimum count masks anyway).
    # Preallocated buffers: a fresh matrix-sized temporary per step costs an allocation each time.
    sxy = np.zeros_like(y)
    sxx = np.zeros_like(y)
    dx_buffer, dy_buffer = np.empty_like(y), np.empty_like(y)
    rows = len(y)
    for k in range(min(window, rows)):
        span = rows - k
        dx, dy = dx_buffer[:span], dy_buffer[:span]
        np.subtract(x[:span], mean_x[k:], out=dx)
        dx *= weight[:span]
        np.subtract(y[:span], mean_y[k:], out=dy)
        dy *= dx
        sxy[k:] += dy
        dx *= dx
        sxx[k:] += dx
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = sxy / sxx
    flat = ~(sxx > n * _FLAT_MARKET_SPREAD**2)  # also true where sxx is NaN (no pairs)
    beta[(n < BETA_MIN_OBSERVATIONS) | flat] = np.nan
    return beta, n


def compute_signals(bars: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> pd.DataFrame:
    """One result row (layout.RESULT_COLUMNS) per contract bar, sorted by contract, timestamp."""
    codes, names = pd.factorize(bars["contract"], sort=True)
    ts = _utc(bars["timestamp"])
    close = bars["close"].to_numpy(dtype=np.float64)
    in_order = (np.diff(codes) > 0) | ((np.diff(codes) == 0) & (np.diff(ts) >= np.timedelta64(0)))
    if not in_order.all():
        order = np.lexsort((ts, codes))
        codes, ts, close = codes[order], ts[order], close[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    bar_return = _returns(close, first)

    market_ts = _utc(spx["timestamp"])
    market_close = spx["close"].to_numpy(dtype=np.float64)
    if not (np.diff(market_ts) >= np.timedelta64(0)).all():
        order = np.argsort(market_ts, kind="stable")
        market_ts, market_close = market_ts[order], market_close[order]
    market_series = _returns(market_close, np.arange(len(market_ts)) == 0)

    # Row of each stock bar in the (T market bars x C contracts) matrices: the last market bar at
    # or before it, so its beta window is the last BETA_WINDOW_BARS market bars <= t.
    row = np.searchsorted(market_ts, ts, side="right") - 1
    has_row = row >= 0
    on_grid = has_row & (market_ts[np.maximum(row, 0)] == ts) if len(market_ts) else has_row
    market_return = np.full(len(ts), np.nan)
    market_return[on_grid] = market_series[row[on_grid]]

    stock = np.full((len(market_ts), len(names)), np.nan)
    stock[row[on_grid], codes[on_grid]] = bar_return[on_grid]
    blocks = [
        _rolling_beta(
            market_series, np.ascontiguousarray(stock[:, i : i + _CONTRACTS_PER_BLOCK]), BETA_WINDOW_BARS
        )
        for i in range(0, len(names), _CONTRACTS_PER_BLOCK)
    ]
    beta_matrix = np.hstack([b for b, _ in blocks]) if blocks else stock
    n = np.hstack([c for _, c in blocks]) if blocks else np.zeros_like(stock)
    beta = np.full(len(ts), np.nan)
    observations = np.zeros(len(ts), dtype=np.int64)
    beta[has_row] = beta_matrix[row[has_row], codes[has_row]]
    observations[has_row] = n[row[has_row], codes[has_row]].astype(np.int64)

    vix_close = np.full(len(ts), np.nan)
    if len(vix):
        vix_ts = _utc(vix["timestamp"])
        order = np.argsort(vix_ts, kind="stable")
        vix_ts, vix_values = vix_ts[order], vix["close"].to_numpy(dtype=np.float64)[order]
        at = np.searchsorted(vix_ts, ts, side="right") - 1  # the last VIX row stamped t wins
        found = (at >= 0) & (vix_ts[np.maximum(at, 0)] == ts)
        vix_close[found] = vix_values[at[found]]

    buy_threshold = BASE_THRESHOLD * np.clip(vix_close / VIX_REFERENCE, *VIX_FACTOR_BOUNDS)
    excess = bar_return - beta * market_return
    signal = np.full(len(ts), 2, dtype=np.intp)
    signal[excess > buy_threshold] = 0
    signal[excess < -buy_threshold] = 1

    timestamps = pd.DatetimeIndex(ts).tz_localize("UTC").tz_convert(layout.EXCHANGE_TZ)
    return pd.DataFrame(
        {
            "contract": pd.array(names, dtype="str").take(codes),
            "timestamp": timestamps,
            "close": close,
            "bar_return": bar_return,
            "market_return": market_return,
            "beta": beta,
            "beta_observations": observations,
            "excess_return": excess,
            "vix": vix_close,
            "buy_threshold": buy_threshold,
            "sell_threshold": -buy_threshold,
            "signal": _SIGNAL_NAMES.take(signal),
        },
        columns=layout.RESULT_COLUMNS,
        copy=False,  # the arrays are fresh; consolidating them into one block would copy 60 MB
    )


def partition_row(bars: pd.DataFrame, contract: str, ts: pd.Timestamp) -> pd.DataFrame:
    """The result row of the partition (contract, ts), computed from its look-back ``bars`` (store
    rows: symbol, timestamp, close of the contract, ^GSPC and ^VIX at or before ts, as
    BarStore.lookback returns them) with the same kernel as a whole-universe run. Pure: no I/O."""
    from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX

    contract_bars = bars.loc[bars["symbol"] == contract, ["symbol", "timestamp", "close"]]
    if not (contract_bars["timestamp"] == ts).any():
        raise PartitionNotFoundError(
            f"no bar for contract {contract!r} at timestamp {ts.isoformat()} in the bar store"
        )
    contract_bars = contract_bars.rename(columns={"symbol": "contract"})
    spx = bars.loc[bars["symbol"] == MARKET_INDEX, ["timestamp", "close"]]
    vix = bars.loc[(bars["symbol"] == VOLATILITY_INDEX) & (bars["timestamp"] == ts), ["timestamp", "close"]]
    result = compute_signals(contract_bars, spx, vix)
    return result[result["timestamp"] == ts].tail(1).reset_index(drop=True)
