"""Bars in memory: the analysis window and the (contracts' bars, ^VIX, ^GSPC) frames every layer passes.

Producers (the sample-data generator, the real-bar loader, Yahoo ingestion) build an
:class:`InputData` and hand it to the bar store (trading_lib.store), which persists it; readers get
an :class:`InputData` back from the store. :func:`normalise_bars` checks the schema, so a foreign
frame fails with a message naming the source and the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from trading_lib import layout
from trading_lib.errors import BadDataError


class InputDataError(BadDataError):
    """Input data that violates the schema; the message names the file and the problem."""


@dataclass(frozen=True)
class AnalysisWindow:
    """The bars to analyse: start <= timestamp < end. Earlier bars are warm-up history."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise InputDataError(f"window start {self.start} is not before end {self.end}")

    def contains(self, timestamps: pd.Series) -> pd.Series:
        return (timestamps >= self.start) & (timestamps < self.end)

    def as_metadata(self) -> dict[str, str]:
        return {layout.WINDOW_START_KEY: self.start.isoformat(), layout.WINDOW_END_KEY: self.end.isoformat()}

    @classmethod
    def parse(cls, start: object, end: object) -> AnalysisWindow:
        return cls(layout.parse_partition_timestamp(start), layout.parse_partition_timestamp(end))


@dataclass(frozen=True)
class InputData:
    bars: pd.DataFrame  # layout.CONTRACT_BAR_COLUMNS, sorted by contract, timestamp
    vix: pd.DataFrame  # layout.BAR_COLUMNS, sorted by timestamp
    spx: pd.DataFrame  # layout.BAR_COLUMNS, sorted by timestamp
    window: AnalysisWindow

    @property
    def contracts(self) -> list[str]:
        return sorted(self.bars["contract"].unique().tolist())


def normalise_bars(frame: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    """Check columns, coerce dtypes (timestamps to exchange time, prices to float64) and sort."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputDataError(f"{name}: missing column(s) {', '.join(missing)}")
    out = frame[columns].copy()
    try:
        out["timestamp"] = layout.to_exchange_time(out["timestamp"])
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"{name}: column timestamp is not a date-time column: {exc}") from None
    for column in ("open", "high", "low", "close", "volume"):
        try:
            out[column] = pd.to_numeric(out[column]).astype("float64")
        except (ValueError, TypeError) as exc:
            raise InputDataError(f"{name}: column {column} is not numeric: {exc}") from None
    key = next((c for c in ("contract", "symbol") if c in columns), None)
    if key:
        out[key] = out[key].astype("string[python]").astype(object)
        out = out.sort_values([key, "timestamp"], kind="stable")
    else:
        out = out.sort_values("timestamp", kind="stable")
    return out.reset_index(drop=True)
