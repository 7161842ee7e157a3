"""ExchangeBarTimetable: one run per bar of the XNYS sessions, checked against exchange_calendars
(not against trading_lib.sessions, which it is built on): holidays, early closes, DST weeks,
catchup, end dates, backfill ranges as the scheduler computes them, and serialization."""

from __future__ import annotations

import exchange_calendars as xcals
import pandas as pd
import pendulum
import pytest

pytestmark = pytest.mark.airflow

NY = "America/New_York"


def _calendar_bars(first_day: str, last_day: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The hourly bars of exchange_calendars' XNYS sessions: from the open while before the close,
    each ending an hour later or at the close."""
    calendar = xcals.get_calendar("XNYS")
    out = []
    for session in calendar.sessions_in_range(first_day, last_day):
        open_, close = calendar.session_open(session), calendar.session_close(session)
        start = open_
        while start < close:
            out.append((start, min(start + pd.Timedelta(hours=1), close)))
            start += pd.Timedelta(hours=1)
    return out


def _runs(earliest, latest, catchup=True) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    from airflow.timetables.base import TimeRestriction

    from trading_airflow.timetables import ExchangeBarTimetable

    timetable, info, runs = ExchangeBarTimetable(), None, []
    restriction = TimeRestriction(earliest, latest, catchup)
    while (
        info := timetable.next_dagrun_info(
            last_automated_data_interval=info and info.data_interval, restriction=restriction
        )
    ) is not None:
        assert info.run_after == info.data_interval.end  # the run starts when its bar closes
        runs.append((pd.Timestamp(info.data_interval.start), pd.Timestamp(info.data_interval.end)))
        assert len(runs) < 2000
    return runs


def _ny(text: str) -> pendulum.DateTime:
    return pendulum.parse(text, tz=NY)


def test_thanksgiving_week_has_no_run_on_the_holiday_and_none_after_the_early_close():
    runs = _runs(_ny("2024-11-25"), _ny("2024-12-02T23:59"))
    assert runs == _calendar_bars("2024-11-25", "2024-12-02")
    local = [(s.tz_convert(NY), e.tz_convert(NY)) for s, e in runs]
    assert not [s for s, _ in local if s.date() == pd.Timestamp("2024-11-28").date()]  # Thanksgiving
    early = [(s.strftime("%H:%M"), e.strftime("%H:%M")) for s, e in local if str(s.date()) == "2024-11-29"]
    assert early == [("09:30", "10:30"), ("10:30", "11:30"), ("11:30", "12:30"), ("12:30", "13:00")]
    full = [e.strftime("%H:%M") for s, e in local if str(s.date()) == "2024-11-27"]
    assert full == ["10:30", "11:30", "12:30", "13:30", "14:30", "15:30", "16:00"]


@pytest.mark.parametrize(("first", "last"), [("2024-03-07", "2024-03-13"), ("2024-10-31", "2024-11-06")])
def test_dst_weeks_keep_the_bars_at_exchange_time(first, last):
    runs = _runs(_ny(first), _ny(f"{last}T23:59"))
    assert runs == _calendar_bars(first, last)
    assert {s.tz_convert(NY).strftime("%H:%M") for s, _ in runs} == {
        "09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30",
    }  # fmt: skip
    assert len({s.tz_convert(NY).utcoffset() for s, _ in runs}) == 2  # the week changes its UTC offset


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_a_year_of_runs_is_the_calendars_bars(year):
    runs = _runs(_ny(f"{year}-01-01"), _ny(f"{year}-12-31T23:59"))
    assert runs == _calendar_bars(f"{year}-01-01", f"{year}-12-31")


def test_a_start_date_inside_a_bar_starts_at_the_next_bar():
    runs = _runs(_ny("2024-11-27T10:45"), _ny("2024-11-27T12:30"))
    assert [s.tz_convert(NY).strftime("%H:%M") for s, _ in runs] == ["11:30", "12:30"]  # end inclusive


def test_without_catchup_the_first_run_is_the_last_closed_bar():
    from airflow.timetables.base import TimeRestriction

    from trading_airflow.timetables import ExchangeBarTimetable

    now = pd.Timestamp.now(tz="UTC")
    info = ExchangeBarTimetable().next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(_ny("2024-01-01"), None, False)
    )
    recent = _calendar_bars(str((now - pd.Timedelta(days=10)).date()), str(now.date()))
    closed = [bar for bar in recent if bar[1] <= now]
    assert (pd.Timestamp(info.data_interval.start), pd.Timestamp(info.data_interval.end)) == closed[-1]


def test_a_manual_run_with_a_logical_date_covers_the_last_closed_bar():
    from trading_airflow.timetables import ExchangeBarTimetable

    interval = ExchangeBarTimetable().infer_manual_data_interval(run_after=_ny("2024-11-29T15:00"))
    assert (interval.start, interval.end) == (_ny("2024-11-29T12:30"), _ny("2024-11-29T13:00"))


def test_the_scheduler_reads_it_back_and_a_backfill_creates_exactly_the_exchanges_bars():
    """Serialized as the dag-processor stores it, deserialized as the scheduler reads it (the class
    found through the plugin), then the run infos a backfill creates for the range."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from trading_airflow.timetables import ExchangeBarTimetable

    dag = DAG("exchange_timetable_check", schedule=ExchangeBarTimetable(), start_date=_ny("2024-01-01"))
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert isinstance(scheduler_dag.timetable, ExchangeBarTimetable)
    assert scheduler_dag.timetable.summary == "XNYS bars"
    infos = list(scheduler_dag.iter_dagrun_infos_between(_ny("2024-11-27"), _ny("2024-11-29T16:00")))
    got = [(pd.Timestamp(i.data_interval.start), pd.Timestamp(i.data_interval.end)) for i in infos]
    assert got == _calendar_bars("2024-11-27", "2024-11-29")
    assert len(got) == 7 + 4


def test_the_orchestrator_schedule_setting():
    from airflow.sdk import CronDataIntervalTimetable

    from trading_airflow.timetables import ExchangeBarTimetable, orchestrator_timetable
    from trading_lib.settings import load_settings

    assert isinstance(orchestrator_timetable(load_settings({})), ExchangeBarTimetable)
    cron = orchestrator_timetable(load_settings({"TRADING_ORCHESTRATOR_SCHEDULE": "30 10-16 * * 1-5"}))
    assert isinstance(cron, CronDataIntervalTimetable)
    assert orchestrator_timetable(load_settings({"TRADING_ORCHESTRATOR_SCHEDULE": "none"})) is None
