"""Per-partition analytics: bar returns, beta against the S&P 500, VIX-adjusted thresholds, signal.

One kernel, :func:`compute_signals`, vectorized over whole frames. :func:`analyze_partition` reads
only the slice one (contract, timestamp) needs and calls the same kernel. Both give bit-identical
rows: the trailing-window sums are accumulated offset by offset in a fixed order, so a window sum
does not depend on how much history precedes it or how many contracts sit beside it (a cumulative
sum would). Formulas and their rationale: docs/formulas.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.symbols import validate_symbol

BETA_WINDOW_BARS = 70  # trailing window in ^GSPC bars ending at t inclusive: 10 sessions of 7 bars
BETA_MIN_OBSERVATIONS = 20  # fewer valid (stock, market) return pairs in the window -> beta NaN
BASE_THRESHOLD = 0.002  # |excess return| that makes a signal at the reference VIX: 0.2 % per bar
VIX_REFERENCE = 20.0  # long-run average level of the VIX
VIX_FACTOR_BOUNDS = (0.5, 3.0)


class PartitionNotFoundError(LookupError):
    """No bar for this (contract, timestamp) in the input; the message names both."""


def _utc(timestamps: pd.Series) -> np.ndarray:
    """tz-aware timestamps as a datetime64 array (UTC): fast to sort, search and compare."""
    return timestamps.dt.tz_convert(None).to_numpy()


def _returns(close: np.ndarray, first_of_series: np.ndarray) -> np.ndarray:
    """close_t / close_prev - 1 along rows sorted by (series, time); NaN on each series' first row."""
    out = np.empty(close.shape)
    out[:1] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(close[1:], close[:-1], out=out[1:])
    out[1:] -= 1.0
    out[first_of_series] = np.nan
    return out


def _window_sums(x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Trailing sums over axis 0 of (T, C) arrays, over pairs where both are finite: n, Σx, Σy, Σxy, Σx².

    Accumulated for k = 0 .. window-1, each step over the whole matrix (a loop over window offsets,
    never over rows): each window's sum is the same additions in the same order in any frame.
    """
    valid = np.isfinite(x) & np.isfinite(y)
    xv = np.where(valid, x, 0.0)
    yv = np.where(valid, y, 0.0)
    terms = (valid.astype(np.float64), xv, yv, xv * yv, xv * xv)
    sums = [term.copy() for term in terms]
    rows = len(xv)
    for k in range(1, min(window, rows)):
        for total, term in zip(sums, terms, strict=True):
            total[k:] += term[: rows - k]
    return tuple(sums)


def compute_signals(holdings: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> pd.DataFrame:
    """One result row (layout.RESULT_COLUMNS) per holdings row, sorted by contract, timestamp."""
    holdings = holdings.sort_values(["contract", "timestamp"], kind="stable").reset_index(drop=True)
    spx = spx.sort_values("timestamp", kind="stable").reset_index(drop=True)
    contract = holdings["contract"].to_numpy(dtype=object)
    timestamps = holdings["timestamp"]
    close = holdings["close"].to_numpy(dtype=np.float64)
    first = np.ones(len(contract), dtype=bool)
    first[1:] = contract[1:] != contract[:-1]
    bar_return = _returns(close, first)

    market_ts = _utc(spx["timestamp"])
    market_first = np.zeros(len(market_ts), dtype=bool)
    market_first[:1] = True
    market_series = _returns(spx["close"].to_numpy(dtype=np.float64), market_first)

    # Stock bars on the market grid: row in the (T market bars x C contracts) matrices.
    ts = _utc(timestamps)
    position = np.searchsorted(market_ts, ts)
    clipped = np.minimum(position, max(len(market_ts) - 1, 0))
    on_grid = (position < len(market_ts)) & (market_ts[clipped] == ts) if len(market_ts) else position < 0
    market_return = np.full(len(ts), np.nan)
    market_return[on_grid] = market_series[position[on_grid]]

    codes, names = pd.factorize(contract)
    stock = np.full((len(market_ts), len(names)), np.nan)
    stock[position[on_grid], codes[on_grid]] = bar_return[on_grid]
    market = np.broadcast_to(market_series[:, None], stock.shape)
    n, sx, sy, sxy, sxx = _window_sums(market, stock, BETA_WINDOW_BARS)
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = sxy - sx * sy / n
        variance = sxx - sx * sx / n
        beta_matrix = covariance / variance
    beta_matrix[(n < BETA_MIN_OBSERVATIONS) | ~(variance > 0)] = np.nan

    beta = np.full(len(ts), np.nan)
    observations = np.zeros(len(ts), dtype=np.int64)
    beta[on_grid] = beta_matrix[position[on_grid], codes[on_grid]]
    observations[on_grid] = n[position[on_grid], codes[on_grid]].astype(np.int64)

    vix_close = (
        vix.drop_duplicates("timestamp", keep="last")
        .set_index("timestamp")["close"]
        .reindex(pd.DatetimeIndex(timestamps))
    ).to_numpy(dtype=np.float64)
    buy_threshold = BASE_THRESHOLD * np.clip(vix_close / VIX_REFERENCE, *VIX_FACTOR_BOUNDS)
    excess = bar_return - beta * market_return
    signal = np.select([excess > buy_threshold, excess < -buy_threshold], ["BUY", "SELL"], "HOLD")

    return pd.DataFrame(
        {
            "contract": contract,
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
            "signal": signal.astype(object),
        },
        columns=layout.RESULT_COLUMNS,
    )


def analyze_partition(storage, contract: str, timestamp) -> pd.DataFrame:
    """The result row of one (contract, timestamp), computed from the slice of input it needs."""
    from trading_lib.inputs import normalise_bars

    contract = validate_symbol(contract)
    ts = layout.parse_partition_timestamp(timestamp)
    holdings = storage.read_parquet(
        layout.HOLDINGS_KEY, filters=[("contract", "==", contract), ("timestamp", "<=", ts)]
    )
    if holdings.empty or not (layout.to_exchange_time(holdings["timestamp"]) == ts).any():
        raise PartitionNotFoundError(
            f"no bar for contract {contract!r} at timestamp {ts.isoformat()} in the input"
        )
    spx = storage.read_parquet(layout.SPX_KEY, filters=[("timestamp", "<=", ts)])
    vix = storage.read_parquet(layout.VIX_KEY, filters=[("timestamp", "==", ts)])
    frames = (
        normalise_bars(holdings, layout.HOLDINGS_COLUMNS, layout.HOLDINGS_KEY),
        normalise_bars(spx, layout.BAR_COLUMNS, layout.SPX_KEY),
        normalise_bars(vix, layout.BAR_COLUMNS, layout.VIX_KEY),
    )
    result = compute_signals(*frames)
    row = result[result["timestamp"] == ts]
    return row.tail(1).reset_index(drop=True)
