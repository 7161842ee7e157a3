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
        from trading_lib.sessions import previous_bar

        start, end = previous_bar(run_after)
        return DataInterval(_utc(start), _utc(end))

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        from trading_lib.sessions import SessionRangeError

        try:
            bar = self._next_bar(last_automated_data_interval, restriction)
        except SessionRangeError as exc:  # past the calendar's last session: nothing to schedule
            log.warning("no next bar to schedule: %s", exc)
            return None
        if bar is None or (restriction.latest is not None and bar[0] > restriction.latest):
            return None
        return DagRunInfo.interval(start=bar[0], end=bar[1])

    def _next_bar(
        self, last: DataInterval | None, restriction: TimeRestriction
    ) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
        from trading_lib.sessions import next_bar, previous_bar

        def starting_at_or_after(when) -> tuple[pendulum.DateTime, pendulum.DateTime]:
            start, end = next_bar(when)  # the first bar ending after ``when``: it may start before
            if _utc(start) < when:
                start, end = next_bar(end)
            return _utc(start), _utc(end)

        candidates = []
        if last is not None:
            candidates.append(starting_at_or_after(last.end))
        elif restriction.earliest is None:
            return None  # no start date: no schedule
        if restriction.earliest is not None:
            candidates.append(starting_at_or_after(restriction.earliest))
        if not restriction.catchup:  # no missed bars: the last one closed by now at the earliest
            start, end = previous_bar(pendulum.now("UTC"))
            candidates.append((_utc(start), _utc(end)))
        return max(candidates)


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
