"""The three input files (holdings, VIX, S&P 500): one reader and one writer for every producer.

Producers (the sample-data generator, the real-bar loader, Yahoo ingestion) build an
:class:`InputData` and call :func:`write_inputs`; consumers call :func:`read_inputs`. Both check
the schema, so a corrupt or foreign file fails with a message naming the file and the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from trading_lib import layout
from trading_lib.storage import CorruptInputError, Storage


class InputDataError(ValueError):
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
    holdings: pd.DataFrame  # layout.HOLDINGS_COLUMNS, sorted by contract, timestamp
    vix: pd.DataFrame  # layout.BAR_COLUMNS, sorted by timestamp
    spx: pd.DataFrame  # layout.BAR_COLUMNS, sorted by timestamp
    window: AnalysisWindow

    @property
    def contracts(self) -> list[str]:
        return sorted(self.holdings["contract"].unique().tolist())


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
    if "contract" in columns:
        out["contract"] = out["contract"].astype("string[python]").astype(object)
        out = out.sort_values(["contract", "timestamp"], kind="stable")
    else:
        out = out.sort_values("timestamp", kind="stable")
    return out.reset_index(drop=True)


def write_inputs(storage: Storage, data: InputData) -> dict[str, int]:
    """Write the three files atomically, the analysis window in each one's metadata. Returns rows."""
    frames = {
        layout.HOLDINGS_KEY: normalise_bars(data.holdings, layout.HOLDINGS_COLUMNS, layout.HOLDINGS_KEY),
        layout.VIX_KEY: normalise_bars(data.vix, layout.BAR_COLUMNS, layout.VIX_KEY),
        layout.SPX_KEY: normalise_bars(data.spx, layout.BAR_COLUMNS, layout.SPX_KEY),
    }
    metadata = data.window.as_metadata()
    for key, frame in frames.items():
        storage.write_parquet(key, frame, metadata)
    return {key: len(frame) for key, frame in frames.items()}


def read_window(storage: Storage) -> AnalysisWindow:
    metadata = storage.read_parquet_metadata(layout.HOLDINGS_KEY)
    try:
        return AnalysisWindow.parse(metadata[layout.WINDOW_START_KEY], metadata[layout.WINDOW_END_KEY])
    except KeyError:
        raise CorruptInputError(
            f"{storage.url(layout.HOLDINGS_KEY)} has no analysis window in its metadata "
            f"({layout.WINDOW_START_KEY}/{layout.WINDOW_END_KEY}); "
            "write it with trading_lib.inputs.write_inputs"
        ) from None
    except ValueError as exc:
        raise CorruptInputError(f"{storage.url(layout.HOLDINGS_KEY)}: bad analysis window: {exc}") from None


def read_inputs(storage: Storage, contracts: list[str] | None = None) -> InputData:
    """Read (and schema-check) the three input files; ``contracts`` limits the holdings read."""
    filters = [("contract", "in", list(contracts))] if contracts else None
    try:
        holdings = normalise_bars(
            storage.read_parquet(layout.HOLDINGS_KEY, filters=filters),
            layout.HOLDINGS_COLUMNS,
            layout.HOLDINGS_KEY,
        )
        vix = normalise_bars(storage.read_parquet(layout.VIX_KEY), layout.BAR_COLUMNS, layout.VIX_KEY)
        spx = normalise_bars(storage.read_parquet(layout.SPX_KEY), layout.BAR_COLUMNS, layout.SPX_KEY)
    except InputDataError as exc:
        raise CorruptInputError(f"{storage.root}/{exc}") from None
    return InputData(holdings=holdings, vix=vix, spx=spx, window=read_window(storage))


def read_contracts(storage: Storage) -> list[str]:
    """The contracts present in the holdings file (reads one column)."""
    frame = storage.read_parquet(layout.HOLDINGS_KEY, columns=["contract"])
    if "contract" not in frame.columns:
        raise CorruptInputError(f"{storage.url(layout.HOLDINGS_KEY)}: missing column contract")
    return sorted(frame["contract"].astype(str).unique().tolist())
