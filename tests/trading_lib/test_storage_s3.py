"""Storage on real S3-compatible servers on loopback: SeaweedFS (a real object store that checks
credentials) and moto's server. The bucket is inspected with a plain boto3 client, not through
Storage. (Local folders: test_storage.py.)"""

from __future__ import annotations

import os
import socket
import threading

import numpy as np
import pandas as pd
import pytest
from s3.conftest import (  # noqa: F401 - fixtures
    free_ports,
    moto_s3_fixture,
    s3_server_fixture,
    seaweedfs_fixture,
    seaweedfs_private_fixture,
)

from trading_lib.storage import CorruptInputError, MissingInputError, Storage, StorageError

pytestmark = pytest.mark.s3


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "contract": ["AAPL", "AAPL", "MSFT", "MSFT"],
            "timestamp": pd.date_range("2024-01-02 09:30", periods=4, freq="h", tz="America/New_York"),
            "close": [1.5, 2.5, 3.5, 4.5],
            "signal": ["BUY", "HOLD", "SELL", "HOLD"],
        }
    )


def _storage(server, prefix: str | None = None, **options) -> Storage:
    return Storage(
        f"s3://{server.bucket}/{prefix or server.new_prefix()}", **server.storage_options(**options)
    )


def _prefix(storage: Storage) -> str:
    return storage.root.removeprefix("s3://").split("/", 1)[1]


# -- round trips on both servers -------------------------------------------------------------------
def test_parquet_and_json_round_trip(s3_server, frame):
    storage = _storage(s3_server)
    size = storage.write_parquet("input/x.parquet", frame, {"trading.window_start": "2024-01-02"})
    storage.write_json(
        "output/reports/r.json", {"status": "PASS", "beta": np.float64(1.25), "at": frame["timestamp"][0]}
    )

    pd.testing.assert_frame_equal(storage.read_parquet("input/x.parquet"), frame)
    assert storage.read_parquet_metadata("input/x.parquet") == {"trading.window_start": "2024-01-02"}
    assert storage.read_json("output/reports/r.json") == {
        "status": "PASS",
        "beta": 1.25,
        "at": "2024-01-02T09:30:00-05:00",
    }
    stored = s3_server.objects(_prefix(storage))
    assert sorted(stored) == [
        f"{_prefix(storage)}/input/x.parquet",
        f"{_prefix(storage)}/output/reports/r.json",
    ]
    assert len(stored[f"{_prefix(storage)}/input/x.parquet"]) == size


def test_list_keys_exists_and_child(s3_server):
    storage = _storage(s3_server)
    for key in (
        "r/AAPL/20240102_093000.parquet",
        "r/AAPL/20240102_103000.parquet",
        "r/MSFT/1.parquet",
        "r/x.json",
    ):
        storage.write_bytes(key, key.encode())

    assert storage.list_keys("r", suffix=".parquet") == [
        "r/AAPL/20240102_093000.parquet",
        "r/AAPL/20240102_103000.parquet",
        "r/MSFT/1.parquet",
    ]
    assert storage.list_keys("missing") == []
    assert storage.exists("r/MSFT/1.parquet") and not storage.exists("r/MSFT/2.parquet")

    results = storage.child("r")
    assert results.root == f"{storage.root}/r" and results.fs is storage.fs
    assert results.list_keys("AAPL") == ["AAPL/20240102_093000.parquet", "AAPL/20240102_103000.parquet"]
    assert results.read_bytes("MSFT/1.parquet") == b"r/MSFT/1.parquet"
    results.write_bytes("GOOGL/1.parquet", b"g")
    assert storage.read_bytes("r/GOOGL/1.parquet") == b"g"


def test_same_frame_twice_gives_one_object_with_identical_bytes(s3_server, frame):
    storage = _storage(s3_server)
    storage.write_parquet("out/AAPL/1.parquet", frame)
    first = s3_server.objects(_prefix(storage))
    storage.write_parquet("out/AAPL/1.parquet", frame.copy())
    second = s3_server.objects(_prefix(storage))

    assert list(second) == [f"{_prefix(storage)}/out/AAPL/1.parquet"]
    assert second == first
    assert second[f"{_prefix(storage)}/out/AAPL/1.parquet"] == Storage.parquet_bytes(frame)


def test_parquet_filters_and_columns_are_applied_on_read(s3_server):
    rows = 200_000
    contracts = np.repeat(["AAPL", "MSFT", "GOOGL", "AMZN"], rows // 4)
    big = pd.DataFrame({"contract": contracts, "close": np.arange(rows, dtype="float64")})
    storage = _storage(s3_server)
    storage.write_parquet("input/big.parquet", big)

    msft = storage.read_parquet("input/big.parquet", columns=["close"], filters=[("contract", "==", "MSFT")])
    expected = big.loc[big["contract"] == "MSFT", ["close"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(msft, expected)


def test_many_files_read_as_one_frame_in_key_order_with_filters(s3_server, frame):
    storage = _storage(s3_server)
    keys = [f"r/{i:03d}.parquet" for i in range(150)]  # more than one batch of concurrent GETs
    for i, key in enumerate(keys):
        storage.write_parquet(key, frame.assign(close=frame["close"] + i))
    many = storage.read_parquet_many(
        reversed(keys), columns=["contract", "close"], filters=[("contract", "==", "MSFT")]
    )
    expected = pd.concat([frame.assign(close=frame["close"] + i) for i in reversed(range(150))])
    expected = expected.loc[expected["contract"] == "MSFT", ["contract", "close"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(many, expected)
    local = Storage(str(s3_server.workdir / "local-copy"))
    for key in keys:
        local.write_parquet(key, storage.read_parquet(key))
    pd.testing.assert_frame_equal(storage.read_parquet_many(keys), local.read_parquet_many(keys))
    storage.write_bytes("r/bad.parquet", b"not parquet")
    with pytest.raises(MissingInputError, match=r"r/none\.parquet does not exist"):
        storage.read_parquet_many([*keys[:3], "r/none.parquet"])
    with pytest.raises(CorruptInputError, match=r"r/bad\.parquet is not a readable parquet file"):
        storage.read_parquet_many([*keys[:3], "r/bad.parquet"])


def test_a_file_and_its_metadata_in_one_read(s3_server, frame):
    storage = _storage(s3_server)
    storage.write_parquet("r/x.parquet", frame, {"trading.sources": "v1"})
    got, metadata = storage.read_parquet_with_metadata("r/x.parquet")
    pd.testing.assert_frame_equal(got, frame)
    assert metadata == {"trading.sources": "v1"}
    with pytest.raises(MissingInputError, match=r"r/none\.parquet does not exist"):
        storage.read_parquet_with_metadata("r/none.parquet")


def test_sees_objects_written_and_deleted_by_another_client(s3_server):
    # Pods and other workers write beside this process: s3fs's cached listings must not hide that.
    storage = _storage(s3_server)
    storage.write_bytes("r/A/1.parquet", b"1")
    assert storage.list_keys("r") == ["r/A/1.parquet"] and not storage.exists("r/A/2.parquet")

    other = s3_server.client()
    other.put_object(Bucket=s3_server.bucket, Key=f"{_prefix(storage)}/r/A/2.parquet", Body=b"22")
    other.delete_object(Bucket=s3_server.bucket, Key=f"{_prefix(storage)}/r/A/1.parquet")

    assert storage.exists("r/A/2.parquet") and not storage.exists("r/A/1.parquet")
    assert storage.list_keys("r") == ["r/A/2.parquet"]
    assert storage.read_bytes("r/A/2.parquet") == b"22"


def test_missing_and_corrupt_objects_name_the_object(s3_server):
    storage = _storage(s3_server)
    storage.write_bytes("input/bad.parquet", b"not parquet")
    with pytest.raises(MissingInputError, match=r"s3://.*/input/none\.parquet does not exist"):
        storage.read_parquet("input/none.parquet")
    with pytest.raises(MissingInputError, match=r"input/none\.json does not exist"):
        storage.read_json("input/none.json")
    with pytest.raises(CorruptInputError, match=r"s3://.*/input/bad\.parquet is not a readable parquet file"):
        storage.read_parquet("input/bad.parquet")


# -- credentials and reachability (SeaweedFS checks credentials for real) ---------------------------
@pytest.mark.parametrize(
    ("credentials", "code"),
    [({"secret": "not-the-secret"}, "SignatureDoesNotMatch"), ({"key": "no-such-key"}, "InvalidAccessKeyId")],
)
def test_wrong_credentials_raise_a_storage_error_naming_the_cause(seaweedfs, frame, credentials, code):
    good = _storage(seaweedfs)
    good.write_parquet("input/x.parquet", frame)
    bad = _storage(seaweedfs, _prefix(good), **credentials)

    operations = {
        "check": lambda: bad.exists("input/x.parquet"),
        "read": lambda: bad.read_parquet("input/x.parquet"),
        "write": lambda: bad.write_json("input/y.json", {"a": 1}),
        "list": lambda: bad.list_keys("input"),
    }
    for action, operation in operations.items():
        with pytest.raises(StorageError) as raised:
            operation()
        message = str(raised.value)
        assert code in message, (action, message)
        assert (
            seaweedfs.endpoint in message and f"{good.root}/input" in message and "access denied" in message
        )
        assert not isinstance(raised.value, MissingInputError | CorruptInputError)  # retryable, not bad input
    assert sorted(seaweedfs.objects(_prefix(good))) == [f"{_prefix(good)}/input/x.parquet"]


def test_unreachable_endpoint_raises_a_storage_error_naming_it(seaweedfs):
    dead_endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    storage = _storage(seaweedfs, endpoint_url=dead_endpoint, config_kwargs={"retries": {"max_attempts": 1}})
    for operation in (lambda: storage.write_bytes("a.bin", b"1"), lambda: storage.read_parquet("a.parquet")):
        with pytest.raises(StorageError, match=f"S3 endpoint {dead_endpoint}") as raised:
            operation()
        assert not isinstance(raised.value, MissingInputError | CorruptInputError)


# -- atomicity: a PUT is all or nothing --------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy on loopback in front of the S3 server that forwards the first ``limit`` bytes
    a client sends, then holds the connection until released and drops it: a PUT cut half-way."""

    def __init__(self, upstream_port: int, limit: int):
        self.upstream_port, self.limit = upstream_port, limit
        self.cut = threading.Event()  # a request was cut: its first `limit` bytes reached the server
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe_back, args=(upstream, client), daemon=True).start()
        forwarded = 0
        try:
            while forwarded < self.limit:
                chunk = client.recv(min(65536, self.limit - forwarded))
                if not chunk:
                    break
                upstream.sendall(chunk)
                forwarded += len(chunk)
        except OSError:
            pass
        if forwarded >= self.limit:
            self.cut.set()
            self.release.wait(60)
        for sock in (client, upstream):
            sock.close()

    @staticmethod
    def _pipe_back(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def _through_proxy(server, prefix: str, proxy: CuttingProxy) -> Storage:
    # One attempt: the proxy cuts every request, and retries only repeat the cut.
    return _storage(
        server,
        prefix,
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
        config_kwargs={"retries": {"max_attempts": 1}},
    )


def test_a_put_cut_half_way_leaves_the_previous_object(seaweedfs):
    storage = _storage(seaweedfs)
    storage.write_bytes("out/a.bin", b"previous version")
    payload = os.urandom(8 * 2**20)
    proxy = CuttingProxy(int(seaweedfs.endpoint.rsplit(":", 1)[1]), limit=2**20)
    proxy.release.set()  # drop each connection as soon as 1 MiB has gone through
    try:
        with pytest.raises(StorageError, match=r"cannot write s3://.*/out/a\.bin"):
            _through_proxy(seaweedfs, _prefix(storage), proxy).write_bytes("out/a.bin", payload)
        assert proxy.cut.is_set()
    finally:
        proxy.close()
    assert seaweedfs.objects(_prefix(storage)) == {f"{_prefix(storage)}/out/a.bin": b"previous version"}
    storage.write_bytes("out/a.bin", payload)
    assert seaweedfs.objects(_prefix(storage))[f"{_prefix(storage)}/out/a.bin"] == payload


def test_a_server_killed_during_a_put_shows_no_partial_object_after_restart(seaweedfs_private):
    server = seaweedfs_private
    storage = _storage(server)
    storage.write_bytes("out/a.bin", b"previous version")
    payload = os.urandom(8 * 2**20)
    proxy = CuttingProxy(int(server.endpoint.rsplit(":", 1)[1]), limit=2**20)
    failure: list[BaseException] = []

    def put() -> None:
        try:
            _through_proxy(server, _prefix(storage), proxy).write_bytes("out/a.bin", payload)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            failure.append(exc)

    writer = threading.Thread(target=put)
    writer.start()
    try:
        assert proxy.cut.wait(30), "the PUT never reached the server"
        server.kill()  # the server dies with 1 MiB of the 8 MiB body received
    finally:
        proxy.close()
        writer.join(60)
    assert len(failure) == 1 and isinstance(failure[0], StorageError), failure

    server.start()  # same ports, same data folder
    assert server.objects(_prefix(storage)) == {f"{_prefix(storage)}/out/a.bin": b"previous version"}


def test_a_same_size_rewrite_within_one_second_changes_the_folder_version(s3_server):
    """S3's LastModified has one-second resolution: a same-size rewrite within that second is
    seen by its ETag (a digest of the content) in the folder's version."""
    storage = _storage(s3_server)
    storage.write_bytes("day/a.bin", b"BUY")
    first = storage.folder_version("day")
    storage.write_bytes("day/a.bin", b"SEL")
    second = storage.folder_version("day")
    assert first[1] == second[1] == ["a.bin"] and first[0] != second[0]
    storage.write_bytes("day/a.bin", b"SEL")  # the same bytes again: the same version
    assert storage.folder_version("day") == second
