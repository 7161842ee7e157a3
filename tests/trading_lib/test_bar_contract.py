"""The data contract on the real 2022 bars (clean: they pass) with one defect put in at a time."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trading_lib import layout
from trading_lib.bar_contract import CHECKS, VIOLATION_COLUMNS, check_bars, violations
from trading_lib.errors import BadDataError, BadInputError

REAL_BARS = Path(__file__).resolve().parents[2] / "input" / "yahoo-1h-2022"
SYMBOLS = ("AAPL", "FB", "GOOG", "NFLX", "TSLA", "^GSPC", "^VIX")
SOURCE = "bars/2022-03-15.parquet"


def _read(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(REAL_BARS / f"{symbol}_1h.csv")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": pd.to_datetime(frame["Datetime"], utc=True)
            .dt.tz_convert(layout.EXCHANGE_TZ)
            .dt.as_unit(layout.TIMESTAMP_UNIT),
            **{c.lower(): frame[c].astype("float64") for c in ("Open", "High", "Low", "Close", "Volume")},
        }
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """Every real bar as one store frame (symbol, timestamp, open, high, low, close, volume)."""
    return pd.concat([_read(s) for s in SYMBOLS], ignore_index=True)


def _at(frame: pd.DataFrame, symbol: str, when: str) -> int:
    """The row label of a symbol's bar."""
    rows = frame.index[
        (frame["symbol"] == symbol) & (frame["timestamp"] == pd.Timestamp(when, tz=layout.EXCHANGE_TZ))
    ]
    assert len(rows) == 1
    return rows[0]


def _message(frame: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(BadDataError) as excinfo:
        check_bars(frame, SOURCE, **kwargs)
    assert isinstance(excinfo.value, BadInputError)  # never retried
    return str(excinfo.value)


def test_the_real_bars_keep_the_contract(real):
    assert len(real) == 7 * 154
    check_bars(real, SOURCE)
    for symbol in SYMBOLS:  # an index series alone, without a symbol column
        check_bars(_read(symbol).drop(columns="symbol"), f"{symbol}.csv", symbol_column=None)
    found = violations(real)
    assert found.empty and list(found.columns) == VIOLATION_COLUMNS
    check_bars(real.iloc[0:0], SOURCE)  # no bars: nothing to violate


def test_an_infinite_close_is_named_with_file_column_symbol_bar_and_count(real):
    bad = real.copy()
    bad.loc[_at(bad, "AAPL", "2022-03-15 10:30"), "close"] = np.inf
    assert _message(bad) == (
        f"{SOURCE}: column close must be finite and > 0: AAPL at 2022-03-15T10:30:00-04:00 is inf (1 row)"
    )
    bad.loc[_at(bad, "TSLA", "2022-03-16 14:30"), "close"] = -np.inf
    assert _message(bad).endswith("AAPL at 2022-03-15T10:30:00-04:00 is inf (2 rows)")


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("close", 0.0, "is 0.0"),
        ("open", -1.5, "is -1.5"),
        ("low", np.inf, "is inf"),
        ("high", "n/a", "is not a number: 'n/a'"),
    ],
)
def test_prices_must_be_finite_and_positive(real, column, value, shown):
    bad = real.astype({column: object}) if isinstance(value, str) else real.copy()
    row = _at(bad, "GOOG", "2022-04-01 11:30")
    bad.loc[row, column] = value
    assert _message(bad) == (
        f"{SOURCE}: column {column} must be finite and > 0: GOOG at 2022-04-01T11:30:00-04:00 {shown} (1 row)"
    )
    found = violations(bad)
    assert found[["check", "symbol", "column"]].values.tolist() == [["price_values", "GOOG", column]]
    assert found["timestamp"].tolist() == [bad.loc[row, "timestamp"]]


def test_a_missing_close_is_a_missing_bar_not_a_violation(real):
    gappy = real.copy()
    gappy.loc[_at(gappy, "NFLX", "2022-03-17 12:30"), ["open", "high", "low", "close", "volume"]] = np.nan
    gappy.loc[_at(gappy, "FB", "2022-03-17 12:30"), "close"] = np.nan  # high/low checked against open
    check_bars(gappy, SOURCE)
    assert violations(gappy).empty


def test_high_and_low_must_bracket_open_and_close(real):
    bad = real.copy()
    high_row = _at(bad, "AAPL", "2022-03-18 13:30")
    bad.loc[high_row, "high"] = bad.loc[high_row, ["open", "close"]].max() - 0.01
    low_row = _at(bad, "^GSPC", "2022-03-22 09:30")
    bad.loc[low_row, "low"] = bad.loc[low_row, ["open", "close"]].min() + 0.01
    message = _message(bad)
    assert message.startswith(
        f"{SOURCE}: column high must be >= max(open, close): AAPL at 2022-03-18T13:30:00-04:00 is "
    )
    assert message.endswith("(1 row)")
    found = violations(bad)
    assert found[["check", "symbol", "column"]].values.tolist() == [
        ["price_range", "AAPL", "high"],
        ["price_range", "^GSPC", "low"],
    ]
    assert found["detail"].str.contains(r"min\(open, close\) is ").tolist() == [False, True]
    # against the one present when open or close is missing
    bad.loc[high_row, "close"] = np.nan
    bad.loc[high_row, "high"] = bad.loc[high_row, "open"] - 0.01
    assert violations(bad)["symbol"].tolist() == ["AAPL", "^GSPC"]


def test_volume_must_be_finite_and_not_negative(real):
    bad = real.copy()
    bad.loc[_at(bad, "TSLA", "2022-04-11 10:30"), "volume"] = -100.0
    bad.loc[_at(bad, "TSLA", "2022-04-11 11:30"), "volume"] = np.inf
    bad.loc[_at(bad, "TSLA", "2022-04-11 12:30"), "volume"] = np.nan  # allowed
    assert _message(bad) == (
        f"{SOURCE}: column volume must be finite and >= 0: "
        "TSLA at 2022-04-11T10:30:00-04:00 is -100.0 (2 rows)"
    )
    assert violations(bad)["value"].tolist() == [-100.0, np.inf]


@pytest.mark.parametrize(
    ("convert", "kind", "shown"),
    [
        (lambda t: t.dt.tz_localize(None), "is naive (datetime64[us], no time zone)", "2022-03-14T09:30:00"),
        (lambda t: t.astype(str), "is text, not date-times", "'2022-03-14 09:30:00-04:00'"),
        (lambda t: t.astype("int64"), "is integers (int64), not date-times", "1647264600000000"),
    ],
    ids=["naive", "text", "integer"],
)
def test_timestamps_must_be_timezone_aware(real, convert, kind, shown):
    bad = real.assign(timestamp=convert(real["timestamp"]))
    assert _message(bad) == (
        f"{SOURCE}: column timestamp must be a timezone-aware date-time: AAPL at {shown} {kind} "
        f"({len(real):,} rows)"
    )
    found = violations(bad)
    assert len(found) == len(real) and set(found["check"]) == {"timestamp_type"}
    assert found["timestamp"].isna().all()  # no usable timestamp; the raw one is the value
    assert found["value"].iloc[0] == bad["timestamp"].iloc[0]


def test_a_bar_without_a_timestamp_is_a_violation(real):
    bad = real.copy()
    bad.loc[_at(bad, "FB", "2022-03-14 09:30"), "timestamp"] = pd.NaT
    assert _message(bad) == (
        f"{SOURCE}: column timestamp must be a timezone-aware date-time: FB at NaT is missing (NaT) (1 row)"
    )


def test_every_repeat_of_a_bar_is_a_violation_identical_or_not(real):
    bad = real.copy()
    row = _at(bad, "NFLX", "2022-03-23 12:30")
    revised = bad.loc[[row]].assign(close=bad.loc[row, "close"] + 1.0)
    bad = pd.concat([bad, bad.loc[[row]], revised], ignore_index=True)
    assert _message(bad) == (
        f"{SOURCE}: (symbol, timestamp) must be unique: NFLX at 2022-03-23T12:30:00-04:00 appears 3 times "
        "(identical to an earlier row) (2 rows)"
    )
    found = violations(bad)
    assert found["check"].tolist() == ["duplicates", "duplicates"]
    assert found["detail"].str.extract(r"\((identical|with)")[0].tolist() == ["identical", "with"]
    # the same timestamp in another symbol is no repeat; without a symbol column it is
    vix = _read("^VIX").drop(columns="symbol")
    check_bars(real, SOURCE)
    doubled = pd.concat([vix, vix.iloc[[5]]], ignore_index=True)
    assert _message(doubled, symbol_column=None) == (
        f"{SOURCE}: timestamp must be unique: at 2022-03-14T14:30:00-04:00 appears 2 times "
        "(identical to an earlier row) (1 row)"
    )


def test_the_first_kind_found_is_reported_and_violations_lists_every_one(real):
    bad = real.copy()
    bad.loc[_at(bad, "AAPL", "2022-04-13 15:30"), "volume"] = -1.0
    bad.loc[_at(bad, "GOOG", "2022-04-13 15:30"), "close"] = 0.0
    bad = pd.concat([bad, bad.iloc[[3]]], ignore_index=True)
    assert "must be unique" in _message(bad)  # duplicates come before prices and volume
    found = violations(bad)
    assert found["check"].tolist() == ["duplicates", "price_values", "volume_values"]
    assert found["symbol"].tolist() == ["AAPL", "GOOG", "AAPL"]
    assert list(CHECKS) == [
        "columns",
        "timestamp_type",
        "duplicates",
        "price_values",
        "price_range",
        "volume_values",
    ]
    assert set(found["check"]) <= set(CHECKS)


def test_key_columns_must_exist(real):
    assert _message(real.drop(columns="symbol")) == (
        f"{SOURCE}: missing column(s) symbol (it has timestamp, open, high, low, close, volume)"
    )
    assert re.match(
        rf"{re.escape(SOURCE)}: missing column\(s\) timestamp ", _message(real.drop(columns="timestamp"))
    )
    found = violations(real.drop(columns="symbol"))
    assert found[["check", "column"]].values.tolist() == [["columns", "symbol"]]
