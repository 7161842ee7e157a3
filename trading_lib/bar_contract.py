"""The one data contract of a bar frame, for every producer and consumer of bars.

:func:`check_bars` raises :class:`~trading_lib.errors.BadDataError` on the first kind of violation
(a reader or writer stops there); :func:`violations` lists every violating row (validation reports
them all). Both are vectorized: no Python loop over rows.

The rules, in the order they are checked (``CHECKS``):

- ``columns``: the frame has a ``timestamp`` column (and the symbol column, when one is named).
- ``timestamp_type``: ``timestamp`` is a timezone-aware date-time column without NaT; naive
  date-times, text and integers are violations (the message says which), of every row.
- ``duplicates``: one bar per (symbol, timestamp), or per timestamp without a symbol column. Every
  repeat after the first is a violation, identical rows included (the detail says whether the
  repeated rows are identical).
- ``price_values``: open/high/low/close finite and > 0 where present. NaN is a missing bar, not a
  violation; inf, 0, negative and non-numeric values are.
- ``price_range``: high >= max(open, close) and low <= min(open, close), among the prices that
  are finite and > 0 (the others are ``price_values``'); with open or close missing, against the
  other one.
- ``volume_values``: volume finite and >= 0 where present (NaN allowed).

Price and volume columns that a frame does not have are not checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_lib.errors import BadDataError

PRICE_COLUMNS = ("open", "high", "low", "close")
VOLUME_COLUMN = "volume"
TIMESTAMP_COLUMN = "timestamp"
VIOLATION_COLUMNS = ["check", "symbol", "timestamp", "column", "value", "detail"]

CHECKS = {
    "columns": "the frame has a timestamp column and, when one is named, the symbol column",
    "timestamp_type": "timestamp is a timezone-aware date-time column (not naive, text or integers), no NaT",
    "duplicates": "one bar per (symbol, timestamp); every repeat is a violation, identical rows included",
    "price_values": "open/high/low/close finite and > 0 where present (NaN = a missing bar, allowed)",
    "price_range": "high >= max(open, close) and low <= min(open, close), among the valid prices",
    "volume_values": "volume finite and >= 0 where present (NaN allowed)",
}

# One violation kind found: the check, the rows (positions in the frame), the column, the values,
# the rule (one text per check and column) and what is wrong with each row ("is inf").
_Found = tuple[str, np.ndarray, str, pd.Series, str, pd.Series]


def check_bars(frame: pd.DataFrame, source: str, *, symbol_column: str | None = "symbol") -> None:
    """Raise BadDataError naming ``source``, the column, the symbol, the bar and the row count on
    the first violation kind found (``CHECKS`` order; for prices, open, high, low, close)."""
    missing = _missing_columns(frame, symbol_column)
    if missing:
        raise BadDataError(f"{source}: {missing}")
    for _, rows, _, _, rule, what in _violation_kinds(frame, symbol_column, first_only=True):
        symbol = _symbols(frame, symbol_column, rows[:1])[0]
        at = _iso(_timestamps(frame, rows[:1]).iloc[0], frame, rows[0])
        where = f"{symbol} at {at}" if symbol is not None else f"at {at}"
        count = f"{len(rows):,} row{'s' if len(rows) != 1 else ''}"
        raise BadDataError(f"{source}: {rule}: {where} {what.iloc[0]} ({count})")


def violations(frame: pd.DataFrame, symbol_column: str | None = "symbol") -> pd.DataFrame:
    """Every violating row, one row per (row, rule, column): VIOLATION_COLUMNS, in CHECKS order then
    frame order. ``timestamp`` is NaT when the frame's timestamps are not timezone-aware date-times
    (``value`` holds the raw one for ``timestamp_type``); ``symbol`` is None without a symbol column.
    A missing key column gives one ``columns`` row (symbol None, timestamp NaT)."""
    missing = _missing_columns(frame, symbol_column)
    if missing:
        column = TIMESTAMP_COLUMN if TIMESTAMP_COLUMN not in frame.columns else symbol_column
        return _violation_frame("columns", [None], _no_timestamps(1), column, [None], [missing])
    parts = [
        _violation_frame(
            check,
            _symbols(frame, symbol_column, rows),
            _timestamps(frame, rows),
            column,
            values,
            (rule + ", " + what).to_numpy(dtype=object),
        )
        for check, rows, column, values, rule, what in _violation_kinds(
            frame, symbol_column, first_only=False
        )
    ]
    if not parts:
        return _violation_frame("", [], _timestamps(frame, np.array([], dtype=np.intp)), "", [], [])
    return pd.concat(parts, ignore_index=True)


def _violation_frame(check, symbols, timestamps, column, values, details) -> pd.DataFrame:
    rows = len(timestamps)
    return pd.DataFrame(
        {
            "check": pd.Series([check] * rows, dtype=object),
            "symbol": pd.Series(list(symbols), dtype=object),
            "timestamp": timestamps.reset_index(drop=True),
            "column": pd.Series([column] * rows, dtype=object),
            "value": pd.Series(np.asarray(values, dtype=object), dtype=object),
            "detail": pd.Series(np.asarray(details, dtype=object), dtype=object),
        }
    )[VIOLATION_COLUMNS]


# -- the checks -----------------------------------------------------------------------------------


def _missing_columns(frame: pd.DataFrame, symbol_column: str | None) -> str | None:
    """What is wrong when a key column is missing (no other rule can name a bar then), else None."""
    missing = [c for c in (TIMESTAMP_COLUMN, symbol_column) if c is not None and c not in frame.columns]
    if not missing:
        return None
    return f"missing column(s) {', '.join(missing)} (it has {', '.join(map(str, frame.columns)) or 'none'})"


def _violation_kinds(frame: pd.DataFrame, symbol_column: str | None, *, first_only: bool):
    """Yield each violation kind found, in CHECKS order; stops after the first when ``first_only``."""
    for check in (_timestamp_type, _duplicates, _price_values, _price_range, _volume_values):
        for found in check(frame, symbol_column):
            if len(found[1]):
                yield found
                if first_only:
                    return


def _timestamp_type(frame: pd.DataFrame, symbol_column: str | None) -> list[_Found]:
    column = frame[TIMESTAMP_COLUMN]
    dtype = column.dtype
    rule = "column timestamp must be a timezone-aware date-time"
    if isinstance(dtype, pd.DatetimeTZDtype):
        rows = np.flatnonzero(column.isna().to_numpy())
        what = pd.Series(["is missing (NaT)"] * len(rows), dtype=object)
        return [("timestamp_type", rows, TIMESTAMP_COLUMN, column.iloc[rows].astype(object), rule, what)]
    if pd.api.types.is_datetime64_dtype(dtype):
        kind = f"naive ({dtype}, no time zone)"
    elif pd.api.types.is_integer_dtype(dtype):
        kind = f"integers ({dtype}), not date-times"
    elif pd.api.types.is_float_dtype(dtype):
        kind = f"numbers ({dtype}), not date-times"
    else:
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        kind = {
            "string": "text, not date-times",
            "datetime": "date-times of mixed or no time zones",
            "integer": "integers, not date-times",
        }.get(inferred, f"{inferred} values, not date-times")
    rows = np.arange(len(frame))
    what = pd.Series(["is " + kind] * len(rows), dtype=object)
    return [("timestamp_type", rows, TIMESTAMP_COLUMN, column.astype(object), rule, what)]


def _duplicates(frame: pd.DataFrame, symbol_column: str | None) -> list[_Found]:
    key = [symbol_column, TIMESTAMP_COLUMN] if symbol_column else [TIMESTAMP_COLUMN]
    repeat = frame.duplicated(key, keep="first").to_numpy()
    if not repeat.any():
        return []
    rows = np.flatnonzero(repeat)
    identical = frame.duplicated(keep="first").to_numpy()[rows]
    times = frame.groupby(key, sort=False, dropna=False)[key[0]].transform("size").to_numpy()[rows]
    how = np.where(identical, " times (identical to an earlier row)", " times (with different values)")
    what = pd.Series("appears " + _text(times) + how.astype(object), dtype=object)
    name = f"({symbol_column}, timestamp)" if symbol_column else "timestamp"
    values = frame[TIMESTAMP_COLUMN].iloc[rows].astype(object)
    return [("duplicates", rows, TIMESTAMP_COLUMN, values, f"{name} must be unique", what)]


def _numeric(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The column as float64 (NaN where absent), and where it holds something that is not a number."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values, np.isnan(values) & raw.notna().to_numpy()


def _bad_values(frame: pd.DataFrame, check: str, column: str, rule: str, positive: bool) -> _Found:
    values, not_numbers = _numeric(frame, column)
    with np.errstate(invalid="ignore"):
        in_range = values > 0 if positive else values >= 0
    rows = np.flatnonzero(not_numbers | (~np.isnan(values) & ~(np.isfinite(values) & in_range)))
    raw = frame[column].iloc[rows].reset_index(drop=True)
    what = np.where(
        not_numbers[rows],
        "is not a number: " + _text(raw.map(repr)),
        "is " + _text(values[rows]),
    )
    return check, rows, column, raw.astype(object), rule, pd.Series(what, dtype=object)


def _price_values(frame: pd.DataFrame, symbol_column: str | None) -> list[_Found]:
    return [
        _bad_values(frame, "price_values", column, f"column {column} must be finite and > 0", True)
        for column in PRICE_COLUMNS
        if column in frame.columns
    ]


def _volume_values(frame: pd.DataFrame, symbol_column: str | None) -> list[_Found]:
    if VOLUME_COLUMN not in frame.columns:
        return []
    rule = f"column {VOLUME_COLUMN} must be finite and >= 0"
    return [_bad_values(frame, "volume_values", VOLUME_COLUMN, rule, False)]


def _price_range(frame: pd.DataFrame, symbol_column: str | None) -> list[_Found]:
    prices = {}
    for column in PRICE_COLUMNS:
        if column in frame.columns:
            values, _ = _numeric(frame, column)
            with np.errstate(invalid="ignore"):
                prices[column] = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    found = []
    for column, bound_name, reduce, others in (
        ("high", ">= max", np.fmax, ("open", "close")),
        ("low", "<= min", np.fmin, ("open", "close")),
    ):
        others = [c for c in others if c in prices]
        if column not in prices or not others:
            continue
        bound = reduce.reduce(np.vstack([prices[c] for c in others]), axis=0)  # NaN only if all are
        with np.errstate(invalid="ignore"):
            bad = prices[column] < bound if column == "high" else prices[column] > bound
        rows = np.flatnonzero(bad)
        names = ", ".join(others)
        values = pd.Series(prices[column][rows])
        what = pd.Series("is " + _text(values) + f", {bound_name[3:]}({names}) is " + _text(bound[rows]))
        rule = f"column {column} must be {bound_name}({names})"
        found.append(("price_range", rows, column, values.astype(object), rule, what))
    return found


def _text(values) -> np.ndarray:
    """Values as strings in an object array (``"literal" + array`` concatenates element by element);
    numbers as numpy writes them: 1.5, inf, nan, -3.0."""
    values = np.asarray(values)
    return (values if values.dtype == object else values.astype(str)).astype(object)


# -- naming the rows -----------------------------------------------------------------------------


def _symbols(frame: pd.DataFrame, symbol_column: str | None, rows: np.ndarray) -> list:
    if symbol_column is None or symbol_column not in frame.columns:
        return [None] * len(rows)
    return frame[symbol_column].iloc[rows].astype(object).tolist()


def _timestamps(frame: pd.DataFrame, rows: np.ndarray) -> pd.Series:
    """The rows' timestamps when the column is timezone-aware (else NaT, UTC)."""
    if TIMESTAMP_COLUMN in frame.columns and isinstance(frame[TIMESTAMP_COLUMN].dtype, pd.DatetimeTZDtype):
        return frame[TIMESTAMP_COLUMN].iloc[rows].reset_index(drop=True)
    return _no_timestamps(len(rows))


def _no_timestamps(rows: int) -> pd.Series:
    return pd.Series(pd.NaT, index=range(rows), dtype="datetime64[us, UTC]")


def _iso(timestamp, frame: pd.DataFrame, row: int) -> str:
    """ISO 8601 of a bar, or its raw timestamp when that is not a timezone-aware date-time."""
    if not pd.isna(timestamp):
        return timestamp.isoformat()
    raw = frame[TIMESTAMP_COLUMN].iloc[row]
    return raw.isoformat() if hasattr(raw, "isoformat") else repr(raw) if isinstance(raw, str) else str(raw)
