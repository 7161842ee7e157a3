"""Input frames for the analytics and portfolio tests, built here rather than by
trading_lib.sample_data, so that those tests check the kernel against data they control:
a seeded one-factor universe, and the real 2022 bars read straight from their CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.inputs import AnalysisWindow, InputData

REAL_BARS = Path(__file__).resolve().parents[2] / "input" / "yahoo-1h-2022"
REAL_STOCKS = ("AAPL", "FB", "GOOG", "NFLX", "TSLA")


def bar_grid(sessions: int, start: str = "2024-01-02") -> pd.DatetimeIndex:
    """Hourly bar starts 09:30 .. 15:30 New York time on ``sessions`` weekdays."""
    days = pd.bdate_range(start, periods=sessions)
    starts = [
        day + pd.Timedelta(hours=9, minutes=30) + pd.Timedelta(hours=h) for day in days for h in range(7)
    ]
    return pd.DatetimeIndex(starts).tz_localize(layout.EXCHANGE_TZ).as_unit(layout.TIMESTAMP_UNIT)


def bars(timestamps, close) -> pd.DataFrame:
    """A bar frame (layout.BAR_COLUMNS) whose open/high/low equal the close."""
    close = np.asarray(close, dtype=np.float64)
    return pd.DataFrame(
        {"timestamp": timestamps, "open": close, "high": close, "low": close, "close": close, "volume": 0.0}
    )


def whole_range(*frames: pd.DataFrame) -> AnalysisWindow:
    start = min(frame["timestamp"].min() for frame in frames)
    end = max(frame["timestamp"].max() for frame in frames)
    return AnalysisWindow(start, end + pd.Timedelta(hours=1))


def one_factor(
    contracts=("AAA", "BBB", "CCC"), sessions: int = 15, seed: int = 0, betas=None
) -> tuple[InputData, dict[str, float]]:
    """Returns r = beta * m + noise on a regular grid; VIX wanders between ~10 and ~45.
    Returns the data (window = everything) and the true betas."""
    rng = np.random.default_rng(seed)
    grid = bar_grid(sessions)
    market = rng.normal(0.0, 0.004, len(grid))
    true_betas = dict(zip(contracts, betas or rng.uniform(0.4, 1.8, len(contracts)), strict=True))
    contract_bars = pd.concat(
        [
            bars(grid, 100.0 * np.cumprod(1.0 + beta * market + rng.normal(0.0, 0.003, len(grid)))).assign(
                contract=name
            )
            for name, beta in true_betas.items()
        ],
        ignore_index=True,
    )[layout.CONTRACT_BAR_COLUMNS]
    spx = bars(grid, 4000.0 * np.cumprod(1.0 + market))
    vix = bars(grid, np.clip(20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, len(grid)))), 10.0, 45.0))
    return InputData(contract_bars, vix, spx, whole_range(contract_bars, spx)), true_betas


def with_gaps(data: InputData) -> InputData:
    """The same data with the defects real feeds have: a missing stock bar, a NaN close, a
    stock bar with no ^GSPC bar, a bar with no VIX, and a contract listed late."""
    bars, spx, vix = data.bars.copy(), data.spx.copy(), data.vix.copy()
    first = bars["contract"].iloc[0]
    rows = bars.index[bars["contract"] == first]
    bars = bars.drop(index=rows[40])  # missing bar: the next return spans the gap
    bars.loc[rows[55], "close"] = np.nan
    last = bars["contract"].iloc[-1]
    bars = bars.drop(index=bars.index[bars["contract"] == last][:30])  # listed late
    spx = spx.drop(index=spx.index[60])
    vix = vix.drop(index=vix.index[70])
    return InputData(
        bars.reset_index(drop=True), vix.reset_index(drop=True), spx.reset_index(drop=True), data.window
    )


def _read_csv(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(REAL_BARS / f"{symbol}_1h.csv")
    timestamps = pd.to_datetime(frame["Datetime"], utc=True).dt.tz_convert(layout.EXCHANGE_TZ)
    return pd.DataFrame(
        {
            "timestamp": timestamps.dt.as_unit(layout.TIMESTAMP_UNIT),
            **{
                column.lower(): frame[column].astype("float64")
                for column in ("Open", "High", "Low", "Close", "Volume")
            },
        }
    )


def real() -> InputData:
    """The real hourly bars of 2022-03-14 .. 2022-04-18 (5 stocks, ^GSPC, ^VIX)."""
    bars = pd.concat([_read_csv(s).assign(contract=s) for s in REAL_STOCKS], ignore_index=True)
    bars = bars[layout.CONTRACT_BAR_COLUMNS].sort_values(["contract", "timestamp"], ignore_index=True)
    spx, vix = _read_csv("^GSPC"), _read_csv("^VIX")
    return InputData(bars, vix, spx, whole_range(bars, spx))
