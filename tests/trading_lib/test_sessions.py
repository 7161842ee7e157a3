"""trading_lib.sessions against exchange_calendars' own minute grid, 2024-2026: DST weeks,
holidays and early closes."""

import subprocess
import sys

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from trading_lib import layout, sessions
from trading_lib.analytics import BETA_WINDOW_BARS

NYSE = xcals.get_calendar("XNYS")
TZ = layout.EXCHANGE_TZ
FIRST, LAST = "2024-01-01", "2026-12-31"


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    return sessions.bars(FIRST, LAST)


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    """Bars from exchange_calendars' trading minutes: a bar starts at every minute a whole number of
    hours after its session's open, and ends an hour later or at the close."""
    minutes = NYSE.minutes_in_range(_ts(FIRST).tz_convert("UTC"), _ts(LAST + " 23:59").tz_convert("UTC"))
    days = NYSE.minutes_to_sessions(minutes)
    utc = "datetime64[ns]"
    opens = NYSE.opens.reindex(days).dt.tz_convert(None).to_numpy(dtype=utc)
    closes = NYSE.closes.reindex(days).dt.tz_convert(None).to_numpy(dtype=utc)
    stamps = minutes.tz_convert(None).to_numpy(dtype=utc)
    on_the_hour = (stamps - opens) % np.timedelta64(1, "h") == np.timedelta64(0)
    starts = minutes[on_the_hour]
    ends = np.minimum(stamps[on_the_hour] + np.timedelta64(1, "h"), closes[on_the_hour])
    return pd.DataFrame(
        {
            "session": days[on_the_hour],
            "start": starts.tz_convert(TZ).as_unit("us"),
            "end": pd.DatetimeIndex(ends).tz_localize("UTC").tz_convert(TZ).as_unit("us"),
        }
    )


def test_the_grid_is_exchange_calendars_minute_grid_by_the_hour(grid, expected):
    assert len(grid) == len(expected) > 3 * 250 * 7 - 100
    pd.testing.assert_frame_equal(grid, expected, check_freq=False, check_names=False)
    assert str(grid["start"].dtype) == f"datetime64[us, {TZ}]"


def test_every_session_is_seven_bars_or_four_on_an_early_close(grid):
    per_session = grid.groupby("session")["start"].agg(["size", "first", "last"])
    early = NYSE.early_closes[(NYSE.early_closes >= FIRST) & (NYSE.early_closes <= LAST)]
    # the early closes of 2024-2026, by hand: the day before Independence Day, Black Friday, Christmas Eve
    assert [str(d.date()) for d in early] == [
        "2024-07-03", "2024-11-29", "2024-12-24",
        "2025-07-03", "2025-11-28", "2025-12-24",
        "2026-11-27", "2026-12-24",
    ]  # fmt: skip
    assert (per_session.loc[early, "size"] == sessions.MIN_BARS_PER_SESSION).all()
    assert (per_session.drop(early)["size"] == sessions.BARS_PER_SESSION).all()
    assert set(per_session["first"].dt.strftime("%H:%M")) == {"09:30"}
    assert set(per_session.loc[early, "last"].dt.strftime("%H:%M")) == {"12:30"}
    last_ends = grid.groupby("session")["end"].last()
    assert set(last_ends.loc[early].dt.strftime("%H:%M")) == {"13:00"}
    assert set(last_ends.drop(early).dt.strftime("%H:%M")) == {"16:00"}


@pytest.mark.parametrize(
    "holiday",
    ["2024-11-28", "2025-01-09", "2025-04-18", "2025-07-04", "2026-04-03", "2026-11-26", "2026-12-25"],
)
def test_holidays_have_no_bars(grid, holiday):
    # 2025-01-09: the national day of mourning for President Carter, an ad hoc closure
    assert not NYSE.is_session(holiday)
    assert not (grid["session"] == holiday).any()
    assert sessions.bar_starts(holiday, holiday).empty
    assert sessions.bar_at(_ts(f"{holiday} 11:00")) is None


@pytest.mark.parametrize(
    ("friday", "monday", "offsets"),
    [
        ("2024-03-08", "2024-03-11", ("-05:00", "-04:00")),  # DST began 2024-03-10
        ("2024-11-01", "2024-11-04", ("-04:00", "-05:00")),  # and ended 2024-11-03
        ("2025-03-07", "2025-03-10", ("-05:00", "-04:00")),
        ("2025-10-31", "2025-11-03", ("-04:00", "-05:00")),
        ("2026-03-06", "2026-03-09", ("-05:00", "-04:00")),
        ("2026-10-30", "2026-11-02", ("-04:00", "-05:00")),
    ],
)
def test_daylight_saving_weeks_keep_0930_local(friday, monday, offsets):
    starts = sessions.bar_starts(friday, monday)
    assert [t.isoformat()[-6:] for t in (starts[0], starts[-1])] == list(offsets)
    assert starts.strftime("%H:%M").tolist() == [f"{h:02d}:30" for h in range(9, 16)] * 2
    # the next grid bar of Friday's last bar is Monday's first, and the weekend is no bar
    assert sessions.next_bar_starts(pd.Series(starts[6:7])).iloc[0] == starts[7]
    assert sessions.next_bar(_ts(f"{friday} 16:00")) == (starts[7], starts[7] + pd.Timedelta(hours=1))
    assert sessions.previous_bar(_ts(f"{monday} 09:59")) == (starts[6], _ts(f"{friday} 16:00"))
    assert sessions.bars_ending_between(_ts(f"{friday} 15:00"), _ts(f"{monday} 11:30"))["end"].tolist() == [
        _ts(f"{friday} 15:30"),
        _ts(f"{friday} 16:00"),
        _ts(f"{monday} 10:30"),
        _ts(f"{monday} 11:30"),
    ]


def test_bar_lookups_around_thanksgiving_and_the_early_close():
    assert sessions.bar_at(_ts("2024-11-29 12:30")) == (_ts("2024-11-29 12:30"), _ts("2024-11-29 13:00"))
    assert sessions.bar_at(_ts("2024-11-29 12:59:59")) == (_ts("2024-11-29 12:30"), _ts("2024-11-29 13:00"))
    assert sessions.bar_at(_ts("2024-11-29 13:00")) is None  # closed: the end is not in the bar
    assert sessions.bar_at(_ts("2024-11-29 09:29")) is None
    assert sessions.bar_at("2024-11-27T20:45:00Z") == (_ts("2024-11-27 15:30"), _ts("2024-11-27 16:00"))
    # Wednesday's close -> Friday's first bar, over the holiday; Friday 13:00 -> Monday
    assert sessions.next_bar(_ts("2024-11-27 16:00")) == (_ts("2024-11-29 09:30"), _ts("2024-11-29 10:30"))
    assert sessions.next_bar(_ts("2024-11-29 13:00"))[0] == _ts("2024-12-02 09:30")
    assert sessions.next_bar(_ts("2024-11-29 12:45"))[0] == _ts("2024-11-29 12:30")  # covering it
    assert sessions.previous_bar(_ts("2024-11-29 12:59"))[0] == _ts("2024-11-29 11:30")
    assert sessions.previous_bar(_ts("2024-11-29 13:00"))[0] == _ts("2024-11-29 12:30")
    assert sessions.previous_bar(_ts("2024-11-28 12:00"))[0] == _ts("2024-11-27 15:30")
    closes = sessions.bars_ending_between(_ts("2024-11-27 15:59"), _ts("2024-12-02 10:30"))
    assert closes["end"].tolist() == [
        _ts("2024-11-27 16:00"),
        *(_ts(f"2024-11-29 {t}") for t in ("10:30", "11:30", "12:30", "13:00")),
        _ts("2024-12-02 10:30"),
    ]
    assert sessions.bars_ending_between(_ts("2024-11-28 00:00"), _ts("2024-11-28 23:59")).empty
    assert sessions.bars_ending_between(_ts("2024-11-29 13:00"), _ts("2024-11-29 12:00")).empty


def test_bar_closes_between_instants_cover_the_grid_once(grid):
    # what a timetable does: one run per bar close, interval after interval, none lost, none twice
    edges = pd.date_range(_ts("2024-01-01"), _ts("2026-12-31"), freq="37h")
    pieces = [sessions.bars_ending_between(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ends = pd.concat(pieces)["end"]
    inside = grid.loc[(grid["end"] > edges[0]) & (grid["end"] <= edges[-1]), "end"]
    assert ends.tolist() == inside.tolist()


def test_next_bar_starts_follow_the_grid_across_nights_weekends_and_holidays(grid):
    starts = grid["start"]
    following = sessions.next_bar_starts(starts.iloc[:-1])
    assert following.tolist() == starts.iloc[1:].tolist()
    # off-grid instants: the first grid bar starting after them; NaT stays NaT
    odd = pd.Series([_ts("2024-11-28 10:00"), pd.NaT, _ts("2024-11-29 12:45")])
    assert sessions.next_bar_starts(odd).tolist()[0] == _ts("2024-11-29 09:30")
    assert pd.isna(sessions.next_bar_starts(odd).iloc[1])
    assert sessions.next_bar_starts(odd).iloc[2] == _ts("2024-12-02 09:30")


def test_bars_ended_by_an_instant():
    # 20store's question: which bars of a session must a complete store hold at this instant
    assert sessions.ended_bar_starts("2024-11-29", "2024-11-29", _ts("2024-11-29 12:59")).tolist() == [
        _ts("2024-11-29 09:30"),
        _ts("2024-11-29 10:30"),
        _ts("2024-11-29 11:30"),
    ]
    assert len(sessions.ended_bar_starts("2024-11-29", "2024-11-29", _ts("2024-11-29 13:00"))) == 4
    assert len(sessions.ended_bar_starts("2024-11-25", "2024-11-29", "2024-11-29T18:00:00Z")) == 3 * 7 + 4
    assert sessions.ended_bar_starts("2024-11-28", "2024-11-28", _ts("2024-12-31")).empty


def test_session_arithmetic():
    assert [str(d.date()) for d in sessions.sessions_in_range("2024-11-27", "2024-12-02")] == [
        "2024-11-27",
        "2024-11-29",
        "2024-12-02",
    ]
    # the warm-up of a window starting after Thanksgiving skips it; a holiday start means the next session
    assert [str(d.date()) for d in sessions.sessions_before("2024-11-29", 3)] == [
        "2024-11-25",
        "2024-11-26",
        "2024-11-27",
    ]
    assert sessions.sessions_before("2024-11-28", 3).equals(sessions.sessions_before("2024-11-29", 3))
    assert sessions.completed_sessions(2, _ts("2024-11-29 12:59")) == (
        pd.Timestamp("2024-11-26"),
        pd.Timestamp("2024-11-28"),
    )
    assert sessions.completed_sessions(2, _ts("2024-11-29 13:00"))[1] == pd.Timestamp("2024-11-30")
    starts = sessions.bar_starts_from("2024-11-28", 5)
    assert starts.tolist() == [*sessions.bar_starts("2024-11-29", "2024-11-29"), _ts("2024-12-02 09:30")]
    # the warm-up holds the beta window and the bar before its first return
    assert (sessions.WARMUP_SESSIONS - 1) * sessions.BARS_PER_SESSION >= BETA_WINDOW_BARS + 1 - 7
    assert sessions.WARMUP_SESSIONS * sessions.BARS_PER_SESSION >= BETA_WINDOW_BARS + 1


def test_bar_ends_of_any_timestamps():
    starts = pd.Series([_ts("2024-11-29 12:30"), _ts("2024-11-27 15:30"), _ts("2024-11-28 10:00")])
    assert sessions.bar_ends(starts).tolist() == [
        _ts("2024-11-29 13:00"),  # the early close
        _ts("2024-11-27 16:00"),  # the close
        _ts("2024-11-28 11:00"),  # no session that day: an hour
    ]


def test_outside_the_calendar_is_a_named_error():
    with pytest.raises(sessions.SessionRangeError, match="2090-01-02"):
        sessions.bars("2090-01-02", "2090-01-05")
    with pytest.raises(sessions.SessionRangeError, match="outside the XNYS calendar"):
        sessions.bar_at("1990-01-02T10:00:00-05:00")


def test_importing_the_module_imports_neither_pandas_nor_exchange_calendars():
    # DAG files and the plugin's timetable import it at parse time
    code = (
        "import sys, trading_lib.sessions; "
        "print(sorted(m for m in ('pandas', 'numpy', 'exchange_calendars') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
