"""Revisions reach the results, and reports can be computed again as of the versions they name.

The flow a desk sees: a history is analysed and aggregated; a later ingestion revises bars (a
corrected close, a re-based index bar); the partitions that depend on them are analysed again;
the next report equals a one-shot run over the revised bars, and the first report, recomputed as
of the versions it names, equals itself byte for byte.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from trading_lib import layout, pipeline
from trading_lib.analytics import compute_signals
from trading_lib.errors import RequestError
from trading_lib.inputs import AnalysisWindow
from trading_lib.results_history import ResultsHistory
from trading_lib.run_request import reanalysis_runs
from trading_lib.storage import Storage
from trading_lib.store import BarStore

CONTRACTS = 2
WINDOW_BARS = 80  # more than a beta window: a revision early in the window reaches partitions past it


def _analyse_all(storage: Storage, window: AnalysisWindow) -> dict[str, list[str]]:
    contracts = pipeline.select_contracts(storage, None, window)
    partitions = {c: pipeline.list_partitions(storage, c, window=window) for c in contracts}
    for contract, timestamps in partitions.items():
        pipeline.analyze_partition(storage, contract, timestamps)
    return partitions


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> tuple[str, AnalysisWindow, dict[str, list[str]]]:
    """A history analysed once (every window partition) and recorded as run "first"; each test
    works on a copy of it."""
    root = tmp_path_factory.mktemp("history")
    storage = Storage(str(root))
    generated = pipeline.generate_inputs(storage, num_contracts=CONTRACTS, window_bars=WINDOW_BARS)
    window = AnalysisWindow.parse(generated["window_start"], generated["window_end"])
    partitions = _analyse_all(storage, window)
    pipeline.record_run(
        storage,
        "first",
        window_start=window.start.isoformat(),
        window_end=window.end.isoformat(),
        contracts=sorted(partitions),
        state="success",
    )
    return str(root), window, partitions


def _history(analysed, root) -> tuple[Storage, AnalysisWindow, dict[str, list[str]]]:
    source, window, partitions = analysed
    shutil.copytree(source, root)
    return Storage(str(root)), window, partitions


def _revision(storage: Storage, window: AnalysisWindow) -> pd.DataFrame:
    """Store rows revising two bars inside the window: one close of AAPL (+2 %) and one ^GSPC bar."""
    store = BarStore(storage)
    rows = store.read(window)
    rows = rows[rows["timestamp"] >= window.start].reset_index(drop=True)
    aapl = rows.index[rows["symbol"] == "AAPL"][30]
    spx = rows.index[rows["symbol"] == "^GSPC"][55]
    revised = rows.loc[[aapl, spx]].copy()
    revised["close"] *= 1.02
    revised["high"] = revised[["high", "close"]].max(axis=1)
    return revised


def _results_files(storage: Storage) -> pd.DataFrame:
    keys = [k for k in storage.list_keys(layout.RESULTS_PREFIX, ".parquet") if k.count("/") == 3]
    frame = storage.read_parquet_many(keys)
    frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
    return frame.sort_values(["contract", "timestamp"], ignore_index=True)


def _one_shot(storage: Storage, window: AnalysisWindow) -> pd.DataFrame:
    """The kernel over every stored bar at once, cut to the window: what a fresh run computes."""
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    stocks = rows[~rows["symbol"].str.startswith("^")].rename(columns={"symbol": "contract"})
    direct = compute_signals(stocks, rows[rows["symbol"] == "^GSPC"], rows[rows["symbol"] == "^VIX"])
    return direct[window.contains(direct["timestamp"])].reset_index(drop=True)


def _without_provenance(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("produced_at", "aggregation_run_id", "versions")}


def test_a_revision_reanalyses_exactly_its_dependents_and_the_report_equals_a_one_shot_run(
    analysed, tmp_path
):
    storage, window, partitions = _history(analysed, tmp_path / "live")
    pipeline.aggregate(storage, run_ids=["first"])
    before = _results_files(storage)

    baseline = BarStore(storage).version
    written = BarStore(storage).upsert(_revision(storage, window), "a corrected re-fetch")
    assert written.bars_revised == 2
    changed = pipeline.changed_bars(storage, baseline, written.version)
    assert sorted(changed["symbol"]) == ["AAPL", "^GSPC"]
    plan = pipeline.reanalysis_plan(storage, baseline, window, contracts=())
    assert (plan["since_version"], plan["until_version"]) == (baseline, written.version)

    # What must be analysed again: every partition whose stored result no longer equals the kernel
    # over the revised bars; nothing else is named (beyond rows whose beta is NaN either way).
    after = _one_shot(storage, window)
    stale = before.merge(after, on=["contract", "timestamp"], suffixes=("", "_now"))
    differs = pd.Series(False, index=stale.index)
    for column in layout.RESULT_COLUMNS[2:]:
        a, b = stale[column], stale[f"{column}_now"]
        differs |= (a != b) & ~(a.isna() & b.isna())
    must = {
        (c, layout.format_timestamp(t))
        for c, t in zip(stale["contract"][differs], stale["timestamp"][differs], strict=True)
    }
    named = {(c, t) for c, stamps in plan["timestamps"].items() for t in stamps}
    assert must and must <= named
    extra = named - must
    betas = before.set_index(["contract", "timestamp"])["beta"]
    assert all(pd.isna(betas[(c, layout.parse_partition_timestamp(t))]) for c, t in extra)
    assert plan["partitions"] == len(named) and set(plan["contracts"]) == set(partitions)  # ^GSPC: all
    assert plan["bars_changed"] == 2

    # Re-analysing exactly those brings every stored result to the one-shot values.
    mtimes = {
        p: p.stat().st_mtime_ns for p in (tmp_path / "live" / layout.RESULTS_PREFIX).rglob("*_*.parquet")
    }
    for run in reanalysis_runs("second", plan):
        pipeline.analyze_partition(storage, run["conf"]["contract"], run["conf"]["timestamps"])
    rewritten = [p for p, m in mtimes.items() if p.stat().st_mtime_ns != m]
    assert len(rewritten) == plan["partitions"]
    pd.testing.assert_frame_equal(_results_files(storage), after, check_dtype=False)

    # The period report afterwards equals a one-shot run over the revised bars in a new data root.
    revised_report = pipeline.aggregate(storage)
    assert revised_report["versions"]["bar_store"] == written.version
    fresh = Storage(str(tmp_path / "fresh"))
    bars = BarStore(storage).read_sessions(BarStore(storage).sessions())
    BarStore(fresh).upsert(bars, "the revised bars at once")
    _analyse_all(fresh, window)
    pipeline.aggregate(fresh)
    key = layout.report_key("portfolio")
    assert _without_provenance(storage.read_json(key)) == _without_provenance(fresh.read_json(key))


def test_a_report_recomputed_as_of_its_versions_equals_the_original_after_a_revision(analysed, tmp_path):
    storage, window, _ = _history(analysed, tmp_path / "live")
    pipeline.aggregate(storage, run_ids=["first"], aggregation_run_id="agg-1")
    # Keep the reports as they were written (later aggregations overwrite these keys).
    originals = {}
    for key in (layout.report_key("portfolio"), layout.run_key("first", "portfolio")):
        saved = key.replace(".json", ".saved.json")
        storage.write_bytes(saved, storage.read_bytes(key))
        originals[saved] = storage.read_bytes(key)
    recorded = storage.read_json(layout.run_key("first", "portfolio"))
    assert recorded["versions"] == {"bar_store": BarStore(storage).version, "results": 0}

    # A later revision, its re-analysis, a later ingestion of a new session, and a new aggregation.
    baseline = BarStore(storage).version
    BarStore(storage).upsert(_revision(storage, window), "a corrected re-fetch")
    plan = pipeline.reanalysis_plan(storage, baseline, window, contracts=())
    for run in reanalysis_runs("second", plan):
        pipeline.analyze_partition(storage, run["conf"]["contract"], run["conf"]["timestamps"])
    later = pipeline.generate_inputs(storage, num_contracts=CONTRACTS, start="2024-03-01", window_bars=7)
    later_window = AnalysisWindow.parse(later["window_start"], later["window_end"])
    _analyse_all(storage, later_window)
    pipeline.aggregate(storage, run_ids=["first"], aggregation_run_id="agg-2")
    now = storage.read_json(layout.run_key("first", "portfolio"))
    assert now["versions"]["results"] > 0 and now["summary"] != recorded["summary"]  # it did change

    for saved, original in originals.items():
        result = pipeline.recompute_report(storage, saved)
        assert result["equal"], saved
        assert storage.read_bytes(result["target"]) == original


def test_the_results_table_commits_only_changed_sessions(analysed, tmp_path):
    storage, window, partitions = _history(analysed, tmp_path / "live")
    pipeline.aggregate(storage)
    history = ResultsHistory(storage.child(layout.RESULTS_PREFIX))
    first = history._table().version()
    pipeline.aggregate(storage)  # nothing changed: no commit
    assert history._table().version() == first
    contract = sorted(partitions)[0]
    stamp = partitions[contract][-1]
    key = layout.result_key(contract, layout.parse_partition_timestamp(stamp))
    row = storage.read_parquet(key)
    other = "SELL" if row["signal"].iloc[0] == "BUY" else "BUY"
    storage.write_parquet(key, row.assign(signal=other))  # the partition rewritten with another result
    pipeline.aggregate(storage)
    table = history._table()
    assert table.version() == first + 1
    assert table.history(1)[0]["operationMetrics"]["num_added_files"] == 1  # that session alone
    ts = layout.parse_partition_timestamp(stamp)
    day = layout.session_date(ts)
    old, new = (
        history.read(v, [day]).set_index(["contract", "timestamp"])["signal"] for v in (first, first + 1)
    )
    assert old[(contract, ts)] != other and new[(contract, ts)] == other
    assert old.drop((contract, ts)).equals(new.drop((contract, ts)))


def test_a_report_without_versions_cannot_be_recomputed(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_json("output/reports/old.json", {"scope": {"kind": "period"}, "summary": {}})
    with pytest.raises(RequestError, match="names no bar store and results versions"):
        pipeline.recompute_report(storage, "output/reports/old.json")
