"""Request rules: every conf key and CLI argument checked in one place, errors naming the field."""

import pandas as pd
import pytest

from trading_lib.errors import RequestError
from trading_lib.run_request import (
    default_ingestion_dates,
    ingestion_request,
    orchestrator_request,
    parse_date,
    parse_timestamp,
)

INTERVAL = (
    pd.Timestamp("2026-04-14 14:30", tz="UTC"),  # 10:30 New York (EDT)
    pd.Timestamp("2026-04-14 15:30", tz="UTC"),
)


def _request(params=None, run_type="manual", conf=None, **kwargs):
    return orchestrator_request(params or {}, run_id="r", run_type=run_type, conf=conf, **kwargs)


def test_a_scheduled_run_ingests_and_analyses_its_interval():
    request = _request({"ingestion_symbols": ["aapl"]}, run_type="scheduled", data_interval=INTERVAL)
    assert request.ingest and request.symbols == ("AAPL",)
    assert (request.window_start, request.window_end) == (
        "2026-04-14T10:30:00-04:00",
        "2026-04-14T11:30:00-04:00",
    )
    assert (request.ingestion_start, request.ingestion_end) == ("2026-04-14", "2026-04-15")
    assert request.ingestion_until == "2026-04-14T11:30:00-04:00"  # nothing that ended later is stored
    backfill = _request({}, run_type="backfill", data_interval=INTERVAL)
    assert backfill.ingest and backfill.window_start == request.window_start  # treated like scheduled
    assert backfill.num_contracts is None  # every contract with bars


def test_a_manual_run_does_what_its_conf_says():
    request = _request({"num_contracts": 3, "run_validation": False})
    assert not request.ingest and not request.validate and request.window_start is None
    assert request.window_bars == 24 and request.ingestion_until is None
    window = _request(
        {"window_start": "2024-01-22T09:30:00-05:00", "window_end": "2024-01-23T09:30:00-05:00"}
    )
    assert window.window_start == "2024-01-22T09:30:00-05:00"
    ingesting = _request(
        {"run_ingestion": True, "ingestion_start_date": "2026-01-05", "ingestion_end_date": "2026-01-09"}
    )
    assert (ingesting.ingestion_start, ingesting.ingestion_end) == ("2026-01-05", "2026-01-09")


@pytest.mark.parametrize(
    ("params", "conf", "message"),
    [
        ({}, {"num_contract": 3}, "unknown key(s) num_contract"),
        ({"num_contracts": 0}, None, "num_contracts=0 must be an integer from 1 to 500"),
        ({"num_contracts": True}, None, "num_contracts=True"),
        ({"ingestion_symbols": ["../x"]}, None, "ingestion_symbols: symbol '../x'"),
        ({"ingestion_symbols": ["AAPL", "AAPL"]}, None, "listed twice"),
        ({"ingestion_start_date": "01/04/2026", "ingestion_end_date": "2026-01-09"}, None, "ingestion_start_date='01/04/2026' must be a date YYYY-MM-DD"),
        ({"ingestion_start_date": "2026-01-04T10:00", "ingestion_end_date": "2026-01-09"}, None, "YYYY-MM-DD"),
        ({"ingestion_start_date": "2026-02-30", "ingestion_end_date": "2026-03-09"}, None, "not a valid date"),
        ({"ingestion_start_date": "2026-01-09", "ingestion_end_date": "2026-01-05"}, None, "must be before ingestion_end_date"),
        ({"ingestion_start_date": "2026-01-09"}, None, "must be given together"),
        ({"window_start": "2024-01-22"}, None, "window_start='2024-01-22' must be an ISO 8601 date-time with offset"),
        ({"window_start": "2024-01-22T09:30:00"}, None, "with offset"),
        ({"window_start": "2024-01-22T09:30:00-05:00"}, None, "window_start and window_end must be given together"),
        ({"window_start": "2024-01-23T09:30:00-05:00", "window_end": "2024-01-22T09:30:00-05:00"}, None, "must be before window_end"),
        ({"window_bars": 0}, None, "window_bars=0"),
        ({"run_ingestion": True, "num_contracts": 3, "ingestion_symbols": ["AAPL"]}, None, "num_contracts=3 is larger than the 1 ingestion_symbols"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field(params, conf, message):
    with pytest.raises(RequestError) as excinfo:
        _request(params, conf=conf)
    assert message in str(excinfo.value)


def test_a_scheduled_run_without_an_interval_is_refused():
    with pytest.raises(RequestError, match="needs a data interval"):
        _request({}, run_type="scheduled", data_interval=None)


def test_dates_and_timestamps():
    assert parse_date(None, "d") is None and parse_date("2026-01-05", "d") == "2026-01-05"
    assert parse_timestamp("2024-01-22T14:30:00Z", "t") == "2024-01-22T09:30:00-05:00"
    for bad in (20260105, "2026-1-5", " 2026-01-05"):
        with pytest.raises(RequestError, match="d="):
            parse_date(bad, "d")


def test_without_dates_an_ingestion_takes_the_last_five_closed_sessions():
    # Wednesday 2026-11-25 15:00: that session is still open, so the five end on Tuesday 11-24
    assert default_ingestion_dates(pd.Timestamp("2026-11-25 15:00", tz="America/New_York")) == (
        "2026-11-18",
        "2026-11-25",
    )
    # Monday 2024-12-02 09:00: Thanksgiving (11-28) is no session, the 11-29 early close is one
    assert default_ingestion_dates("2024-12-02T09:00:00-05:00") == ("2024-11-22", "2024-11-30")


def test_the_ingestion_dag_request():
    request = ingestion_request({"symbols": ["MSFT"], "start_date": "2026-01-05", "end_date": "2026-01-09"})
    assert request == {
        "symbols": ["MSFT"],
        "start": "2026-01-05",
        "end": "2026-01-09",
        "allow_partial": False,
    }
    with pytest.raises(RequestError, match="unknown key"):
        ingestion_request({}, {"symbol": ["MSFT"]})


@pytest.mark.parametrize(
    ("start", "end", "idle"),
    [
        ("2024-11-27 15:30", "2024-11-27 16:30", False),  # the cron's 16:30 run: the 15:30 bar
        ("2024-11-27 16:30", "2024-11-28 10:30", True),  # Thanksgiving's morning: no 09:30 bar
        ("2024-11-28 10:30", "2024-11-28 11:30", True),  # Thanksgiving
        ("2024-11-29 12:30", "2024-11-29 13:30", False),  # the early close's last bar (12:30-13:00)
        ("2024-11-29 13:30", "2024-11-29 14:30", True),  # after the 13:00 close
        ("2024-11-29 16:30", "2024-12-02 10:30", False),  # over the weekend: Monday's 09:30 bar
    ],
)
def test_a_cron_interval_without_an_exchange_bar_is_idle(start, end, idle):
    """The cron schedule (TRADING_ORCHESTRATOR_SCHEDULE="30 10-16 * * 1-5"): a run whose interval
    holds no bar start of the exchange has nothing to do; the orchestrator skips it."""
    interval = (pd.Timestamp(start, tz="America/New_York"), pd.Timestamp(end, tz="America/New_York"))
    request = _request({}, run_type="scheduled", data_interval=interval)
    assert bool(request.idle) is idle
    if idle:
        assert "no XNYS bar starts in the data interval" in request.idle
    assert _request({}, run_type="backfill", data_interval=interval).idle == request.idle
    assert _request({}).idle is None  # a manual run has no interval to be empty


def test_analyze_symbol_runs_derive_their_ids_from_the_orchestrator_run():
    from trading_lib.run_request import analyze_symbol_runs

    plan = {"run_id": "r1", "window_start": "a", "window_end": "b", "contracts": ["AAPL", "BRK.B"]}
    runs = analyze_symbol_runs(plan)
    assert [item["trigger_run_id"] for item in runs] == ["r1__AAPL", "r1__BRK.B"]
    assert runs[1]["conf"] == {
        "contract": "BRK.B",
        "window_start": "a",
        "window_end": "b",
        "orchestrator_run_id": "r1",
    }
