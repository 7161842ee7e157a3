"""The bar store: every bar ever ingested or generated, one Delta Lake table (delta-rs).

    bars/                        a Delta table partitioned by session date (exchange-local date):
      _delta_log/                the transaction log: one JSON commit per version (+ checkpoints)
      session=<YYYY-MM-DD>/      parquet files of symbol, timestamp, open, high, low, close, volume
                                 (stocks, ^GSPC and ^VIX together)

Why a table format and not hand-written files (docs/history.md): concurrent writers (a backfill's
parallel runs, a standalone ingestion beside the schedule, three `generate` processes) must not
lose each other's bars, and a report must be reproducible from the state of the store it read.
Delta's optimistic concurrency gives both: every write is one atomic commit checked against the
commits made since it read (delta-rs raises on a conflict; :meth:`BarStore.upsert` reads again
and retries with backoff), and every committed version can be read again (``version=``).

Writes (:meth:`BarStore.upsert`) MERGE on (symbol, timestamp), limited to the sessions written: a
new bar is added, a revised bar is updated (and counted), every other stored bar is kept; a
missing value (NaN) never replaces a stored number. Symbols are normalised (upper case,
validated) and every row checked before anything is committed: bad data changes nothing. A
write that changes no bar commits nothing. Every producer (sample data, real bars, Yahoo) writes
here and every consumer reads here: this module is the only one that knows the layout of bars/.

Reads list the files of the wanted sessions from the log (partition pruning, no data file is
opened to find them) and read them with pyarrow through Storage, sorted by (symbol, timestamp):
the same bars give the same frame however the files are laid out. A BarStore reads one version
(the latest when first used, or the one given): :attr:`BarStore.version` says which.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trading_lib import layout
from trading_lib.errors import BadDataError, BadInputError
from trading_lib.inputs import AnalysisWindow, InputData, normalise_bars
from trading_lib.storage import Storage, StorageError
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX, SymbolError, validate_symbol

INDICES = (MARKET_INDEX, VOLATILITY_INDEX)
PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
PARTITION_COLUMN = "session"
# A partition's beta needs the last BETA_WINDOW_BARS + 1 ^GSPC bars at or before its bar (the +1
# gives the first return its previous close): 10 full sessions and a bar. The first read takes
# this many sessions; half days, gaps and a stock's own missing bars make it read further back.
LOOKBACK_SESSIONS = 12
# A conflicting commit (another writer committed to the same sessions since this one read) is
# retried after reading again: delta-rs detects the conflict, it does not retry a MERGE. Backoff
# doubles from COMMIT_BACKOFF_SECONDS with jitter (writers that collided must not collide again in
# lockstep), capped at COMMIT_BACKOFF_MAX_SECONDS; COMMIT_ATTEMPTS covers far more parallel writers
# than Airflow runs at once by default (a backfill's max_active_runs of 16 at most).
COMMIT_ATTEMPTS = 25
COMMIT_BACKOFF_SECONDS = 0.05
COMMIT_BACKOFF_MAX_SECONDS = 2.0
TABLE_SCHEMA = pa.schema(
    [
        (PARTITION_COLUMN, pa.string()),
        ("symbol", pa.string()),
        ("timestamp", pa.timestamp(layout.TIMESTAMP_UNIT, tz="UTC")),
        *[(column, pa.float64()) for column in PRICE_COLUMNS],
    ]
)
# Versions are what reports are reproduced from (``version=``): the log is never cleaned up and
# no data file is ever vacuumed by this project, so every version stays readable.
# A reader replays the log from the last checkpoint: one every 10 commits keeps opening the table
# ~5 ms (17 to 32 ms with the default 100, measured in bench/bench_store.py).
TABLE_CONFIGURATION = {
    "delta.checkpointInterval": "10",
    "delta.enableExpiredLogCleanup": "false",
    "delta.logRetentionDuration": "interval 36500 days",
    "delta.deletedFileRetentionDuration": "interval 36500 days",
}


class LegacyStoreError(BadInputError):
    """The data root holds the bar store of an earlier release (bars/<YYYY-MM-DD>.parquet files):
    it is converted once by ``python -m trading_lib migrate-store``. The message says so."""


class CommitConflictError(StorageError):
    """Other writers kept committing to the same sessions for every attempt. Retryable."""


@dataclass
class UpsertReport:
    """What a write changed: sessions written, bars added, bars revised (with the first few named),
    and the table version it committed (None: nothing changed, ``read_version`` is current)."""

    sessions_written: list[str] = field(default_factory=list)
    bars_added: int = 0
    bars_revised: int = 0
    bars_unchanged: int = 0
    revised: list[dict[str, object]] = field(default_factory=list)
    version: int | None = None
    read_version: int | None = None
    attempts: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "sessions_written": self.sessions_written,
            "bars_added": self.bars_added,
            "bars_revised": self.bars_revised,
            "bars_unchanged": self.bars_unchanged,
            "revised": self.revised,
            "version": self.version,
            "read_version": self.read_version,
            "attempts": self.attempts,
        }


def to_store_rows(data: InputData) -> pd.DataFrame:
    """The three frames of ``data`` as store rows (stocks, ^GSPC and ^VIX with a symbol column)."""
    return pd.concat(
        [
            data.bars.rename(columns={"contract": "symbol"})[layout.BAR_STORE_COLUMNS],
            data.spx[layout.BAR_COLUMNS].assign(symbol=MARKET_INDEX)[layout.BAR_STORE_COLUMNS],
            data.vix[layout.BAR_COLUMNS].assign(symbol=VOLATILITY_INDEX)[layout.BAR_STORE_COLUMNS],
        ],
        ignore_index=True,
    )


def split_rows(rows: pd.DataFrame, window: AnalysisWindow) -> InputData:
    """Store rows back into (bars, ^VIX, ^GSPC) frames."""
    is_stock = ~rows["symbol"].isin(INDICES)
    bars = rows.loc[is_stock].rename(columns={"symbol": "contract"})
    columns = [c for c in layout.BAR_COLUMNS if c in rows.columns]
    return InputData(
        bars=bars.reset_index(drop=True),
        vix=rows.loc[rows["symbol"] == VOLATILITY_INDEX, columns].reset_index(drop=True),
        spx=rows.loc[rows["symbol"] == MARKET_INDEX, columns].reset_index(drop=True),
        window=window,
    )


def normalise_symbols(rows: pd.DataFrame, source: str, column: str = "symbol") -> pd.DataFrame:
    """``rows`` with every symbol validated and upper-cased (``aapl`` from a file name is AAPL),
    or a BadDataError naming the symbol. One check per distinct symbol, not per row."""
    if column not in rows.columns or rows.empty:
        return rows
    mapping = {}
    for symbol in pd.unique(rows[column]):
        try:
            mapping[symbol] = validate_symbol(symbol)
        except SymbolError as exc:
            raise BadDataError(f"{source}: {exc}") from None
    if all(k == v for k, v in mapping.items()):
        return rows
    return rows.assign(**{column: rows[column].map(mapping)})


class BarStore:
    """The one reader and writer of the bar store. ``version``: read that committed version of the
    table (time travel; writes are refused); default: the latest, fixed when first read."""

    def __init__(self, storage: Storage, version: int | None = None):
        self.storage = storage
        self._pinned = version
        self._table = None
        self._loaded = False

    # -- the table ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.storage.url(layout.BARS_PREFIX)

    @property
    def version(self) -> int | None:
        """The table version this store reads (None: no table yet, the store is empty)."""
        table = self._delta()
        return None if table is None else table.version()

    def refresh(self) -> BarStore:
        """Read the latest version from now on (a store given ``version`` keeps it)."""
        self._table, self._loaded = None, False
        return self

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first (version, timestamp, operation, metrics)."""
        table = self._delta()
        return [] if table is None else table.history(limit)

    def _delta(self):
        if not self._loaded:
            self._table = self._open(self._pinned)
            self._loaded = True
        return self._table

    def _open(self, version: int | None):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri, options = self.storage.delta_location(layout.BARS_PREFIX)
        try:
            return DeltaTable(uri, version=version, storage_options=options)
        except TableNotFoundError:
            self._refuse_legacy()
            if version is not None:
                raise BadInputError(
                    f"the bar store {self.url} has no version {version}: no table yet"
                ) from None
            return None
        except Exception as exc:  # noqa: BLE001 - delta-rs raises bare exceptions for storage faults
            if version is not None and "version" in str(exc).lower():
                raise BadInputError(f"the bar store {self.url} has no version {version}: {exc}") from None
            raise StorageError(f"cannot open the bar store {self.url}: {exc}") from exc

    def _refuse_legacy(self) -> None:
        legacy = legacy_sessions(self.storage)
        if legacy:
            raise LegacyStoreError(
                f"{self.url} holds the bar store of an earlier release ({len(legacy)} "
                f"bars/<YYYY-MM-DD>.parquet session files, {legacy[0]} .. {legacy[-1]}); convert it "
                "once with: python -m trading_lib migrate-store"
                + (f" --data-root {self.storage.root}" if self.storage.root else "")
            )

    # -- reading --------------------------------------------------------------------------------
    def sessions(self) -> list[str]:
        """Session dates stored (YYYY-MM-DD), oldest first: from the table's log, no data read."""
        table = self._delta()
        if table is None:
            return []
        return sorted({p[PARTITION_COLUMN] for p in table.partitions()})

    def session_files(self, days: list[str]) -> list[str]:
        """Storage keys of the data files of ``days`` in the version read (partition pruning)."""
        table = self._delta()
        if table is None or not days:
            return []
        uris = table.file_uris(file_pruning_predicate=[(PARTITION_COLUMN, "in", sorted(set(days)))])
        return [self.storage.key_of(uri) for uri in uris]

    def read_sessions(
        self, days: list[str], symbols: list[str] | None = None, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """The stored bars of ``days`` (only ``symbols``, only ``columns`` if given), sorted."""
        columns = columns or layout.BAR_STORE_COLUMNS
        columns = ["symbol", *[c for c in columns if c != "symbol"]]
        keys = self.session_files(days)
        if not keys:
            return _empty(columns)
        table = self.storage.read_arrow_many(keys, columns=columns)
        # delta-rs writes strings as string_view, which pyarrow's filter pushdown cannot compare:
        # plain strings, then the symbol filter (a session file is one row group: nothing to skip)
        table = table.set_column(0, "symbol", pc.cast(table.column("symbol"), pa.string()))
        if symbols:
            table = table.filter(pc.is_in(table.column("symbol"), pa.array(list(symbols), pa.string())))
        if not table.num_rows:
            return _empty(columns)
        frame = table.to_pandas()
        if "timestamp" in frame.columns:
            frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
        frame["symbol"] = frame["symbol"].astype(object)
        order = [c for c in ("symbol", "timestamp") if c in frame.columns]
        return frame.sort_values(order, kind="stable", ignore_index=True)

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
        """MERGE ``rows`` (BAR_STORE_COLUMNS) into the table in one commit; see the module docstring.
        Every row is checked before anything is committed: bad data changes nothing. A commit that
        conflicts with another writer's is retried against the newer version (reading it again,
        so the report counts against what the commit really changed)."""
        from trading_lib.bar_contract import check_bars

        if self._pinned is not None:
            raise BadInputError(f"the bar store {self.url} is opened as of version {self._pinned}: read-only")
        rows = normalise_symbols(rows, source)
        check_bars(rows, source)
        rows = normalise_bars(rows, layout.BAR_STORE_COLUMNS, source)
        days = rows["timestamp"].dt.strftime("%Y-%m-%d")
        sessions = sorted(days.unique().tolist())
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            self.refresh()
            table = self._delta() or self._create()
            report = UpsertReport(read_version=table.version(), attempts=attempt)
            old = self.read_sessions(sessions, sorted(rows["symbol"].unique().tolist()))
            changed = _compare(rows, old, report)
            if not len(changed):
                return report
            try:
                metrics = _merge(table, changed.assign(session=days[changed.index]), sessions)
            except Exception as exc:  # noqa: BLE001 - sorted by _is_conflict
                if not _is_conflict(exc):
                    raise StorageError(f"cannot write the bar store {self.url}: {exc}") from exc
                if attempt == COMMIT_ATTEMPTS:
                    raise CommitConflictError(
                        f"{source}: {COMMIT_ATTEMPTS} commits to {self.url} conflicted with other "
                        f"writers; last: {exc}"
                    ) from exc
                delay = min(COMMIT_BACKOFF_MAX_SECONDS, COMMIT_BACKOFF_SECONDS * 2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random()))
                continue
            report.version = table.version()
            report.sessions_written = sorted(set(days[changed.index]))
            if metrics.get("num_target_rows_inserted") != report.bars_added:
                raise StorageError(
                    f"{source}: the commit of version {report.version} to {self.url} inserted "
                    f"{metrics.get('num_target_rows_inserted')} bars, {report.bars_added} expected"
                )
            self.refresh()
            return report
        raise AssertionError("unreachable")

    def compact(self, sessions: list[str] | None = None) -> int:
        """Rewrite the files of ``sessions`` (default: every session) into one file each: the same
        bars, fewer files to open. Every write already leaves the sessions it touches as one file
        (see _merge), so this is for tables written otherwise. A new version; returns how many
        files it removed. Maintenance, run while NO writer runs: delta-rs 1.6.6's compaction
        committed beside concurrent MERGEs of the same session left bars twice in our tests (its
        commit was not refused although a MERGE had rewritten a file it compacted)."""
        self.refresh()
        table = self._delta()
        if table is None:
            return 0
        removed = 0
        for day in sessions if sessions is not None else self.sessions():
            metrics = table.optimize.compact(
                partition_filters=[(PARTITION_COLUMN, "=", day)], writer_properties=_writer_properties()
            )
            removed += int(metrics.get("numFilesRemoved", 0))
        self.refresh()
        return removed

    def _create(self):
        """Create the empty table (the first writer); a concurrent creator's table is used as is."""
        from deltalake import DeltaTable

        self._refuse_legacy()
        uri, options = self.storage.delta_location(layout.BARS_PREFIX)
        try:
            DeltaTable.create(
                uri,
                schema=TABLE_SCHEMA,
                partition_by=[PARTITION_COLUMN],
                mode="ignore",
                name="bars",
                description="hourly bars: stocks, ^GSPC, ^VIX (trading_lib.store)",
                configuration=TABLE_CONFIGURATION,
                storage_options=options,
            )
        except Exception as exc:  # noqa: BLE001 - another process created it first
            if not _is_conflict(exc) and not DeltaTable.is_deltatable(uri, storage_options=options):
                raise StorageError(f"cannot create the bar store {self.url}: {exc}") from exc
        self.refresh()
        return self._delta()


def legacy_sessions(storage: Storage) -> list[str]:
    """Session dates of an earlier release's store (bars/<YYYY-MM-DD>.parquet files), sorted."""
    names = storage.list_entries(layout.BARS_PREFIX)
    return sorted(n.removesuffix(".parquet") for n in names if n.endswith(".parquet"))


def migrate_legacy_store(storage: Storage, *, batch_sessions: int = 64) -> dict[str, Any]:
    """Convert an earlier release's store (one parquet file per session under bars/) into the Delta
    table, once: its bars are MERGEd (so running it again, or after an interruption, changes
    nothing that was converted), checked against the table, and only then are the old files
    deleted. Returns what it did."""
    legacy = legacy_sessions(storage)
    if not legacy:
        store = BarStore(storage)
        return {"status": "nothing to migrate", "store": store.url, "version": store.version, "sessions": 0}
    store = BarStore(storage)
    store._refuse_legacy = lambda: None  # this is the one writer allowed beside the old files
    added = 0
    for first in range(0, len(legacy), batch_sessions):
        batch = legacy[first : first + batch_sessions]
        rows = storage.read_parquet_many([layout.legacy_bars_key(day) for day in batch])
        report = store.upsert(rows, f"{storage.url(layout.BARS_PREFIX)} (sessions {batch[0]} .. {batch[-1]})")
        added += report.bars_added
        stored = store.read_sessions(batch, columns=["symbol", "timestamp"])
        old = normalise_symbols(rows, "legacy store")[["symbol", "timestamp"]]
        old = old.assign(timestamp=layout.to_exchange_time(old["timestamp"]))
        missing = old.merge(stored, how="left", indicator=True)
        if (missing["_merge"] != "both").any():
            raise StorageError(f"migration of {batch[0]} .. {batch[-1]} to {store.url} is incomplete")
    for day in legacy:
        storage.delete(layout.legacy_bars_key(day))
    store.refresh()
    return {
        "status": "migrated",
        "store": store.url,
        "sessions": len(legacy),
        "bars_added": added,
        "version": store.version,
    }


def _merge(table, changed: pd.DataFrame, sessions: list[str]) -> dict[str, Any]:
    """One MERGE commit of ``changed`` (store rows + session) into ``table``: updates keep a stored
    value wherever the new one is missing (coalesce), so a NaN never replaces a number."""
    frame = changed[[PARTITION_COLUMN, *layout.BAR_STORE_COLUMNS]].sort_values(
        ["symbol", "timestamp"], kind="stable"
    )
    # from_pandas turns NaN into null: "no value", which coalesce() then skips
    source = pa.Table.from_pandas(frame, preserve_index=False).cast(TABLE_SCHEMA)
    touched = ", ".join(f"'{day}'" for day in sessions)
    predicate = (
        f"t.{PARTITION_COLUMN} IN ({touched}) AND t.{PARTITION_COLUMN} = s.{PARTITION_COLUMN} "
        'AND t.symbol = s.symbol AND t."timestamp" = s."timestamp"'
    )
    updates = {column: f"coalesce(s.{column}, t.{column})" for column in PRICE_COLUMNS}
    return (
        table.merge(
            source,
            predicate,
            source_alias="s",
            target_alias="t",
            writer_properties=_writer_properties(),
            streamed_exec=False,
        )
        .when_matched_update(updates)
        .when_not_matched_insert_all()
        # The session's other bars are rewritten as they are, so the commit leaves each session it
        # touches as one file: reads stay one file per session whatever the write history, and
        # no separate compaction has to race the writers (it did; docs/history.md).
        .when_not_matched_by_source_update(
            {"symbol": "t.symbol"}, predicate=f"t.{PARTITION_COLUMN} IN ({touched})"
        )
        .execute()
    )


def _writer_properties():
    from deltalake import WriterProperties

    return WriterProperties(compression="SNAPPY")


def _is_conflict(exc: BaseException) -> bool:
    """delta-rs's answer to a commit that lost the race: CommitFailedError (a concurrent commit
    touched what this one read, or took its version number)."""
    from deltalake.exceptions import CommitFailedError

    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or "conflict" in text or "already exists" in text


def _compare(new: pd.DataFrame, old: pd.DataFrame, report: UpsertReport) -> pd.DataFrame:
    """The rows of ``new`` that change the store (added, or revised: some present value differs
    from the stored one), counting them into ``report``. A missing new value changes nothing."""
    joined = new.merge(old, on=["symbol", "timestamp"], how="left", suffixes=("", "_old"), indicator=True)
    joined.index = new.index
    present = (joined["_merge"] == "both").to_numpy()
    differs = np.zeros(len(joined), bool)
    for column in PRICE_COLUMNS:
        a, b = joined[column].to_numpy(), joined[f"{column}_old"].to_numpy()
        differs |= ~np.isnan(a) & ((a != b) | np.isnan(b))
    revised = present & differs
    report.bars_added = int((~present).sum())
    report.bars_revised = int(revised.sum())
    report.bars_unchanged = int((present & ~differs).sum())
    named = joined.loc[revised, ["symbol", "timestamp"]].head(20)
    report.revised = [
        {"symbol": s, "timestamp": layout.format_timestamp(t)}
        for s, t in zip(named["symbol"], named["timestamp"], strict=True)
    ]
    return new[~present | revised]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})


def _dtype(column: str) -> str:
    if column == "timestamp":
        return f"datetime64[{layout.TIMESTAMP_UNIT}, {layout.EXCHANGE_TZ}]"
    return "object" if column == "symbol" else "float64"
