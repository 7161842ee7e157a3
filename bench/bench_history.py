"""History at scale: a year of hourly bars for 500 symbols in the bar store, and a year of results.

    python bench/bench_history.py [--symbols 500] [--sessions 252] [--root DIR] [--reads 100]

Measures, on the local disk:
1. a partition's look-back read (BarStore.lookback: ~12 session files of the Delta table) — goal <= 50 ms;
2. the cumulative aggregation over the year (pipeline.aggregate): cold (every per-session roll-up
   built from the partition files) and warm (roll-ups fresh, the steady state of a schedule) —
   goal <= 10 s;
3. ingesting one new interval for every symbol (BarStore.upsert): one MERGE commit.
(bench/bench_store.py measures the store alone, beside the previous release's file store.)

The store and the results are built once into --root (default: a folder under the system temp
dir, reused by later runs); building a year of partition files takes minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading_lib import layout, pipeline  # noqa: E402
from trading_lib.analytics import BETA_WINDOW_BARS, compute_signals, partition_row  # noqa: E402
from trading_lib.sample_data import generate_sample_data  # noqa: E402
from trading_lib.storage import PARQUET_COMPRESSION, Storage  # noqa: E402
from trading_lib.store import BarStore  # noqa: E402


def build(root: Path, symbols: int, sessions: int) -> None:
    storage = Storage(str(root))
    marker = root / ".built"
    if marker.exists() and marker.read_text() == f"{symbols} {sessions} delta":
        print(f"reusing {root}")
        return
    started = time.perf_counter()
    data = generate_sample_data(num_contracts=symbols, window_bars=sessions * 7 - 77, start="2024-01-02")
    print(f"generated {len(data.bars):,} stock bars in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    BarStore(storage).write(data, "bench")
    print(
        f"stored {len(BarStore(storage).sessions())} session files in {time.perf_counter() - started:.1f} s"
    )
    started = time.perf_counter()
    results = compute_signals(data.bars, data.spx, data.vix)
    results = results[data.window.contains(results["timestamp"])].reset_index(drop=True)
    table = pa.Table.from_pandas(results, preserve_index=False)
    keys = [layout.result_key(c, t) for c, t in zip(results["contract"], results["timestamp"], strict=True)]
    for i, key in enumerate(keys):  # one file per partition, as the pipeline writes them
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(i, 1), path, compression=PARQUET_COMPRESSION)
    print(f"wrote {len(keys):,} partition files in {time.perf_counter() - started:.1f} s")
    marker.write_text(f"{symbols} {sessions} delta")


def bench_lookback(root: Path, reads: int) -> None:
    storage = Storage(str(root))
    store = BarStore(storage)
    stored = store.sessions()
    rng = np.random.default_rng(1)
    frame = store.read_sessions(stored[-5:], columns=["symbol", "timestamp"])
    frame = frame[~frame["symbol"].str.startswith("^")].reset_index(drop=True)
    picks = frame.iloc[rng.choice(len(frame), size=reads, replace=False)]
    read_ms, total_ms = [], []
    for contract, ts in zip(picks["symbol"], picks["timestamp"], strict=True):
        started = time.perf_counter()
        bars = store.lookback(contract, ts, BETA_WINDOW_BARS + 1)
        read_ms.append((time.perf_counter() - started) * 1000)
        partition_row(bars, contract, ts)
        total_ms.append((time.perf_counter() - started) * 1000)
    files = len(stored[-12:])
    print(
        f"look-back read: median {statistics.median(read_ms):.1f} ms, max {max(read_ms):.1f} ms over {reads} "
        f"partitions ({files} session files each); read + kernel median {statistics.median(total_ms):.1f} ms"
    )


def bench_aggregate(root: Path) -> None:
    storage = Storage(str(root))
    for rollup in (root / layout.RESULTS_PREFIX).glob("*.parquet"):
        rollup.unlink()  # cold: no roll-up yet
    for label in ("cold (roll-ups built)", "warm (roll-ups fresh)"):
        started = time.perf_counter()
        summary = pipeline.aggregate(storage)
        elapsed = time.perf_counter() - started
        print(
            f"cumulative aggregation, {label}: {elapsed:.1f} s for {summary['partitions']:,} partitions, "
            f"{summary['period_start']} .. {summary['period_end']}"
        )


def bench_ingest_interval(root: Path) -> None:
    storage = Storage(str(root))
    store = BarStore(storage)
    last = store.sessions()[-1]
    rows = store.read_sessions([last])
    latest = rows["timestamp"].max()
    nxt = rows[rows["timestamp"] == latest].assign(timestamp=latest + pd.Timedelta(days=1))
    nxt["close"] = nxt["close"] * 1.001
    nxt["high"] = np.maximum(nxt["high"], nxt["close"])
    started = time.perf_counter()
    report = store.upsert(nxt, "bench: one new interval")
    elapsed = time.perf_counter() - started
    print(
        f"ingest one interval for {len(nxt)} symbols: {elapsed * 1000:.0f} ms, "
        f"committed version {report.version} "
        f"(sessions_written {report.sessions_written}; the bar stays in the store: a new version each run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    root = args.root or Path(tempfile.gettempdir()) / f"trading-bench-history-{args.symbols}x{args.sessions}"
    root.mkdir(parents=True, exist_ok=True)
    build(root, args.symbols, args.sessions)
    bench_lookback(root, args.reads)
    bench_aggregate(root)
    bench_ingest_interval(root)


if __name__ == "__main__":
    main()
