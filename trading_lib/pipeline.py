"""The pipeline's operations, each a plain function over a Storage.

The CLI (``python -m trading_lib``), the Airflow tasks (local mode) and the Kubernetes pods all
call these functions, so a partition computed in a worker and one computed in a pod are the same
code path and write the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from trading_lib import layout
from trading_lib.inputs import (
    AnalysisWindow,
    InputData,
    read_contracts,
    read_inputs,
    read_window,
    write_inputs,
)
from trading_lib.settings import Settings, load_settings
from trading_lib.storage import MissingInputError, Storage
from trading_lib.symbols import SymbolError, segment_to_symbol, symbol_to_segment, validate_symbol

VALIDATION_REPORT = "validation"
PORTFOLIO_REPORT = "portfolio"
MANIFEST_REPORT = "pipeline/manifest"


class PipelineInputError(ValueError):
    """A request (CLI arguments or DAG conf) the data cannot satisfy; the message names the field."""


def open_storage(settings: Settings | None = None, fs=None) -> Storage:
    settings = settings or load_settings()
    return Storage(settings.data_root, fs=fs)


# -- layer 0: sample data -----------------------------------------------------------------------
def generate_inputs(
    storage: Storage,
    *,
    num_contracts: int = 10,
    real_folder: str | None = None,
    seed: int = 42,
    anomalies: Any = None,
) -> dict[str, Any]:
    """Write the three input files: generated sample data, or the real bars in ``real_folder``."""
    from trading_lib import sample_data

    if real_folder:
        data = sample_data.load_real_bars(real_folder)
    else:
        data = sample_data.generate_sample_data(num_contracts=num_contracts, seed=seed, anomalies=anomalies)
    written = write_inputs(storage, data)
    return {
        "contracts": data.contracts,
        "window_start": data.window.start.isoformat(),
        "window_end": data.window.end.isoformat(),
        "rows": written,
    }


# -- layer 2: validation ------------------------------------------------------------------------
def validate(storage: Storage, contracts: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate the inputs, write the report, return {status, summary, report (key), issues (count)}."""
    from trading_lib.validation import validate_inputs

    data = read_inputs(storage)
    report = validate_inputs(data, list(contracts) if contracts else None)
    key = layout.report_key(VALIDATION_REPORT)
    storage.write_json(key, report.to_dict())
    return {
        "status": report.status,
        "summary": report.summary_text(),
        "issues": len(report.issues),
        "report": storage.url(key),
    }


# -- layer 3: selecting the work ----------------------------------------------------------------
def select_contracts(storage: Storage, num_contracts: int) -> list[str]:
    """The first ``num_contracts`` contracts of the input (sorted), or an error naming num_contracts."""
    available = read_contracts(storage)
    if not isinstance(num_contracts, int) or isinstance(num_contracts, bool) or num_contracts < 1:
        raise PipelineInputError(f"num_contracts={num_contracts!r} must be a positive integer")
    if num_contracts > len(available):
        raise PipelineInputError(
            f"num_contracts={num_contracts} is larger than the {len(available)} contracts in the input"
        )
    return available[:num_contracts]


def resolve_window(storage: Storage, start: object = None, end: object = None) -> AnalysisWindow:
    """The analysis window: the one given (both bounds), else the one recorded in the input files."""
    if start is None and end is None:
        return read_window(storage)
    if start is None or end is None:
        raise PipelineInputError("window_start and window_end must be given together")
    try:
        return AnalysisWindow.parse(start, end)
    except layout.PartitionKeyError as exc:
        raise PipelineInputError(f"window: {exc}") from None
    except ValueError as exc:
        raise PipelineInputError(f"window_start/window_end: {exc}") from None


def list_partitions(
    storage: Storage,
    contract: str,
    *,
    window: AnalysisWindow | None = None,
    timestamps: Sequence[object] | None = None,
) -> list[str]:
    """Partition labels (ISO timestamps) of ``contract``: ``timestamps`` if given (each must be one
    of its bars), else its bars inside the analysis window."""
    try:
        contract = validate_symbol(contract)
    except SymbolError as exc:
        raise PipelineInputError(f"contract: {exc}") from None
    bars = storage.read_parquet(
        layout.HOLDINGS_KEY, columns=["timestamp"], filters=[("contract", "==", contract)]
    )
    if bars.empty:
        raise PipelineInputError(f"contract: {contract!r} is not in {storage.url(layout.HOLDINGS_KEY)}")
    available = pd.DatetimeIndex(layout.to_exchange_time(bars["timestamp"]))
    if timestamps is not None:
        if isinstance(timestamps, str) or not isinstance(timestamps, Sequence) or not timestamps:
            raise PipelineInputError(
                f"timestamps={timestamps!r} must be a non-empty list of ISO 8601 date-times"
            )
        wanted = []
        for index, value in enumerate(timestamps):
            try:
                ts = layout.parse_partition_timestamp(value)
            except layout.PartitionKeyError as exc:
                raise PipelineInputError(f"timestamps[{index}]: {exc}") from None
            if ts not in available:
                raise PipelineInputError(
                    f"timestamps[{index}]: {value!r} is not a bar of {contract} in the input"
                )
            wanted.append(ts)
        return [layout.partition_label(ts) for ts in sorted(set(wanted))]
    window = window or read_window(storage)
    selected = available[(available >= window.start) & (available < window.end)].unique().sort_values()
    return [ts.isoformat() for ts in selected]


def chunk_partitions(labels: Sequence[str], max_map_length: int) -> list[list[str]]:
    """One partition per mapped task instance; past ``max_map_length`` partitions (Airflow's
    [core] max_map_length), consecutive partitions are grouped into equal chunks so the number of
    mapped instances stays within the limit."""
    if max_map_length < 1:
        raise ValueError("max_map_length must be positive")
    size = max(1, math.ceil(len(labels) / max_map_length))
    return [list(labels[i : i + size]) for i in range(0, len(labels), size)]


# -- layer 5: partitions ------------------------------------------------------------------------
def run_partitions(storage: Storage, contract: str, timestamps: Sequence[object]) -> list[dict[str, Any]]:
    """Analyse and write each (contract, timestamp) partition; returns what was written."""
    from trading_lib.analytics import analyze_partition

    written = []
    for value in timestamps:
        row = analyze_partition(storage, contract, value)
        ts = layout.to_exchange_time(row["timestamp"].iloc[0])
        key = layout.result_key(contract, ts)
        size = storage.write_parquet(key, row)
        written.append(
            {
                "contract": str(row["contract"].iloc[0]),
                "timestamp": ts.isoformat(),
                "signal": str(row["signal"].iloc[0]),
                "key": key,
                "bytes": size,
            }
        )
    return written


# -- layer 4: per-symbol summary -----------------------------------------------------------------
def summarize_symbol(
    storage: Storage, contract: str, timestamps: Sequence[str], run_id: str | None = None
) -> dict[str, Any]:
    """Read back the contract's partitions, write reports/symbols/<CONTRACT>.json, return the summary."""
    contract = validate_symbol(contract)
    keys = [layout.result_key(contract, layout.parse_partition_timestamp(t)) for t in timestamps]
    present = [k for k in keys if storage.exists(k)]
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


def write_manifest(
    storage: Storage, *, contracts: Sequence[str], window: AnalysisWindow, **extra: Any
) -> str:
    """Record what a pipeline run covers; aggregation reads it to know which partitions to expect."""
    key = layout.report_key(MANIFEST_REPORT)
    storage.write_json(
        key,
        {
            "contracts": list(contracts),
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
        }
        | extra,
    )
    return key


# -- layer 6: portfolio -------------------------------------------------------------------------
def aggregate(storage: Storage, results_storage: Storage | None = None) -> dict[str, Any]:
    """Compute the portfolio report from what is in storage and write reports/portfolio.json.

    Scope: the contracts and window of the last pipeline manifest, else every contract with
    results and the input's window. ``results_storage`` is the trading-results folder (default:
    <data root>/output/trading-results). Expected partitions that have no file are reported.
    """
    from trading_lib.portfolio import build_portfolio_report

    results_storage = results_storage or storage.child(layout.RESULTS_PREFIX)
    manifest_key = layout.report_key(MANIFEST_REPORT)
    if storage.exists(manifest_key):
        manifest = storage.read_json(manifest_key)
        contracts = list(manifest["contracts"])
        window = AnalysisWindow.parse(manifest["window_start"], manifest["window_end"])
    else:
        contracts = sorted({key.split("/", 1)[0] for key in results_storage.list_keys("", suffix=".parquet")})
        contracts = [segment_to_symbol(segment) for segment in contracts]
        if not contracts:
            raise MissingInputError(f"no partition results under {results_storage.root}")
        window = read_window(storage)

    data: InputData = read_inputs(storage, contracts)
    holdings = data.holdings
    expected = holdings.loc[window.contains(holdings["timestamp"]), ["contract", "timestamp"]].reset_index(
        drop=True
    )
    first, last = layout.partition_file_stem(window.start), layout.partition_file_stem(window.end)
    keys = [
        key
        for contract in contracts
        for key in results_storage.list_keys(symbol_to_segment(contract), suffix=".parquet")
        if first <= key.rsplit("/", 1)[-1].removesuffix(".parquet") < last
    ]
    results = results_storage.read_parquet_many(keys)
    if not results.empty:
        results["timestamp"] = layout.to_exchange_time(results["timestamp"])
        results = results.sort_values(["contract", "timestamp"], kind="stable").reset_index(drop=True)
    else:
        results = pd.DataFrame(columns=layout.RESULT_COLUMNS)
    report = build_portfolio_report(results, holdings, expected)
    payload = report.to_dict()
    payload["scope"] = {
        "contracts": contracts,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "results_root": results_storage.root,
    }
    payload["partitions"] = _partition_grid(results)
    key = layout.report_key(PORTFOLIO_REPORT)
    storage.write_json(key, payload)
    return payload["summary"] | {"report": storage.url(key)}


def _partition_grid(results: pd.DataFrame) -> list[dict[str, Any]]:
    if results.empty:
        return []
    grid = results[["contract", "timestamp", "signal", "beta"]].copy()
    grid["timestamp"] = grid["timestamp"].map(lambda t: t.isoformat())
    grid["beta"] = grid["beta"].astype(object).where(grid["beta"].notna(), None)
    return grid.to_dict(orient="records")


def _mean_or_none(values: pd.Series) -> float | None:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else None
