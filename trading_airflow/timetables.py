"""trading_orchestrator's schedule: the exchange's bars (a custom Airflow timetable, registered by
the plugin ``plugins/trading_reports_plugin.py``), or a cron when the settings ask for one.

ExchangeBarTimetable: one run per bar of the exchange's sessions, started when the bar closes,
its data interval the bar: 09:30-10:30, ..., 14:30-15:30, 15:30-16:00 America/New_York on a full
session, 09:30-10:30, ..., 12:30-13:00 on an early close, nothing on a holiday or a weekend. The
grid comes from trading_lib.sessions (exchange_calendars), the one home of the calendar.

The scheduler and the dag-processor import this module (the plugin and the DAG file do): it
imports no pandas and no exchange_calendars; trading_lib.sessions loads them on the first
schedule computation, once per process.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction

    from trading_lib.settings import Settings

log = logging.getLogger(__name__)


def _utc(value: Any) -> pendulum.DateTime:
    """A pandas/datetime instant as the aware pendulum DateTime (UTC) Airflow's intervals use."""
    return pendulum.instance(value.to_pydatetime() if hasattr(value, "to_pydatetime") else value).in_timezone(
        "UTC"
    )


Bar = tuple[pendulum.DateTime, pendulum.DateTime]


@functools.lru_cache(maxsize=64)
def _month_bars(year: int, month: int) -> tuple[Bar, ...]:
    """The (start, end) bars of a calendar month's sessions (the scheduler asks for one bar at a
    time: a backfill of a year is ~1,760 questions, answered from ~12 grids). Empty outside the
    calendar's range."""
    import pandas as pd

    from trading_lib import sessions

    first = pd.Timestamp(year=year, month=month, day=1)
    last = first + pd.offsets.MonthEnd(0)
    calendar = sessions.calendar()
    first, last = max(first, calendar.first_session), min(last, calendar.last_session)
    if first > last:
        return ()
    grid = sessions.bars(first, last)
    return tuple((_utc(s), _utc(e)) for s, e in zip(grid["start"], grid["end"], strict=True))


def _months(when: pendulum.DateTime, step: int, count: int = 3):
    """(year, month) of ``when`` in exchange time, then the ``count`` - 1 months after (step 1) or
    before (step -1) it: no closure of the exchange lasts a whole month."""
    local = when.in_timezone("America/New_York")
    index = local.year * 12 + local.month - 1
    for k in range(count):
        year, month = divmod(index + k * step, 12)
        yield year, month + 1


def _first_bar_starting_at_or_after(when: pendulum.DateTime) -> Bar | None:
    for year, month in _months(when, 1):
        starts = [bar for bar in _month_bars(year, month) if bar[0] >= when]
        if starts:
            return starts[0]
    return None


def _last_bar_ended_by(when: pendulum.DateTime) -> Bar | None:
    for year, month in _months(when, -1):
        ended = [bar for bar in _month_bars(year, month) if bar[1] <= when]
        if ended:
            return ended[-1]
    return None


class ExchangeBarTimetable(Timetable):
    """One run per bar of the exchange's sessions, at the bar's close; the data interval is the bar.

    catchup (and backfill) create exactly the exchange's bars from the start date on; without
    catchup the first run is the last bar that has closed. Takes no arguments: the exchange, its
    calendar and the bar length are trading_lib.sessions' facts.
    """

    @property
    def summary(self) -> str:
        from trading_lib.sessions import EXCHANGE

        return f"{EXCHANGE} bars"

    @property
    def description(self) -> str:  # the UI's tooltip of the schedule
        from trading_lib.sessions import EXCHANGE

        return (
            f"At the close of each hourly bar of the {EXCHANGE} sessions (09:30 America/New_York "
            "on; the last bar ends at the close, 13:00 on an early close); no run on holidays"
        )

    def serialize(self) -> dict[str, Any]:
        return {}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> ExchangeBarTimetable:
        return cls()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExchangeBarTimetable)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def infer_manual_data_interval(self, *, run_after: pendulum.DateTime) -> DataInterval:
        """A run triggered with a logical date covers the last bar closed by then."""
        bar = _last_bar_ended_by(_utc(run_after))
        if bar is None:
            raise ValueError(f"no bar of the exchange closed in the three months up to {run_after}")
        return DataInterval(*bar)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        last, earliest = last_automated_data_interval, restriction.earliest
        if last is None and earliest is None:
            return None  # no start date: no schedule
        candidates = [
            _first_bar_starting_at_or_after(_utc(when)) for when in (last and last.end, earliest) if when
        ]
        if not restriction.catchup:  # no missed bars: the last one closed by now at the earliest
            candidates.append(_last_bar_ended_by(pendulum.now("UTC")))
        if None in candidates:  # past the calendar's range (exchange_calendars: a year ahead)
            log.warning("no next bar to schedule after %s / %s", last, earliest)
            return None
        start, end = max(candidates)
        if restriction.latest is not None and start > restriction.latest:
            return None
        return DagRunInfo.interval(start=start, end=end)


def orchestrator_timetable(settings: Settings) -> Timetable | None:
    """The orchestrator's schedule: ExchangeBarTimetable (TRADING_ORCHESTRATOR_SCHEDULE=exchange,
    the default), a cron in the exchange's time zone, or None (manual runs only)."""
    from trading_lib.settings import EXCHANGE_SCHEDULE, SCHEDULE_TIMEZONE

    schedule = settings.orchestrator_schedule
    if schedule is None:
        return None
    if schedule.strip().lower() == EXCHANGE_SCHEDULE:
        return ExchangeBarTimetable()
    from airflow.sdk import CronDataIntervalTimetable

    return CronDataIntervalTimetable(schedule, timezone=SCHEDULE_TIMEZONE)
