"""A real local Airflow 3 for this bundle: api-server, scheduler, dag-processor and triggerer,
SQLite, LocalExecutor, AIRFLOW_HOME inside the project (gitignored).

Used by `make demo`, `make stop`, the end-to-end tests and the pipeline benchmark, so the tests run
exactly the stack users run. Standard library only (it runs before anything is imported).

    python scripts/local_airflow.py start|stop|status|env [--home DIR] [--port 8080] [--data-root DIR]

`env` prints the environment as shell exports, so the Airflow CLI talks to the same home:
    eval "$(.venv/bin/python scripts/local_airflow.py env)"
    airflow dags test analyze_symbol -c '{"contract": "AAPL"}'

Tuning for a small machine (2 cores, SQLite), measured in ../shared/docs/airflow-3.3-local.md
and bench/bench_pipeline.py; see docs/local-airflow.md:
- parallelism 16: the default 32 ends in "database is locked" on SQLite and kills the
  scheduler; 4 to 8 leaves the pipeline two times slower.
- scheduler idle sleep 0.2 s and 64 task instances per query: fewer idle scheduler loops.
- TRADING_ORCHESTRATOR_SCHEDULE=none: the demo runs what it triggers, no cron runs (that would
  ingest from Yahoo) fire while it is up.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DEFAULT_HOME = PROJECT / "airflow_home"
USERNAME = "admin"

TUNING = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__PARALLELISM": "16",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    "AIRFLOW__API__WORKERS": "2",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a test or benchmark Airflow beside the demo's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalAirflow:
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
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret(".jwt_secret", 64),
                "AIRFLOW__API__SECRET_KEY": self._secret(".api_secret_key", 32),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                # Log servers get ports of their own per instance, so a test Airflow and the demo can coexist.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.port + 713),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.port + 714),
                "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "TRADING_ORCHESTRATOR_SCHEDULE": "none",
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        if self.data_root:
            env["TRADING_DATA_ROOT"] = self.data_root
        env.update(self.extra_env)
        return env

    # -- processes -----------------------------------------------------------------------------
    def _pid_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

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
        return all(self._alive(c) for c in COMPONENTS)

    def start(self, timeout: float = 120) -> None:
        if self.running() and self.healthy():
            return
        self.stop()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (self.home / "config").mkdir(exist_ok=True)
        local_settings = self.home / "config" / "airflow_local_settings.py"
        local_settings.unlink(missing_ok=True)
        local_settings.symlink_to(PROJECT / "scripts" / "airflow_local_settings.py")
        self.password  # noqa: B018 - creates the passwords file before the api-server reads it
        env = self.env()
        subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=env,
            check=True,
            stdout=open(self.home / "logs" / "db-migrate.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for component in COMPONENTS:
            log = open(self.home / "logs" / f"{component}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [str(VENV_BIN / "airflow"), component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.home,
            )
            self._pid_file(component).write_text(str(proc.pid))
            self._processes[component] = proc
        self.wait_healthy(timeout)

    def stop(self, timeout: float = 30) -> None:
        pids = {}
        for component in COMPONENTS:
            pid_file = self._pid_file(component)
            if pid_file.exists():
                try:
                    pids[component] = int(pid_file.read_text())
                    os.killpg(pids[component], signal.SIGTERM)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + timeout
        for component, pid in pids.items():
            while time.monotonic() < deadline:
                try:
                    os.killpg(pid, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.2)
            else:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._pid_file(component).unlink(missing_ok=True)
            process = self._processes.pop(component, None)
            if process is not None:
                process.wait(timeout=5)

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            dead = [c for c in COMPONENTS if not self._alive(c)]
            if dead:
                raise RuntimeError(f"Airflow component(s) {dead} exited; see {self.home / 'logs'}")
            time.sleep(1)
        raise TimeoutError(
            f"Airflow at {self.base_url} not healthy after {timeout:.0f} s; see {self.home / 'logs'}"
        )

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    airflow = LocalAirflow(args.home, args.port, args.data_root)
    if args.action == "start":
        airflow.start()
        print(f"Airflow is up at {airflow.base_url} (user {USERNAME}, password {airflow.password})")
    elif args.action == "env":
        import shlex

        for name, value in sorted(airflow.env().items()):
            if name.startswith(("AIRFLOW", "TRADING_")) or name == "PATH":
                print(f"export {name}={shlex.quote(value)}")
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
