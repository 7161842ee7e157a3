"""The pipeline's operations, each a plain function over a Storage.

The CLI (``python -m trading_lib``), the Airflow tasks (local mode) and the Kubernetes pods all
call these functions, so a partition computed in a worker and one computed in a pod are the same
code path and write the same bytes.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from trading_lib import layout
from trading_lib.errors import RequestError
from trading_lib.inputs import AnalysisWindow
from trading_lib.run_record import latest_run, read_run, record_run  # noqa: F401 - callers' names
from trading_lib.run_request import DEFAULT_WINDOW_BARS
from trading_lib.sessions import WARMUP_SESSIONS
from trading_lib.settings import Settings, load_settings
from trading_lib.storage import MissingInputError, Storage
from trading_lib.store import BarStore
from trading_lib.symbols import SymbolError, symbol_to_segment, validate_symbol

VALIDATION_REPORT = "validation"
PORTFOLIO_REPORT = "portfolio"
GRID_LIMIT = 10_000  # partitions listed in a report's grid (the newest ones)
ROLLUP_READERS = 8  # sessions an aggregation reads at once
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def open_storage(settings: Settings | None = None, root: str | None = None) -> Storage:
    """The data root (or ``root``) as a Storage, for everything that is not Airflow (CLI, pods,
    tests, benchmarks); s3:// reads the usual AWS_* environment."""
    return Storage(root or (settings or load_settings()).data_root)


# -- sample data --------------------------------------------------------------------------------
def generate_inputs(
    storage: Storage,
    *,
    num_contracts: int = 10,
    real_folder: str | None = None,
    seed: int = 42,
    anomalies: Any = None,
    start: str = "2024-01-02",
    window_bars: int = DEFAULT_WINDOW_BARS,
) -> dict[str, Any]:
    """Write generated sample bars (``window_bars`` bars after the warm-up), or the real bars in
    ``real_folder``, into the bar store."""
    from trading_lib import sample_data

    if real_folder:
        data = sample_data.load_real_bars(real_folder)
    else:
        data = sample_data.generate_sample_data(
            num_contracts=num_contracts, seed=seed, anomalies=anomalies, start=start, window_bars=window_bars
        )
    written = BarStore(storage).write(data, source="real bars" if real_folder else "sample data")
    return {
        "contracts": data.contracts,
        "window_start": data.window.start.isoformat(),
        "window_end": data.window.end.isoformat(),
        "store": written.to_dict(),
    }


# -- the request's window and contracts ---------------------------------------------------------
def resolve_window(
    storage: Storage, start: object = None, end: object = None, bars: int = DEFAULT_WINDOW_BARS
) -> AnalysisWindow:
    """The analysis window: the one given (both bounds), else the last ``bars`` stored bars."""
    if start is None and end is None:
        return BarStore(storage).latest_window(bars)
    if start is None or end is None:
        raise RequestError("window_start and window_end must be given together")
    try:
        return AnalysisWindow.parse(start, end)
    except layout.PartitionKeyError as exc:
        raise RequestError(f"window: {exc}") from None
    except ValueError as exc:
        raise RequestError(f"window_start/window_end: {exc}") from None


def select_contracts(storage: Storage, num_contracts: int | None, window: AnalysisWindow) -> list[str]:
    """The first ``num_contracts`` contracts (sorted) with bars in ``window``; None: all of them."""
    available = BarStore(storage).contracts(window)
    if num_contracts is None:
        if not available:
            raise RequestError(
                f"no contract has bars between {window.start.isoformat()} and {window.end.isoformat()}"
            )
        return available
    if not isinstance(num_contracts, int) or isinstance(num_contracts, bool) or num_contracts < 1:
        raise RequestError(f"num_contracts={num_contracts!r} must be a positive integer")
    if num_contracts > len(available):
        raise RequestError(
            f"num_contracts={num_contracts} is larger than the {len(available)} contracts with bars "
            f"between {window.start.isoformat()} and {window.end.isoformat()}"
        )
    return available[:num_contracts]


def plan_run(storage: Storage, request: dict[str, Any]) -> dict[str, Any]:
    """The plan of an orchestrator run (OrchestratorRequest.to_dict()): its window (the request's,
    else the last ``window_bars`` stored bars) and its contracts, checked against the bar store.
    {run_id, window_start, window_end, contracts, validate, revisions}: ``revisions`` is the
    reanalysis_plan of the partitions outside this run whose result bars stored since the last
    run changed."""
    window = resolve_window(storage, request["window_start"], request["window_end"], request["window_bars"])
    contracts = select_contracts(storage, request["num_contracts"], window)
    since = revision_baseline(latest_run(storage))
    return {
        "run_id": request["run_id"],
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "contracts": contracts,
        "validate": request["validate"],
        "revisions": reanalysis_plan(storage, since, window, contracts),
    }


def bar_store_version(storage: Storage) -> int | None:
    """The bar store's current table version (None: no table yet): what a run record names."""
    return BarStore(storage).version


# -- validation ---------------------------------------------------------------------------------
def validate(
    storage: Storage,
    window: AnalysisWindow | None = None,
    contracts: Sequence[str] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Validate the window's bars and the warm-up sessions before it (what the partitions read);
    write the report (and the run's copy). Returns {status, summary, issues, report}."""
    from trading_lib.validation import validate_inputs

    window = window or resolve_window(storage)
    store = BarStore(storage)
    data = store.input_data(window, list(contracts) if contracts else None, warmup_sessions=WARMUP_SESSIONS)
    validation = validate_inputs(data, list(contracts) if contracts else None)
    report = validation.to_dict() | {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "run_id": run_id,
        "bar_store_version": store.version,
    }
    key = layout.report_key(VALIDATION_REPORT)
    storage.write_json(key, report)
    if run_id:
        storage.write_json(layout.run_key(run_id, VALIDATION_REPORT), report)
    return {
        "status": validation.status,
        "summary": report["summary"],
        "issues": len(validation.issues),
        "report": key,
    }


# -- partitions ---------------------------------------------------------------------------------
def list_partitions(
    storage: Storage,
    contract: str,
    *,
    window: AnalysisWindow | None = None,
    timestamps: Sequence[object] | None = None,
) -> list[str]:
    """Partition timestamps (ISO) of ``contract``: ``timestamps`` if given (each must be a stored bar
    of the contract), else its stored bars inside ``window``."""
    try:
        contract = validate_symbol(contract)
    except SymbolError as exc:
        raise RequestError(f"contract: {exc}") from None
    store = BarStore(storage)
    if timestamps is not None:
        if isinstance(timestamps, str) or not isinstance(timestamps, Sequence) or not timestamps:
            raise RequestError(f"timestamps={timestamps!r} must be a non-empty list of ISO 8601 date-times")
        wanted = []
        for index, value in enumerate(timestamps):
            try:
                wanted.append(layout.parse_partition_timestamp(value))
            except layout.PartitionKeyError as exc:
                raise RequestError(f"timestamps[{index}]: {exc}") from None
        span = AnalysisWindow(min(wanted), max(wanted) + pd.Timedelta(microseconds=1))
        available = store.bar_times(contract, span)
        for index, ts in enumerate(wanted):
            if ts not in available:
                raise RequestError(
                    f"timestamps[{index}]: {timestamps[index]!r} is not a stored bar of {contract}"
                )
        return [layout.format_timestamp(ts) for ts in sorted(set(wanted))]
    window = window or resolve_window(storage)
    times = store.bar_times(contract, window)
    if times.empty:
        raise RequestError(
            f"contract: {contract!r} has no stored bar between {window.start.isoformat()} "
            f"and {window.end.isoformat()}"
        )
    return [ts.isoformat() for ts in times]


def analyze_partition(storage: Storage, contract: str, timestamps: Sequence[object]) -> list[dict[str, Any]]:
    """Analyse and write each (contract, timestamp) partition: read its look-back from the bar
    store, check it against the data contract, compute its row, write its file. Returns one dict
    per partition: contract, timestamp, signal, beta, key, bytes."""
    from trading_lib.analytics import BETA_WINDOW_BARS, partition_row
    from trading_lib.bar_contract import check_bars

    contract = validate_symbol(contract)
    store = BarStore(storage)
    written = []
    parsed = [layout.parse_partition_timestamp(value) for value in timestamps]
    for ts, bars in zip(parsed, store.lookbacks(contract, parsed, BETA_WINDOW_BARS + 1), strict=True):
        check_bars(bars, f"{storage.url(layout.BARS_PREFIX)} (look-back of {contract} {ts.isoformat()})")
        row = partition_row(bars, contract, ts)
        key = layout.result_key(contract, ts)
        size = storage.write_parquet(key, row)
        beta = float(row["beta"].iloc[0])
        written.append(
            {
                "contract": contract,
                "timestamp": ts.isoformat(),
                "signal": str(row["signal"].iloc[0]),
                "beta": beta if math.isfinite(beta) else None,
                "key": key,
                "bytes": size,
            }
        )
    return written


# -- revisions ----------------------------------------------------------------------------------
def changed_bars(storage: Storage, since: int | None, until: int | None) -> pd.DataFrame:
    """The bars (symbol, timestamp) whose result inputs changed between bar store versions
    ``since`` and ``until``: added, or with another close (the only price a partition reads). Only
    the sessions whose data files differ between the two versions are compared (a Delta table
    says which from its log alone), so any writer's commits count: an ingestion's, a standalone
    ingestion's, a backfill's, the CLI's."""
    columns = ["symbol", "timestamp", "close"]
    empty = pd.DataFrame({"symbol": pd.Series(dtype=object), "timestamp": pd.Series(dtype="datetime64[us]")})
    if until is None or since == until:
        return empty
    touched = _sessions_touched(storage, since, until)
    if not touched:
        return empty
    after = BarStore(storage, version=until).read_sessions(touched, columns=columns)
    before = (
        BarStore(storage, version=since).read_sessions(touched, columns=columns) if since else after.iloc[:0]
    )
    joined = after.merge(
        before, on=["symbol", "timestamp"], how="left", suffixes=("", "_before"), indicator=True
    )
    new, old = joined["close"], joined["close_before"]
    differs = (joined["_merge"] == "left_only") | ((new != old) & ~(new.isna() & old.isna()))
    return joined.loc[differs, ["symbol", "timestamp"]].reset_index(drop=True)


def _sessions_touched(storage: Storage, since: int | None, until: int) -> list[str]:
    """Sessions of the bar store whose data files differ between two table versions."""
    import pyarrow as pa
    from deltalake import DeltaTable

    uri, options = storage.delta_location(layout.BARS_PREFIX)

    def files(version: int) -> set[tuple[str, str]]:
        actions = pa.table(
            DeltaTable(uri, version=version, storage_options=options or None).get_add_actions(True)
        )
        columns = actions.to_pydict()
        return set(zip(columns["path"], columns["partition.session"], strict=True))

    old = files(since) if since else set()
    return sorted({session for _, session in files(until) ^ old})


def revision_baseline(previous: dict[str, Any] | None) -> int | None:
    """The bar store version every result already reflects, from the newest run record before
    this run: the version that run read if it succeeded (its own re-analyses included), else the
    baseline it started from (what it planned to re-analyse is planned again)."""
    if not previous:
        return None
    if previous.get("state") == "success":
        return previous.get("bar_store_version")
    return (previous.get("revisions") or {}).get("since_version")


def partitions_to_reanalyse(
    storage: Storage,
    changed: pd.DataFrame,
    *,
    window: AnalysisWindow | None = None,
    contracts: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The partitions with a result file whose result depends on the ``changed`` bars
    (revisions.dependent_partitions), as {contract: [timestamps]}, leaving out ``contracts``' bars
    inside ``window`` (the run analyses those anyway)."""
    from trading_lib.revisions import dependent_partitions
    from trading_lib.store import LOOKBACK_SESSIONS

    if changed.empty:
        return {}
    store = BarStore(storage)
    stored = store.sessions()
    first, last = (layout.session_date(t) for t in (changed["timestamp"].min(), changed["timestamp"].max()))
    # From the session before the first changed bar (its return needs the previous close) to
    # enough sessions after the last one for BETA_WINDOW_BARS + 1 ^GSPC bars.
    lo = max(0, bisect.bisect_left(stored, first) - 1)
    hi = bisect.bisect_right(stored, last) + LOOKBACK_SESSIONS
    bars = store.read_sessions(stored[lo:hi], columns=["symbol", "timestamp", "close"])
    dependent = dependent_partitions(changed, bars)
    if window is not None and len(contracts):
        mine = dependent["contract"].isin(list(contracts)) & window.contains(dependent["timestamp"])
        dependent = dependent[~mine.to_numpy()]
    if dependent.empty:
        return {}
    # Only partitions that were analysed before: one listing per session folder.
    names = pd.Series(
        [
            layout.result_relative_key(c, t)
            for c, t in zip(dependent["contract"], dependent["timestamp"], strict=True)
        ]
    )
    folders = names.str.split("/", n=1).str[0]
    results = storage.child(layout.RESULTS_PREFIX)
    listed = {f"{day}/{name}" for day in folders.unique() for name in results.list_entries(day)}
    dependent = dependent[names.isin(listed).to_numpy()]
    out: dict[str, list[str]] = {}
    for contract, group in dependent.groupby("contract", sort=True):
        out[str(contract)] = [layout.format_timestamp(t) for t in group["timestamp"]]
    return out


def reanalysis_plan(
    storage: Storage,
    since: int | None,
    window: AnalysisWindow,
    contracts: Sequence[str],
    until: int | None = None,
) -> dict[str, Any]:
    """What a run re-analyses because stored bars changed since bar store version ``since`` (the
    :func:`revision_baseline`; until ``until``, default: now): {"since_version", "until_version",
    "bars_changed", "partitions", "contracts": {contract: n}, "timestamps": {contract: [...]}}, the
    partitions of :func:`partitions_to_reanalyse` outside the run's own window and contracts."""
    until = bar_store_version(storage) if until is None else until
    changed = changed_bars(storage, since, until) if since is not None else changed_bars(storage, None, None)
    timestamps = partitions_to_reanalyse(storage, changed, window=window, contracts=contracts)
    return {
        "since_version": since,
        "until_version": until,
        "bars_changed": len(changed),
        "partitions": sum(len(t) for t in timestamps.values()),
        "contracts": {contract: len(t) for contract, t in timestamps.items()},
        "timestamps": timestamps,
    }


def summarize_symbol(
    storage: Storage, contract: str, timestamps: Sequence[str], run_id: str | None = None
) -> dict[str, Any]:
    """Read back the contract's partitions, write reports/symbols/<CONTRACT>.json, return the summary."""
    contract = validate_symbol(contract)
    keys = [layout.result_key(contract, layout.parse_partition_timestamp(t)) for t in timestamps]
    # One listing per session folder rather than one existence check per partition (on S3 a round
    # trip each: a year is ~250 listings against ~1,760 checks).
    split = [key.rsplit("/", 1) for key in keys]
    listed = {folder: set(storage.list_entries(folder)) for folder in {folder for folder, _ in split}}
    present = [key for key, (folder, name) in zip(keys, split, strict=True) if name in listed[folder]]
    results = storage.read_parquet_many(present)
    signals = results["signal"].value_counts().to_dict() if not results.empty else {}
    summary = {
        "contract": contract,
        "run_id": run_id,
        "partitions": len(keys),
        "written": len(present),
        "missing": sorted(set(keys) - set(present)),
        "signals": {s: int(signals.get(s, 0)) for s in layout.SIGNALS},
        "average_beta": _mean_or_none(results["beta"]) if not results.empty else None,
        "first_timestamp": timestamps[0] if timestamps else None,
        "last_timestamp": timestamps[-1] if timestamps else None,
    }
    storage.write_json(layout.report_key(f"symbols/{symbol_to_segment(contract)}"), summary)
    return summary


# -- portfolio ----------------------------------------------------------------------------------
def aggregate(
    storage: Storage,
    *,
    run_ids: Sequence[str] = (),
    period_start: str | None = None,
    period_end: str | None = None,
    aggregation_run_id: str | None = None,
    results_storage: Storage | None = None,
) -> dict[str, Any]:
    """Portfolio reports from what is stored: one over a period (default: every session with results;
    ``period_start``/``period_end`` are inclusive dates) written to reports/portfolio.json, and one
    per orchestrator run in ``run_ids`` written to output/runs/<run_id>/portfolio.json.

    Trade outcomes come from the bar store, so a trade closes as soon as its next bar is stored,
    whichever run stored it. Partition results are read through per-session roll-ups, rebuilt only
    when the session's result files changed, and committed to the results table
    (trading_lib.results_history); every report names the bar store version and the results
    version it was computed from (``versions``), so :func:`recompute_report` can compute it again.
    Returns the period summary plus, per run, its missing partitions.
    """
    explicit_results = results_storage is not None
    results_storage = results_storage or storage.child(layout.RESULTS_PREFIX)
    period_report, run_reports = _portfolio_reports(
        storage,
        results_storage,
        run_ids=run_ids,
        period_start=period_start,
        period_end=period_end,
        produced={"produced_at": _now(), "aggregation_run_id": aggregation_run_id},
        explicit_results=explicit_results,
    )
    storage.write_json(layout.report_key(PORTFOLIO_REPORT), period_report)
    run_summaries = {}
    for run_id, report in run_reports.items():
        storage.write_json(layout.run_key(run_id, PORTFOLIO_REPORT), report)
        run_summaries[run_id] = {
            "missing_partitions": report["missing_partitions"],
            "total_pnl": report["summary"]["total_pnl"],
        }
    return period_report["summary"] | {
        "report": layout.report_key(PORTFOLIO_REPORT),
        "period_start": period_report["scope"]["period_start"],
        "period_end": period_report["scope"]["period_end"],
        "runs": run_summaries,
        "missing": period_report["missing_partitions"],
        "versions": period_report["versions"],
    }


def recompute_report(
    storage: Storage, key: str, target: str | None = None, results_storage: Storage | None = None
) -> dict[str, Any]:
    """Compute the portfolio report stored at ``key`` (output/reports/portfolio.json or
    output/runs/<run_id>/portfolio.json, as written then) again from the bar store and the results
    table AS OF the versions it names, and write it to ``target`` (default: beside it,
    <name>.as-of.json). Later ingestions, revisions and re-analyses change nothing: the result
    equals the recorded report byte for byte (its produced_at and aggregation_run_id are copied:
    they say which aggregation the report is). Returns {report, target, versions, equal}."""
    recorded = storage.read_json(key)
    versions = recorded.get("versions") or {}
    scope = recorded.get("scope") or {}
    if versions.get("results") is None or "bar_store" not in versions:
        raise RequestError(f"{key} names no bar store and results versions: it cannot be recomputed")
    as_of = {"bar_store": versions["bar_store"], "results": versions["results"]}
    produced = {k: recorded.get(k) for k in ("produced_at", "aggregation_run_id")}
    results_storage = results_storage or storage.child(layout.RESULTS_PREFIX)
    if scope.get("kind") == "run":
        _, runs = _portfolio_reports(
            storage, results_storage, run_ids=[scope["run_id"]], produced=produced, as_of=as_of
        )
        report = runs[scope["run_id"]]
    else:
        report, _ = _portfolio_reports(
            storage,
            results_storage,
            run_ids=scope.get("runs") or [],
            period_start=scope.get("period_start"),
            period_end=scope.get("period_end"),
            produced=produced,
            as_of=as_of,
        )
    target = target or key.removesuffix(".json") + ".as-of.json"
    storage.write_json(target, report)
    return {
        "report": key,
        "target": target,
        "versions": as_of,
        "equal": storage.read_bytes(target) == storage.read_bytes(key),
    }


def _portfolio_reports(
    storage: Storage,
    results_storage: Storage,
    *,
    run_ids: Sequence[str] = (),
    period_start: str | None = None,
    period_end: str | None = None,
    produced: dict[str, Any],
    explicit_results: bool = False,
    as_of: dict[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the period report, {run_id: run report}) from the stores now, or ``as_of`` recorded
    versions ({"bar_store": v, "results": v}); nothing is written but the results table."""
    from trading_lib.portfolio import build_portfolio_report
    from trading_lib.results_history import ResultsHistory

    for name, value in (("period_start", period_start), ("period_end", period_end)):
        if value is not None and not (isinstance(value, str) and _DAY.match(value)):
            raise RequestError(f"{name}={value!r} must be a date YYYY-MM-DD")
    if period_start and period_end and period_start > period_end:
        raise RequestError(f"period_start ({period_start}) is after period_end ({period_end})")
    history = ResultsHistory(results_storage)
    # One version of the bar store for every read of this aggregation: a concurrent ingestion
    # cannot make the outcomes and the expected partitions come from two states.
    store = BarStore(storage, version=as_of["bar_store"]) if as_of else BarStore(storage)
    if not as_of and store.version is not None:
        store = BarStore(storage, version=store.version)
    if as_of:
        days = history.sessions(as_of["results"])
    else:
        days = [d for d in results_storage.list_folders("") if _DAY.match(d)]
    if explicit_results and not days:
        raise MissingInputError(
            f"{results_storage.root} holds no partition results (no <YYYY-MM-DD>/ folder)"
        )
    runs = [run for run in (read_run(storage, rid) for rid in run_ids) if run is not None]
    if not days and not runs:
        raise MissingInputError(f"no partition results under {results_storage.root}")
    start = period_start or (days[0] if days else "0000-00-00")
    end = period_end or (days[-1] if days else "9999-99-99")
    period_days = [d for d in days if start <= d <= end]
    windows = {run["run_id"]: AnalysisWindow.parse(run["window_start"], run["window_end"]) for run in runs}
    run_spans = [(layout.session_date(w.start), layout.session_date(w.end)) for w in windows.values()]
    run_days = {d for first, last in run_spans for d in days if first <= d <= last}
    load_days = sorted(set(period_days) | run_days)
    if as_of:
        results = history.read(as_of["results"], load_days)
        results_version = as_of["results"]
    else:
        sessions, fingerprints = _read_rollups(results_storage, load_days)
        results_version = history.record(sessions, days, fingerprints)
        results = _concat_results(sessions)
    versions = {"bar_store": store.version, "results": results_version}
    bars = _outcome_bars(store, results, load_days)
    expected_by_run = {run["run_id"]: _expected(store, run, windows[run["run_id"]]) for run in runs}
    reanalysed = {run["run_id"]: int((run.get("revisions") or {}).get("partitions", 0)) for run in runs}

    in_period = results[_within(results["timestamp"], start, end)] if len(results) else results
    # The period's expected partitions: those with a result, plus those the reported runs expected
    # and did not get (the runs behind earlier aggregations were checked then).
    expected = [in_period[["contract", "timestamp"]], *expected_by_run.values()]
    expected = pd.concat(expected, ignore_index=True).drop_duplicates(ignore_index=True)
    expected = expected[_within(expected["timestamp"], start, end)]
    period_report = build_portfolio_report(in_period, bars, expected).to_dict()
    period_report["scope"] = {
        "kind": "period",
        "period_start": period_days[0] if period_days else period_start,
        "period_end": period_days[-1] if period_days else period_end,
        "contracts": sorted(in_period["contract"].unique().tolist()) if len(in_period) else [],
        "runs": [run["run_id"] for run in runs],
    }
    period_report["partitions"], period_report["partitions_truncated"] = _grid(in_period)
    period_report["versions"] = versions
    period_report["reanalysed_partitions"] = sum(reanalysed.values())
    period_report.update(produced)

    run_reports = {}
    for run in runs:
        window = windows[run["run_id"]]
        mine = (
            results[results["contract"].isin(run["contracts"]) & window.contains(results["timestamp"])]
            if len(results)
            else results
        )
        report = build_portfolio_report(mine, bars, expected_by_run[run["run_id"]]).to_dict()
        report["scope"] = {
            "kind": "run",
            "run_id": run["run_id"],
            "window_start": run["window_start"],
            "window_end": run["window_end"],
            "period_start": layout.session_date(window.start),
            "period_end": layout.session_date(window.end - pd.Timedelta(microseconds=1)),
            "contracts": run["contracts"],
        }
        report["partitions"], report["partitions_truncated"] = _grid(mine)
        report["versions"] = versions
        report["reanalysed_partitions"] = reanalysed[run["run_id"]]
        report.update(produced)
        run_reports[run["run_id"]] = report
    return period_report, run_reports


def _read_rollups(results: Storage, days: list[str]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The partition results of ``days`` ({day: rows}, days without results left out) and the
    fingerprint of the files each was built from, through one roll-up file per session: a roll-up
    is rebuilt when the session's folder changed since it was built (Storage.folder_version: the
    folder's modification time locally, the listing on S3), so a rewritten or new partition file
    is always seen."""

    def read_day(day: str) -> tuple[pd.DataFrame | None, str]:
        fingerprint, names = results.folder_version(day)
        key = layout.daily_relative_key(day)
        try:
            rollup, metadata = results.read_parquet_with_metadata(key)
            if metadata.get("trading.sources") == fingerprint:
                return rollup, fingerprint
        except MissingInputError:
            pass
        keys = [f"{day}/{name}" for name in names if name.endswith(".parquet")]
        frame = results.read_parquet_many(keys)
        if frame.empty:
            return None, fingerprint
        frame = frame.sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)
        results.write_parquet(key, frame, {"trading.sources": fingerprint})
        return frame, fingerprint

    # Sessions are independent and their reads are round trips (S3) or decoding that releases the
    # GIL: a few at once. map() keeps the session order.
    with ThreadPoolExecutor(max_workers=ROLLUP_READERS) as pool:
        read = dict(zip(days, pool.map(read_day, days), strict=True))
    frames = {day: frame for day, (frame, _) in read.items() if frame is not None}
    return frames, {day: fingerprint for day, (_, fingerprint) in read.items() if day in frames}


def _concat_results(sessions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if not sessions:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in layout.RESULT_COLUMNS}).assign(
            contract=pd.Series(dtype=object),
            signal=pd.Series(dtype=object),
            timestamp=pd.Series(dtype=f"datetime64[us, {layout.EXCHANGE_TZ}]"),
        )
    out = pd.concat(list(sessions.values()), ignore_index=True)
    out["timestamp"] = layout.to_exchange_time(out["timestamp"])
    # One order whatever the roll-ups: sums (P&L) add up in the same order as a one-shot run's.
    return out.sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)


def _within(timestamps: pd.Series, first_day: str, last_day: str) -> pd.Series:
    """Timestamps whose session date is in [first_day, last_day] (YYYY-MM-DD; "0000-00-00" and
    "9999-99-99" stand for no bound), compared as instants: no per-row formatting."""
    mask = pd.Series(True, index=timestamps.index)
    if first_day != "0000-00-00":
        mask &= timestamps >= pd.Timestamp(first_day, tz=layout.EXCHANGE_TZ)
    if last_day != "9999-99-99":
        mask &= timestamps < pd.Timestamp(last_day, tz=layout.EXCHANGE_TZ) + pd.Timedelta(days=1)
    return mask


def _outcome_bars(store: BarStore, results: pd.DataFrame, days: list[str]) -> pd.DataFrame:
    """Closes of the results' contracts over ``days`` and the next stored session (each result's
    next bar), as (contract, timestamp, close)."""
    stored = store.sessions()
    if not days or not len(results):
        return pd.DataFrame(
            {
                "contract": [],
                "timestamp": pd.Series(dtype=f"datetime64[us, {layout.EXCHANGE_TZ}]"),
                "close": [],
            }
        )
    wanted = [d for d in stored if days[0] <= d <= days[-1]]
    after = [d for d in stored if d > days[-1]][:1]
    frame = store.read_sessions(
        wanted + after, sorted(results["contract"].unique().tolist()), ["symbol", "timestamp", "close"]
    )
    return frame.rename(columns={"symbol": "contract"})


def _expected(store: BarStore, run: dict[str, Any], window: AnalysisWindow) -> pd.DataFrame:
    """The partitions an orchestrator run was to produce: its contracts' stored bars in its window."""
    frame = store.read(window, list(run["contracts"]), columns=["symbol", "timestamp"])
    frame = frame[(frame["timestamp"] >= window.start) & frame["symbol"].isin(run["contracts"])]
    return frame.rename(columns={"symbol": "contract"})[["contract", "timestamp"]].reset_index(drop=True)


def _grid(results: pd.DataFrame) -> tuple[list[dict[str, Any]], bool]:
    if results.empty:
        return [], False
    grid = results[["contract", "timestamp", "signal", "beta"]].sort_values(["timestamp", "contract"])
    truncated = len(grid) > GRID_LIMIT
    grid = grid.tail(GRID_LIMIT).copy()
    grid["timestamp"] = grid["timestamp"].map(lambda t: t.isoformat())
    grid["beta"] = grid["beta"].astype(object).where(grid["beta"].notna(), None)
    return grid.to_dict(orient="records"), truncated


def _mean_or_none(values: pd.Series) -> float | None:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else None


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()
