"""Input data for demos and tests: a seeded one-factor market, and the real 2022 bars.

:func:`generate_sample_data` puts bars on the NYSE hourly grid (bar starts 09:30 ... 15:30
America/New_York, as Yahoo labels them; early closes respected) from the exchange calendar, with
warm-up history before the analysis window so every window bar has a defined beta.
Prices: market log-returns ~ N(0.005 %, 0.2 %) per hour; stock log-return = beta_i × market +
N(0, 0.3 %), betas spread evenly over [0.5, 1.8]; VIX an AR(1) in logs (phi 0.97) around 18 that
moves against the index. Defects can be injected (:class:`Anomalies`) for the validation tests.

:func:`load_real_bars` reads the real hourly bars in input/yahoo-1h-2022/ (see its README).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.inputs import AnalysisWindow, InputData, InputDataError, normalise_bars
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX, validate_symbol

DEFAULT_CONTRACTS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH")
MORE_CONTRACTS = (
    "XOM", "JNJ", "PG", "MA", "HD", "CVX", "MRK", "ABBV", "KO", "PEP",
    "AVGO", "COST", "WMT", "MCD", "CSCO", "ACN", "ABT", "DHR", "LIN", "TMO",
)  # fmt: skip
EXCHANGE = "XNYS"
BARS_PER_SESSION = 7
WARMUP_SESSIONS = 11  # 77 bars >= the 70-bar beta window + the return before it
MARKET_LEVEL = 4700.0
MARKET_DRIFT, MARKET_VOL = 0.00005, 0.002
IDIOSYNCRATIC_VOL = 0.003
BETA_RANGE = (0.5, 1.8)
VIX_MEAN, VIX_PHI, VIX_MARKET_LOADING, VIX_VOL = 18.0, 0.97, -4.0, 0.01
NOISE_TRUNCATION = 1.8


def _normal(rng: np.random.Generator, mean: float, std: float, size) -> np.ndarray:
    return mean + std * np.clip(rng.standard_normal(size), -NOISE_TRUNCATION, NOISE_TRUNCATION)


@dataclass(frozen=True)
class Anomalies:
    """How many defects of each kind to inject, at places drawn from the seed (inside the window)."""

    nan_runs: int = 0  # three consecutive NaN closes in one contract
    outliers: int = 0  # a one-bar spike of +10 % in one contract's close (~30 sigma)
    missing_bars: int = 0  # one bar of one contract dropped
    duplicated_bars: int = 0  # one (contract, timestamp) row repeated
    missing_market_bars: int = 0  # one ^GSPC and one ^VIX row dropped at a stock-bar timestamp


def contract_names(count: int) -> list[str]:
    """``count`` tickers: the ten defaults, then more real ones, then SYN000, SYN001, ..."""
    names = list(DEFAULT_CONTRACTS + MORE_CONTRACTS)
    names += [f"SYN{i:03d}" for i in range(max(0, count - len(names)))]
    return [validate_symbol(name) for name in names[:count]]


def exchange_bar_starts(first_day: str, count: int) -> pd.DatetimeIndex:
    """The first ``count`` hourly bar starts of NYSE sessions from ``first_day`` on."""
    import exchange_calendars as xcals

    calendar = xcals.get_calendar(EXCHANGE)
    first = calendar.date_to_session(pd.Timestamp(first_day), direction="next")
    sessions_needed = count // 3 + 10  # every session has >= 3 bars (early closes at 13:00)
    sessions = calendar.sessions_window(first, sessions_needed)
    opens = calendar.opens.loc[sessions].to_numpy(dtype="datetime64[ns]")  # UTC
    closes = calendar.closes.loc[sessions].to_numpy(dtype="datetime64[ns]")
    hours = np.arange(BARS_PER_SESSION) * np.timedelta64(1, "h")
    starts = opens[:, None] + hours[None, :]
    starts = starts[starts < closes[:, None]]
    grid = (
        pd.DatetimeIndex(starts)
        .tz_localize("UTC")
        .tz_convert(layout.EXCHANGE_TZ)
        .as_unit(layout.TIMESTAMP_UNIT)
    )
    return grid[:count]


def _ohlc(close: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open near the previous close; high/low beyond open and close (so low <= open, close <= high)."""
    previous = np.concatenate([close[:1], close[:-1]])
    open_ = previous * np.exp(rng.normal(0.0, 0.0005, close.shape))
    wick = np.abs(rng.normal(0.0, 0.001, (2, *close.shape)))
    return open_, np.maximum(open_, close) * (1.0 + wick[0]), np.minimum(open_, close) * (1.0 - wick[1])


def _index_frame(grid: pd.DatetimeIndex, close: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    open_, high, low = _ohlc(close, rng)
    return pd.DataFrame(
        {"timestamp": grid, "open": open_, "high": high, "low": low, "close": close, "volume": 0.0}
    )


def generate_sample_data(
    num_contracts: int = 10,
    window_bars: int = 24,
    warmup_bars: int = WARMUP_SESSIONS * BARS_PER_SESSION,
    start: str = "2024-01-02",
    seed: int = 42,
    anomalies: Anomalies | None = None,
) -> InputData:
    """Seeded, deterministic sample data; the analysis window is the last ``window_bars`` bars."""
    for name, value, minimum in (
        ("num_contracts", num_contracts, 1),
        ("window_bars", window_bars, 1),
        ("warmup_bars", warmup_bars, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InputDataError(f"{name}={value!r} must be an integer >= {minimum}")
    contracts = contract_names(num_contracts)
    bars = warmup_bars + window_bars
    grid = exchange_bar_starts(start, bars)
    rng = np.random.default_rng(seed)

    market_log = _normal(rng, MARKET_DRIFT, MARKET_VOL, bars)
    market_log[0] = 0.0
    spx_close = MARKET_LEVEL * np.exp(np.cumsum(market_log))
    betas = rng.permutation(np.linspace(*BETA_RANGE, num_contracts))
    stock_log = betas * market_log[:, None] + _normal(rng, 0.0, IDIOSYNCRATIC_VOL, (bars, num_contracts))
    stock_log[0] = 0.0
    stock_close = rng.uniform(40.0, 400.0, num_contracts) * np.exp(np.cumsum(stock_log, axis=0))
    # AR(1) of log VIX as an exponentially weighted mean: y_t = phi*y_{t-1} + (1-phi)*(x_t/(1-phi)).
    shocks = VIX_MARKET_LOADING * market_log + _normal(rng, 0.0, VIX_VOL, bars)
    deviation = pd.Series(shocks / (1 - VIX_PHI)).ewm(alpha=1 - VIX_PHI, adjust=False).mean().to_numpy()
    vix_close = VIX_MEAN * np.exp(deviation)

    stock_open, stock_high, stock_low = _ohlc(stock_close, rng)
    volume = rng.integers(200_000, 5_000_000, stock_close.shape).astype(np.float64)
    order = np.tile(np.arange(bars), num_contracts)  # contract-major rows
    holdings = pd.DataFrame(
        {
            "contract": np.repeat(np.array(contracts, dtype=object), bars),
            "timestamp": grid[order],
            "open": stock_open.T.ravel(),
            "high": stock_high.T.ravel(),
            "low": stock_low.T.ravel(),
            "close": stock_close.T.ravel(),
            "volume": volume.T.ravel(),
        }
    )
    spx = _index_frame(grid, spx_close, rng)
    vix = _index_frame(grid, vix_close, rng)
    window = AnalysisWindow(grid[warmup_bars], grid[-1] + pd.Timedelta(hours=1))
    if anomalies is not None:
        holdings, spx, vix = _inject(holdings, spx, vix, anomalies, window, seed)
    return InputData(holdings=holdings, vix=vix, spx=spx, window=window)


def _inject(holdings, spx, vix, anomalies: Anomalies, window: AnalysisWindow, seed: int):
    """Apply ``anomalies`` at rows drawn (without repeats) from the window's bars."""
    rng = np.random.default_rng(seed + 1)
    in_window = np.flatnonzero(window.contains(holdings["timestamp"]).to_numpy())
    wanted = anomalies.nan_runs + anomalies.outliers + anomalies.missing_bars + anomalies.duplicated_bars
    if wanted > len(in_window) // 4:
        raise InputDataError(f"too many anomalies ({wanted}) for {len(in_window)} window bars")
    # Candidates have two more window bars of the same contract after them (room for a NaN run,
    # and a spike is followed by the bar that reverts it).
    contract = holdings["contract"].to_numpy()
    room = in_window[np.isin(in_window + 2, in_window)]
    room = room[contract[room + 2] == contract[room]]
    rows = rng.choice(room, size=wanted, replace=False)
    nan_rows, rows = rows[: anomalies.nan_runs], rows[anomalies.nan_runs :]
    spike_rows, rows = rows[: anomalies.outliers], rows[anomalies.outliers :]
    drop_rows, dup_rows = rows[: anomalies.missing_bars], rows[anomalies.missing_bars :]

    holdings = holdings.copy()
    close = holdings.columns.get_loc("close")
    holdings.iloc[(nan_rows[:, None] + np.arange(3)).ravel(), close] = np.nan
    holdings.iloc[spike_rows, close] = holdings.iloc[spike_rows, close] * 1.10
    duplicates = holdings.iloc[dup_rows]
    holdings = pd.concat([holdings.drop(index=holdings.index[drop_rows]), duplicates], ignore_index=True)

    if anomalies.missing_market_bars:
        market_window = np.flatnonzero(window.contains(spx["timestamp"]).to_numpy())
        gone = rng.choice(
            market_window, size=min(anomalies.missing_market_bars, len(market_window)), replace=False
        )
        spx = spx.drop(index=spx.index[gone]).reset_index(drop=True)
        vix = vix.drop(index=vix.index[gone]).reset_index(drop=True)
    return holdings, spx, vix


def load_real_bars(folder: str | Path, contracts: list[str] | None = None) -> InputData:
    """The real hourly bars of ``folder`` (<SYMBOL>_1h.csv files) as input data.

    Stocks: every CSV but ^GSPC and ^VIX (or only ``contracts``). The first WARMUP_SESSIONS
    sessions present are warm-up; the window is the rest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"{folder}: no such folder of real bars")
    files = {path.name.removesuffix("_1h.csv"): path for path in sorted(folder.glob("*_1h.csv"))}
    for required in (MARKET_INDEX, VOLATILITY_INDEX):
        if required not in files:
            raise InputDataError(f"{folder}: missing {required}_1h.csv")
    stocks = [s for s in files if s not in (MARKET_INDEX, VOLATILITY_INDEX)]
    if contracts is not None:
        unknown = sorted(set(map(validate_symbol, contracts)) - set(stocks))
        if unknown:
            raise InputDataError(f"{folder}: no bars for contract(s) {', '.join(unknown)}")
        stocks = [validate_symbol(c) for c in contracts]

    def read(symbol: str) -> pd.DataFrame:
        path = files[symbol]
        try:
            frame = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputDataError(f"{path}: not a CSV of bars: {exc}") from None
        frame = frame.rename(columns={c: c.lower() for c in frame.columns}).rename(
            columns={"datetime": "timestamp"}
        )
        try:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        except (KeyError, ValueError) as exc:
            raise InputDataError(f"{path}: bad or missing Datetime column: {exc}") from None
        return normalise_bars(frame, layout.BAR_COLUMNS, str(path))

    holdings = pd.concat([read(s).assign(contract=s) for s in stocks], ignore_index=True)
    spx, vix = read(MARKET_INDEX), read(VOLATILITY_INDEX)
    sessions = spx["timestamp"].dt.normalize().drop_duplicates().reset_index(drop=True)
    if len(sessions) <= WARMUP_SESSIONS:
        raise InputDataError(
            f"{folder}: {len(sessions)} sessions, need more than {WARMUP_SESSIONS} (warm-up)"
        )
    window_start = spx.loc[spx["timestamp"].dt.normalize() == sessions[WARMUP_SESSIONS], "timestamp"].min()
    window = AnalysisWindow(window_start, spx["timestamp"].max() + pd.Timedelta(hours=1))
    return InputData(holdings=holdings[layout.HOLDINGS_COLUMNS], vix=vix, spx=spx, window=window)
