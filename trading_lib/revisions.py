"""Which partitions a revised bar invalidates, so that revisions reach the results.

A partition (contract C, bar t) is computed from C's, ^GSPC's and ^VIX's bars at or before t
(analytics.partition_row over BarStore.lookback): nothing after t can change it. A revised bar
changes the result of exactly these partitions:

- a bar of contract C at s, whose next bar of C is n: the return at s and the return at n change
  (n's previous close is s), so (C, s), (C, n) and every bar of C whose beta window (the last
  BETA_WINDOW_BARS ^GSPC rows at or before it) holds row(s) or row(n): the bars of C from s up to
  ^GSPC row row(n) + BETA_WINDOW_BARS - 1;
- a ^GSPC bar at row m: the market returns at rows m and m + 1 change, so every contract's bars
  from ^GSPC row m up to row m + BETA_WINDOW_BARS;
- a ^VIX bar at t: every contract's bar at t (a partition reads the VIX value at its own bar only).

The bar BEFORE a revised bar keeps its result: its trade outcome (the next bar's return) is not
part of it; the aggregation computes outcomes from the bar store when it runs, so it sees the
revised close without any partition being analysed again.

Pure and vectorized (searchsorted over the bar grid; no loop over bars). docs/history.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.analytics import BETA_WINDOW_BARS
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX

PARTITION_COLUMNS = ["contract", "timestamp"]


def _micros(timestamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Instants as int64 microseconds since the epoch (UTC): one scale for every comparison."""
    values = pd.DatetimeIndex(layout.to_exchange_time(pd.Series(timestamps)))
    return values.as_unit("us").asi8


def _positive(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0)


def dependent_partitions(revised: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """The partitions (contract, timestamp) whose result depends on the ``revised`` bars.

    ``revised``: (symbol, timestamp) of the bars whose values changed. ``bars``: (symbol,
    timestamp, close) of the stored bars (after the revision) of the stocks and ^GSPC, from the
    bar before the first revised one on, reaching BETA_WINDOW_BARS + 1 ^GSPC bars past the last
    one (and one more bar of each revised contract): every partition is one of these stock bars.

    A return enters a beta window only where it is a number (both closes present, ^GSPC's too):
    a return that is NaN after the revision was NaN before it (the store never replaces a number
    with NaN), so it changes no window. Returns the dependent partitions sorted by contract and
    timestamp, each once.
    """
    empty = pd.DataFrame(
        {
            "contract": pd.Series(dtype=object),
            "timestamp": pd.Series(dtype=f"datetime64[us, {layout.EXCHANGE_TZ}]"),
        }
    )
    indices = (MARKET_INDEX, VOLATILITY_INDEX)
    stocks = bars.loc[~bars["symbol"].isin(indices)].drop_duplicates(["symbol", "timestamp"], keep="last")
    if revised.empty or stocks.empty:
        return empty
    market = bars.loc[bars["symbol"] == MARKET_INDEX]
    market_ts = _micros(market["timestamp"])
    order = np.argsort(market_ts, kind="stable")
    market_ts, market_close = market_ts[order], market["close"].to_numpy(dtype=np.float64)[order]
    market_valid = np.zeros(len(market_ts), dtype=bool)  # the market return at each row is a number
    market_valid[1:] = _positive(market_close[1:]) & _positive(market_close[:-1])

    codes, names = pd.factorize(stocks["symbol"], sort=True)
    times = _micros(stocks["timestamp"])
    close = stocks["close"].to_numpy(dtype=np.float64)
    order = np.lexsort((times, codes))
    codes, times, close = codes[order], times[order], close[order]
    count = len(times)
    same_as_previous = np.zeros(count, dtype=bool)
    same_as_previous[1:] = codes[1:] == codes[:-1]
    stock_valid = same_as_previous & _positive(close)
    stock_valid[1:] &= _positive(close[:-1])
    # Each stock bar's ^GSPC row (the last ^GSPC bar at or before it: where its beta window ends),
    # and whether its return is a pair of the beta regression (on the ^GSPC grid, both returns numbers).
    row = np.searchsorted(market_ts, times, side="right") - 1
    on_grid = (row >= 0) & (market_ts[np.maximum(row, 0)] == times) if len(market_ts) else row >= 0
    pair = on_grid & stock_valid & market_valid[np.maximum(row, 0)] if len(market_ts) else on_grid

    # Keys (contract, time) as one sorted int64 (time offset + contract x span): one contract's
    # bars form one run, and an interval of one contract never reaches into the next.
    base = times.min()
    span = np.int64(max(times.max(), market_ts.max() if len(market_ts) else 0) - base + 2)
    key = (times - base) + codes.astype(np.int64) * span
    direct = np.zeros(count, dtype=bool)
    sources = np.zeros(count, dtype=bool)  # pairs whose value changed: their windows change

    stock_revised = revised.loc[~revised["symbol"].isin(indices)]
    if len(stock_revised):
        r_codes = pd.Index(names).get_indexer(stock_revised["symbol"])
        r_times = _micros(stock_revised["timestamp"])
        r_key = ((r_times - base) + r_codes.astype(np.int64) * span)[r_codes >= 0]
        at = np.searchsorted(key, r_key)
        inside = at < count
        at = at[inside][key[at[inside]] == r_key[inside]]
        # The revised bar (its close, its return) and the contract's next bar (its return, when
        # that is a number: a next bar with no close has none either way).
        following = at + 1
        following = following[following < count]
        following = following[same_as_previous[following] & stock_valid[following]]
        direct[at] = True
        direct[following] = True
        sources[at] |= pair[at]
        sources[following] |= pair[following]

    market_revised = _micros(revised.loc[revised["symbol"] == MARKET_INDEX, "timestamp"])
    if len(market_revised) and len(market_ts):
        m = np.searchsorted(market_ts, market_revised, side="right") - 1
        m = m[(m >= 0) & (market_ts[np.maximum(m, 0)] == market_revised)]
        changed_rows = np.unique(np.concatenate([m, m + 1]))
        # Every contract's bar on those rows: its market return, and its pair.
        touched = on_grid & np.isin(row, changed_rows) & market_valid[np.maximum(row, 0)]
        direct |= touched
        sources |= touched & pair

    vix_revised = _micros(revised.loc[revised["symbol"] == VOLATILITY_INDEX, "timestamp"])
    if len(vix_revised):
        direct |= np.isin(times, vix_revised)

    hit = direct.copy()
    if sources.any():
        # A pair at row r is in the beta windows of rows r .. r + BETA_WINDOW_BARS - 1: the
        # contract's bars from that ^GSPC bar to the one BETA_WINDOW_BARS - 1 rows later (the
        # bars before the following ^GSPC bar, off-grid ones included).
        last = row[sources] + BETA_WINDOW_BARS
        ends = np.where(
            last < len(market_ts), market_ts[np.minimum(last, len(market_ts) - 1)] - base, span - 1
        )
        end_key = np.minimum(ends, span - 1) + codes[sources].astype(np.int64) * span
        hit |= _covered(key, key[sources], end_key)

    out = pd.DataFrame(
        {
            "contract": pd.array(names, dtype=object).take(codes[hit]),
            "timestamp": pd.DatetimeIndex(times[hit].astype("M8[us]"))
            .tz_localize("UTC")
            .tz_convert(layout.EXCHANGE_TZ),
        }
    )
    return out.reset_index(drop=True)


def _covered(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each of the sorted ``points`` lies in at least one interval [start, end): the number
    of intervals begun at or before it minus the number ended at or before it."""
    begun = np.searchsorted(np.sort(starts), points, side="right")
    ended = np.searchsorted(np.sort(ends), points, side="right")
    return begun > ended
