"""The bar store: the Delta table (trading_lib.store) side by side with the previous release's
one-file-per-session store (bench/_file_store.py), same machine, same run, same bars.

    python bench/bench_store.py [--symbols 500] [--sessions 252] [--reads 100] [--root DIR]

Builds a year of hourly bars for N symbols (+ ^GSPC, ^VIX) into both stores, then measures:
1. a partition's look-back read (goal <= 50 ms), each with a fresh store object as a task has it
   (the Delta side opens the table: reads its log), on the table as written by the pipeline: the
   year's first sessions in one write, the last 15 sessions interval by interval (one commit per
   hourly bar, ~105 commits past a checkpoint), so its latest sessions hold one file per interval;
2. the bar read of a year's cumulative aggregation (every session's closes of every symbol: what
   pipeline.aggregate reads from the store for outcomes), and the same with a past version;
3. one interval's ingestion for every symbol (a new hourly bar: MERGE commit vs file rewrite);
4. size on disk of each store.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _file_store import FileStore  # noqa: E402

from trading_lib.analytics import BETA_WINDOW_BARS  # noqa: E402
from trading_lib.sample_data import generate_sample_data  # noqa: E402
from trading_lib.storage import Storage  # noqa: E402
from trading_lib.store import BarStore, to_store_rows  # noqa: E402

INTERVAL_SESSIONS = 15


def _du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]


def build(root: Path, symbols: int, sessions: int) -> pd.DataFrame:
    started = time.perf_counter()
    data = generate_sample_data(num_contracts=symbols, window_bars=sessions * 7 - 77, start="2024-01-02")
    rows = to_store_rows(data)
    elapsed = time.perf_counter() - started
    print(f"generated {len(rows):,} store rows ({symbols} symbols + 2 indices) in {elapsed:.1f} s")
    for name in ("files", "delta"):
        shutil.rmtree(root / name, ignore_errors=True)
    days = rows["timestamp"].dt.strftime("%Y-%m-%d")
    split = sorted(days.unique())[-INTERVAL_SESSIONS]
    bulk, tail = rows[days < split], rows[days >= split]

    started = time.perf_counter()
    files = FileStore(Storage(str(root / "files")))
    files.upsert(rows)
    print(f"file store: wrote {len(files.sessions())} session files in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    delta = BarStore(Storage(str(root / "delta")))
    delta.upsert(bulk, "bench: bulk")
    bulk_seconds = time.perf_counter() - started
    commits = []
    for _, interval in tail.groupby("timestamp", sort=True):
        t0 = time.perf_counter()
        delta.upsert(interval, "bench: one interval")
        commits.append(time.perf_counter() - t0)
    print(
        f"delta table: {len(bulk):,} bars in one MERGE in {bulk_seconds:.1f} s, then {len(commits)} interval "
        f"commits (median {statistics.median(commits) * 1000:.0f} ms); "
        f"version {BarStore(delta.storage).version}"
    )
    return rows


def bench_lookback(root: Path, rows: pd.DataFrame, reads: int) -> None:
    rng = np.random.default_rng(1)
    last_days = sorted(rows["timestamp"].dt.strftime("%Y-%m-%d").unique())[-5:]
    recent = rows[
        rows["timestamp"].dt.strftime("%Y-%m-%d").isin(last_days) & ~rows["symbol"].str.startswith("^")
    ]
    picks = recent.iloc[rng.choice(len(recent), size=reads, replace=False)]
    stores = {
        "file store": lambda: FileStore(Storage(str(root / "files"))),
        "delta table": lambda: BarStore(Storage(str(root / "delta"))),
    }
    timings: dict[str, list[float]] = {name: [] for name in stores}
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in stores}
    for contract, ts in zip(picks["symbol"], picks["timestamp"], strict=True):
        for name, make in stores.items():  # interleaved: both see the same machine load
            started = time.perf_counter()
            frame = make().lookback(contract, ts, BETA_WINDOW_BARS + 1)
            timings[name].append((time.perf_counter() - started) * 1000)
            frames[name].append(frame)
    for a, b in zip(frames["file store"], frames["delta table"], strict=True):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)
    files = BarStore(Storage(str(root / "delta"))).session_files(last_days)
    for name, values in timings.items():
        print(
            f"look-back read, {name}: median {statistics.median(values):.1f} ms, p90 "
            f"{np.percentile(values, 90):.1f} ms, max {max(values):.1f} ms over {reads} partitions"
        )
    print(f"  (identical frames; the delta table's last 5 sessions hold {len(files)} files)")


def bench_year_read(root: Path, symbols: list[str]) -> None:
    for name, store in (
        ("file store", FileStore(Storage(str(root / "files")))),
        ("delta table", BarStore(Storage(str(root / "delta")))),
        ("delta table as of version 1", BarStore(Storage(str(root / "delta")), version=1)),
    ):
        started = time.perf_counter()
        days = store.sessions()
        frame = store.read_sessions(days, symbols, ["symbol", "timestamp", "close"])
        print(f"a year's outcome bars, {name}: {time.perf_counter() - started:.2f} s for {len(frame):,} bars")


def bench_ingest(root: Path, rows: pd.DataFrame) -> None:
    latest = rows["timestamp"].max()
    nxt = rows[rows["timestamp"] == latest].assign(timestamp=latest + pd.Timedelta(days=1))
    nxt["close"] = nxt["close"] * 1.001
    nxt["high"] = np.maximum(nxt["high"], nxt["close"])
    files = FileStore(Storage(str(root / "files")))
    started = time.perf_counter()
    files.upsert(nxt)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"one interval's ingestion ({len(nxt)} symbols), file store: {elapsed:.0f} ms")
    delta = BarStore(Storage(str(root / "delta")))
    started = time.perf_counter()
    report = delta.upsert(nxt, "bench: one interval")
    elapsed = (time.perf_counter() - started) * 1000
    print(
        f"one interval's ingestion ({len(nxt)} symbols), delta table: {elapsed:.0f} ms "
        f"(version {report.version}, {report.attempts} attempt; includes compacting the session)"
    )
    revised = nxt.assign(close=nxt["close"] * 1.0001, high=np.maximum(nxt["high"], nxt["close"] * 1.0001))
    started = time.perf_counter()
    report = delta.upsert(revised, "bench: a revision of that interval")
    print(
        f"revising that interval, delta table: {(time.perf_counter() - started) * 1000:.0f} ms "
        f"({report.bars_revised} bars revised)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    root = args.root or Path(tempfile.gettempdir()) / f"trading-bench-store-{args.symbols}x{args.sessions}"
    root.mkdir(parents=True, exist_ok=True)
    rows = build(root, args.symbols, args.sessions)
    bench_lookback(root, rows, args.reads)
    bench_year_read(root, sorted(set(rows["symbol"]) - {"^GSPC", "^VIX"}))
    bench_ingest(root, rows)
    print(
        f"size on disk: file store {_du(root / 'files' / 'bars')}, delta table {_du(root / 'delta' / 'bars')}"
    )


if __name__ == "__main__":
    main()
