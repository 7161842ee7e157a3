"""The partition results every report was computed from, as a versioned table.

A partition's result file is rewritten in place whenever the partition is analysed again (a
cleared instance, a revised bar), so the files alone cannot say what a report saw. Each
aggregation therefore commits the results it read into a Delta table beside them,
``output/trading-results/_history/`` (partitioned by session), before it computes its reports, and
the reports name that table version next to the bar store's. Reading both tables at the recorded
versions gives back exactly the inputs of the report (docs/history.md, "Reports as of a version").

Only sessions whose results changed since the table's latest version are written: each commit
carries, for every session it holds, the fingerprint of the result files its rows came from (the
roll-up's) and a digest of the rows (``trading.digests``): a session whose fingerprint is
unchanged costs nothing, one whose rows have the recorded digest is not rewritten. A
session whose result folder is gone is removed. Two aggregations committing at once are serialised
by Delta's conflict check; the loser reads the new version and tries again. Old versions stay
readable until a VACUUM removes their files.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pandas as pd
import pyarrow as pa

from trading_lib import layout
from trading_lib.storage import Storage, StorageError

HISTORY_KEY = "_history"  # inside the trading-results folder (not a <YYYY-MM-DD> session folder)
DIGESTS = "trading.digests"
COMMIT_ATTEMPTS = 8
_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("close", pa.float64()),
        ("bar_return", pa.float64()),
        ("market_return", pa.float64()),
        ("beta", pa.float64()),
        ("beta_observations", pa.int64()),
        ("excess_return", pa.float64()),
        ("vix", pa.float64()),
        ("buy_threshold", pa.float64()),
        ("sell_threshold", pa.float64()),
        ("signal", pa.string()),
        ("session", pa.string()),
    ]
)


class ResultsVersionError(StorageError):
    """The results table has no such version (or no table at all); the message names it."""


def digest(frame: pd.DataFrame) -> str:
    """A digest of a session's result rows (values and order): equal rows, equal digest."""
    rows = frame[layout.RESULT_COLUMNS].reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:32]


class ResultsHistory:
    def __init__(self, results: Storage):
        self.uri, self.options = results.delta_location(HISTORY_KEY)

    def _table(self, version: int | None = None):
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(self.uri, storage_options=self.options or None):
            return None
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.options or None)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own errors for a missing version
            if version is None:
                raise StorageError(f"cannot open the results table {self.uri}: {exc}") from exc
            raise ResultsVersionError(
                f"the results table {self.uri} has no version {version}: {exc}"
            ) from exc

    def record(
        self, sessions: dict[str, pd.DataFrame], present: list[str], sources: dict[str, str] | None = None
    ) -> int | None:
        """Commit the result rows of ``sessions`` (day -> rows, as the report reads them) where
        they differ from the table's latest version, and drop the sessions not in ``present`` (every
        session folder that exists); return the version that holds them (None: no results at all).
        ``sources``: a fingerprint per session of the files its rows came from (the roll-up's); a
        session whose fingerprint is the recorded one is unchanged at no cost, any other is
        compared by a digest of its rows (a new fingerprint over the same rows commits nothing)."""
        from deltalake import CommitProperties, write_deltalake
        from deltalake.exceptions import CommitFailedError

        sources = sources or {}
        digests: dict[str, str] = {}  # computed once, only for sessions whose fingerprint moved
        for attempt in range(COMMIT_ATTEMPTS):
            table = self._table()
            known: dict[str, list[str]] = {}
            if table is not None:
                latest = table.history(1)
                known = json.loads(latest[0].get(DIGESTS, "{}")) if latest else {}
            state: dict[str, list[str]] = {}
            changed = []
            for day, frame in sessions.items():
                source, recorded = sources.get(day, ""), known.get(day)
                if recorded and source and recorded[0] == source:
                    state[day] = recorded
                    continue
                if day not in digests:
                    digests[day] = digest(frame)
                if not recorded or recorded[1] != digests[day]:
                    changed.append(day)
                state[day] = [source, digests[day]]
            gone = sorted(day for day in known if day not in set(present))
            state = {day: value for day, value in known.items() if day not in gone} | state
            if table is not None and not changed and not gone:
                return table.version()
            if table is None and not changed:
                return None
            changed.sort()
            data = _arrow([sessions[day].assign(session=day) for day in changed])
            days = ", ".join(f"'{day}'" for day in changed + gone)
            try:
                write_deltalake(
                    table if table is not None else self.uri,
                    data,
                    partition_by=["session"],
                    mode="overwrite",
                    predicate=f"session IN ({days})" if table is not None else None,
                    storage_options=None if table is not None else (self.options or None),
                    commit_properties=CommitProperties(
                        custom_metadata={DIGESTS: json.dumps(state, sort_keys=True)}
                    ),
                )
            except CommitFailedError:
                time.sleep(0.05 * (attempt + 1))  # another aggregation committed first: read it again
                continue
            except Exception as exc:  # noqa: BLE001 - a table created at the same moment
                if table is None and attempt + 1 < COMMIT_ATTEMPTS:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise StorageError(f"cannot commit to the results table {self.uri}: {exc}") from exc
            return self._table().version()
        raise StorageError(f"the results table {self.uri}: {COMMIT_ATTEMPTS} conflicting commits in a row")

    def sessions(self, version: int) -> list[str]:
        """The sessions the table held at ``version``."""
        return sorted({p["session"] for p in self._required(version).partitions()})

    def read(self, version: int, days: list[str]) -> pd.DataFrame:
        """The result rows of ``days`` at ``version``, as the aggregation had read them then."""
        table = self._required(version)
        if not days:
            frame = _SCHEMA.empty_table().to_pandas()
        else:
            frame = table.to_pyarrow_table(
                columns=layout.RESULT_COLUMNS, filters=[("session", "in", list(days))]
            ).to_pandas()
        frame = frame[layout.RESULT_COLUMNS]
        frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
        return frame.sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)

    def _required(self, version: int):
        table = self._table(version)
        if table is None:
            raise ResultsVersionError(f"there is no results table at {self.uri}")
        return table


def _arrow(frames: list[pd.DataFrame]) -> pa.Table:
    if not frames:
        return _SCHEMA.empty_table()
    frame = pd.concat(frames, ignore_index=True)
    frame["timestamp"] = layout.to_exchange_time(frame["timestamp"]).dt.tz_convert("UTC")
    columns: dict[str, Any] = {name: frame[name] for name in _SCHEMA.names}
    return pa.Table.from_pydict(
        {
            name: pa.array(values, type=_SCHEMA.field(name).type, from_pandas=True)
            for name, values in columns.items()
        },
        schema=_SCHEMA,
    )
