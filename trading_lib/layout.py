"""Data schemas, storage keys and partition keys: the contract between every layer.

All keys are relative to the data root (settings.data_root), local or s3://. docs/history.md
explains the choices.

    bars/                                               the bar store: a Delta table partitioned by
                                                        session date (bars/session=<YYYY-MM-DD>/),
                                                        every symbol (stocks, ^GSPC, ^VIX): BAR_STORE_COLUMNS
    output/trading-results/<YYYY-MM-DD>/<SEG>_<HHMMSS>.parquet   one file per partition: RESULT_COLUMNS
    output/trading-results/<YYYY-MM-DD>.parquet         roll-up of that session's partition results
    output/runs/<run_id>/run.json                       one record per orchestrator run
    output/runs/<run_id>/portfolio.json                 that run's portfolio report
    output/runs/latest.json                             a copy of the newest run record
    output/reports/<name>.json                          the latest reports shown in the Airflow UI

``timestamp`` is the bar START, tz-aware in America/New_York (as Yahoo labels 1h bars); a bar's
session date is its local date. <SEG> is the contract as a path segment (symbols.symbol_to_segment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from trading_lib.errors import BadInputError
from trading_lib.symbols import segment_to_symbol, symbol_to_segment

EXCHANGE_TZ = "America/New_York"
TIMESTAMP_UNIT = "us"

BARS_PREFIX = "bars"
RESULTS_PREFIX = "output/trading-results"
RUNS_PREFIX = "output/runs"
REPORTS_PREFIX = "output/reports"
LATEST_RUN_KEY = f"{RUNS_PREFIX}/latest.json"

BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
CONTRACT_BAR_COLUMNS = ["contract", *BAR_COLUMNS]
BAR_STORE_COLUMNS = ["symbol", *BAR_COLUMNS]

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


class PartitionKeyError(BadInputError):
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


def format_timestamp(ts: pd.Timestamp) -> str:
    """ISO 8601 with offset in exchange time, e.g. 2024-01-02T09:30:00-05:00: a partition's
    timestamp as conf, XCom, the CLI and the UI write it (parse_partition_timestamp reads it)."""
    return to_exchange_time(ts).isoformat()


def chunk_partitions(timestamps: Sequence[str], max_map_length: int, per_task: int = 1) -> list[list[str]]:
    """Consecutive partitions in equal chunks, one chunk per mapped task instance: ``per_task``
    partitions each (TRADING_PARTITIONS_PER_TASK), or more past ``max_map_length`` partitions
    (Airflow's [core] max_map_length) so the number of mapped instances stays within the limit."""
    if max_map_length < 1 or per_task < 1:
        raise ValueError("max_map_length and per_task must be positive")
    size = max(per_task, math.ceil(len(timestamps) / max_map_length))
    return [list(timestamps[i : i + size]) for i in range(0, len(timestamps), size)]


def partition_name(contract: str, timestamps: Sequence[str]) -> str:
    """The name of one mapped partition instance in the Airflow UI: "AAPL 2024-01-22T09:30:00-05:00",
    or "AAPL <first> … <last> (N bars)" for a chunk of consecutive partitions."""
    if len(timestamps) == 1:
        return f"{contract} {timestamps[0]}"
    return f"{contract} {timestamps[0]} … {timestamps[-1]} ({len(timestamps)} bars)"


def session_date(ts: pd.Timestamp) -> str:
    """The session date (exchange-local calendar date) of a bar, YYYY-MM-DD."""
    return to_exchange_time(ts).strftime("%Y-%m-%d")


def legacy_bars_key(day: str) -> str:
    """A session file of the bar store of releases before the Delta table (migrate-store reads it)."""
    return f"{BARS_PREFIX}/{day}.parquet"


def result_key(contract: str, ts: pd.Timestamp) -> str:
    return f"{RESULTS_PREFIX}/{result_relative_key(contract, ts)}"


def result_relative_key(contract: str, ts: pd.Timestamp) -> str:
    """Key of a partition result inside the trading-results folder: <YYYY-MM-DD>/<SEG>_<HHMMSS>.parquet
    (grouped by session, so one listing finds a session's results for its roll-up)."""
    local = to_exchange_time(ts)
    return f"{local.strftime('%Y-%m-%d')}/{symbol_to_segment(contract)}_{local.strftime('%H%M%S')}.parquet"


def parse_result_name(name: str) -> str:
    """The contract of a result file name <SEG>_<HHMMSS>.parquet (the inverse of result_relative_key)."""
    return segment_to_symbol(name.rsplit("/", 1)[-1].removesuffix(".parquet").rsplit("_", 1)[0])


def daily_relative_key(day: str) -> str:
    """The roll-up of a session's results, beside its folder: <YYYY-MM-DD>.parquet."""
    return f"{day}.parquet"


def run_key(run_id: str, name: str) -> str:
    """Key of a file of one orchestrator run, e.g. run_key(rid, "run") -> output/runs/<rid>/run.json."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ValueError(f"bad run id {run_id!r}")
    return f"{RUNS_PREFIX}/{run_id}/{name}.json"


def report_key(name: str, suffix: str = "json") -> str:
    """Key of a report, e.g. report_key("portfolio/summary") -> output/reports/portfolio/summary.json."""
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad report name {name!r}")
    return f"{REPORTS_PREFIX}/{name}.{suffix}"
