"""The bar store: every bar ever ingested or generated, one parquet file per session date.

    bars/<YYYY-MM-DD>.parquet    symbol, timestamp, open, high, low, close, volume
                                 (stocks, ^GSPC and ^VIX together; sorted by symbol, timestamp)

Why one file per session and not per (symbol, session): a partition reads its look-back (the 71
^GSPC bars its beta needs, about 11 sessions) as ~12 files whatever the universe size, and a
portfolio over a year reads ~253 files, not 253 x 500; ingesting one interval rewrites one file
(two across midnight). Measured in bench/bench_history.py, figures in docs/performance.md.

Writes (:meth:`BarStore.upsert`) merge by (symbol, timestamp): a new bar is added, a revised bar
replaces the old one (and is counted), every other stored bar is kept. Each session file is
replaced atomically (Storage), files whose bars did not change are not rewritten, and the same
bars always give the same bytes. Every producer (sample data, real bars, Yahoo) writes here and
every consumer reads here: this module is the only one that knows the layout of bars/.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.errors import BadDataError
from trading_lib.inputs import AnalysisWindow, InputData, normalise_bars
from trading_lib.storage import Storage
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX

INDICES = (MARKET_INDEX, VOLATILITY_INDEX)
PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
# A partition's beta needs the last BETA_WINDOW_BARS + 1 ^GSPC bars at or before its bar (the +1
# gives the first return its previous close): 10 full sessions and a bar. The first read takes
# this many sessions; half days, gaps and a stock's own missing bars make it read further back.
LOOKBACK_SESSIONS = 12


@dataclass
class UpsertReport:
    """What a write changed: sessions rewritten, bars added, bars revised (with the first few named)."""

    sessions_written: list[str] = field(default_factory=list)
    bars_added: int = 0
    bars_revised: int = 0
    bars_unchanged: int = 0
    revised: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "sessions_written": self.sessions_written,
            "bars_added": self.bars_added,
            "bars_revised": self.bars_revised,
            "bars_unchanged": self.bars_unchanged,
            "revised": self.revised,
        }


def to_store_rows(data: InputData) -> pd.DataFrame:
    """The three frames of ``data`` as store rows (stocks, ^GSPC and ^VIX with a symbol column)."""
    return pd.concat(
        [
            data.holdings.rename(columns={"contract": "symbol"})[layout.BAR_STORE_COLUMNS],
            data.spx[layout.BAR_COLUMNS].assign(symbol=MARKET_INDEX)[layout.BAR_STORE_COLUMNS],
            data.vix[layout.BAR_COLUMNS].assign(symbol=VOLATILITY_INDEX)[layout.BAR_STORE_COLUMNS],
        ],
        ignore_index=True,
    )


def split_rows(rows: pd.DataFrame, window: AnalysisWindow) -> InputData:
    """Store rows back into (holdings, ^VIX, ^GSPC) frames."""
    is_stock = ~rows["symbol"].isin(INDICES)
    holdings = rows.loc[is_stock].rename(columns={"symbol": "contract"})
    columns = [c for c in layout.BAR_COLUMNS if c in rows.columns]
    return InputData(
        holdings=holdings.reset_index(drop=True),
        vix=rows.loc[rows["symbol"] == VOLATILITY_INDEX, columns].reset_index(drop=True),
        spx=rows.loc[rows["symbol"] == MARKET_INDEX, columns].reset_index(drop=True),
        window=window,
    )


class BarStore:
    def __init__(self, storage: Storage):
        self.storage = storage

    # -- reading --------------------------------------------------------------------------------
    def sessions(self) -> list[str]:
        """Session dates stored (YYYY-MM-DD), oldest first: one listing of bars/."""
        names = self.storage.list_entries(layout.BARS_PREFIX)
        return sorted(n.removesuffix(".parquet") for n in names if n.endswith(".parquet"))

    def read_sessions(
        self, days: list[str], symbols: list[str] | None = None, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """The stored bars of ``days`` (only ``symbols``, only ``columns`` if given), sorted."""
        columns = columns or layout.BAR_STORE_COLUMNS
        columns = ["symbol", *[c for c in columns if c != "symbol"]]
        filters = [("symbol", "in", list(symbols))] if symbols else None
        keys = [layout.bars_key(day) for day in days]
        frame = self.storage.read_parquet_many(keys, columns=columns, filters=filters)
        if frame.empty:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
        frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
        frame["symbol"] = frame["symbol"].astype(object)
        return frame.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)

    def read(
        self,
        window: AnalysisWindow,
        symbols: list[str] | None = None,
        *,
        warmup_sessions: int = 0,
        columns: list[str] | None = None,
    ) -> pd.DataFrame:
        """The bars of the sessions ``window`` touches, up to its end (so the first session's bars
        before its start too), plus the ``warmup_sessions`` stored sessions before it."""
        stored = self.sessions()
        first, last = layout.session_date(window.start), layout.session_date(window.end)
        inside = [d for d in stored if first <= d <= last]
        before = [d for d in stored if d < first][-warmup_sessions:] if warmup_sessions else []
        frame = self.read_sessions(before + inside, symbols, columns)
        return frame[frame["timestamp"] < window.end].reset_index(drop=True)

    def input_data(
        self, window: AnalysisWindow, contracts: list[str] | None = None, *, warmup_sessions: int = 0
    ) -> InputData:
        symbols = [*contracts, *INDICES] if contracts else None
        return split_rows(self.read(window, symbols, warmup_sessions=warmup_sessions), window)

    def lookback(self, contract: str, ts: pd.Timestamp, bars: int) -> pd.DataFrame:
        """Everything the partition (contract, ts) needs: the contract's, ^GSPC's and ^VIX's closes at
        or before ``ts``, reaching back far enough for ``bars`` ^GSPC bars AND one bar of the contract
        before them (its first return's previous close), so the result equals that of a computation
        over the whole history."""
        return next(self.lookbacks(contract, [ts], bars))

    def lookbacks(
        self, contract: str, timestamps: Iterable[pd.Timestamp], bars: int
    ) -> Iterator[pd.DataFrame]:
        """:meth:`lookback` of each of ``timestamps`` in turn, equal frame for frame, reading each
        session file once: a chunk of consecutive partitions shares most of its look-back, and on
        S3 every read is a round trip."""
        stored = self.sessions()
        symbols, columns = [contract, *INDICES], ["symbol", "timestamp", "close"]
        loaded: set[str] = set()
        rows = self.read_sessions([], symbols, columns)
        row_days = pd.Series(dtype=object)
        for ts in timestamps:
            days = stored[: bisect.bisect_right(stored, layout.session_date(ts))]
            count = LOOKBACK_SESSIONS
            while True:
                wanted = days[-count:]
                missing = [d for d in wanted if d not in loaded]
                if missing:
                    new = self.read_sessions(missing, symbols, columns)
                    loaded.update(missing)
                    if len(new):
                        rows = new if rows.empty else pd.concat([rows, new], ignore_index=True)
                        rows = rows.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)
                        row_days = rows["timestamp"].dt.strftime("%Y-%m-%d")
                # Rows are sorted by (symbol, timestamp) like one read of ``wanted`` would be, and a
                # session file holds exactly the bars whose exchange-time date names it.
                inside = (row_days >= wanted[0]).to_numpy() if wanted else np.zeros(len(rows), bool)
                frame = rows[inside & (rows["timestamp"] <= ts).to_numpy()]
                market = frame.loc[frame["symbol"] == MARKET_INDEX, "timestamp"]
                stock = frame.loc[frame["symbol"] == contract, "timestamp"]
                if (len(market) >= bars and (stock < market.iloc[-bars]).any()) or count >= len(days):
                    yield frame.reset_index(drop=True)
                    break
                count = min(len(days), count * 2)

    def latest_window(self, bars: int) -> AnalysisWindow:
        """The window of the last ``bars`` stored ^GSPC bars (the default of a manual run)."""
        from trading_lib.sessions import MIN_BARS_PER_SESSION, bar_ends

        stored = self.sessions()
        if not stored:
            raise BadDataError(f"the bar store {self.storage.url(layout.BARS_PREFIX)} is empty")
        count = max(1, -(-bars // MIN_BARS_PER_SESSION))
        while True:
            frame = self.read_sessions(stored[-count:], [MARKET_INDEX], ["symbol", "timestamp"])
            if len(frame) >= bars or count >= len(stored):
                break
            count = min(len(stored), count * 2)
        if frame.empty:
            raise BadDataError(f"no {MARKET_INDEX} bar in {self.storage.url(layout.BARS_PREFIX)}")
        starts = frame["timestamp"].iloc[-bars:]
        return AnalysisWindow(starts.iloc[0], bar_ends(starts.tail(1)).iloc[0])

    def contracts(self, window: AnalysisWindow) -> list[str]:
        """The stocks with at least one bar in ``window``, sorted."""
        frame = self.read(window, columns=["symbol", "timestamp"])
        frame = frame[frame["timestamp"] >= window.start]
        return sorted(set(frame["symbol"]) - set(INDICES))

    def bar_times(self, contract: str, window: AnalysisWindow) -> pd.DatetimeIndex:
        frame = self.read(window, [contract], columns=["symbol", "timestamp"])
        times = frame.loc[frame["timestamp"] >= window.start, "timestamp"]
        return pd.DatetimeIndex(times).unique().sort_values()

    # -- writing --------------------------------------------------------------------------------
    def write(self, data: InputData, source: str) -> UpsertReport:
        return self.upsert(to_store_rows(data), source)

    def upsert(self, rows: pd.DataFrame, source: str) -> UpsertReport:
        """Merge ``rows`` (BAR_STORE_COLUMNS) into their session files; see the module docstring.
        Every row is checked before any file is written: bad data changes nothing."""
        from trading_lib.bar_contract import check_bars

        check_bars(rows, source)
        rows = normalise_bars(rows, layout.BAR_STORE_COLUMNS, source)
        report = UpsertReport()
        days = rows["timestamp"].dt.strftime("%Y-%m-%d")
        merged_days: list[tuple[str, pd.DataFrame]] = []
        for day, new in rows.groupby(days, sort=True):
            key = layout.bars_key(day)
            old = (
                normalise_bars(self.storage.read_parquet(key), layout.BAR_STORE_COLUMNS, key)
                if self.storage.exists(key)
                else pd.DataFrame(columns=layout.BAR_STORE_COLUMNS)
            )
            added, revised, unchanged = _compare(new, old)
            report.bars_added += added
            report.bars_revised += len(revised)
            report.bars_unchanged += unchanged
            report.revised += revised.head(20 - len(report.revised)).to_dict(orient="records")
            if added or len(revised):
                kept = old.merge(new[["symbol", "timestamp"]], how="left", indicator=True)
                kept = old[(kept["_merge"] == "left_only").to_numpy()]
                merged = pd.concat([kept, new], ignore_index=True) if len(kept) else new
                merged_days.append((day, merged))
        for day, merged in merged_days:
            self.storage.write_parquet(layout.bars_key(day), _canonical(merged))
            report.sessions_written.append(day)
        for item in report.revised:
            item["timestamp"] = layout.format_timestamp(item["timestamp"])
        return report


def _compare(new: pd.DataFrame, old: pd.DataFrame) -> tuple[int, pd.DataFrame, int]:
    """(bars added, the revised (symbol, timestamp) rows, bars unchanged) of ``new`` against ``old``."""
    joined = new.merge(old, on=["symbol", "timestamp"], how="left", suffixes=("", "_old"), indicator=True)
    present = (joined["_merge"] == "both").to_numpy()
    differs = pd.Series(False, index=joined.index)
    for column in PRICE_COLUMNS:
        a, b = joined[column], joined[f"{column}_old"]
        differs |= (a != b) & ~(a.isna() & b.isna())
    revised_mask = present & differs.to_numpy()
    revised = joined.loc[revised_mask, ["symbol", "timestamp"]].reset_index(drop=True)
    return int((~present).sum()), revised, int((present & ~differs.to_numpy()).sum())


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """One row order and one set of dtypes, so the same bars always serialise to the same bytes."""
    out = frame[layout.BAR_STORE_COLUMNS].sort_values(["symbol", "timestamp"], kind="stable")
    out = out.reset_index(drop=True)
    out["symbol"] = out["symbol"].astype(object)
    out["timestamp"] = layout.to_exchange_time(out["timestamp"])
    for column in PRICE_COLUMNS:
        out[column] = out[column].astype("float64")
    return out


def _dtype(column: str) -> str:
    if column == "timestamp":
        return f"datetime64[{layout.TIMESTAMP_UNIT}, {layout.EXCHANGE_TZ}]"
    return "object" if column == "symbol" else "float64"
