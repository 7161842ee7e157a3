"""The vectorized kernel vs the per-partition path, over a year of hourly bars for 500 symbols.

- vectorized: `compute_signals` over the whole universe (~0.9 M rows), best of N, one thread;
- per partition: `analyze_partition` (reload the slice from parquet + compute), timed on a random
  sample of partitions and extrapolated to all of them; the sampled rows are checked bit-identical
  to the vectorized ones.
Goal: >= 200x, and the whole universe in <= 1 s on one core.

    python bench/bench_analytics.py [--symbols 500] [--bars 1764] [--sample 200] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trading_lib.analytics import analyze_partition, compute_signals  # noqa: E402
from trading_lib.inputs import read_inputs, write_inputs  # noqa: E402
from trading_lib.sample_data import generate_sample_data  # noqa: E402
from trading_lib.storage import Storage  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=252 * 7, help="bars per symbol (a year: 1764)")
    parser.add_argument("--sample", type=int, default=200, help="partitions timed on the per-partition path")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = generate_sample_data(
        num_contracts=args.symbols, window_bars=args.bars, warmup_bars=0, start="2023-01-03"
    )
    print(
        f"universe: {args.symbols} symbols x {args.bars} bars = {len(data.holdings):,} rows "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )
    with tempfile.TemporaryDirectory() as root:
        storage = Storage(root)
        write_inputs(storage, data)
        data = read_inputs(storage)  # the frames exactly as stored

        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            full = compute_signals(data.holdings, data.spx, data.vix)
            timings.append(time.perf_counter() - started)
        vectorized = min(timings)

        rng = np.random.default_rng(0)
        picks = full.iloc[rng.choice(len(full), size=min(args.sample, len(full)), replace=False)]
        started = time.perf_counter()
        rows = [
            analyze_partition(storage, c, t)
            for c, t in zip(picks["contract"], picks["timestamp"], strict=True)
        ]
        per_partition = (time.perf_counter() - started) / len(picks)
    sampled = pd.concat(rows, ignore_index=True)
    pd.testing.assert_frame_equal(sampled, picks.reset_index(drop=True), check_exact=True)

    extrapolated = per_partition * len(full)
    print(f"vectorized kernel, whole universe : {vectorized:8.3f} s  (best of {args.repeat}; goal <= 1 s)")
    print(f"per-partition path, one partition : {per_partition * 1000:8.2f} ms (mean of {len(picks)})")
    print(f"per-partition path, whole universe: {extrapolated:8.0f} s  (extrapolated)")
    print(f"ratio                             : {extrapolated / vectorized:8.0f}x  (goal >= 200x)")
    print(f"{len(picks)} sampled partitions are bit-identical to the vectorized rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
