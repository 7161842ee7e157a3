"""The vectorized kernel vs the per-partition path, over a year of hourly bars for 500 symbols.

- vectorized: `compute_signals` over the whole universe (~0.9 M rows), best of N, one thread;
- per partition: what `pipeline.analyze_partition` computes, without writing its file: the
  partition's look-back read from the bar store (`BarStore.lookback`) + `partition_row`, timed on a
  random sample of partitions and extrapolated to all of them; the sampled rows are checked
  bit-identical to the vectorized ones.
Goal: >= 200x, and the whole universe in <= 1 s on one core.

The universe is a seeded one-factor model built here (r = beta * m + noise, VIX a bounded random
walk), written into the bar store (trading_lib.store.BarStore, one file per session) of a temporary
local data root.

    python bench/bench_analytics.py [--symbols 500] [--bars 1764] [--sample 200] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trading_lib import layout  # noqa: E402
from trading_lib.analytics import BETA_WINDOW_BARS, compute_signals, partition_row  # noqa: E402
from trading_lib.inputs import AnalysisWindow, InputData  # noqa: E402
from trading_lib.sessions import BARS_PER_SESSION  # noqa: E402
from trading_lib.storage import Storage  # noqa: E402
from trading_lib.store import BarStore  # noqa: E402


def one_factor_universe(symbols: int, bars: int, seed: int = 0) -> InputData:
    """``symbols`` stocks x ``bars`` hourly bars (09:30 .. 15:30 on weekdays from 2023-01-03)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2023-01-03", periods=-(-bars // BARS_PER_SESSION))
    hours = pd.to_timedelta(9.5 + np.arange(BARS_PER_SESSION), unit="h")
    grid = pd.DatetimeIndex((days.to_numpy()[:, None] + hours.to_numpy()[None, :]).ravel()[:bars])
    grid = grid.tz_localize(layout.EXCHANGE_TZ).as_unit(layout.TIMESTAMP_UNIT)

    market = rng.normal(0.0, 0.003, bars)
    betas = rng.uniform(0.3, 2.0, symbols)
    stock = betas[:, None] * market[None, :] + rng.normal(0.0, 0.004, (symbols, bars))
    close = 100.0 * np.cumprod(1.0 + stock, axis=1).ravel()
    names = [f"S{i:04d}" for i in range(symbols)]
    contract_bars = pd.DataFrame(
        {
            "contract": np.repeat(names, bars),
            "timestamp": grid.take(np.tile(np.arange(bars), symbols)),
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1_000.0,
        }
    )

    def index_bars(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"timestamp": grid, "open": values, "high": values, "low": values, "close": values, "volume": 0.0}
        )

    spx = index_bars(4_000.0 * np.cumprod(1.0 + market))
    vix = index_bars(np.clip(20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, bars))), 9.0, 80.0))
    window = AnalysisWindow(grid[0], grid[-1] + pd.Timedelta(hours=1))  # the whole range
    return InputData(bars=contract_bars, vix=vix, spx=spx, window=window)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=252 * BARS_PER_SESSION, help="bars per symbol (a year)")
    parser.add_argument("--sample", type=int, default=200, help="partitions timed on the per-partition path")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the vectorized kernel (best counts)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = one_factor_universe(args.symbols, args.bars, args.seed)
    print(
        f"universe: {args.symbols} symbols x {args.bars} bars = {len(data.bars):,} rows "
        f"(built in {time.perf_counter() - started:.1f} s; Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}, one thread)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as root:
        store = BarStore(Storage(root))
        started = time.perf_counter()
        written = store.write(data, source="bench universe")
        print(
            f"bar store: {len(written.sessions_written)} session files written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        data = store.input_data(data.window)  # the frames exactly as stored

        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            full = compute_signals(data.bars, data.spx, data.vix)
            timings.append(time.perf_counter() - started)
        vectorized = min(timings)

        rng = np.random.default_rng(args.seed)
        picks = full.iloc[np.sort(rng.choice(len(full), size=min(args.sample, len(full)), replace=False))]
        started = time.perf_counter()
        rows = [
            partition_row(store.lookback(c, t, BETA_WINDOW_BARS + 1), c, t)
            for c, t in zip(picks["contract"], picks["timestamp"], strict=True)
        ]
        per_partition = (time.perf_counter() - started) / len(picks)
    pd.testing.assert_frame_equal(
        pd.concat(rows, ignore_index=True), picks.reset_index(drop=True), check_exact=True
    )

    extrapolated = per_partition * len(full)
    ratio = extrapolated / vectorized
    table = [
        (
            "vectorized compute_signals, whole universe",
            f"{vectorized:.3f} s",
            f"best of {args.repeat}; goal <= 1 s",
        ),
        ("  all runs", ", ".join(f"{t:.3f}" for t in timings) + " s", ""),
        (
            "analyze_partition, one partition",
            f"{per_partition * 1000:.2f} ms",
            f"mean of {len(picks)} (look-back read + compute)",
        ),
        (
            "analyze_partition, whole universe",
            f"{extrapolated:,.0f} s",
            f"extrapolated to {len(full):,} partitions",
        ),
        ("ratio", f"{ratio:,.0f}x", "goal >= 200x"),
    ]
    width = max(len(name) for name, _, _ in table)
    print()
    print(f"{'path':<{width}}  {'time':>22}  note")
    print(f"{'-' * width}  {'-' * 22}  {'-' * 38}")
    for name, value, note in table:
        print(f"{name:<{width}}  {value:>22}  {note}")
    print(f"\n{len(picks)} sampled partitions are bit-identical to the vectorized rows.")
    goals = vectorized <= 1.0 and ratio >= 200
    print("goals met" if goals else "GOALS NOT MET")
    return 0 if goals else 1


if __name__ == "__main__":
    sys.exit(main())
