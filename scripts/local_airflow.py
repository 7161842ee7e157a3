"""A real local Airflow 3 for this bundle: api-server, scheduler, dag-processor and triggerer,
SQLite, LocalExecutor, AIRFLOW_HOME inside the project (gitignored).

Used by `make demo`, `make stop`, the end-to-end tests and the pipeline benchmark, so the tests run
exactly the stack users run. Standard library only (it runs before anything is imported).

    python scripts/local_airflow.py start|stop|status|env [--isolated] [--home DIR] [--port 8080]
                                    [--data-root DIR] [--dags-folder DIR]

`env` prints the environment as shell exports, so the Airflow CLI talks to the same home:
    eval "$(.venv/bin/python scripts/local_airflow.py env)"
`env --isolated` prints a separate home and SQLite database (<home>/isolated, migrated on first
use) with the same DAGs, plugins and data root, for `airflow dags test` beside a running stack:
    eval "$(.venv/bin/python scripts/local_airflow.py env --isolated)"
    airflow dags test analyze_symbol -c '{"contract": "AAPL"}'

Tuning for a small machine (2 cores, SQLite), measured with bench/bench_pipeline.py and no-op
probes; the figures are in docs/local-airflow.md. The values live in docker/airflow.env, which
docker-compose.yaml and the Celery stack (scripts/celery_stack.py) read too:
- parallelism 16: the default 32 ends in "database is locked" on SQLite and kills the
  scheduler; 4 to 8 leaves the pipeline up to two times slower.
- scheduler idle sleep 0.2 s and 64 task instances per query: fewer idle scheduler loops.
- task instance heartbeat timeout 20 s, checked every 5 s: a task whose worker died (SIGKILL,
  OOM) is failed and retried in about 30 s instead of about 306 s (docs/reliability.md).
- TRADING_ORCHESTRATOR_SCHEDULE=none unless the caller sets it ("on" = the pipeline's default
  cron): the demo runs what it triggers, no cron runs (that would ingest from Yahoo) fire.

`stop` ends every process of the home's components, their workers, log servers and API workers
included, also those orphaned by a killed component; `start` cleans up such leftovers of its own
home and refuses, naming the port, when another program holds one of its ports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DEFAULT_HOME = PROJECT / "airflow_home"
USERNAME = "admin"
# Set in the environment of every process the stack starts (inherited by all their children):
# how stop() recognises a process of this home even after it left its component's session.
STACK_MARKER = "LOCAL_AIRFLOW_STACK"
ISOLATED = "isolated"  # <home>/isolated: the home of `env --isolated`
WORKER_LOG_PORT_OFFSET, TRIGGER_LOG_PORT_OFFSET = 713, 714
ORPHAN_GRACE = 3.0  # seconds stop() gives the processes left after their component's top process exited
ISOLATED_PORT_OFFSET = 715  # the isolated home's API port: nothing serves it (`dags test` runs in-process)

# The settings shared with docker-compose.yaml and the Celery stack: one file, so they cannot drift.
SHARED_ENV_FILE = PROJECT / "docker" / "airflow.env"
# Its service wiring: compose service addresses that each stack replaces with its own (the SQLite
# stack with its database file and local data root, the Celery stack with its loopback ports).
WIRING = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW_CONN_AWS_DEFAULT",
    "TRADING_DATA_ROOT",
    "TRADING_AWS_CONN_ID",
    "TRADING_EXECUTION_MODE",
)


def read_env_file(path: Path = SHARED_ENV_FILE) -> dict[str, str]:
    """NAME=value lines (what compose's env_file reads); '#' lines are comments; a value in single
    or double quotes loses them. The file holds no ${...}: nothing is interpolated."""
    values = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"{path}:{number}: not NAME=value: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif "$" in value:
            raise ValueError(f"{path}:{number}: unquoted '$' (compose would interpolate it): {raw!r}")
        values[name.strip()] = value
    return values


SHARED_ENV = read_env_file()
# The SQLite stack's settings: the shared tuning (docs/local-airflow.md says why each value).
TUNING = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    **{name: value for name, value in SHARED_ENV.items() if name not in WIRING},
}

SCHEDULE_VARIABLE = "TRADING_ORCHESTRATOR_SCHEDULE"
SCHEDULE_ON = ("on", "default")  # leave the variable unset: trading_lib/settings.py's default cron
SCHEDULE_OFF = ("", "off", "none")
# Passed to Airflow when the caller sets them (trading_lib/settings.py reads them).
PASSTHROUGH = (
    "TRADING_ORCHESTRATOR_START_DATE",
    "TRADING_ORCHESTRATOR_END_DATE",
    "TRADING_ORCHESTRATOR_CATCHUP",
)


class PortInUseError(RuntimeError):
    """A port the stack needs is held by a process that is not part of this home."""


def _ports_of(port: int) -> dict[int, str]:
    return {
        port: "api-server",
        port + WORKER_LOG_PORT_OFFSET: "worker log server",
        port + TRIGGER_LOG_PORT_OFFSET: "triggerer log server",
    }


def free_port() -> int:
    """An API port free on 127.0.0.1 right now, its two log-server ports too (for a test or
    benchmark Airflow beside the demo's)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + TRIGGER_LOG_PORT_OFFSET < 65536 and all(_port_free(p) for p in _ports_of(port)):
            return port
    raise RuntimeError("no free port found for a local Airflow")


def orchestrator_schedule(environ: dict[str, str] | os._Environ) -> str | None:
    """TRADING_ORCHESTRATOR_SCHEDULE for the stack: 'none' unless the caller set it; None (leave it
    unset, the pipeline's default cron applies) for 'on'; any other value (a cron) as is."""
    value = environ.get(SCHEDULE_VARIABLE, "").strip()
    if value.lower() in SCHEDULE_OFF:
        return "none"
    if value.lower() in SCHEDULE_ON:
        return None
    return value


# -- processes, sockets: /proc ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: with the pid, identifies a process over time
    cmdline: str


def proc_info(pid: int) -> ProcInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    cmd = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], int(fields[19]), cmd)


def processes() -> list[ProcInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_info(int(entry))) is not None:
            found.append(info)
    return found


def proc_environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (what it inherited), {} if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _ancestors() -> set[int]:
    """This process and its ancestors: never signalled, whatever their environment."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        info = proc_info(pid)
        pid = info.ppid if info else 0
    return pids


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_owners(inodes: set[int]) -> set[int]:
    """Pids of the processes holding one of these socket inodes."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                        owners.add(int(entry))
                        break
    return owners


def _port_free(port: int) -> bool:
    if listening_inodes(port):
        return False
    # What the servers do: SO_REUSEADDR (a TIME_WAIT connection does not count), all addresses.
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == 97:  # EAFNOSUPPORT: no IPv6 here
                continue
            return False
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


class LocalAirflow:
    # The processes start() launches, by name (pid files, state, liveness); a subclass adds its own.
    components: tuple[str, ...] = COMPONENTS

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        port: int = 8080,
        data_root: str | None = None,
        extra_env: dict[str, str] | None = None,
        dags_folder: Path = PROJECT / "dags",
    ):
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder)
        self.port = port
        self.data_root = data_root
        self.extra_env = extra_env or {}
        self.base_url = f"http://127.0.0.1:{port}"
        self._processes: dict[str, subprocess.Popen] = {}

    @property
    def ports(self) -> dict[int, str]:
        """The TCP ports the stack listens on, with what listens there."""
        return _ports_of(self.port)

    # -- configuration -------------------------------------------------------------------------
    def _secret(self, name: str, nbytes: int) -> str:
        path = self.home / name
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(nbytes))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    @property
    def password(self) -> str:
        if not self.passwords_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            self.passwords_file.write_text(json.dumps({USERNAME: secrets.token_urlsafe(12)}))
            self.passwords_file.chmod(0o600)
        return json.loads(self.passwords_file.read_text())[USERNAME]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(TUNING)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret(".jwt_secret", 64),
                "AIRFLOW__API__SECRET_KEY": self._secret(".api_secret_key", 32),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                # Log servers get ports of their own per instance, so a test Airflow and the demo can coexist.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.port + WORKER_LOG_PORT_OFFSET),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.port + TRIGGER_LOG_PORT_OFFSET),
                "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.pop(STACK_MARKER, None)  # start() sets it for the processes it launches, only them
        env.pop(SCHEDULE_VARIABLE, None)
        schedule = orchestrator_schedule(os.environ)
        if schedule is not None:
            env[SCHEDULE_VARIABLE] = schedule
        for name in PASSTHROUGH:
            if os.environ.get(name, "").strip():
                env[name] = os.environ[name]
            else:
                env.pop(name, None)
        if self.data_root:
            env["TRADING_DATA_ROOT"] = self.data_root
        env.update(self.extra_env)
        return env

    def pipeline_settings(self) -> dict[str, str | None]:
        """The schedule variables the stack's DAGs see; a running stack with others is restarted."""
        env = self.env()
        return {name: env.get(name) for name in (SCHEDULE_VARIABLE, *PASSTHROUGH)}

    def changed_settings(self) -> list[str]:
        """Names of the schedule variables that differ from those the running stack started with."""
        started = self._state().get("settings")
        if started is None:
            return []
        return sorted(k for k, v in self.pipeline_settings().items() if started.get(k) != v)

    # -- the isolated home of `env --isolated` -------------------------------------------------
    def isolated(self) -> LocalAirflow:
        """A separate home and SQLite database, same DAGs, plugins and data root: `airflow dags
        test` there runs beside this stack without touching its database or its scheduler."""
        return LocalAirflow(
            self.home / ISOLATED,
            self.port + ISOLATED_PORT_OFFSET,
            self.data_root,
            self.extra_env,
            self.dags_folder,
        )

    def _link_local_settings(self) -> None:
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        local_settings = self.home / "config" / "airflow_local_settings.py"
        local_settings.unlink(missing_ok=True)
        local_settings.symlink_to(PROJECT / "scripts" / "airflow_local_settings.py")

    def migrate(self) -> None:
        """`airflow db migrate` into logs/db-migrate.log; raises with the log's tail if it fails."""
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        log = self.home / "logs" / "db-migrate.log"
        with open(log, "ab") as out:
            result = subprocess.run(
                [str(VENV_BIN / "airflow"), "db", "migrate"],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if result.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"airflow db migrate failed in {self.home}: " + " | ".join(tail))

    def migrate_once(self) -> None:
        """`airflow db migrate` unless this Airflow version migrated the home's database already
        (~8 s saved on each restart); a lock lets concurrent callers wait for one migration."""
        import fcntl
        from importlib import metadata

        try:
            version = metadata.version("apache-airflow")
        except metadata.PackageNotFoundError:
            version = ""
        self.home.mkdir(parents=True, exist_ok=True)
        stamp = self.home / ".migrated"
        with open(self.home / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if version and (self.home / "airflow.db").exists() and stamp.exists():
                if stamp.read_text() == version:
                    return
            stamp.unlink(missing_ok=True)
            self.migrate()
            stamp.write_text(version)

    def prepare_isolated(self) -> LocalAirflow:
        """The isolated home, its database migrated (once per Airflow version)."""
        isolated = self.isolated()
        isolated.home.mkdir(parents=True, exist_ok=True)
        isolated._link_local_settings()
        isolated.password  # noqa: B018 - creates the passwords file
        isolated.migrate_once()
        return isolated

    # -- processes -----------------------------------------------------------------------------
    def _pid_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

    @property
    def _state_file(self) -> Path:
        return self.home / "run" / "stack.json"

    def _state(self) -> dict:
        try:
            state = json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state if state.get("boot_id") == _boot_id() else {}  # a reboot reuses pids

    def _alive(self, component: str) -> bool:
        process = self._processes.get(component)
        if process is not None:  # started by this process: poll() also reaps a dead child
            return process.poll() is None
        try:
            pid = int(self._pid_file(component).read_text())
            os.kill(pid, 0)
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return False
        return "\nState:\tZ" not in status

    def running(self) -> bool:
        return all(self._alive(c) for c in self.components)

    def _component_sessions(self) -> dict[int, int]:
        """{session or group id: start tick of its leader} of the components this home started.

        A component's id is trusted while its leader is the recorded process (same start time) or
        is gone: Linux gives no new process a pid still used as a session or group id.
        """
        ids: dict[int, int] = {}
        for record in self._state().get("components", {}).values():
            leader = proc_info(record["pid"])
            if leader is None or leader.start == record["start"]:
                for key in ("sid", "pgid"):
                    ids[record[key]] = record["start"]
        for component in self.components:  # pid files of a stack started before stack.json existed
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(self._pid_file(component).read_text())
                leader = proc_info(pid)
                if pid not in ids and leader and leader.sid == pid and "airflow" in leader.cmdline:
                    ids[pid] = leader.start
        return ids

    def members(self) -> list[ProcInfo]:
        """Every live process of this home: in a component's session or process group, or started
        with this home's marker in its environment, or an `airflow` command with AIRFLOW_HOME set
        to this home. Never this process or its ancestors (a shell that eval'd `env`)."""
        sessions = self._component_sessions()
        spared = _ancestors()
        home = str(self.home)
        found = []
        for info in processes():
            if info.pid in spared or info.state in ("Z", "X"):
                continue
            for group in (info.sid, info.pgid):
                if group in sessions and info.start >= sessions[group]:
                    found.append(info)
                    break
            else:
                environ = proc_environ(info.pid)
                words = info.cmdline.split()
                airflow_command = bool(words) and (
                    words[0] == "airflow"
                    or words[0].endswith("/airflow")
                    or (len(words) > 1 and words[1].endswith("/airflow"))
                )
                if environ.get(STACK_MARKER) == home or (
                    airflow_command and environ.get("AIRFLOW_HOME") == home
                ):
                    found.append(info)
        return found

    def _check_ports(self) -> None:
        for port, purpose in self.ports.items():
            if _port_free(port):
                continue
            holders = [proc_info(pid) for pid in sorted(socket_owners(listening_inodes(port)))]
            holder = ", ".join(f"pid {p.pid} ({p.cmdline[:60]})" for p in holders if p is not None)
            raise PortInUseError(
                f"port {port} ({purpose}) is already in use{' by ' + holder if holder else ''}; "
                f"stop that program or start this Airflow on another --port"
            )

    def start(self, timeout: float = 120) -> None:
        if self.running() and self.healthy() and not self.changed_settings():
            return
        self.stop()  # this home's leftovers, orphans of a killed component included
        self._check_ports()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self._link_local_settings()
        self.password  # noqa: B018 - creates the passwords file before the api-server reads it
        self.migrate_once()
        env = {**self.env(), STACK_MARKER: str(self.home)}
        state = {"boot_id": _boot_id(), "components": {}, "settings": self.pipeline_settings()}
        deadline = time.monotonic() + timeout
        # Every task talks to the api-server (execution API). A scheduler that starts first runs
        # due scheduled runs (SCHEDULE=on, catchup) into "connection refused": so the api-server
        # and the dag-processor first, the scheduler and the triggerer once the API answers.
        for component in ("api-server", "dag-processor"):
            self._launch(component, env, state)
        self._wait(self._api_answers, deadline, "did not answer")
        for component in ("triggerer", "scheduler"):
            self._launch(component, env, state)
        self._wait(self.healthy, deadline, "was not healthy")

    def _launch(
        self, component: str, env: dict[str, str], state: dict, command: list[str] | None = None
    ) -> None:
        """Start ``airflow <component>`` (or ``command``) in a session of its own, logging to
        logs/<component>.log, and record it in the pid file and the stack's state."""
        with open(self.home / "logs" / f"{component}.log", "ab") as log:
            proc = subprocess.Popen(
                command or [str(VENV_BIN / "airflow"), component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # pid = process group = session id
                cwd=self.home,
            )
        self._pid_file(component).write_text(str(proc.pid))
        self._processes[component] = proc
        info = proc_info(proc.pid)
        state["components"][component] = {
            "pid": proc.pid,
            "pgid": proc.pid,
            "sid": proc.pid,
            "start": info.start if info else 0,
        }
        self._state_file.write_text(json.dumps(state, indent=1))

    def _api_answers(self) -> bool:
        try:
            self.health()
        except (OSError, ValueError):
            return False
        return True

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every process of this home; SIGKILL what is left after ``timeout`` seconds, or
        ORPHAN_GRACE seconds after the last component's top process exited: the LocalExecutor's
        workers ignore SIGTERM (they inherit the scheduler's handler) and wait for the scheduler
        to tell them to stop, which a SIGKILLed scheduler never does."""
        deadline = time.monotonic() + timeout
        sessions = self._component_sessions()
        signalled: set[tuple[int, int]] = set()
        orphaned_since = None
        while (members := self.members()) and time.monotonic() < deadline:
            for info in members:  # new ones too (a worker forked meanwhile)
                if (info.pid, info.start) not in signalled:
                    _signal(info.pid, signal.SIGTERM)
                    signalled.add((info.pid, info.start))
            if any(info.pid == info.sid and info.pid in sessions for info in members):
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = time.monotonic()
            elif time.monotonic() - orphaned_since > ORPHAN_GRACE:
                break
            self._reap()
            time.sleep(0.2)
        kill_deadline = time.monotonic() + 10
        while members and time.monotonic() < kill_deadline:
            for info in members:
                _signal(info.pid, signal.SIGKILL)
            self._reap()
            time.sleep(0.1)
            members = self.members()
        self._reap(wait=True)
        for component in self.components:
            self._pid_file(component).unlink(missing_ok=True)
        self._state_file.unlink(missing_ok=True)

    def _reap(self, wait: bool = False) -> None:
        for component, process in list(self._processes.items()):
            if process.poll() is None and wait:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.returncode is not None:
                del self._processes[component]

    # -- health --------------------------------------------------------------------------------
    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as response:
            return json.load(response)

    def healthy(self) -> bool:
        try:
            health = self.health()
        except (OSError, ValueError):
            return False
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def wait_healthy(self, timeout: float = 120) -> None:
        self._wait(self.healthy, time.monotonic() + timeout, "was not healthy")

    def _wait(self, condition, deadline: float, failure: str) -> None:
        started = [c for c in self.components if c in self._processes or self._pid_file(c).exists()]
        while time.monotonic() < deadline:
            if condition():
                return
            dead = [c for c in started if not self._alive(c)]
            if dead:
                raise RuntimeError(f"Airflow component(s) {dead} exited; see {self.home / 'logs'}")
            time.sleep(0.5)
        raise TimeoutError(f"Airflow at {self.base_url} {failure} in time; see {self.home / 'logs'}")

    def client(self) -> AirflowClient:
        return AirflowClient(self.base_url, USERNAME, self.password)


class AirflowError(RuntimeError):
    def __init__(self, status: int, body: str, url: str):
        super().__init__(f"HTTP {status} from {url}: {body[:2000]}")
        self.status, self.body = status, body


class AirflowClient:
    """The few REST API v2 calls the demo and the tests need (SimpleAuthManager bearer token)."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _request(self, method: str, path: str, payload: object = None, auth: bool = True) -> dict:
        url = f"{self.base_url}{path}"
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowError(exc.code, exc.read().decode(errors="replace"), url) from None
        return json.loads(body) if body else {}

    def token(self) -> str:
        if self._token is None:
            self._token = self._request("POST", "/auth/token", self._credentials, auth=False)["access_token"]
        return self._token

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def post(self, path: str, payload: object) -> dict:
        return self._request("POST", path, payload)

    def patch(self, path: str, payload: object) -> dict:
        return self._request("PATCH", path, payload)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except AirflowError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        runs, offset = [], 0
        while True:
            page = self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&offset={offset}&order_by=run_after")
            runs.extend(page["dag_runs"])
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
        quoted = urllib.parse.quote(run_id, safe="")
        items, offset = [], 0
        query = f"&task_id={task_id}" if task_id else ""
        while True:
            page = self.get(
                f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=100&offset={offset}{query}"
            )
            items.extend(page["task_instances"])
            offset += len(page["task_instances"])
            if not page["task_instances"] or offset >= page["total_entries"]:
                return items

    def clear_mapped_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict:
        return self.post(
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": False,
                "only_failed": False,
                "dag_run_id": run_id,
                "task_ids": [[task_id, map_index]],
                "include_downstream": False,
                "include_upstream": False,
                "reset_dag_runs": True,
            },
        )

    def count_task_instances(
        self, dag_id: str, task_id: str, run_id_prefix: str, state: str | None = None
    ) -> int:
        """How many task instances of ``task_id`` (each mapped one counts) in runs whose id has the prefix."""
        query = (
            f"task_id={task_id}&run_id_prefix_pattern={urllib.parse.quote(run_id_prefix, safe='')}&limit=1"
        )
        if state:
            query += f"&state={state}"
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?{query}")["total_entries"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 1.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll)


def shell_exports(env: dict[str, str]) -> str:
    """A script for `eval`: unsets the caller's other AIRFLOW* variables, exports the stack's."""
    lines = []
    stale = sorted(k for k in os.environ if k.startswith("AIRFLOW") and k not in env)
    if SCHEDULE_VARIABLE in os.environ and SCHEDULE_VARIABLE not in env:
        stale.append(SCHEDULE_VARIABLE)  # "on": the DAGs' default cron, not the word "on"
    if stale:
        lines.append(f"unset {' '.join(stale)}")
    for name, value in sorted(env.items()):
        if name.startswith(("AIRFLOW", "TRADING_")) or name == "PATH":
            lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-root")
    parser.add_argument("--dags-folder", type=Path, default=PROJECT / "dags")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="env: a separate home and database (<home>/isolated) for `airflow dags test`",
    )
    args = parser.parse_args(argv)
    airflow = LocalAirflow(args.home, args.port, args.data_root, dags_folder=args.dags_folder)
    if args.action == "start":
        try:
            airflow.start()
        except PortInUseError as exc:
            print(f"local_airflow: {exc}", file=sys.stderr)
            return 1
        print(f"Airflow is up at {airflow.base_url} (user {USERNAME}, password {airflow.password})")
    elif args.action == "env":
        if args.isolated:
            try:
                airflow = airflow.prepare_isolated()
            except RuntimeError as exc:
                print(f"local_airflow: {exc}", file=sys.stderr)
                print("false")  # `eval "$(...)" && airflow ...` stops here
                return 1
        print(shell_exports(airflow.env()))
    elif args.action == "stop":
        airflow.stop()
        print("Airflow stopped")
    else:
        state = "healthy" if airflow.healthy() else ("running" if airflow.running() else "stopped")
        print(f"Airflow at {airflow.base_url}: {state}")
        return 0 if state == "healthy" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
