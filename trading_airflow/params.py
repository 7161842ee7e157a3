"""The trigger form's Params that more than one DAG takes, each declared once: the symbols to
ingest and the dates of an ingestion (trading_orchestrator's ``ingestion_*`` and
ingest_market_data's keys), and the analysis window (trading_orchestrator and analyze_symbol).
Every Param has a title, a description and a JSON schema; the limits come from
trading_lib.run_request, which checks the same rules again at run time.
"""

from __future__ import annotations

from airflow.sdk import Param

from trading_lib.run_request import (
    DATE_PATTERN,
    DATE_TIME_PATTERN,
    DEFAULT_WINDOW_BARS,
    MAX_CONTRACTS,
    MAX_WINDOW_BARS,
)
from trading_lib.symbols import JSON_SCHEMA_PATTERN

SYMBOLS_RULE = (
    f"(letters/digits, optional ^, parts joined by - . =), 1 to {MAX_CONTRACTS}, no repeats. "
    "^VIX and ^GSPC are always added."
)
NULLABLE_DATE = {"type": ["null", "string"], "format": "date", "pattern": DATE_PATTERN}
NULLABLE_TIMESTAMP = {"type": ["null", "string"], "format": "date-time", "pattern": DATE_TIME_PATTERN}


def symbols_param(default: list[str], title: str, description: str) -> Param:
    """The Yahoo tickers an ingestion fetches (``description`` is followed by the rule)."""
    return Param(
        default,
        type="array",
        items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
        minItems=1,
        maxItems=MAX_CONTRACTS,
        uniqueItems=True,
        title=title,
        description=f"{description} {SYMBOLS_RULE}",
    )


def ingestion_date_params(
    start: tuple[str, str], end: tuple[str, str], default_text: str
) -> dict[str, Param]:
    """{start key: Param, end key: Param} of an ingestion's sessions [start, end); ``start`` and
    ``end`` are (key, title)."""
    (start_key, start_title), (end_key, end_title) = start, end
    return {
        start_key: Param(
            None,
            **NULLABLE_DATE,
            title=start_title,
            description=f"First session to ingest, YYYY-MM-DD, with {end_title}. Default: {default_text} "
            "Yahoo keeps 1h bars for the last 730 days only.",
        ),
        end_key: Param(
            None,
            **NULLABLE_DATE,
            title=end_title,
            description=f"End date, exclusive, YYYY-MM-DD, after {start_title}.",
        ),
    }


def window_params(default_text: str) -> dict[str, Param]:
    """window_start / window_end: the analysis window, bars starting in [start, end)."""
    return {
        "window_start": Param(
            None,
            **NULLABLE_TIMESTAMP,
            title="Window start",
            description="Analyse bars starting at or after this ISO 8601 date-time with offset, e.g. "
            f"2024-01-22T09:30:00-05:00 (with Window end). Default: {default_text}",
        ),
        "window_end": Param(
            None,
            **NULLABLE_TIMESTAMP,
            title="Window end",
            description="Analyse bars starting before this ISO 8601 date-time with offset (exclusive).",
        ),
    }


def orchestrator_params(default_symbols: list[str]) -> dict[str, Param]:
    """trading_orchestrator's trigger form: one Param per key of run_request.ORCHESTRATOR_KEYS."""
    return {
        "num_contracts": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=MAX_CONTRACTS,
            title="Number of contracts",
            description=f"How many contracts to analyse, 1 to {MAX_CONTRACTS}: the first ones (sorted) with "
            "bars in the window; at most the number of symbols ingested. Empty: all of them.",
        ),
        "run_ingestion": Param(
            False,
            type="boolean",
            title="Fetch from Yahoo first",
            description="Manual runs: fetch missing bars from Yahoo Finance before analysing. "
            "Scheduled and backfill runs always do.",
        ),
        "run_validation": Param(
            True,
            type="boolean",
            title="Validate",
            description="Check the window's bars first and stop the run on FAIL.",
        ),
        "ingestion_symbols": symbols_param(default_symbols, "Symbols to ingest", "Yahoo tickers"),
        **ingestion_date_params(
            ("ingestion_start_date", "Ingest from"),
            ("ingestion_end_date", "Ingest until"),
            "the run's data interval (scheduled) or the last 5 sessions.",
        ),
        **window_params("the data interval (scheduled), else the last 'Bars to analyse' stored bars."),
        "window_bars": Param(
            DEFAULT_WINDOW_BARS,
            type="integer",
            minimum=1,
            maximum=MAX_WINDOW_BARS,
            title="Bars to analyse",
            description=f"Manual runs without a window: the last N stored bars, 1 to {MAX_WINDOW_BARS}.",
        ),
    }


def ingestion_params(default_symbols: list[str]) -> dict[str, Param]:
    """ingest_market_data's trigger form: the same symbols and dates as the orchestrator's
    ``ingestion_*`` keys, under the standalone DAG's keys."""
    return {
        "symbols": symbols_param(default_symbols, "Symbols", "Yahoo tickers to fetch"),
        **ingestion_date_params(
            ("start_date", "Start date"), ("end_date", "End date"), "the last 5 complete sessions."
        ),
        "allow_partial": Param(
            False,
            type="boolean",
            title="Allow partial",
            description="Store the tickers that were fetched even if others failed (default: store nothing).",
        ),
    }
