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
    holdings = pd.concat(
        [session_bars(day, close=close).assign(contract=c) for c in contracts], ignore_index=True
    )
    window = AnalysisWindow.parse(f"{day}T11:30:00-05:00", f"{day}T14:30:00-05:00")
    return InputData(holdings=holdings, vix=session_bars(day), spx=session_bars(day), window=window)
