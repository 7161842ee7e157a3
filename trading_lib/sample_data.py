"""Input data for demos and tests: a seeded one-factor market, and the real 2022 bars.

:func:`generate_sample_data` puts bars on the NYSE hourly grid (bar starts 09:30 ... 15:30
America/New_York, as Yahoo labels them; early closes respected) from the exchange calendar, with
warm-up history before the analysis window so every window bar has a defined beta.
Prices: market log-returns ~ N(0.005 %, 0.2 %) per hour; stock log-return = beta_i x market +
N(0, 0.3 %), betas spread evenly over [0.5, 1.8]; VIX an AR(1) in logs (phi 0.97) around 18 that
moves against the index. Each stock's log-returns are winsorized at RETURN_CLIP_SIGMA robust
sigma (median +- 1.4826 x MAD, which clipping leaves unchanged) so that clean data never crosses
the validator's 3-sigma outlier rule by chance: the outliers it shows are the injected ones
(:class:`Anomalies`).

:func:`load_real_bars` reads the real hourly bars in input/yahoo-1h-2022/ (see its README).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trading_lib import layout, sessions
from trading_lib.inputs import AnalysisWindow, InputData, InputDataError, normalise_bars
from trading_lib.sessions import BARS_PER_SESSION, WARMUP_SESSIONS, bar_ends
from trading_lib.symbols import (
    DEFAULT_SYMBOLS,
    MARKET_INDEX,
    VOLATILITY_INDEX,
    SymbolError,
    validate_symbol,
    validate_symbols,
)
from trading_lib.validation import MAD_TO_SIGMA

DEFAULT_CONTRACTS = DEFAULT_SYMBOLS
MORE_CONTRACTS = (
    "XOM", "JNJ", "PG", "MA", "HD", "CVX", "MRK", "ABBV", "KO", "PEP",
    "AVGO", "COST", "WMT", "MCD", "CSCO", "ACN", "ABT", "DHR", "LIN", "TMO",
)  # fmt: skip
SYNTHETIC_PREFIX = "SYN"  # SYN000, SYN001, ... once the real names run out
MARKET_LEVEL = 4700.0
MARKET_DRIFT, MARKET_VOL = 0.00005, 0.002
IDIOSYNCRATIC_VOL = 0.003
BETA_RANGE = (0.5, 1.8)
STOCK_PRICE_RANGE = (40.0, 400.0)
VOLUME_RANGE = (200_000, 5_000_000)
VIX_MEAN, VIX_PHI, VIX_MARKET_LOADING, VIX_VOL = 18.0, 0.97, -4.0, 0.01
RETURN_CLIP_SIGMA = 2.5  # below validation.OUTLIER_SIGMA, with room for the change NaN runs make
OUTLIER_JUMP_SIGMA = 9.0  # an injected spike, in robust sigmas of the contract's log-returns
NAN_RUN_BARS = 3
ANOMALY_SPACING = 4  # rows between drawn anomaly places: a NaN run or a spike and its reversal never overlap


@dataclass(frozen=True)
class Anomalies:
    """How many defects of each kind to inject, at window bars drawn from the seed."""

    nan_runs: int = 0  # NAN_RUN_BARS consecutive NaN closes in one contract
    outliers: int = 0  # one bar's close moved OUTLIER_JUMP_SIGMA sigma away (and back on the next bar)
    missing_bars: int = 0  # one bar of one contract dropped
    duplicated_bars: int = 0  # one (contract, timestamp) row repeated
    missing_market_bars: int = 0  # at one stock-bar timestamp, drop ^GSPC and ^VIX, then ^GSPC, then ^VIX


def contract_names(count: int) -> list[str]:
    """``count`` tickers: the ten defaults, then more real ones, then SYN000, SYN001, ..."""
    names = list(DEFAULT_CONTRACTS + MORE_CONTRACTS)
    names += [f"{SYNTHETIC_PREFIX}{i:03d}" for i in range(max(0, count - len(names)))]
    return validate_symbols(names[:count])


def _winsorize(log_returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip each column at its median +- RETURN_CLIP_SIGMA robust sigma (the validator's yardstick);
    returns the clipped columns and that sigma, which clipping does not change."""
    median = np.median(log_returns, axis=0)
    sigma = np.median(np.abs(log_returns - median), axis=0) * MAD_TO_SIGMA
    return np.clip(log_returns, median - RETURN_CLIP_SIGMA * sigma, median + RETURN_CLIP_SIGMA * sigma), sigma


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
        ("seed", seed, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InputDataError(f"{name}={value!r} must be an integer >= {minimum}")
    contracts = contract_names(num_contracts)
    bars = warmup_bars + window_bars
    try:
        grid = sessions.bar_starts_from(start, bars)
    except (ValueError, TypeError) as exc:  # exchange_calendars' date errors are ValueErrors
        raise InputDataError(f"start={start!r}: no NYSE sessions for {bars} bars from it: {exc}") from None
    rng = np.random.default_rng(seed)

    market_log = rng.normal(MARKET_DRIFT, MARKET_VOL, bars)
    market_log[0] = 0.0
    spx_close = MARKET_LEVEL * np.exp(np.cumsum(market_log))
    betas = rng.permutation(np.linspace(*BETA_RANGE, num_contracts))
    stock_log = betas * market_log[:, None] + rng.normal(0.0, IDIOSYNCRATIC_VOL, (bars, num_contracts))
    stock_log[0] = 0.0
    stock_log[1:], sigma = _winsorize(stock_log[1:])
    stock_close = rng.uniform(*STOCK_PRICE_RANGE, num_contracts) * np.exp(np.cumsum(stock_log, axis=0))
    # log VIX deviation y_t = phi * y_{t-1} + shock_t (y_0 = shock_0), as an exponentially weighted
    # mean of shock / (1 - phi) whose first input is shock_0 itself.
    shocks = VIX_MARKET_LOADING * market_log + rng.normal(0.0, VIX_VOL, bars)
    scaled = np.r_[shocks[:1], shocks[1:] / (1 - VIX_PHI)]
    deviation = pd.Series(scaled).ewm(alpha=1 - VIX_PHI, adjust=False).mean().to_numpy()
    vix_close = VIX_MEAN * np.exp(deviation)

    stock_open, stock_high, stock_low = _ohlc(stock_close, rng)
    volume = rng.integers(*VOLUME_RANGE, stock_close.shape).astype(np.float64)
    contract_bars = pd.DataFrame(
        {  # one contract after the other: the (bars, contracts) arrays transposed
            "contract": np.repeat(np.array(contracts, dtype=object), bars),
            "timestamp": grid[np.tile(np.arange(bars), num_contracts)],
            "open": stock_open.T.ravel(),
            "high": stock_high.T.ravel(),
            "low": stock_low.T.ravel(),
            "close": stock_close.T.ravel(),
            "volume": volume.T.ravel(),
        }
    ).sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)  # InputData's order
    spx = _index_frame(grid, spx_close, rng)
    vix = _index_frame(grid, vix_close, rng)
    window = AnalysisWindow(grid[warmup_bars], bar_ends(pd.Series(grid[-1:])).iloc[0])
    if anomalies is not None:
        contract_bars, spx, vix = _inject(
            contract_bars, spx, vix, anomalies, window, pd.Series(sigma, index=contracts), seed
        )
    return InputData(bars=contract_bars, vix=vix, spx=spx, window=window)


def _inject(bars, spx, vix, anomalies: Anomalies, window: AnalysisWindow, sigma: pd.Series, seed: int):
    """Apply ``anomalies`` at window rows drawn (without repeats, ANOMALY_SPACING apart) from the seed."""
    rng = np.random.default_rng([seed, 1])
    counts = anomalies.nan_runs, anomalies.outliers, anomalies.missing_bars, anomalies.duplicated_bars
    if min(*counts, anomalies.missing_market_bars) < 0:
        raise InputDataError(f"anomalies={anomalies!r}: counts must be >= 0")
    # A place has NAN_RUN_BARS - 1 more window bars of its contract after it (a NaN run fits; a
    # spike is followed by the bar that reverts it).
    in_window = window.contains(bars["timestamp"]).to_numpy()
    contract = bars["contract"].to_numpy()
    rows = np.arange(len(bars))
    tail = rows + NAN_RUN_BARS - 1
    fits = in_window & (tail < len(rows))
    fits[fits] &= in_window[tail[fits]] & (contract[tail[fits]] == contract[fits])
    places = rows[fits & (rows % ANOMALY_SPACING == 0)]
    if sum(counts) > len(places):
        raise InputDataError(f"anomalies={anomalies!r}: room for {len(places)} anomalies in the window")
    drawn = np.split(rng.choice(places, size=sum(counts), replace=False), np.cumsum(counts)[:-1])
    nan_rows, spike_rows, drop_rows, dup_rows = drawn

    bars = bars.copy()
    close = bars.columns.get_loc("close")
    bars.iloc[(nan_rows[:, None] + np.arange(NAN_RUN_BARS)).ravel(), close] = np.nan
    jump = np.exp(rng.choice([-1.0, 1.0], len(spike_rows)) * OUTLIER_JUMP_SIGMA * sigma[contract[spike_rows]])
    spiked_close = bars["close"].to_numpy()[spike_rows] * jump.to_numpy()
    bars.iloc[spike_rows, close] = spiked_close
    for column, extreme in (("high", np.maximum), ("low", np.minimum)):  # keep the bar's OHLC consistent
        position = bars.columns.get_loc(column)
        bars.iloc[spike_rows, position] = extreme(bars[column].to_numpy()[spike_rows], spiked_close)
    duplicates = bars.iloc[dup_rows]
    bars = pd.concat([bars.drop(index=bars.index[drop_rows]), duplicates], ignore_index=True).sort_values(
        ["contract", "timestamp"], kind="stable", ignore_index=True
    )

    if anomalies.missing_market_bars:
        market_rows = np.flatnonzero(window.contains(spx["timestamp"]).to_numpy())
        if anomalies.missing_market_bars > len(market_rows):
            raise InputDataError(
                f"anomalies={anomalies!r}: only {len(market_rows)} market bars in the window"
            )
        gone = rng.choice(market_rows, size=anomalies.missing_market_bars, replace=False)
        # Event i drops both indices, then ^GSPC alone, then ^VIX alone, and so on.
        spx_gone, vix_gone = gone[np.arange(len(gone)) % 3 != 2], gone[np.arange(len(gone)) % 3 != 1]
        spx = spx.drop(index=spx.index[spx_gone]).reset_index(drop=True)
        vix = vix.drop(index=vix.index[vix_gone]).reset_index(drop=True)
    return bars, spx, vix


def load_real_bars(folder: str | Path, contracts: list[str] | None = None) -> InputData:
    """The real hourly bars of ``folder`` (<SYMBOL>_1h.csv files) as input data.

    Stocks: every CSV but ^GSPC and ^VIX (or only ``contracts``). The first WARMUP_SESSIONS
    sessions present are warm-up; the window is the rest, up to the end of the last bar.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"{folder}: no such folder of real bars")
    files = {path.name.removesuffix("_1h.csv"): path for path in sorted(folder.glob("*_1h.csv"))}
    for required in (MARKET_INDEX, VOLATILITY_INDEX):
        if required not in files:
            raise InputDataError(f"{folder}: missing {required}_1h.csv")
    stocks = [s for s in files if s not in (MARKET_INDEX, VOLATILITY_INDEX)]
    for symbol in stocks:
        try:
            validate_symbol(symbol)
        except SymbolError as exc:
            raise InputDataError(f"{files[symbol]}: the file name is not <SYMBOL>_1h.csv: {exc}") from None
    if contracts is not None:
        wanted = validate_symbols(list(contracts))
        unknown = sorted(set(wanted) - set(stocks))
        if unknown:
            raise InputDataError(
                f"{folder}: no bars for contract(s) {', '.join(unknown)} (no <SYMBOL>_1h.csv)"
            )
        stocks = wanted
    if not stocks:
        raise InputDataError(
            f"{folder}: no stock <SYMBOL>_1h.csv besides {MARKET_INDEX} and {VOLATILITY_INDEX}"
        )

    def read(symbol: str) -> pd.DataFrame:
        path = files[symbol]
        try:
            frame = pd.read_csv(path)
        except (
            ValueError,
            pd.errors.ParserError,
        ) as exc:  # EmptyDataError, UnicodeDecodeError are ValueErrors
            raise InputDataError(f"{path}: not a CSV of bars: {exc}") from None
        frame.columns = frame.columns.str.lower()
        try:
            frame["timestamp"] = pd.to_datetime(frame.pop("datetime"), utc=True)
        except KeyError:
            raise InputDataError(f"{path}: missing column Datetime") from None
        except (ValueError, TypeError) as exc:
            raise InputDataError(f"{path}: column Datetime is not ISO 8601 with an offset: {exc}") from None
        bars = normalise_bars(frame, layout.BAR_COLUMNS, str(path))
        if bars.empty:
            raise InputDataError(f"{path}: no bars")
        return bars

    bars = pd.concat([read(s).assign(contract=s) for s in stocks], ignore_index=True)
    spx, vix = read(MARKET_INDEX), read(VOLATILITY_INDEX)
    days = spx["timestamp"].dt.normalize().drop_duplicates().reset_index(drop=True)
    if len(days) <= WARMUP_SESSIONS:
        raise InputDataError(
            f"{files[MARKET_INDEX]}: {len(days)} sessions, need more than {WARMUP_SESSIONS} (warm-up)"
        )
    window_start = spx["timestamp"][spx["timestamp"] >= days[WARMUP_SESSIONS]].min()
    window = AnalysisWindow(window_start, bar_ends(spx["timestamp"].tail(1)).iloc[0])
    return InputData(bars=bars[layout.CONTRACT_BAR_COLUMNS], vix=vix, spx=spx, window=window)
