"""A loopback Yahoo v8 chart server replaying the real 2022 bars, and a session that reaches it.

The bars of input/yahoo-1h-2022/ are shifted by whole weeks into Yahoo's 730-day window for 1h
bars (weekdays and bar times are kept). ^VIX is served the way Yahoo serves it live: stamped on the
hour in America/Chicago (each bar 30 minutes earlier than the stock grid), so ingestion has to
align it. yfinance is not patched: a requests.Session with a transport adapter rewrites
https://<host>/<path> to http://127.0.0.1:<port>/<host>/<path>.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import requests

REAL_BARS = Path(__file__).resolve().parents[2] / "input" / "yahoo-1h-2022"
FIRST_BAR = pd.Timestamp("2022-03-14 09:30", tz="America/New_York")
# Failing answers of the ("<status>", n) scenarios: 429 as Yahoo's JSON, the 5xx as an edge's HTML page
GATEWAY_PAGES = {
    "429": "Too Many Requests",
    "500": "500 Internal Server Error",
    "502": "502 Bad Gateway",
    "503": "503 Service Unavailable",
    "504": "504 Gateway Timeout",
}


def weeks_into_window(now: pd.Timestamp, days_back: int = 180) -> int:
    """Whole weeks that move the 2022 bars to start about ``days_back`` days before ``now``."""
    return int((now.tz_convert("UTC") - pd.Timedelta(days=days_back) - FIRST_BAR.tz_convert("UTC")).days // 7)


def load_bars(symbol: str, weeks: int) -> pd.DataFrame:
    frame = pd.read_csv(REAL_BARS / f"{symbol}_1h.csv")
    ts = pd.to_datetime(frame["Datetime"], utc=True).dt.tz_convert("America/New_York")
    # shift in wall-clock time, so a 09:30 bar stays a 09:30 bar across daylight-saving changes
    frame["timestamp"] = (ts.dt.tz_localize(None) + pd.Timedelta(weeks=weeks)).dt.tz_localize(
        "America/New_York"
    )
    if symbol == "^VIX":  # on the hour, as Yahoo stamps live VIX bars
        frame["timestamp"] = frame["timestamp"] - pd.Timedelta(minutes=30)
    return frame


class YahooReplay:
    """Per-ticker scenarios for the 1h chart requests (set ``scenarios[symbol]``):

    "404"          unknown/delisted symbol (every chart request, the time-zone probe included)
    "422"          range refused, as Yahoo refuses ranges older than 730 days
    "empty"        a valid chart with no bars (meta only, as Yahoo answers a range without trading)
    ("429", n)     the first n requests are rate-limited (HTTP 429), then the bars
    ("500", n)     the first n requests get an HTML gateway error page (HTTP 500), then the bars
    ("503", n)     the same with HTTP 503 Service Unavailable (502 and 504 too); n may be larger
                   than any number of attempts, for an outage that outlasts the retries
    ("drop", ts)   the bars whose served timestamp is in ``ts`` are left out (gaps)

    yfinance re-asks once after any status >= 400, so one failed attempt costs two requests.
    ``requests[symbol]`` counts 1h chart requests.
    """

    def __init__(self, weeks: int):
        self.weeks = weeks
        self.scenarios: dict[str, object] = {}
        self.requests: Counter[str] = Counter()
        self._bars = {
            path.name.removesuffix("_1h.csv"): load_bars(path.name.removesuffix("_1h.csv"), weeks)
            for path in REAL_BARS.glob("*_1h.csv")
        }
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                status, body = replay.answer(self.path)
                html = isinstance(body, str)
                payload = body.encode() if html else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if html else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> YahooReplay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def session(self) -> requests.Session:
        return routed_session(self.port)

    def expected(self, symbol: str) -> pd.DataFrame:
        """The bars as the shared CSV has them, moved by the same shift (stock grid for ^VIX too)."""
        frame = load_bars(symbol, self.weeks)
        if symbol == "^VIX":
            frame["timestamp"] = frame["timestamp"] + pd.Timedelta(minutes=30)
        return frame

    # -- the chart endpoint ---------------------------------------------------------------------
    def answer(self, raw_path: str) -> tuple[int, dict | str]:
        url = urlsplit(raw_path)
        parts = url.path.strip("/").split("/")
        if "chart" not in parts:
            return 404, {"error": "not served"}  # cookie / crumb: yfinance tolerates any answer
        symbol = unquote(parts[-1])
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        intraday = query.get("interval") == "1h"
        if intraday:
            self.requests[symbol] += 1
        scenario = self.scenarios.get(symbol)
        if symbol not in self._bars or scenario == "404":
            return 404, {
                "chart": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
                }
            }
        if intraday and scenario == "422":
            return 422, {
                "chart": {
                    "result": None,
                    "error": {
                        "code": "Unprocessable Entity",
                        "description": "1h data not available for startTime=1 and endTime=2. "
                        "The requested range must be within the last 730 days.",
                    },
                }
            }
        failing = isinstance(scenario, tuple) and scenario[0] in GATEWAY_PAGES
        if intraday and failing and self.requests[symbol] <= scenario[1]:
            if scenario[0] == "429":
                return 429, {"error": "Too Many Requests"}
            return int(scenario[0]), f"<html><body><h1>{GATEWAY_PAGES[scenario[0]]}</h1></body></html>"
        bars = self._bars[symbol]
        if not intraday or scenario == "empty":
            bars = bars.iloc[0:0]
        else:
            start = pd.Timestamp(int(query["period1"]), unit="s", tz="UTC")
            end = pd.Timestamp(int(query["period2"]), unit="s", tz="UTC")
            bars = bars[(bars["timestamp"] >= start) & (bars["timestamp"] < end)]
            if isinstance(scenario, tuple) and scenario[0] == "drop":
                bars = bars[~bars["timestamp"].isin(scenario[1])]
        return 200, {"chart": {"error": None, "result": [self._result(symbol, bars)]}}

    def _result(self, symbol: str, bars: pd.DataFrame) -> dict:
        vix = symbol == "^VIX"
        zone = "America/Chicago" if vix else "America/New_York"
        local = bars["timestamp"].dt.tz_convert(zone)
        periods = []
        for day in sorted(set(local.dt.date)):
            open_, close = ("08:00", "15:15") if vix else ("09:30", "16:00")
            start = pd.Timestamp(f"{day} {open_}", tz=zone)
            end = pd.Timestamp(f"{day} {close}", tz=zone)
            offset = int(start.utcoffset().total_seconds())
            periods.append(
                [
                    {
                        "timezone": start.tzname(),
                        "start": int(start.timestamp()),
                        "end": int(end.timestamp()),
                        "gmtoffset": offset,
                    }
                ]
            )
        meta = {
            "currency": "USD",
            "symbol": symbol,
            "instrumentType": "INDEX" if symbol.startswith("^") else "EQUITY",
            "exchangeTimezoneName": zone,
            "timezone": "CST" if vix else "EST",
            "gmtoffset": -21600 if vix else -18000,
            "dataGranularity": "1h",
            "tradingPeriods": periods,
        }
        if bars.empty:  # what Yahoo sends for a range without trading: no timestamps, no quotes
            return {"meta": meta, "indicators": {"quote": [{}]}}
        return {
            "meta": meta,
            "timestamp": [int(t.timestamp()) for t in bars["timestamp"]],
            "indicators": {
                "quote": [
                    {
                        "open": bars["Open"].tolist(),
                        "high": bars["High"].tolist(),
                        "low": bars["Low"].tolist(),
                        "close": bars["Close"].tolist(),
                        "volume": bars["Volume"].astype(int).tolist(),
                    }
                ]
            },
        }


def routed_session(port: int, host: str = "127.0.0.1") -> requests.Session:
    """A plain requests session whose https:// traffic goes to http://<host>:<port>/<original host>/...
    (a closed port or an unresolvable host stands for a network outage)."""
    from trading_lib.ingestion import yahoo_session

    return yahoo_session(f"http://{host}:{port}")
