"""The exchange's sessions: the NYSE calendar, the hourly bar grid of each session, bar ends,
warm-up and window arithmetic. The one home of these facts: ingestion, validation, the bar store,
the sample generator, the request rules and the Airflow timetable all ask here.

Light at import (DAG files and the plugin import it at parse time): pandas and
exchange_calendars are imported on first use, and the calendar is loaded once per process.

The grid. A session's bars start on the hour from its open (09:30 America/New_York) while before
its close, and are labelled by their start, as Yahoo labels 1h bars: 09:30, 10:30, ..., 15:30 on a
full day (7 bars), 09:30 ... 12:30 on a 13:00 early close (4 bars). A bar ends an hour after its
start or at the close, whichever is first: the 15:30 bar ends at 16:00, an early close's 12:30
bar at 13:00. Holidays have no bars. Times are tz-aware America/New_York (layout.EXCHANGE_TZ),
microsecond unit; dates are naive session dates (midnight).

API (``when`` / ``after`` / ``until``: anything pandas reads as an instant; naive = exchange time):

    EXCHANGE, BAR, BARS_PER_SESSION, MIN_BARS_PER_SESSION, WARMUP_SESSIONS    constants
    calendar()                              the exchange_calendars XNYS calendar (cached)
    sessions_in_range(first_day, last_day)  session dates in [first_day, last_day]
    sessions_before(first_day, count)       the ``count`` sessions before first_day's session
    completed_sessions(count, now=None)     (first session, day after the last) of the last
                                            ``count`` sessions closed by ``now``
    bars(first_day, last_day)               the grid: DataFrame session, start, end
    bar_starts(first_day, last_day)         its starts (DatetimeIndex)
    bar_starts_from(first_day, count)       the first ``count`` bar starts from first_day on
    ended_bar_starts(first_day, last_day, by)  the grid bars of those sessions ended by ``by``
    bar_ends(starts, next_starts=None)      end of each given bar (vectorized, any timestamps)
    next_bar_starts(timestamps)             the grid bar start right after each (vectorized)
    bar_at(when)                            (start, end) of the bar covering ``when``, or None
    next_bar(when) / previous_bar(when)     (start, end) of the first bar ending after ``when`` /
                                            of the last bar ended by ``when``
    bars_ending_between(after, until)       the grid bars whose end is in (after, until]

Instants outside the calendar's range (exchange_calendars: 20 years back, one year ahead) raise
SessionRangeError (a BadInputError) naming them.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING

from trading_lib import layout
from trading_lib.errors import BadInputError

if TYPE_CHECKING:  # pandas stays out of module import: DAG files and the plugin import this module
    import pandas as pd

EXCHANGE = "XNYS"  # exchange_calendars' code of the New York Stock Exchange
BAR = dt.timedelta(hours=1)  # the bar length: Yahoo's 1h bars
BARS_PER_SESSION = 7  # a full session, 09:30 ... 15:30 (16:00 close)
MIN_BARS_PER_SESSION = 4  # a 13:00 early close, 09:30 ... 12:30: the fewest bars a session has
# Sessions before a window that its beta reads (analytics.BETA_WINDOW_BARS = 70 ^GSPC bars at or
# before each bar, plus the bar before them for the first return): 10 full sessions and a bar.
# Ingestion stores them, validation checks them, the sample generator makes them.
WARMUP_SESSIONS = 11


class SessionRangeError(BadInputError):
    """A date or instant outside the exchange calendar's range; the message names it."""


@functools.cache
def calendar():
    """The exchange_calendars calendar of EXCHANGE, loaded once (about 0.1 s after the import)."""
    import exchange_calendars as xcals

    return xcals.get_calendar(EXCHANGE)


def _day(value: object) -> pd.Timestamp:
    """The exchange-local date (naive midnight) of a date or instant."""
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(layout.EXCHANGE_TZ).tz_localize(None)
    return ts.normalize()


def _instant(value: object) -> pd.Timestamp:
    """An instant in exchange time (naive = exchange time)."""
    return layout.to_exchange_time(value)


def _check_range(first: pd.Timestamp, last: pd.Timestamp) -> None:
    cal = calendar()
    if first < cal.first_session or last > cal.last_session:
        raise SessionRangeError(
            f"{first.date()} .. {last.date()} is outside the {EXCHANGE} calendar "
            f"({cal.first_session.date()} .. {cal.last_session.date()})"
        )


def sessions_in_range(first_day: object, last_day: object) -> pd.DatetimeIndex:
    """The session dates from ``first_day`` to ``last_day``, both included (empty if none)."""
    first, last = _day(first_day), _day(last_day)
    if first > last:
        import pandas as pd

        return pd.DatetimeIndex([])
    _check_range(first, last)
    return calendar().sessions_in_range(first, last)


def sessions_before(first_day: object, count: int) -> pd.DatetimeIndex:
    """The ``count`` sessions before the session of ``first_day`` (or the next one, on a holiday)."""
    day = _day(first_day)
    _check_range(day, day)
    cal = calendar()
    first = cal.date_to_session(day, direction="next")
    return cal.sessions_window(first, -(count + 1))[:-1]


def completed_sessions(count: int, now: object = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The last ``count`` sessions that had closed by ``now`` (default: now): (first session, the
    day after the last), the [start, end) date range a request without dates means."""
    import pandas as pd

    now = pd.Timestamp.now(tz="UTC") if now is None else _instant(now).tz_convert("UTC")
    cal = calendar()
    closed = cal.closes[cal.closes <= now]
    if len(closed) < count:
        raise SessionRangeError(f"fewer than {count} {EXCHANGE} sessions closed by {now.isoformat()}")
    last = closed.index[-1]
    first = cal.sessions_window(last, -count)[0]
    return pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1)


def bars(first_day: object, last_day: object) -> pd.DataFrame:
    """The bar grid of the sessions from ``first_day`` to ``last_day`` (dates, both included):
    one row per bar, in time order: session (naive date), start, end (exchange time)."""
    import numpy as np
    import pandas as pd

    sessions = sessions_in_range(first_day, last_day)
    cal = calendar()
    opens = cal.opens.loc[sessions].to_numpy(dtype="datetime64[ns]")  # UTC
    closes = cal.closes.loc[sessions].to_numpy(dtype="datetime64[ns]")
    starts = opens[:, None] + np.arange(BARS_PER_SESSION) * np.timedelta64(BAR)
    on_grid = starts < closes[:, None]
    ends = np.minimum(starts + np.timedelta64(BAR), closes[:, None])
    session = np.broadcast_to(sessions.to_numpy(dtype="datetime64[ns]")[:, None], starts.shape)

    def exchange_time(values: np.ndarray) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(values).tz_localize("UTC").tz_convert(layout.EXCHANGE_TZ)
        return index.as_unit(layout.TIMESTAMP_UNIT)

    return pd.DataFrame(
        {
            "session": pd.DatetimeIndex(session[on_grid]),
            "start": exchange_time(starts[on_grid]),
            "end": exchange_time(ends[on_grid]),
        }
    )


def bar_starts(first_day: object, last_day: object) -> pd.DatetimeIndex:
    """The grid's bar starts of the sessions from ``first_day`` to ``last_day`` (both included)."""
    import pandas as pd

    return pd.DatetimeIndex(bars(first_day, last_day)["start"])


def bar_starts_from(first_day: object, count: int) -> pd.DatetimeIndex:
    """The first ``count`` bar starts of the sessions from ``first_day`` on."""
    day = _day(first_day)
    _check_range(day, day)
    cal = calendar()
    first = cal.date_to_session(day, direction="next")
    sessions = cal.sessions_window(first, -(-count // MIN_BARS_PER_SESSION) + 1)
    return bar_starts(sessions[0], sessions[-1])[:count]


def ended_bar_starts(first_day: object, last_day: object, by: object) -> pd.DatetimeIndex:
    """The grid bars of the sessions from ``first_day`` to ``last_day`` that had ended by ``by``
    (end <= by): what a complete store holds of those sessions at that instant."""
    import pandas as pd

    grid = bars(first_day, last_day)
    return pd.DatetimeIndex(grid.loc[grid["end"] <= _instant(by), "start"])


def bar_ends(starts, next_starts=None) -> pd.Series:
    """End of each 1h bar (positional, exchange time): one hour after its start, or the session
    close if that comes first (the 15:30 bar and early closes), or the next bar's start if
    ``next_starts`` is given and that comes first (NaT: no next bar). The close counts only for a
    bar that starts before it: a bar on a day with no session, or after the close, lasts one hour.
    Any timestamps (^VIX's on the hour too), not only grid starts."""
    import pandas as pd

    starts = pd.Series(layout.to_exchange_time(starts)).reset_index(drop=True)
    days = pd.DatetimeIndex(starts.dt.tz_localize(None).dt.normalize())
    closes = pd.Series(calendar().closes.reindex(days).to_numpy()).dt.tz_convert(layout.EXCHANGE_TZ)
    ends = starts + pd.Timedelta(BAR)
    ends = ends.where(~((closes > starts) & (closes < ends)), closes)  # NaT compares False: no cap
    if next_starts is not None:
        following = pd.Series(layout.to_exchange_time(next_starts)).reset_index(drop=True)
        ends = ends.where(~(following < ends), following)
    return ends.dt.as_unit(layout.TIMESTAMP_UNIT)


def next_bar_starts(timestamps) -> pd.Series:
    """For each timestamp (positional), the start of the first grid bar that starts after it: for a
    grid bar, the next bar of the grid (across nights, weekends and holidays: 15:30 -> the next
    session's 09:30). NaT past the calendar's last session."""
    import numpy as np
    import pandas as pd

    times = pd.Series(layout.to_exchange_time(timestamps)).reset_index(drop=True)
    if times.empty or times.isna().all():
        return pd.Series(pd.NaT, index=times.index, dtype=times.dtype)
    cal = calendar()
    first = _day(times.min())
    last = min(_day(times.max()) + pd.Timedelta(days=10), cal.last_session)  # beyond any closure
    grid = bar_starts(first, last)
    position = np.searchsorted(grid.asi8, times.dt.as_unit(layout.TIMESTAMP_UNIT).array.asi8, side="right")
    padded = grid.append(pd.DatetimeIndex([pd.NaT], tz=layout.EXCHANGE_TZ).as_unit(layout.TIMESTAMP_UNIT))
    return pd.Series(padded[position]).where(times.notna().to_numpy())


def _bars_around(when: pd.Timestamp, before: int, after: int) -> pd.DataFrame:
    """The grid of ``before`` sessions up to ``when``'s date and ``after`` sessions after it."""
    cal = calendar()
    day = _day(when)
    _check_range(day, day)
    previous = cal.date_to_session(day, direction="previous")
    following = cal.date_to_session(day, direction="next")
    window = cal.sessions_window(previous, -before)[0], cal.sessions_window(following, after + 1)[-1]
    return bars(*window)


def _pair(row) -> tuple[pd.Timestamp, pd.Timestamp]:
    return row["start"], row["end"]


def bar_at(when: object) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(start, end) of the grid bar covering ``when`` (start <= when < end), or None (the exchange
    is closed then: a night, a weekend, a holiday, after an early close)."""
    when = _instant(when)
    grid = _bars_around(when, 1, 0)
    covering = grid[(grid["start"] <= when) & (when < grid["end"])]
    return None if covering.empty else _pair(covering.iloc[0])


def next_bar(when: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the first grid bar that ends after ``when`` (the bar covering it, if any)."""
    when = _instant(when)
    grid = _bars_around(when, 1, 2)
    return _pair(grid[grid["end"] > when].iloc[0])


def previous_bar(when: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the last grid bar that had ended by ``when`` (end <= when)."""
    when = _instant(when)
    grid = _bars_around(when, 2, 0)
    return _pair(grid[grid["end"] <= when].iloc[-1])


def bars_ending_between(after: object, until: object) -> pd.DataFrame:
    """The grid bars whose end is in (``after``, ``until``]: the bars that close between two
    instants (a timetable's runs, one per bar close). DataFrame session, start, end."""
    after, until = _instant(after), _instant(until)
    if until <= after:
        return bars(after, after).iloc[0:0]
    grid = bars(_day(after), _day(until))
    return grid[(grid["end"] > after) & (grid["end"] <= until)].reset_index(drop=True)
