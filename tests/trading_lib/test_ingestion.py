"""Ingestion against a loopback server replaying Yahoo v8 chart responses built from the real 2022
bars (tests/trading_lib/yahoo_replay.py): yfinance runs unpatched, over real HTTP."""

from __future__ import annotations

import random
import re
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from yahoo_replay import YahooReplay, routed_session, weeks_into_window

from trading_lib import layout
from trading_lib.ingestion import (
    RETRY_BASE_SECONDS,
    RETRY_BUDGET_SECONDS,
    RETRY_CAP_SECONDS,
    RETRY_MAX_ATTEMPTS,
    IngestionError,
    PartialIngestionError,
    RangeNotAvailableError,
    _fetch,
    align_vix,
    ingest_market_data,
    retry_delays,
)
from trading_lib.inputs import AnalysisWindow, InputData
from trading_lib.sessions import bar_ends
from trading_lib.storage import Storage
from trading_lib.store import BarStore, split_rows

STOCKS = ["AAPL", "FB", "GOOG", "NFLX", "TSLA"]
NOW = pd.Timestamp.now(tz="UTC")


@pytest.fixture(autouse=True)
def fresh_yfinance(tmp_path_factory):
    import yfinance as yf
    from yfinance.data import YfData

    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yf-tz")))
    YfData.cache_get.cache_clear()  # yfinance memoizes past ranges per URL, across scenarios
    yield
    YfData.cache_get.cache_clear()


@pytest.fixture
def server():
    with YahooReplay(weeks_into_window(NOW)) as replay:
        yield replay


def _window(server) -> tuple[str, str]:
    days = sorted(set(server.expected("AAPL")["timestamp"].dt.date))
    return str(days[11]), str(days[-1] + pd.Timedelta(days=1))


def _ingest(server, tmp_path, symbols=STOCKS, **kwargs):
    start, end = _window(server)
    return ingest_market_data(
        Storage(str(tmp_path)),
        symbols,
        start,
        end,
        session=server.session(),
        now=NOW,
        backoff_seconds=0.01,
        **kwargs,
    )


def read_inputs(storage: Storage) -> InputData:
    """Everything in the bar store, as (bars, ^VIX, ^GSPC) frames."""
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    return split_rows(
        rows, AnalysisWindow(rows["timestamp"].min(), rows["timestamp"].max() + pd.Timedelta(hours=1))
    )


def _by_symbol(report):
    return {t.symbol: t for t in report.tickers}


def test_fetched_bars_equal_the_real_bars_and_vix_is_aligned(server, tmp_path):
    report = _ingest(server, tmp_path)
    assert report.status == "ok" and {t.status for t in report.tickers} == {"ok"}
    data = read_inputs(Storage(str(tmp_path)))
    fetch_start = pd.Timestamp(report.fetch_start, tz=layout.EXCHANGE_TZ)
    for symbol in STOCKS:
        expected = server.expected(symbol)
        expected = expected[expected["timestamp"] >= fetch_start].reset_index(drop=True)
        got = data.bars[data.bars["contract"] == symbol].reset_index(drop=True)
        assert got["timestamp"].tolist() == expected["timestamp"].tolist()
        for column in ("open", "high", "low", "close"):
            assert got[column].to_numpy() == pytest.approx(expected[column.title()].to_numpy(), rel=1e-9)
        assert got["volume"].tolist() == expected["Volume"].astype(float).tolist()
    spx = server.expected("^GSPC")
    assert data.spx["close"].to_numpy() == pytest.approx(
        spx.loc[spx["timestamp"] >= fetch_start, "Close"].to_numpy()
    )
    # ^VIX was served on the hour in Chicago time; as-of on bar end times puts each value on its stock bar
    vix = server.expected("^VIX")
    vix = vix[vix["timestamp"] >= fetch_start]
    assert data.vix["timestamp"].tolist() == data.spx["timestamp"].tolist()
    assert data.vix["close"].to_numpy() == pytest.approx(vix["Close"].to_numpy())
    stored = Storage(str(tmp_path)).read_json(layout.report_key("ingestion"))
    assert stored["status"] == "ok" and len(stored["tickers"]) == 7


def test_a_failed_ticker_stops_the_ingestion_unless_partial_is_allowed(server, tmp_path):
    server.scenarios["NFLX"] = "404"
    with pytest.raises(PartialIngestionError, match=r"nothing written.*NFLX"):
        _ingest(server, tmp_path)
    assert not (tmp_path / "bars").exists()
    report = _ingest(server, tmp_path, allow_partial=True)
    nflx = _by_symbol(report)["NFLX"]
    assert (report.status, nflx.status, nflx.attempts) == ("partial", "failed", 1)
    assert "404" in nflx.error or "Not Found" in nflx.error or "delisted" in nflx.error
    assert read_inputs(Storage(str(tmp_path))).contracts == ["AAPL", "FB", "GOOG", "TSLA"]


@pytest.mark.parametrize("status", ["429", "500"])
def test_rate_limits_and_server_errors_are_retried_with_backoff(server, tmp_path, status):
    # yfinance re-asks once after any status >= 400: 4 failing answers = 2 failed attempts
    server.scenarios["AAPL"] = (status, 4)
    report = _ingest(server, tmp_path)
    aapl = _by_symbol(report)["AAPL"]
    assert (aapl.status, aapl.attempts, aapl.error) == ("ok", 3, None)
    assert server.requests["AAPL"] == 5
    assert report.status == "ok"
    assert "AAPL" in read_inputs(Storage(str(tmp_path))).contracts


def test_rate_limit_to_the_last_attempt_fails_the_ticker(server, tmp_path):
    server.scenarios["AAPL"] = ("429", 100)
    report = _ingest(server, tmp_path, max_attempts=2, allow_partial=True)
    aapl = _by_symbol(report)["AAPL"]
    assert (aapl.status, aapl.attempts) == ("failed", 2)
    assert aapl.error.startswith("YFRateLimitError")
    assert report.status == "partial"


@pytest.mark.parametrize(("scenario", "error"), [("422", "730 days"), ("empty", "YFPricesMissingError")])
def test_permanent_errors_are_not_retried(server, tmp_path, scenario, error):
    server.scenarios["TSLA"] = scenario
    report = _ingest(server, tmp_path, allow_partial=True)
    tsla = _by_symbol(report)["TSLA"]
    assert (tsla.status, tsla.attempts) == ("failed", 1)
    assert error in tsla.error
    assert server.requests["TSLA"] <= 2  # yfinance itself re-asks once after a 4xx


def test_missing_market_data_fails_and_writes_no_input(server, tmp_path):
    server.scenarios["^VIX"] = "404"
    with pytest.raises(IngestionError, match=r"market data \^VIX missing"):
        _ingest(server, tmp_path)
    storage = Storage(str(tmp_path))
    assert BarStore(storage).sessions() == []
    assert storage.read_json(layout.report_key("ingestion"))["status"] == "failed"


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening, then closed: every connection is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "session",
    [
        pytest.param(lambda: routed_session(_closed_port()), id="connection-refused"),
        # .invalid never resolves (RFC 6761): a DNS failure without any packet leaving the machine
        pytest.param(lambda: routed_session(443, host="yahoo-replay.invalid"), id="dns-failure"),
    ],
)
def test_network_outage_fails_naming_the_tickers(tmp_path, session):
    start, end = (
        (NOW - pd.Timedelta(days=30)).date().isoformat(),
        (NOW - pd.Timedelta(days=20)).date().isoformat(),
    )
    with pytest.raises(IngestionError) as excinfo:
        ingest_market_data(
            Storage(str(tmp_path)), ["AAPL"], start, end, session=session(), now=NOW,
            backoff_seconds=0.01, max_attempts=3,
        )  # fmt: skip
    message = str(excinfo.value)
    assert all(symbol in message for symbol in ("AAPL", "^GSPC", "^VIX")) and "ConnectionError" in message
    report = Storage(str(tmp_path)).read_json(layout.report_key("ingestion"))
    assert {t["attempts"] for t in report["tickers"]} == {3}  # transient: retried to the limit


def test_ranges_older_than_730_days_are_refused_before_any_request(server, tmp_path):
    old_start = (NOW - pd.Timedelta(days=740)).date().isoformat()
    old_end = (NOW - pd.Timedelta(days=700)).date().isoformat()
    with pytest.raises(RangeNotAvailableError, match="730 days"):
        ingest_market_data(
            Storage(str(tmp_path)), STOCKS, old_start, old_end, session=server.session(), now=NOW
        )
    assert sum(server.requests.values()) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("symbols", "start", "end", "message"),
    [
        (["../x"], "2026-01-05", "2026-01-09", "'../x'"),
        (STOCKS, "2026-01-09", "2026-01-05", "must be before"),
    ],
)
def test_bad_requests_are_named(tmp_path, symbols, start, end, message):
    with pytest.raises(ValueError, match=message):
        ingest_market_data(Storage(str(tmp_path)), symbols, start, end, now=NOW)


def test_vix_gaps_stay_gaps_never_filled_from_an_earlier_bar(server, tmp_path):
    # VIX is served on the hour, 30 minutes before each stock bar starts; leave some bars out
    vix = server.expected("^VIX").reset_index(drop=True)
    start, _ = _window(server)
    first_of_day = vix.index[vix["timestamp"].dt.date == pd.Timestamp(start).date()][0]
    midday = first_of_day + 10  # inside the next session
    dropped = [first_of_day, midday, midday + 1]
    served = vix["timestamp"] - pd.Timedelta(minutes=30)
    server.scenarios["^VIX"] = ("drop", set(served[dropped]))
    _ingest(server, tmp_path)
    data = read_inputs(Storage(str(tmp_path)))
    assert data.vix["timestamp"].tolist() == data.spx["timestamp"].tolist()  # a row per stock bar
    got = data.vix.set_index("timestamp")
    for row in dropped:
        # the previous VIX bar still served ended an hour or more before this stock bar did
        ts = vix.loc[row, "timestamp"]
        assert got.loc[ts, ["open", "high", "low", "close", "volume"]].isna().all(), ts
    kept = vix.drop(index=dropped)
    kept = kept[kept["timestamp"].isin(got.index)]
    assert got.loc[kept["timestamp"], "close"].to_numpy() == pytest.approx(kept["Close"].to_numpy())


def test_a_missing_monday_of_vix_fails_validation_naming_its_bars(server, tmp_path):
    # Before: each of Monday's 7 stock bars took Friday's last VIX close and market_data passed.
    from trading_lib.validation import validate_inputs

    vix = server.expected("^VIX").reset_index(drop=True)
    start, _ = _window(server)
    later = vix[vix["timestamp"] >= pd.Timestamp(start, tz=layout.EXCHANGE_TZ)]
    monday = later.loc[later["timestamp"].dt.day_of_week == 0, "timestamp"].dt.date.iloc[0]
    on_monday = vix["timestamp"].dt.date == monday
    assert on_monday.sum() == 7
    server.scenarios["^VIX"] = ("drop", set(vix.loc[on_monday, "timestamp"] - pd.Timedelta(minutes=30)))
    _ingest(server, tmp_path)
    data = read_inputs(Storage(str(tmp_path)))
    monday_bars = vix.loc[on_monday, "timestamp"].tolist()
    assert data.vix.set_index("timestamp").loc[monday_bars, "close"].isna().all()
    report = validate_inputs(data)
    assert report.status == "FAIL" and report.checks["market_data"]["severity"] == "FAIL"
    issues = report.issues[report.issues["check"] == "market_data"]
    assert issues["contract"].unique().tolist() == ["^VIX"]
    assert issues["timestamp"].tolist() == monday_bars
    assert set(issues["detail"]) == {"no ^VIX close for this stock bar"}


def test_a_second_ingestion_fetches_only_incomplete_sessions_and_changes_nothing(server, tmp_path):
    start, end = _window(server)
    first = _ingest(server, tmp_path)
    store = BarStore(Storage(str(tmp_path)))
    sessions = store.sessions()
    assert pd.Timestamp(first.fetch_start) < pd.Timestamp(start)  # the warm-up came from Yahoo
    assert first.written["bars_added"] > 0 and first.written["sessions_written"] == sessions
    version = store.version
    again = _ingest(server, tmp_path)
    # from the first needed session short of the grid (the replayed 2022 bars have gaps where the
    # shifted calendar has sessions): never the whole range again
    assert first.fetch_start < again.fetch_start <= sessions[-1]
    assert again.written["sessions_written"] == [] and again.written["bars_added"] == 0
    assert BarStore(Storage(str(tmp_path))).version == version  # nothing committed
    # a later window takes its warm-up from the store: only the sessions after it are fetched
    later_end = str((pd.Timestamp(end) + pd.Timedelta(days=7)).date())
    report = ingest_market_data(
        Storage(str(tmp_path)),
        STOCKS,
        start,
        later_end,
        session=server.session(),
        now=NOW,
        backoff_seconds=0.01,
    )
    assert report.fetch_start > first.fetch_start and report.written["bars_added"] == 0


def _close_of(day: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} 16:00", tz=layout.EXCHANGE_TZ)


def test_plan_fetch_asks_for_every_session_short_of_the_grid(tmp_path):
    from trading_lib import pipeline
    from trading_lib.ingestion import plan_fetch

    storage = Storage(str(tmp_path))
    pipeline.generate_inputs(storage, num_contracts=2)  # 2024-01-02 .. 2024-01-23 (15 sessions)
    store = BarStore(storage)
    stored = store.sessions()
    tickers = ["AAPL", "MSFT", "^GSPC", "^VIX"]
    last = pd.Timestamp(stored[-1])
    by = store.latest_window(1).end  # the sample data ends in mid-session: when its last bar ended
    needed, missing = plan_fetch(store, tickers, last, last + pd.Timedelta(days=1), 11, by)
    assert [str(d.date()) for d in needed] == stored[-12:]  # the session and its 11 warm-up sessions
    assert missing == []  # every grid bar of every ticker: nothing to fetch, not even the latest
    # at the close, the bars after the last stored one had ended too: the latest session is short
    assert plan_fetch(store, tickers, last, last + pd.Timedelta(days=1), 11, _close_of(stored[-1]))[1] == [
        stored[-1]
    ]
    nxt = pd.Timestamp("2024-01-24")
    _, missing = plan_fetch(store, tickers, nxt, nxt + pd.Timedelta(days=1), 11, _close_of("2024-01-24"))
    assert missing == [stored[-1], "2024-01-24"]
    # ... but only once its first bar has ended: before 10:30 nothing of it can be stored yet
    early = pd.Timestamp("2024-01-24 10:29", tz=layout.EXCHANGE_TZ)
    assert plan_fetch(store, tickers, nxt, nxt + pd.Timedelta(days=1), 11, early)[1] == [stored[-1]]
    _, missing = plan_fetch(store, [*tickers, "NVDA"], last, last + pd.Timedelta(days=1), 11, by)
    assert missing == stored[-12:]  # a new symbol: every needed session lacks it


def test_a_backfilled_older_session_is_fetched_until_it_holds_every_ended_bar(tmp_path):
    """The backfill of a day older than the newest stored session (issue 20): its first interval
    stored 09:30 only; each later interval must fetch it again, because a session with one bar per
    ticker is not complete, wherever it lies in the store. An early close (2024-11-29, four bars)
    is complete with its four."""
    from trading_lib.ingestion import plan_fetch
    from trading_lib.sample_data import generate_sample_data
    from trading_lib.store import to_store_rows

    store = BarStore(Storage(str(tmp_path)))
    rows = to_store_rows(generate_sample_data(num_contracts=2, window_bars=40, start="2024-11-12"))
    day = "2024-11-22"  # an older session: the store goes on to 2024-12-0x
    times = rows["timestamp"]
    first_bar_only = (times.dt.strftime("%Y-%m-%d") != day) | (times.dt.strftime("%H:%M") == "09:30")
    store.upsert(rows[first_bar_only], "the first interval of a backfill")
    assert store.sessions()[-1] > day
    tickers = sorted(rows["symbol"].unique())
    start, end = pd.Timestamp(day), pd.Timestamp(day) + pd.Timedelta(days=1)

    def missing(hour: str) -> list[str]:
        by = pd.Timestamp(f"{day} {hour}", tz=layout.EXCHANGE_TZ)
        return plan_fetch(store, tickers, start, end, 5, by)[1]

    assert missing("10:30") == []  # the first interval: the 09:30 bar had ended, and is stored
    assert missing("11:30") == [day]  # the next interval: the 10:30 bar is lacking
    store.upsert(rows[~first_bar_only], "the rest of the day")
    assert missing("16:00") == []
    half_day = pd.Timestamp("2024-11-29")
    assert len(store.read_sessions(["2024-11-29"], ["^GSPC"])) == 4
    by = pd.Timestamp("2024-11-29 13:00", tz=layout.EXCHANGE_TZ)
    assert plan_fetch(store, tickers, half_day, half_day + pd.Timedelta(days=1), 5, by)[1] == []


# -- VIX alignment from real bar ends, HTTP statuses, retries sized to outages ---------------------


def _vix_bars(timestamps, closes) -> pd.DataFrame:
    stamps = pd.DatetimeIndex(timestamps).tz_convert(layout.EXCHANGE_TZ).as_unit(layout.TIMESTAMP_UNIT)
    closes = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {"timestamp": stamps, "open": closes, "high": closes, "low": closes, "close": closes, "volume": 0.0}
    )


@pytest.mark.parametrize(
    ("day", "last_bar", "close"),
    [("2026-04-14", "15:30", "16:00"), ("2024-11-29", "12:30", "13:00")],  # a full day, an early close
)
def test_vix_on_the_half_hour_grid_ends_at_the_close_with_the_last_stock_bar(day, last_bar, close):
    # VIX bars at 14:30 and 15:30 (or 12:30 on a 13:00 close): the last one ends at the close, with
    # the last stock bar, so that stock bar gets it (a VIX bar lasting start + 1 h would end after it)
    last = pd.Timestamp(f"{day} {last_bar}", tz=layout.EXCHANGE_TZ)
    vix = _vix_bars([last - pd.Timedelta(hours=1), last], [20.0, 25.0])
    assert bar_ends(vix["timestamp"], vix["timestamp"].shift(-1)).tolist() == [
        last,
        pd.Timestamp(f"{day} {close}", tz=layout.EXCHANGE_TZ),
    ]
    aligned = align_vix(vix, pd.Series(vix["timestamp"]))
    assert aligned["timestamp"].tolist() == vix["timestamp"].tolist()
    assert aligned["close"].tolist() == [20.0, 25.0]


def _real_bars(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(Path(__file__).resolve().parents[2] / "input" / "yahoo-1h-2022" / f"{symbol}_1h.csv")
    stamps = pd.to_datetime(frame["Datetime"], utc=True)
    return _vix_bars(stamps, frame["Close"])


@pytest.mark.parametrize("vix_minutes_early", [0, 30])
def test_real_vix_aligns_on_the_stock_grid_and_on_the_hour(vix_minutes_early):
    # The real 2022 ^VIX bars as stored (on the stock grid, 09:30 ... 15:30) and as Yahoo serves them
    # live (stamped on the hour, 30 minutes earlier): both give each stock bar the VIX bar of its hour
    spx, vix = _real_bars("^GSPC"), _real_bars("^VIX")
    served = vix.assign(timestamp=vix["timestamp"] - pd.Timedelta(minutes=vix_minutes_early))
    aligned = align_vix(served, spx["timestamp"])
    assert aligned["timestamp"].tolist() == spx["timestamp"].tolist()
    assert aligned["close"].tolist() == vix["close"].tolist()
    assert (aligned["timestamp"].dt.strftime("%H:%M") == "15:30").sum() == 22  # every session's last bar


def test_a_vix_gap_does_not_stretch_the_bar_before_it():
    # Live-style VIX (on the hour) with bars left out: the bar before a gap still ends one hour
    # after its start, not at the next VIX bar's start, so its own stock bar keeps it
    spx, vix = _real_bars("^GSPC"), _real_bars("^VIX")
    served = vix.assign(timestamp=vix["timestamp"] - pd.Timedelta(minutes=30))
    dropped = [7, 40, 41, 153]  # a session's first bar, two in a row mid-session, the very last one
    aligned = align_vix(served.drop(index=dropped), spx["timestamp"])
    expected = vix["close"].copy()
    expected[dropped] = np.nan  # the previous VIX bar still served ended before the stock bar began
    assert aligned["close"].tolist() == pytest.approx(expected.tolist(), nan_ok=True)
    assert aligned["close"].isna().sum() == len(dropped)


def _fetch_window(server) -> tuple[str, str]:
    days = sorted(set(server.expected("AAPL")["timestamp"].dt.date))
    return str(days[0]), str(days[-1] + pd.Timedelta(days=1))


def test_a_gateway_error_names_its_http_status(server):
    server.scenarios["AAPL"] = ("503", 10_000)
    slept = []
    frame, result = _fetch("AAPL", *_fetch_window(server), server.session(), 2, sleep=slept.append)
    assert (result.status, result.attempts, len(slept), frame.empty) == ("failed", 2, 1, True)
    assert result.error.startswith("HTTP 503 from the chart endpoint (JSONDecodeError: "), result.error
    assert server.requests["AAPL"] == 4  # yfinance re-asks once after any status >= 400


def test_retries_ride_out_an_outage_on_the_jittered_schedule(server):
    server.scenarios["AAPL"] = ("503", 6)  # three failed attempts (two requests each), then the bars
    slept = []
    frame, result = _fetch(
        "AAPL", *_fetch_window(server), server.session(), sleep=slept.append, rng=random.Random(1)
    )
    assert (result.status, result.attempts, result.error) == ("ok", 4, None)
    assert result.rows == len(frame) == len(server.expected("AAPL"))
    assert server.requests["AAPL"] == 7
    assert slept == retry_delays(rng=random.Random(1))[:3]
    ceilings = [min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**i) for i in range(3)]  # 2, 4, 8 s
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(slept, ceilings, strict=True))


def test_the_retry_budget_covers_a_five_minute_outage(server):
    server.scenarios["AAPL"] = ("503", 10_000)  # down for longer than the retries last
    slept = []
    _, result = _fetch(
        "AAPL", *_fetch_window(server), server.session(), sleep=slept.append, rng=random.Random(7)
    )
    schedule = retry_delays(rng=random.Random(7))
    assert slept == schedule and result.attempts == len(schedule) + 1 and result.status == "failed"
    assert server.requests["AAPL"] == 2 * result.attempts
    assert sum(slept) >= RETRY_BUDGET_SECONDS >= 300 > sum(slept[:-1])  # gives up once the budget is spent
    assert result.error.startswith("HTTP 503 from the chart endpoint")
    # any draw: the waits add up to at least 5 minutes, in a bounded number of attempts
    totals, attempts = [], []
    for seed in range(2_000):
        delays = retry_delays(rng=random.Random(seed))
        totals.append(sum(delays))
        attempts.append(len(delays) + 1)
    assert min(totals) >= 300 and max(attempts) < RETRY_MAX_ATTEMPTS
    assert 10 <= np.median(attempts) <= 20


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        # yfinance's time-zone lookup (quoteSummary) answers 404 first, unless the zone is cached
        ("404", r"^HTTP 404 from the quoteSummary endpoint \(HTTPError: |symbol may be delisted"),
        ("422", "730 days"),
        ("empty", "YFPricesMissingError"),
    ],
)
def test_bad_input_is_never_retried_nor_waited_for(server, scenario, error):
    server.scenarios["TSLA"] = scenario
    slept = []
    _, result = _fetch("TSLA", *_fetch_window(server), server.session(), sleep=slept.append)
    assert (result.status, result.attempts, slept) == ("failed", 1, [])
    assert re.search(error, result.error), result.error


def test_until_stores_only_the_bars_that_had_ended_by_then(server, tmp_path):
    """A scheduled or backfill run stores history as it was known at its interval's end."""
    start, end = _window(server)
    last_day = str((pd.Timestamp(end) - pd.Timedelta(days=1)).date())
    until = pd.Timestamp(f"{last_day} 11:30", tz=layout.EXCHANGE_TZ)  # the 10:30 bar has just ended
    _ingest(server, tmp_path, until=until.isoformat())
    data = read_inputs(Storage(str(tmp_path)))
    assert data.spx["timestamp"].max() == pd.Timestamp(f"{last_day} 10:30", tz=layout.EXCHANGE_TZ)
    assert data.bars["timestamp"].max() == pd.Timestamp(f"{last_day} 10:30", tz=layout.EXCHANGE_TZ)
    later = _ingest(server, tmp_path)  # the next run: the rest of that session arrives
    assert later.written["bars_added"] == 5 * len(STOCKS + ["^GSPC", "^VIX"])
    assert later.written["sessions_written"] == [last_day]
