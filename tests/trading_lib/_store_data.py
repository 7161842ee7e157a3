"""Small hand-made sessions of bars for the bar store tests (local and S3)."""

from __future__ import annotations

import pandas as pd

from trading_lib.inputs import AnalysisWindow, InputData


def session_bars(day: str = "2024-01-02", n: int = 5, close: float = 1.5) -> pd.DataFrame:
    ts = pd.date_range(f"{day} 09:30", periods=n, freq="h", tz="America/New_York")
    return pd.DataFrame(
        {"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": close, "volume": 10.0}
    )


def session_data(day: str = "2024-01-02", close: float = 1.5, contracts=("MSFT", "AAPL")) -> InputData:
    """Two stocks and the two indices over five bars of ``day``; stocks close at ``close``."""
    bars = pd.concat(
        [session_bars(day, close=close).assign(contract=c) for c in contracts], ignore_index=True
    )
    window = AnalysisWindow.parse(f"{day}T11:30:00-05:00", f"{day}T14:30:00-05:00")
    return InputData(bars=bars, vix=session_bars(day), spx=session_bars(day), window=window)


def upsert_concurrently(
    root: str, stocks: list[str], workdir, storage_options: dict | None = None
) -> list[dict]:
    """Start one process per stock (tests/trading_lib/_concurrent_upsert.py), release them at
    once, and return their reports; a writer that fails fails the caller with its stderr."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("_concurrent_upsert.py")
    go = Path(workdir) / "go"
    extra = [json.dumps(storage_options)] if storage_options else []
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), root, stock, str(go), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for stock in stocks
    ]
    import time

    deadline = time.monotonic() + 120
    while not all((Path(f"{go}.ready-{stock}")).exists() for stock in stocks):
        crashed = [p for p in procs if p.poll() is not None]
        assert not crashed and time.monotonic() < deadline, "a writer never got ready"
        time.sleep(0.01)
    go.write_text("go")  # every writer is past its imports and waits: the commits collide
    reports = []
    for stock, proc in zip(stocks, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"writer {stock} failed: {err[-2000:]}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports
