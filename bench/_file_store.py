"""The bar store of the previous release (one parquet file per session, read-merge-replace), kept
only so that bench/bench_store.py can measure it side by side with the Delta table on the same
machine in the same run. Not used by the pipeline; its read and write paths are the release's
(trading_lib/store.py at d72b357), trimmed to what the benchmark calls."""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.inputs import normalise_bars
from trading_lib.storage import Storage
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX

INDICES = (MARKET_INDEX, VOLATILITY_INDEX)
PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
LOOKBACK_SESSIONS = 12


class FileStore:
    def __init__(self, storage: Storage):
        self.storage = storage

    def sessions(self) -> list[str]:
        names = self.storage.list_entries(layout.BARS_PREFIX)
        return sorted(n.removesuffix(".parquet") for n in names if n.endswith(".parquet"))

    def read_sessions(self, days, symbols=None, columns=None) -> pd.DataFrame:
        columns = columns or layout.BAR_STORE_COLUMNS
        columns = ["symbol", *[c for c in columns if c != "symbol"]]
        filters = [("symbol", "in", list(symbols))] if symbols else None
        keys = [layout.legacy_bars_key(day) for day in days]
        frame = self.storage.read_parquet_many(keys, columns=columns, filters=filters)
        if frame.empty:
            return frame
        frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
        frame["symbol"] = frame["symbol"].astype(object)
        return frame.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)

    def lookback(self, contract: str, ts: pd.Timestamp, bars: int) -> pd.DataFrame:
        stored = self.sessions()
        symbols, columns = [contract, *INDICES], ["symbol", "timestamp", "close"]
        days = stored[: bisect.bisect_right(stored, layout.session_date(ts))]
        count = LOOKBACK_SESSIONS
        while True:
            frame = self.read_sessions(days[-count:], symbols, columns)
            frame = frame[(frame["timestamp"] <= ts).to_numpy()]
            market = frame.loc[frame["symbol"] == MARKET_INDEX, "timestamp"]
            stock = frame.loc[frame["symbol"] == contract, "timestamp"]
            if (len(market) >= bars and (stock < market.iloc[-bars]).any()) or count >= len(days):
                return frame.reset_index(drop=True)
            count = min(len(days), count * 2)

    def upsert(self, rows: pd.DataFrame) -> list[str]:
        """Read each session file, merge by (symbol, timestamp), replace it (the release's path)."""
        rows = normalise_bars(rows, layout.BAR_STORE_COLUMNS, "bench")
        days = rows["timestamp"].dt.strftime("%Y-%m-%d")
        written = []
        for day, new in rows.groupby(days, sort=True):
            key = layout.legacy_bars_key(day)
            old = (
                normalise_bars(self.storage.read_parquet(key), layout.BAR_STORE_COLUMNS, key)
                if self.storage.exists(key)
                else pd.DataFrame(columns=layout.BAR_STORE_COLUMNS)
            )
            kept = old.merge(new[["symbol", "timestamp"]], how="left", indicator=True)
            kept = old[(kept["_merge"] == "left_only").to_numpy()]
            merged = pd.concat([kept, new], ignore_index=True) if len(kept) else new
            out = merged[layout.BAR_STORE_COLUMNS].sort_values(["symbol", "timestamp"], kind="stable")
            out = out.reset_index(drop=True)
            for column in PRICE_COLUMNS:
                out[column] = out[column].astype(np.float64)
            self.storage.write_parquet(key, out)
            written.append(day)
        return written
