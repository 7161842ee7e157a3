"""Data schemas, storage keys and partition keys: the contract between every layer.

All keys are relative to the data root (settings.data_root), local or s3://.

    input/spx_holdings_hourly.parquet          contract, timestamp, open, high, low, close, volume
    input/vix_hourly.parquet                   timestamp, open, high, low, close, volume
    input/spx_hourly.parquet                   timestamp, open, high, low, close, volume
    output/trading-results/<CONTRACT>/<YYYYMMDD_HHMMSS>.parquet   one row, RESULT_COLUMNS
    output/reports/<name>.json                 reports shown in the Airflow UI

``timestamp`` is the bar START, tz-aware in America/New_York (as Yahoo labels 1h bars); the file
name of a partition is that local time. The input files carry the analysis window as parquet
key-value metadata (WINDOW_START_KEY / WINDOW_END_KEY): bars before it are warm-up history for beta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trading_lib.symbols import symbol_to_segment, validate_symbol

EXCHANGE_TZ = "America/New_York"
TIMESTAMP_UNIT = "us"

HOLDINGS_KEY = "input/spx_holdings_hourly.parquet"
VIX_KEY = "input/vix_hourly.parquet"
SPX_KEY = "input/spx_hourly.parquet"
INPUT_KEYS = (HOLDINGS_KEY, VIX_KEY, SPX_KEY)
RESULTS_PREFIX = "output/trading-results"
REPORTS_PREFIX = "output/reports"

WINDOW_START_KEY = "trading.window_start"
WINDOW_END_KEY = "trading.window_end"

BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
HOLDINGS_COLUMNS = ["contract", *BAR_COLUMNS]

# One partition's result row (contract x timestamp).
RESULT_COLUMNS = [
    "contract",
    "timestamp",
    "close",
    "bar_return",
    "market_return",
    "beta",
    "beta_observations",
    "excess_return",
    "vix",
    "buy_threshold",
    "sell_threshold",
    "signal",
]
SIGNALS = ("BUY", "SELL", "HOLD")

if TYPE_CHECKING:  # pandas stays out of module import: DAG files import this module at parse time
    import pandas as pd


class PartitionKeyError(ValueError):
    """A timestamp that cannot name a partition; the message names it."""


def to_exchange_time(values) -> pd.Series | pd.DatetimeIndex | pd.Timestamp:
    """Normalise timestamps (strings, naive = exchange local, or tz-aware) to America/New_York, us."""
    import pandas as pd

    converted = pd.to_datetime(values)
    if isinstance(converted, pd.Timestamp):
        ts = (
            converted.tz_localize(EXCHANGE_TZ)
            if converted.tzinfo is None
            else converted.tz_convert(EXCHANGE_TZ)
        )
        return ts.as_unit(TIMESTAMP_UNIT)
    accessor = converted.dt if isinstance(converted, pd.Series) else converted
    localized = accessor.tz_localize(EXCHANGE_TZ) if accessor.tz is None else accessor.tz_convert(EXCHANGE_TZ)
    return (
        localized.as_unit(TIMESTAMP_UNIT)
        if isinstance(localized, pd.DatetimeIndex)
        else localized.dt.as_unit(TIMESTAMP_UNIT)
    )


def parse_partition_timestamp(value: object) -> pd.Timestamp:
    """Parse a partition timestamp given as ISO 8601 (with offset, or naive = New York time)."""
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        ts = value
    elif isinstance(value, str) and value.strip():
        try:
            ts = pd.Timestamp(value.strip())
        except (ValueError, TypeError) as exc:
            raise PartitionKeyError(f"timestamp {value!r} is not an ISO 8601 date-time: {exc}") from None
    else:
        raise PartitionKeyError(f"timestamp {value!r} is not an ISO 8601 date-time string")
    if ts is pd.NaT:
        raise PartitionKeyError(f"timestamp {value!r} is not a date-time")
    return to_exchange_time(ts)


def partition_label(ts: pd.Timestamp) -> str:
    """ISO 8601 with offset in exchange time, e.g. 2024-01-02T09:30:00-05:00 (the conf/label form)."""
    return to_exchange_time(ts).isoformat()


def partition_file_stem(ts: pd.Timestamp) -> str:
    return to_exchange_time(ts).strftime("%Y%m%d_%H%M%S")


def result_key(contract: str, ts: pd.Timestamp) -> str:
    return f"{RESULTS_PREFIX}/{result_relative_key(contract, ts)}"


def result_relative_key(contract: str, ts: pd.Timestamp) -> str:
    """Key of a partition result inside the trading-results folder: <CONTRACT>/<YYYYMMDD_HHMMSS>.parquet."""
    return f"{symbol_to_segment(contract)}/{partition_file_stem(ts)}.parquet"


def contract_results_prefix(contract: str) -> str:
    return f"{RESULTS_PREFIX}/{symbol_to_segment(validate_symbol(contract))}"


def report_key(name: str, suffix: str = "json") -> str:
    """Key of a report, e.g. report_key("portfolio/summary") -> output/reports/portfolio/summary.json."""
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad report name {name!r}")
    return f"{REPORTS_PREFIX}/{name}.{suffix}"
