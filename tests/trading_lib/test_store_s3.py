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


class RecordingProxy:
    """An HTTP proxy on loopback in front of the S3 server that forwards every request as it is
    and records (method, path, headers) of each: what delta-rs really asks the server."""

    def __init__(self, upstream: str):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        host, port = urlsplit(upstream).hostname, urlsplit(upstream).port
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                upstream_conn = http.client.HTTPConnection(host, port, timeout=60)
                upstream_conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                response = upstream_conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream_conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_every_commit_is_a_put_if_absent_and_both_servers_honour_it(s3_server):
    """A Delta commit is safe on S3 only if writing log entry N fails when another writer wrote
    it first. delta-rs 1.x does that with a conditional PUT (If-None-Match: *), the way AWS S3
    has supported since 2024: every commit the store makes is such a PUT (seen through a
    recording proxy), and the server refuses the second PUT of an existing key with 412."""
    import boto3
    import botocore

    proxy = RecordingProxy(s3_server.endpoint)
    try:
        prefix = s3_server.new_prefix()
        options = s3_server.storage_options(endpoint_url=proxy.endpoint)
        store = BarStore(Storage(f"s3://{s3_server.bucket}/{prefix}", **options))
        store.write(session_data("2024-01-02"), "test")
        store.write(session_data("2024-01-03"), "test")
    finally:
        proxy.close()
    commits = [(m, p, h) for m, p, h in proxy.requests if "/_delta_log/" in p and p.endswith(".json")]
    puts = [(p, h) for m, p, h in commits if m == "PUT"]
    assert [p.rsplit("/", 1)[1] for p, _ in puts] == [f"{v:020d}.json" for v in range(3)]
    assert all(h.get("if-none-match") == "*" for _, h in puts), puts
    assert not [m for m, p, _ in proxy.requests if "/_delta_log/" in p and m in ("POST", "DELETE")]
    # ... and the server enforces it
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    key = f"{prefix}/bars/_delta_log/{2:020d}.json"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_racing_conditional_puts_of_one_key_have_exactly_one_winner(s3_server):
    """What concurrent commits need from the server beyond refusing a PUT after the fact: of
    PUTs of one key racing each other, exactly one succeeds and it is the object kept (checked
    over 10 keys, 8 racers each, released at once)."""
    import threading

    import boto3
    import botocore

    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
        config=botocore.config.Config(max_pool_connections=16, retries={"max_attempts": 1}),
    )
    prefix = s3_server.new_prefix()
    for round_ in range(10):
        key, start, won, refused = f"{prefix}/race/{round_:020d}.json", threading.Barrier(8), [], []

        def put(racer: int, key=key, start=start, won=won, refused=refused):
            start.wait()
            try:
                client.put_object(Bucket=s3_server.bucket, Key=key, Body=f"{racer}".encode(), IfNoneMatch="*")
                won.append(racer)
            except botocore.exceptions.ClientError as exc:
                refused.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])

        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(won) == 1, f"round {round_}: {len(won)} racers won (refusals: {refused})"
        assert set(refused) <= {409, 412} and len(refused) == 7
        assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == f"{won[0]}".encode()


def test_writers_in_parallel_processes_lose_no_bar_on_s3(s3_server, tmp_path):
    """Four processes upsert the same session of a table on the S3 server at once (each its own
    stock plus the same index bars): every bar is stored exactly once."""
    from _store_data import upsert_concurrently

    root = f"s3://{s3_server.bucket}/{s3_server.new_prefix()}"
    stocks = ["AAPL", "MSFT", "NVDA", "AMZN"]
    reports = upsert_concurrently(root, stocks, tmp_path, s3_server.storage_options())
    store = BarStore(Storage(root, **s3_server.storage_options()))
    frame = store.read_sessions(["2024-01-02"])
    assert not frame.duplicated(["symbol", "timestamp"]).any()
    assert sorted(frame["symbol"].unique()) == sorted([*stocks, "^GSPC", "^VIX"])
    assert frame.groupby("symbol").size().eq(5).all()
    assert sorted(r["bars_added"] for r in reports) == [5] * 3 + [15]
    assert len({r["version"] for r in reports}) == 4
