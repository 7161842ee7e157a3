"""Layer 1: hourly bars from Yahoo Finance (yfinance) into the three input files.

- The analysis window is [start, end) in exchange dates; bars are fetched from `warmup_sessions`
  NYSE sessions earlier so every window bar has a beta (70-bar trailing window).
- Yahoo serves 1h bars for the last 730 days only: an older fetch is refused before any request.
- Tickers are fetched in parallel, each with retries and exponential backoff (with jitter) on
  rate limits and network errors, none on permanent errors (unknown or delisted symbol, range
  refused, no data). Failures are detected per ticker and reported; ^GSPC or ^VIX missing fails
  the ingestion and writes no input file.
- ^VIX 1h bars come stamped on the hour (Cboe, America/Chicago) while stock bars start at :30 New
  York time: each stock bar [s, e) (e = min(s + 1 h, session close)) gets the close of the last
  VIX bar that ENDED at or before e, so no bar sees a later VIX value (as-of backward on end times).
Output: the same three input files as the sample-data generator (inputs.write_inputs), and
output/reports/ingestion.json.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from trading_lib import layout
from trading_lib.inputs import AnalysisWindow, InputData, write_inputs
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX, validate_symbols

YAHOO_INTRADAY_DAYS = 730
DEFAULT_SESSIONS = 5  # a run without dates ingests the last five complete sessions
WARMUP_SESSIONS = 11
EXCHANGE = "XNYS"
INGESTION_REPORT = "ingestion"


class IngestionError(RuntimeError):
    """Ingestion could not produce usable input; the message names the tickers and why."""


class RangeNotAvailableError(IngestionError):
    """The requested range is older than Yahoo's 730-day limit for 1h bars (nothing was requested)."""


@dataclass
class TickerResult:
    symbol: str
    rows: int = 0
    first_bar: str | None = None
    last_bar: str | None = None
    attempts: int = 0
    error: str | None = None
    status: str = "ok"


@dataclass
class IngestionReport:
    start: str
    end: str
    fetch_start: str
    tickers: list[TickerResult] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _calendar():
    import exchange_calendars as xcals

    return xcals.get_calendar(EXCHANGE)


def _utc(now) -> pd.Timestamp:
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")


def default_window(
    now: pd.Timestamp | None = None, sessions: int = DEFAULT_SESSIONS
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The last ``sessions`` complete NYSE sessions before ``now``: (first session, day after the last)."""
    now = _utc(now)
    calendar = _calendar()
    closed = calendar.closes[calendar.closes <= now]
    last = closed.index[-1]
    first = calendar.sessions_window(last, -sessions)[0]
    return pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1)


# Exception class names (anywhere in the MRO, so requests', urllib3's and curl_cffi's variants all
# match) that mean "try again later": the network failed, or the answer was not Yahoo's JSON at all
# (an edge/gateway error page, which is what a 5xx looks like from the chart endpoint).
TRANSIENT_ERRORS = frozenset(
    {
        "ConnectionError",
        "Timeout",
        "TimeoutError",
        "ChunkedEncodingError",
        "JSONDecodeError",
        "YFRateLimitError",
    }
)


def _is_transient(exc: BaseException) -> bool:
    if "CURRENTLY DOWN" in str(exc):  # yfinance's YFDataException for Yahoo's maintenance page
        return True
    return any(cls.__name__ in TRANSIENT_ERRORS for cls in type(exc).__mro__)


def _forget_memoized_answers() -> None:
    """yfinance memoizes answers for past ranges per URL in-process, failed ones (an HTML 5xx page)
    included: without this a retry would get the same failure back without asking Yahoo again."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()


def _fetch(
    symbol: str, start: str, end: str, session, max_attempts: int, backoff: float
) -> tuple[pd.DataFrame, TickerResult]:
    import yfinance as yf

    result = TickerResult(symbol)
    for attempt in range(1, max_attempts + 1):
        result.attempts = attempt
        try:
            frame = yf.Ticker(symbol, session=session).history(
                interval="1h", start=start, end=end, prepost=False, auto_adjust=True, actions=False
            )
        except Exception as exc:  # noqa: BLE001 - classified below, reported per ticker
            result.error = f"{type(exc).__name__}: {exc}"
            if _is_transient(exc) and attempt < max_attempts:
                _forget_memoized_answers()
                time.sleep(backoff * 2 ** (attempt - 1) * (1 + random.random() / 4))
                continue
            result.status = "failed"
            return pd.DataFrame(columns=layout.BAR_COLUMNS), result
        if frame.empty:
            result.error, result.status = "NoData: Yahoo returned no bars for the range", "failed"
            return pd.DataFrame(columns=layout.BAR_COLUMNS), result
        result.error = None
        frame = frame.rename(columns=str.lower).rename_axis("timestamp").reset_index()
        frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
        result.rows = len(frame)
        result.first_bar = frame["timestamp"].iloc[0].isoformat()
        result.last_bar = frame["timestamp"].iloc[-1].isoformat()
        return frame[layout.BAR_COLUMNS], result
    raise AssertionError("unreachable")  # the loop returns on its last attempt


def bar_ends(starts: pd.Series) -> pd.Series:
    """End of each 1h bar: one hour after its start, or the session close if that comes first
    (the 15:30 bar and early closes). A bar on a day with no NYSE session lasts one hour."""
    starts = pd.Series(layout.to_exchange_time(starts)).reset_index(drop=True)
    days = pd.DatetimeIndex(starts.dt.tz_localize(None).dt.normalize())
    closes = pd.Series(_calendar().closes.reindex(days).to_numpy()).dt.tz_convert(layout.EXCHANGE_TZ)
    hour_later = starts + pd.Timedelta(hours=1)
    return hour_later.where(closes.isna() | (hour_later <= closes), closes).dt.as_unit(layout.TIMESTAMP_UNIT)


def align_vix(vix: pd.DataFrame, grid: pd.Series) -> pd.DataFrame:
    """VIX on the stock bar grid without look-ahead: each stock bar [s, e) gets the last VIX bar
    that ENDED at or before e (as-of backward on end times; a VIX bar lasts one hour). Stock bars
    with no earlier VIX bar get NaN."""
    starts = pd.Series(pd.DatetimeIndex(grid).unique().sort_values())
    stock = pd.DataFrame({"timestamp": starts, "end": bar_ends(starts)})
    vix = vix.dropna(subset=["close"]).sort_values("timestamp")
    vix = vix.assign(end=vix["timestamp"] + pd.Timedelta(hours=1)).drop(columns="timestamp")
    vix["end"] = vix["end"].dt.as_unit(layout.TIMESTAMP_UNIT)
    aligned = pd.merge_asof(stock, vix, on="end", direction="backward", allow_exact_matches=True)
    return aligned[layout.BAR_COLUMNS]


def ingest_market_data(
    storage,
    symbols,
    start,
    end,
    *,
    session=None,
    now=None,
    max_workers: int = 4,
    max_attempts: int = 4,
    backoff_seconds: float = 1.0,
    warmup_sessions: int = WARMUP_SESSIONS,
) -> IngestionReport:
    """Fetch ``symbols`` plus ^GSPC and ^VIX for the window [start, end) and write the input files."""
    import yfinance as yf

    # yfinance logs per-ticker failures and returns empty frames by default. history(raise_errors=True)
    # is deprecated in 1.7 and not enough: its time-zone probe still turns a network error into
    # YFTzMissingError ("possibly delisted"), which would look permanent. The config switch makes
    # every failure raise with its real type, so each one is classified (retry or not) and reported.
    yf.config.debug.hide_exceptions = False
    stocks = [s for s in validate_symbols(list(symbols)) if s not in (MARKET_INDEX, VOLATILITY_INDEX)]
    if not stocks:
        raise ValueError("symbols: no stock to ingest (^GSPC and ^VIX are added by themselves)")
    try:
        first_day, end_day = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    except ValueError as exc:
        raise ValueError(f"start/end: {exc}") from None
    if first_day.tzinfo is not None:
        first_day, end_day = first_day.tz_localize(None), end_day.tz_localize(None)
    if first_day >= end_day:
        raise ValueError(f"start ({first_day.date()}) must be before end ({end_day.date()})")
    calendar = _calendar()
    sessions = calendar.sessions_in_range(first_day, end_day - pd.Timedelta(days=1))
    if sessions.empty:
        raise ValueError(f"no NYSE session between start {first_day.date()} and end {end_day.date()}")
    fetch_start = calendar.sessions_window(sessions[0], -(warmup_sessions + 1))[0]
    oldest = (_utc(now) - pd.Timedelta(days=YAHOO_INTRADAY_DAYS)).tz_localize(None)
    if fetch_start < oldest.normalize() + pd.Timedelta(days=1):
        raise RangeNotAvailableError(
            f"start {first_day.date()} needs 1h bars from {fetch_start.date()} "
            f"(with {warmup_sessions} sessions of warm-up), older than Yahoo's limit: "
            f"1h bars exist only for the last {YAHOO_INTRADAY_DAYS} days"
        )
    report = IngestionReport(
        start=str(first_day.date()), end=str(end_day.date()), fetch_start=str(fetch_start.date())
    )
    tickers = [*stocks, MARKET_INDEX, VOLATILITY_INDEX]
    fetch_args = (str(fetch_start.date()), str(end_day.date()), session, max_attempts, backoff_seconds)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        fetched = dict(zip(tickers, pool.map(lambda t: _fetch(t, *fetch_args), tickers), strict=True))
    report.tickers = [result for _, result in fetched.values()]

    failed = [r for r in report.tickers if r.status == "failed"]
    failure_text = "; ".join(f"{r.symbol}: {r.error}" for r in failed)
    market_failed = [r.symbol for r in failed if r.symbol in (MARKET_INDEX, VOLATILITY_INDEX)]
    stocks_ok = [s for s in stocks if fetched[s][1].status == "ok"]
    if market_failed or not stocks_ok:
        report.status = "failed"
        storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
        what = f"market data {', '.join(market_failed)} missing" if market_failed else "every stock failed"
        raise IngestionError(f"ingestion failed, {what}: {failure_text}")

    spx = fetched[MARKET_INDEX][0]
    holdings = pd.concat([fetched[s][0].assign(contract=s) for s in stocks_ok], ignore_index=True)
    vix = align_vix(fetched[VOLATILITY_INDEX][0], spx["timestamp"])
    in_window = spx["timestamp"][(spx["timestamp"] >= sessions[0].tz_localize(layout.EXCHANGE_TZ))]
    if in_window.empty:
        report.status = "failed"
        storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
        raise IngestionError(f"no ^GSPC bar between {first_day.date()} and {end_day.date()}")
    window = AnalysisWindow(in_window.min(), bar_ends(pd.Series([in_window.max()])).iloc[0])
    report.written = write_inputs(storage, InputData(holdings=holdings, vix=vix, spx=spx, window=window))
    report.status = "partial" if failed else "ok"
    storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
    return report
