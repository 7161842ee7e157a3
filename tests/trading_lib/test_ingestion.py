"""Ingestion against a loopback server replaying Yahoo v8 chart responses built from the real 2022
bars (tests/trading_lib/yahoo_replay.py): yfinance runs unpatched, over real HTTP."""

from __future__ import annotations

import socket

import pandas as pd
import pytest
from yahoo_replay import YahooReplay, routed_session, weeks_into_window

from trading_lib import layout
from trading_lib.ingestion import IngestionError, RangeNotAvailableError, default_window, ingest_market_data
from trading_lib.inputs import read_inputs
from trading_lib.storage import Storage

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
        got = data.holdings[data.holdings["contract"] == symbol].reset_index(drop=True)
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
    start, end = _window(server)
    assert (
        data.window.start
        == data.spx.loc[data.spx["timestamp"].dt.date >= pd.Timestamp(start).date(), "timestamp"].min()
    )
    stored = Storage(str(tmp_path)).read_json(layout.report_key("ingestion"))
    assert stored["status"] == "ok" and len(stored["tickers"]) == 7


def test_delisted_ticker_is_reported_and_the_rest_written(server, tmp_path):
    server.scenarios["NFLX"] = "404"
    report = _ingest(server, tmp_path)
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
    report = _ingest(server, tmp_path, max_attempts=2)
    aapl = _by_symbol(report)["AAPL"]
    assert (aapl.status, aapl.attempts) == ("failed", 2)
    assert aapl.error.startswith("YFRateLimitError")
    assert report.status == "partial"


@pytest.mark.parametrize(("scenario", "error"), [("422", "730 days"), ("empty", "YFPricesMissingError")])
def test_permanent_errors_are_not_retried(server, tmp_path, scenario, error):
    server.scenarios["TSLA"] = scenario
    report = _ingest(server, tmp_path)
    tsla = _by_symbol(report)["TSLA"]
    assert (tsla.status, tsla.attempts) == ("failed", 1)
    assert error in tsla.error
    assert server.requests["TSLA"] <= 2  # yfinance itself re-asks once after a 4xx


def test_missing_market_data_fails_and_writes_no_input(server, tmp_path):
    server.scenarios["^VIX"] = "404"
    with pytest.raises(IngestionError, match=r"market data \^VIX missing"):
        _ingest(server, tmp_path)
    storage = Storage(str(tmp_path))
    assert not any(storage.exists(key) for key in layout.INPUT_KEYS)
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


def test_default_window_is_the_last_complete_sessions():
    start, end = default_window(pd.Timestamp("2026-11-25 15:00", tz="America/New_York"), sessions=5)
    assert (str(start.date()), str(end.date())) == ("2026-11-18", "2026-11-25")


def test_vix_gaps_take_the_last_vix_bar_that_ended_never_a_later_one(server, tmp_path):
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
    got = data.vix.set_index("timestamp")["close"]
    for row in dropped:
        ts = vix.loc[row, "timestamp"]
        # the previous VIX bar still served is the last one that ended before this stock bar did
        previous = max(r for r in range(row) if r not in dropped)
        assert got[ts] == pytest.approx(vix.loc[previous, "Close"]), ts
    kept = vix.drop(index=dropped)
    kept = kept[kept["timestamp"].isin(got.index)]
    assert got[kept["timestamp"]].to_numpy() == pytest.approx(kept["Close"].to_numpy())


def test_window_runs_from_the_first_bar_to_the_end_of_the_last(server, tmp_path):
    start, end = _window(server)
    report = _ingest(server, tmp_path)
    window = read_inputs(Storage(str(tmp_path))).window
    last_day = pd.Timestamp(end) - pd.Timedelta(days=1)
    assert window.start == pd.Timestamp(f"{start} 09:30", tz=layout.EXCHANGE_TZ)
    assert window.end == pd.Timestamp(f"{last_day.date()} 16:00", tz=layout.EXCHANGE_TZ)  # 15:30 bar
    assert pd.Timestamp(report.fetch_start) < pd.Timestamp(start)
