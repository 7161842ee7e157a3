"""Hourly bars from Yahoo Finance (yfinance) into the bar store (trading_lib.store).

- A request names sessions [start, end); the store must then hold them and the `warmup_sessions`
  NYSE sessions before them (every window bar needs a 70-bar beta window). A session is complete
  when it holds every bar of the exchange grid that had ended by min(now, until) for every
  ticker; every other needed session is fetched, wherever it lies in the store: one range per
  ticker from the first such session to `end` (:func:`plan_fetch`).
- Yahoo serves 1h bars for the last 730 days only: an older fetch is refused before any request.
- Tickers are fetched in parallel, each with retries on the jittered exponential schedule of
  :func:`retry_delays` (rate limits, 5xx, network errors; at least a 5-minute outage), none on
  permanent errors (unknown or delisted symbol, range refused, no data). A failed ticker stops
  the ingestion before anything is written (unless `allow_partial`); ^GSPC or ^VIX missing
  always does. Bars that have not ended yet are not stored.
- ^VIX 1h bars come stamped on the hour (Cboe, America/Chicago) while stock bars start at :30 New
  York time: each stock bar [s, e) gets the close of the last VIX bar that ENDED during it, in
  (s, e] (a VIX bar ends at the next one's start, an hour later, or the session close, whichever
  is first), so no bar sees a later VIX value, nor one more than a bar old: a VIX gap stays a
  gap (NaN), and validation's market_data check FAILs naming the bars.
Output: one MERGE commit into the bar store's Delta table (trading_lib.store) and
output/reports/ingestion.json.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from trading_lib import layout, sessions
from trading_lib.errors import RequestError, TransientError
from trading_lib.inputs import AnalysisWindow, InputData
from trading_lib.sessions import WARMUP_SESSIONS, bar_ends
from trading_lib.store import BarStore
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX, SymbolError, validate_symbols

YAHOO_INTRADAY_DAYS = 730
INGESTION_REPORT = "ingestion"


class IngestionError(TransientError):
    """Yahoo did not deliver usable bars; the message names the tickers and why. Retried."""


class PartialIngestionError(IngestionError):
    """Some stocks failed (the others were fetched); nothing was written unless allow_partial."""


class RangeNotAvailableError(RequestError):
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


def _utc(now) -> pd.Timestamp:
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")


# Exception class names (anywhere in the MRO, so requests', urllib3's and curl_cffi's variants all
# match) that mean "try again later": the network failed, or the answer was not Yahoo's JSON at all
# (an edge/gateway error page, which is what a 5xx looks like from the chart endpoint). When the
# HTTP status of the failed answer is known (_http_answer), it decides instead: 5xx, 408 and 429
# are retried, any other 4xx is the request's own fault and is not.
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
TRANSIENT_STATUSES = frozenset({408, 429})  # and every 5xx

# Retries sized to real outages: Yahoo's edge answers 5xx or drops connections for minutes, and a
# few seconds of retrying (4 attempts, 1-2-4 s) gives up inside the outage. Full-jitter exponential
# backoff (wait i drawn uniformly from [0, min(cap, base x 2^i)]) spreads the parallel tickers'
# retries instead of sending them together; waits are drawn until they add up to the budget, so a
# ticker keeps trying through RETRY_BUDGET_SECONDS of outage (about 15 attempts, docs/reliability.md).
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 60.0
RETRY_BUDGET_SECONDS = 300.0  # the waits between attempts add up to at least this: a 5-minute outage
RETRY_MAX_ATTEMPTS = 30  # a bound on the attempts of one fetch; the budget needs ~15 on average


def retry_delays(
    *,
    base: float = RETRY_BASE_SECONDS,
    cap: float = RETRY_CAP_SECONDS,
    budget: float = RETRY_BUDGET_SECONDS,
    max_attempts: int = RETRY_MAX_ATTEMPTS,
    rng: random.Random | None = None,
) -> list[float]:
    """The waits (seconds) between the attempts of one fetch: wait i uniform in
    [0, min(cap, base x 2^i)] (full jitter), drawn until they add up to ``budget`` or there are
    ``max_attempts`` - 1 of them. A fetch makes at most len(waits) + 1 attempts."""
    rng = rng or random.Random()
    delays: list[float] = []
    while sum(delays) < budget and len(delays) < max_attempts - 1:
        delays.append(rng.uniform(0.0, min(cap, base * 2 ** len(delays))))
    return delays


def _http_answer(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, URL) of the answer that made ``exc``, when it can be found: the exception's
    ``response`` (requests' and curl_cffi's HTTPError), else the response whose method raised it,
    found in the traceback: neither requests nor curl_cffi attaches the response to the
    JSONDecodeError of ``Response.json()``, which is how yfinance 1.7 fails on a 5xx page."""
    response = getattr(exc, "response", None)
    if not _is_response(response):
        response = None
        frame = exc.__traceback__
        while frame is not None:  # from the caller down to the raise: keep the innermost response
            candidate = frame.tb_frame.f_locals.get("self")
            if _is_response(candidate):
                response = candidate
            frame = frame.tb_next
    if response is None:
        return None
    return response.status_code, str(response.url)


def _is_response(value: object) -> bool:
    return isinstance(getattr(value, "status_code", None), int) and hasattr(value, "url")


def _describe(exc: BaseException) -> str:
    """``Type: message``, led by the HTTP status and endpoint when the failure was an HTTP error answer."""
    text = f"{type(exc).__name__}: {exc}"
    answer = _http_answer(exc)
    if answer is None or answer[0] < 400:
        return text
    status, url = answer
    path = urlsplit(url).path
    name = re.search(r"/finance/([^/]+)", path)  # /v8/finance/chart/AAPL: the chart endpoint
    endpoint = f"the {name.group(1)} endpoint" if name else path or url
    return f"HTTP {status} from {endpoint} ({text})"


def _is_transient(exc: BaseException) -> bool:
    answer = _http_answer(exc)
    if answer is not None and answer[0] >= 400:
        return answer[0] >= 500 or answer[0] in TRANSIENT_STATUSES
    if "CURRENTLY DOWN" in str(exc):  # yfinance's YFDataException for Yahoo's maintenance page
        return True
    return any(cls.__name__ in TRANSIENT_ERRORS for cls in type(exc).__mro__)


def _forget_memoized_answers() -> None:
    """yfinance memoizes answers for past ranges per URL in-process, failed ones (an HTML 5xx page)
    included: without this a retry would get the same failure back without asking Yahoo again."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()


def _open_time_zone_cache() -> None:
    """yfinance keeps ticker time zones in a SQLite file whose first connection switches it to WAL.
    Fetch threads that open a new cache at the same moment race on that switch and the loser gets
    "database is locked": a fresh worker's first ingest failed a ticker this way in CI (1 in 30 to
    80 new caches under 7 threads). Opening the cache before the threads start leaves them only
    reads and inserts, which SQLite serializes."""
    from yfinance.cache import get_tz_cache

    get_tz_cache().lookup(MARKET_INDEX)


def _fetch(
    symbol: str,
    start: str,
    end: str,
    session,
    max_attempts: int | None = None,
    backoff: float = RETRY_BASE_SECONDS,
    *,
    cap: float = RETRY_CAP_SECONDS,
    budget: float = RETRY_BUDGET_SECONDS,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
) -> tuple[pd.DataFrame, TickerResult]:
    """One ticker's 1h bars [start, end), retrying transient failures on the ``retry_delays``
    schedule (``backoff`` is its base; ``max_attempts`` None: RETRY_MAX_ATTEMPTS, the budget
    decides). Bad input (unknown symbol, range refused, no data, any other 4xx) is never retried.
    ``sleep`` and ``rng`` are injectable so tests can record the waits instead of waiting."""
    import yfinance as yf

    # Every failure must raise with its real type to be classified (ingest_market_data sets it too).
    yf.config.debug.hide_exceptions = False
    delays = retry_delays(
        base=backoff, cap=cap, budget=budget, max_attempts=max_attempts or RETRY_MAX_ATTEMPTS, rng=rng
    )
    result = TickerResult(symbol)
    for attempt in range(1, len(delays) + 2):
        result.attempts = attempt
        try:
            frame = yf.Ticker(symbol, session=session).history(
                interval="1h", start=start, end=end, prepost=False, auto_adjust=True, actions=False
            )
        except Exception as exc:  # noqa: BLE001 - classified below, reported per ticker
            result.error = _describe(exc)
            if _is_transient(exc) and attempt <= len(delays):
                _forget_memoized_answers()
                sleep(delays[attempt - 1])
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


def align_vix(vix: pd.DataFrame, grid: pd.Series) -> pd.DataFrame:
    """VIX on the stock bar grid, without look-ahead and within one bar: each stock bar [s, e) gets
    the last VIX bar that ENDED during it, end in (s, e] (as-of backward on end times, then the
    ones that ended at or before s dropped). A VIX bar's real end is the first of: its start + 1 h,
    the next VIX bar's start, the NYSE session close (sessions.bar_ends), so a VIX bar stamped
    15:30 ends at the 16:00 close with the stock 15:30 bar and is its value, while hourly VIX bars
    stamped on the hour (Chicago time) end 30 minutes before each stock bar does. A stock bar with
    no such VIX bar gets NaN: Friday's last VIX close is no value for Monday's bars."""
    starts = pd.Series(pd.DatetimeIndex(grid).unique().sort_values())
    stock = pd.DataFrame({"timestamp": starts, "end": bar_ends(starts)})
    vix = vix.sort_values("timestamp", kind="stable").reset_index(drop=True)
    vix_starts = pd.Series(layout.to_exchange_time(vix["timestamp"]))
    # ends from every VIX bar, a NaN close included (it still ended the bar before it)
    vix = vix.assign(end=bar_ends(vix_starts, vix_starts.shift(-1)).to_numpy()).drop(columns="timestamp")
    vix = vix.dropna(subset=["close"]).sort_values("end", kind="stable")
    aligned = pd.merge_asof(
        stock, vix.assign(vix_end=vix["end"]), on="end", direction="backward", allow_exact_matches=True
    )
    stale = ~(aligned["vix_end"] > aligned["timestamp"])  # ended before the stock bar began, or none
    values = [c for c in layout.BAR_COLUMNS if c != "timestamp"]
    aligned.loc[stale, values] = np.nan
    return aligned[layout.BAR_COLUMNS]


def plan_fetch(
    store: BarStore,
    tickers: list[str],
    first_day: pd.Timestamp,
    end_day: pd.Timestamp,
    warmup_sessions: int,
    by: object = None,
) -> tuple[list[pd.Timestamp], list[str]]:
    """(the sessions [first_day, end_day) need, counting warm-up; the ones to fetch). A needed
    session is complete when it holds, for every one of ``tickers``, every bar of the exchange's
    grid (trading_lib.sessions: early closes included) that had ended by ``by`` (default now; an
    ingestion passes min(now, until)); any other needed session is fetched, wherever it lies in
    the store: an older day being backfilled as much as the latest one, stored while trading."""
    requested = sessions.sessions_in_range(first_day, end_day - pd.Timedelta(days=1))
    if requested.empty:
        raise RequestError(f"no NYSE session between start {first_day.date()} and end {end_day.date()}")
    warmup = sessions.sessions_before(requested[0], warmup_sessions)
    needed = [str(d.date()) for d in warmup.append(requested)]
    by = pd.Timestamp.now(tz="UTC") if by is None else _utc(by)
    ended = sessions.ended_bar_starts(needed[0], needed[-1], by)
    stored = set(store.sessions())
    have = store.read_sessions([d for d in needed if d in stored], tickers, ["symbol", "timestamp"])
    expected = pd.MultiIndex.from_product([list(tickers), ended], names=["symbol", "timestamp"])
    lacking = expected[~expected.isin(pd.MultiIndex.from_frame(have[["symbol", "timestamp"]]))]
    missing = sorted(set(lacking.get_level_values("timestamp").strftime("%Y-%m-%d")))
    return [pd.Timestamp(d) for d in needed], missing


def ingest_market_data(
    storage,
    symbols,
    start,
    end,
    *,
    session=None,
    now=None,
    max_workers: int = 4,
    max_attempts: int | None = None,
    backoff_seconds: float = RETRY_BASE_SECONDS,
    warmup_sessions: int = WARMUP_SESSIONS,
    allow_partial: bool = False,
    until=None,
) -> IngestionReport:
    """Make the bar store hold ``symbols`` plus ^GSPC and ^VIX for the sessions [start, end) and
    the ``warmup_sessions`` before them, fetching from Yahoo only what the store lacks (plus its
    latest session). Bars that have not ended at ``now`` (or at ``until``, if earlier: a scheduled
    run stores what was known at its interval's end, so a backfill replays history as it was)
    are not stored. A stock that fails stops the ingestion before anything is written, unless
    ``allow_partial``."""
    import yfinance as yf

    # yfinance logs per-ticker failures and returns empty frames by default. history(raise_errors=True)
    # is deprecated in 1.7 and not enough: its time-zone probe still turns a network error into
    # YFTzMissingError ("possibly delisted"), which would look permanent. The config switch makes
    # every failure raise with its real type, so each one is classified (retry or not) and reported.
    yf.config.debug.hide_exceptions = False
    try:
        stocks = [s for s in validate_symbols(list(symbols)) if s not in (MARKET_INDEX, VOLATILITY_INDEX)]
    except SymbolError as exc:
        raise RequestError(f"symbols: {exc}") from None
    if not stocks:
        raise RequestError("symbols: no stock to ingest (^GSPC and ^VIX are added by themselves)")
    first_day, end_day = parse_day(start, "start"), parse_day(end, "end")
    if first_day >= end_day:
        raise RequestError(f"start ({first_day.date()}) must be before end ({end_day.date()})")
    tickers = [*stocks, MARKET_INDEX, VOLATILITY_INDEX]
    store = BarStore(storage)
    cutoff = _utc(now) if until is None else min(_utc(now), _utc(until))
    needed, missing = plan_fetch(store, tickers, first_day, end_day, warmup_sessions, cutoff)
    report = IngestionReport(start=str(first_day.date()), end=str(end_day.date()), fetch_start="")
    if not missing:
        report.status = "up-to-date"
        storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
        return report
    fetch_start = pd.Timestamp(missing[0])
    report.fetch_start = str(fetch_start.date())
    oldest = (_utc(now) - pd.Timedelta(days=YAHOO_INTRADAY_DAYS)).tz_localize(None)
    if fetch_start < oldest.normalize() + pd.Timedelta(days=1):
        raise RangeNotAvailableError(
            f"start {first_day.date()} needs 1h bars from {fetch_start.date()} "
            f"(with {warmup_sessions} sessions of warm-up), older than Yahoo's limit: "
            f"1h bars exist only for the last {YAHOO_INTRADAY_DAYS} days"
        )
    fetch_args = (str(fetch_start.date()), str(end_day.date()), session, max_attempts, backoff_seconds)
    _open_time_zone_cache()
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        fetched = dict(zip(tickers, pool.map(lambda t: _fetch(t, *fetch_args), tickers), strict=True))
    report.tickers = [result for _, result in fetched.values()]

    failed = [r for r in report.tickers if r.status == "failed"]
    failure_text = "; ".join(f"{r.symbol}: {r.error}" for r in failed)
    market_failed = [r.symbol for r in failed if r.symbol in (MARKET_INDEX, VOLATILITY_INDEX)]
    stocks_ok = [s for s in stocks if fetched[s][1].status == "ok"]
    if market_failed or not stocks_ok or (failed and not allow_partial):
        report.status = "failed"
        storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
        if market_failed or not stocks_ok:
            what = (
                f"market data {', '.join(market_failed)} missing" if market_failed else "every stock failed"
            )
            raise IngestionError(f"ingestion failed, {what}, nothing written: {failure_text}")
        raise PartialIngestionError(
            f"ingestion incomplete, nothing written ({len(failed)} of {len(tickers)} tickers failed; "
            f"allow_partial keeps the others): {failure_text}"
        )

    spx = _ended(fetched[MARKET_INDEX][0], cutoff)
    bars = pd.concat([_ended(fetched[s][0], cutoff).assign(contract=s) for s in stocks_ok], ignore_index=True)
    vix = align_vix(fetched[VOLATILITY_INDEX][0], spx["timestamp"])
    if spx.empty:
        report.status = "failed"
        storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
        raise IngestionError(f"no ended ^GSPC bar between {fetch_start.date()} and {end_day.date()}")
    window = AnalysisWindow(spx["timestamp"].min(), bar_ends(spx["timestamp"].tail(1)).iloc[0])
    written = store.write(InputData(bars=bars, vix=vix, spx=spx, window=window), source="Yahoo Finance")
    report.written = written.to_dict()
    report.status = "partial" if failed else "ok"
    storage.write_json(layout.report_key(INGESTION_REPORT), report.to_dict())
    return report


def yahoo_session(endpoint: str | None):
    """The HTTP session for Yahoo: None (yfinance's own, curl_cffi: the production path), or, with
    an endpoint such as http://127.0.0.1:8765, a requests.Session that sends every
    https://<host>/<path> request to <endpoint>/<host>/<path>: a Yahoo mirror, a caching gateway,
    or the tests' loopback replay of recorded chart responses (TRADING_YAHOO_ENDPOINT)."""
    if not endpoint:
        return None
    from urllib.parse import urlsplit as split

    import requests
    from requests.adapters import HTTPAdapter

    target = endpoint.rstrip("/")

    class Rerouted(HTTPAdapter):
        def send(self, request, **kwargs):
            url = split(request.url)
            request.url = f"{target}/{url.netloc}{url.path}" + (f"?{url.query}" if url.query else "")
            return super().send(request, **kwargs)

    session = requests.Session()
    session.mount("https://", Rerouted())
    return session


def _ended(bars: pd.DataFrame, now) -> pd.DataFrame:
    """The bars that have ended by ``now``: a bar still trading would be stored with a provisional
    close (it is fetched again, complete, by the next ingestion)."""
    if bars.empty:
        return bars
    ended = bar_ends(bars["timestamp"]).to_numpy() <= _utc(now).tz_convert(layout.EXCHANGE_TZ)
    return bars[ended].reset_index(drop=True)


def parse_day(value: object, name: str) -> pd.Timestamp:
    """A date given as ISO YYYY-MM-DD (a string or a date), or a RequestError naming ``name``."""
    import datetime as dt
    import re

    if isinstance(value, pd.Timestamp | dt.date):
        text = value.strftime("%Y-%m-%d")
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        text = value.strip()
    else:
        raise RequestError(f"{name}={value!r} must be a date YYYY-MM-DD")
    try:
        return pd.Timestamp(text)
    except ValueError as exc:
        raise RequestError(f"{name}={value!r} is not a valid date: {exc}") from None
