"""Every rule of a run request, in one place: the orchestrator's conf (DAG Params), the standalone
DAGs' conf and the CLI arguments all become a checked, frozen request here. Errors are
:class:`~trading_lib.errors.RequestError` naming the field. Light imports only: DAG files import
this module at parse time for the limits their Params state.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from trading_lib.errors import RequestError
from trading_lib.symbols import DEFAULT_SYMBOLS, SymbolError, validate_symbols

MAX_CONTRACTS = 500
MAX_WINDOW_BARS = 5_000
DEFAULT_WINDOW_BARS = 24  # a manual run without a window analyses the last 24 stored bars
DEFAULT_INGESTION_SESSIONS = 5  # an ingestion without dates takes the last five closed sessions
SCHEDULED_RUN_TYPES = ("scheduled", "backfill")  # runs that ingest and analyse their data interval
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# A bar start as the Params take it: ISO 8601 date-time with a UTC offset (or Z).
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)$"
ORCHESTRATOR_KEYS = (
    "num_contracts",
    "run_ingestion",
    "run_validation",
    "ingestion_symbols",
    "ingestion_start_date",
    "ingestion_end_date",
    "window_start",
    "window_end",
    "window_bars",
)


@dataclass(frozen=True)
class OrchestratorRequest:
    """What one trading_orchestrator run does. ``window_start``/``window_end`` None: the last
    ``window_bars`` stored bars (after ingestion)."""

    run_id: str
    run_type: str
    ingest: bool
    validate: bool
    num_contracts: int | None  # None: every contract with bars in the window
    symbols: tuple[str, ...]
    ingestion_start: str | None
    ingestion_end: str | None
    window_start: str | None
    window_end: str | None
    window_bars: int
    ingestion_until: str | None = None  # scheduled/backfill: store only bars ended by the interval's end
    # Why a scheduled/backfill run has nothing to do (its interval holds no bar of the exchange:
    # a cron schedule on a holiday or after an early close), else None. The run is skipped.
    idle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["symbols"] = list(self.symbols)
        return out


def analyze_symbol_runs(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The analyze_symbol runs of an orchestrator run's plan (pipeline.plan_run): one per
    contract, {trigger_run_id, conf}, the run id derived from the orchestrator's run id so that a
    retry resets the same runs; then the re-analysis runs of its ``revisions`` plan."""
    from trading_lib.symbols import symbol_to_segment

    return [
        {
            "trigger_run_id": f"{plan['run_id']}__{symbol_to_segment(contract)}",
            "conf": {
                "contract": contract,
                "window_start": plan["window_start"],
                "window_end": plan["window_end"],
                "orchestrator_run_id": plan["run_id"],
            },
        }
        for contract in plan["contracts"]
    ] + reanalysis_runs(plan["run_id"], plan.get("revisions"))


def reanalysis_runs(run_id: str, plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One analyze_symbol run (trigger_run_id, conf) per contract of a reanalysis plan: its
    dependent partitions as ``timestamps``, tied to orchestrator run ``run_id``."""
    from trading_lib.symbols import symbol_to_segment

    return [
        {
            "trigger_run_id": f"{run_id}__{symbol_to_segment(contract)}__revised",
            "conf": {"contract": contract, "timestamps": timestamps, "orchestrator_run_id": run_id},
        }
        for contract, timestamps in sorted(((plan or {}).get("timestamps") or {}).items())
    ]


def check_keys(conf: dict[str, Any] | None, allowed: tuple[str, ...]) -> None:
    """Unknown conf keys are an error, never silently ignored (a typo would run the defaults)."""
    unknown = sorted(set(conf or {}) - set(allowed))
    if unknown:
        raise RequestError(
            f"conf: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}"
        )


def parse_date(value: object, field: str) -> str | None:
    """None, or an ISO date YYYY-MM-DD (the only form accepted: 01/04/2026 is ambiguous)."""
    if value is None:
        return None
    import datetime as dt

    if not isinstance(value, str) or not re.match(DATE_PATTERN, value):
        raise RequestError(f"{field}={value!r} must be a date YYYY-MM-DD")
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise RequestError(f"{field}={value!r} is not a valid date: {exc}") from None
    return value


def parse_date_range(start: object, end: object, fields: tuple[str, str]) -> tuple[str | None, str | None]:
    start, end = parse_date(start, fields[0]), parse_date(end, fields[1])
    if (start is None) != (end is None):
        raise RequestError(f"{fields[0]} and {fields[1]} must be given together")
    if start is not None and start >= end:
        raise RequestError(f"{fields[0]} ({start}) must be before {fields[1]} ({end}, exclusive)")
    return start, end


def parse_timestamp(value: object, field: str) -> str | None:
    """None, or an ISO 8601 date-time WITH a UTC offset, normalised to exchange time."""
    if value is None:
        return None
    from trading_lib import layout

    if not isinstance(value, str) or not re.search(
        r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)$", value
    ):
        raise RequestError(
            f"{field}={value!r} must be an ISO 8601 date-time with offset, e.g. 2024-01-22T09:30:00-05:00"
        )
    try:
        return layout.parse_partition_timestamp(value).isoformat()
    except layout.PartitionKeyError as exc:
        raise RequestError(f"{field}: {exc}") from None


def _integer(value: object, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{field}={value!r} must be an integer from {low} to {high}")
    return value


def orchestrator_request(
    params: dict[str, Any],
    *,
    run_id: str,
    run_type: str,
    conf: dict[str, Any] | None = None,
    data_interval: tuple[Any, Any] | None = None,
    default_symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
) -> OrchestratorRequest:
    """The request of one trading_orchestrator run, from its Params (``conf`` is the raw dag_run
    conf, checked for unknown keys). Scheduled and backfill runs always ingest and analyse their
    data interval (bars starting in it); manual runs do what their conf says."""
    check_keys(conf, ORCHESTRATOR_KEYS)
    try:
        symbols = tuple(validate_symbols(list(params.get("ingestion_symbols") or default_symbols)))
    except SymbolError as exc:
        raise RequestError(f"ingestion_symbols: {exc}") from None
    num_contracts = params.get("num_contracts")
    if num_contracts is not None:
        num_contracts = _integer(num_contracts, "num_contracts", 1, MAX_CONTRACTS)
    window_bars = params.get("window_bars")
    window_bars = _integer(
        DEFAULT_WINDOW_BARS if window_bars is None else window_bars, "window_bars", 1, MAX_WINDOW_BARS
    )
    start, end = parse_date_range(
        params.get("ingestion_start_date"),
        params.get("ingestion_end_date"),
        ("ingestion_start_date", "ingestion_end_date"),
    )
    window_start = parse_timestamp(params.get("window_start"), "window_start")
    window_end = parse_timestamp(params.get("window_end"), "window_end")
    if (window_start is None) != (window_end is None):
        raise RequestError("window_start and window_end must be given together")
    scheduled = run_type in SCHEDULED_RUN_TYPES
    ingest = bool(params.get("run_ingestion")) or scheduled
    until = idle = None
    if scheduled:
        if data_interval is None or data_interval[0] is None:
            raise RequestError(f"a {run_type} run needs a data interval")
        interval_start, interval_end = (_exchange_time(t) for t in data_interval)
        idle = _idle_interval(interval_start, interval_end)
        window_start = window_start or interval_start.isoformat()
        window_end = window_end or interval_end.isoformat()
        until = interval_end.isoformat()
        if start is None:
            start = interval_start.strftime("%Y-%m-%d")
            end = (interval_end.normalize() + _one_day()).strftime("%Y-%m-%d")
    elif ingest and start is None:
        if window_start is not None:
            start = window_start[:10]
            end = (_exchange_time(window_end).normalize() + _one_day()).strftime("%Y-%m-%d")
        else:
            start, end = default_ingestion_dates()
    if window_start is not None and window_start >= window_end:
        raise RequestError(f"window_start ({window_start}) must be before window_end ({window_end})")
    if ingest and num_contracts is not None and num_contracts > len(symbols):
        raise RequestError(
            f"num_contracts={num_contracts} is larger than the {len(symbols)} ingestion_symbols"
        )
    return OrchestratorRequest(
        run_id=run_id,
        run_type=run_type,
        ingest=ingest,
        validate=bool(params.get("run_validation", True)),
        num_contracts=num_contracts,
        symbols=symbols,
        ingestion_start=start,
        ingestion_end=end,
        window_start=window_start,
        window_end=window_end,
        window_bars=window_bars,
        ingestion_until=until,
        idle=idle,
    )


def _idle_interval(start: Any, end: Any) -> str | None:
    """Why the data interval [start, end) holds no bar start of the exchange grid, or None."""
    from trading_lib import sessions

    starts = sessions.bar_starts(start.normalize(), end.normalize())
    if ((starts >= start) & (starts < end)).any():
        return None
    return (
        f"no {sessions.EXCHANGE} bar starts in the data interval {start.isoformat()} .. "
        f"{end.isoformat()} (a holiday, a weekend, a night or after an early close): nothing to do"
    )


def ingestion_request(params: dict[str, Any], conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The standalone ingest_market_data DAG's request: symbols and an ISO date range (default:
    the last complete sessions)."""
    check_keys(conf, ("symbols", "start_date", "end_date", "allow_partial"))
    try:
        symbols = validate_symbols(list(params.get("symbols") or DEFAULT_SYMBOLS))
    except SymbolError as exc:
        raise RequestError(f"symbols: {exc}") from None
    start, end = parse_date_range(
        params.get("start_date"), params.get("end_date"), ("start_date", "end_date")
    )
    if start is None:
        start, end = default_ingestion_dates()
    return {
        "symbols": symbols,
        "start": start,
        "end": end,
        "allow_partial": bool(params.get("allow_partial")),
    }


def default_ingestion_dates(now: Any = None) -> tuple[str, str]:
    """The [start, end) dates (YYYY-MM-DD) of an ingestion request without dates: the last
    DEFAULT_INGESTION_SESSIONS sessions closed by ``now`` (default: now)."""
    from trading_lib.sessions import completed_sessions

    first, end = completed_sessions(DEFAULT_INGESTION_SESSIONS, now)
    return first.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")


def _exchange_time(value: Any):
    from trading_lib import layout

    return layout.to_exchange_time(value if not hasattr(value, "isoformat") else value.isoformat())


def _one_day():
    import pandas as pd

    return pd.Timedelta(days=1)
