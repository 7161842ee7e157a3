"""scripts/local_airflow.py against real Airflow processes: a killed worker's task is retried once
the heartbeat timeout has passed, stop() ends whole process trees (orphans of a killed scheduler
whose supervisor was killed first included) and frees the ports, `airflow dags test` in the
isolated home leaves a running stack alone.

The stacks run on free ports in temporary homes, with the DAGs of tests/scripts/conftest.py.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_airflow import TUNING, LocalAirflow, free_port
from processes import alive, listening_inodes, proc_environ, proc_info, processes

pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
PROJECT = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT = int(TUNING["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
# From the kill to the run's success: the heartbeat timeout, one detection interval, the retry's
# scheduling and its run on a loaded machine.
RECOVERY_LIMIT = HEARTBEAT_TIMEOUT + 45
START_TIMEOUT = 600  # a bound for the test only: make demo waits as long as it takes


@pytest.fixture(scope="module")
def stack(stack_home, probe_dags):
    root = stack_home("local-airflow-e2e")
    airflow = LocalAirflow(root / "home", free_port(), str(root / "data"), dags_folder=probe_dags)
    try:
        airflow.start(timeout=START_TIMEOUT)
        yield airflow
    finally:
        airflow.stop()


def home_processes(home: Path) -> list:
    """Live processes started with AIRFLOW_HOME=home (checked apart from LocalAirflow.members())."""
    return [p for p in processes() if alive(p) and proc_environ(p.pid).get("AIRFLOW_HOME") == str(home)]


def _survivors(snapshot: list) -> list:
    """The processes of ``snapshot`` still running: not gone, not a new process on a reused pid, not
    a zombie. A zombie has exited: the orphans that stop() kills are children of pid 1 by then, and
    a container's pid 1 may reap them late (seen here: a killed orphan left as a zombie of pid 1)."""
    return [p for p in snapshot if alive(now := proc_info(p.pid)) and now.start == p.start]


def _wait(predicate, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def _run_db(home: Path, dag_id: str) -> list[tuple[str, str]]:
    """The runs in a SQLite home's database (the isolated home's)."""
    with sqlite3.connect(home / "airflow.db") as db:
        return db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchall()


# -- whole process trees (first: no other stack of this module runs meanwhile) --------------------
def test_stop_ends_the_orphans_of_a_killed_scheduler_and_frees_its_ports(stack_home, probe_dags):
    """The worst case for stop(): the supervisor is SIGKILLed first (nobody restarts anything or
    ends the orphans), then the scheduler's top process."""
    root = stack_home("orphans")
    airflow = LocalAirflow(root / "home", free_port(), str(root / "data"), dags_folder=probe_dags)
    try:
        airflow.start(timeout=START_TIMEOUT)
        scheduler = int((airflow.home / "run" / "scheduler.pid").read_text())

        def named_children():
            # A forked LocalExecutor worker names itself a moment after the fork: until then it
            # carries the scheduler's command line.
            children = [p for p in processes() if p.ppid == scheduler]
            titles = [p.cmdline for p in children]
            named = any("LocalExecutor" in t for t in titles) and "airflow serve-logs" in titles
            return children if named else None

        children = _wait(named_children, 60, "the scheduler's named workers and log server")
        everything = home_processes(airflow.home)
        assert any(p.ppid != scheduler and p.pid != scheduler for p in everything)
        postgres = [p for p in airflow.members() if "postgres" in p.cmdline]
        assert postgres, "the stack's PostgreSQL runs as processes of the home"

        os.kill(airflow._state()["supervisor"]["pid"], signal.SIGKILL)
        os.kill(scheduler, signal.SIGKILL)  # the top process only
        _wait(lambda: not airflow._alive("scheduler"), 10, "the scheduler's death")
        time.sleep(1)
        orphans = [proc_info(p.pid) for p in children]
        assert all(o is not None and o.state != "Z" and o.ppid != scheduler for o in orphans), orphans
        assert listening_inodes(airflow.port + 713), "the orphaned log server still holds its port"

        started = time.monotonic()
        airflow.stop(timeout=60)
        stopped_in = time.monotonic() - started
        print(f"\nstop() with {len(orphans)} orphans: {stopped_in:.1f} s")
        # the orphaned workers ignore SIGTERM: they are killed soon after the components exited,
        # not when the SIGTERM timeout ends
        assert stopped_in < 45
        assert home_processes(airflow.home) == []
        assert airflow.members() == []
        assert _survivors(postgres) == []
        assert _survivors(everything) == []
        assert {port: listening_inodes(port) for port in airflow.all_ports} == {
            p: set() for p in airflow.all_ports
        }

        started = time.monotonic()
        airflow.start(timeout=START_TIMEOUT)  # the same ports, the same PostgreSQL data
        print(f"start() again on the same ports: {time.monotonic() - started:.1f} s")
        assert airflow.healthy()
        assert all(port not in airflow.ports for port in airflow.service_ports().values())
    finally:
        airflow.stop()
    assert home_processes(airflow.home) == []
    assert all(not listening_inodes(port) for port in airflow.all_ports)


# -- a SIGKILLed worker ---------------------------------------------------------------------------
def test_task_of_a_killed_worker_is_retried_after_the_heartbeat_timeout(stack):
    client = stack.client()
    client.wait_for_dag("worker_crash_probe", timeout=90)
    run_id = client.trigger("worker_crash_probe")["dag_run_id"]

    def running_ti():
        tis = client.task_instances("worker_crash_probe", run_id)
        return tis[0] if tis and tis[0]["state"] == "running" else None

    ti = _wait(running_ti, 90, "the task running")
    # The LocalExecutor worker (the task's supervisor) titles itself
    # "airflow worker -- LocalExecutor: <ti id>", the task process it forked "airflow worker -- <ti id>".
    task_processes = _wait(
        lambda: [p for p in processes() if ti["id"] in p.cmdline], 30, "the task's processes"
    )
    supervisors = [p for p in task_processes if "LocalExecutor" in p.cmdline]
    assert supervisors, [p.cmdline for p in task_processes]
    for process in sorted(task_processes, key=lambda p: "LocalExecutor" not in p.cmdline):
        os.kill(process.pid, signal.SIGKILL)  # the supervisor first: nobody reports the task's end
    killed = time.monotonic()

    timeline, last = [], None
    while time.monotonic() - killed < RECOVERY_LIMIT + 5:
        tis = client.task_instances("worker_crash_probe", run_id)
        state = (tis[0]["state"], tis[0]["try_number"])
        if state != last:
            timeline.append((round(time.monotonic() - killed, 1), *state))
            last = state
        run = client.dag_run("worker_crash_probe", run_id)
        if run["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    recovery = time.monotonic() - killed
    print(f"\nworker killed -> run {run['state']} in {recovery:.1f} s; (s, state, try): {timeline}")
    (stack.home / "recovery.json").write_text(json.dumps({"seconds": recovery, "timeline": timeline}))
    assert run["state"] == "success", timeline
    assert recovery < RECOVERY_LIMIT, timeline
    assert client.task_instances("worker_crash_probe", run_id)[0]["try_number"] == 2
    for process in task_processes:
        info = proc_info(process.pid)
        assert info is None or info.start != process.start or info.state == "Z"


# -- airflow dags test beside a live stack ---------------------------------------------------------
def test_dags_test_in_the_isolated_home_leaves_the_live_stack_alone(stack):
    client = stack.client()
    client.wait_for_dag("isolated_probe", timeout=90)
    env_command = [
        sys.executable,
        str(PROJECT / "scripts" / "local_airflow.py"),
        "env",
        "--isolated",
        "--home",
        str(stack.home),
        "--port",
        str(stack.port),
        "--dags-folder",
        str(stack.dags_folder),
        "--data-root",
        stack.data_root,
    ]
    script = (
        f'eval "$({shlex.join(env_command)})" && '
        """airflow dags test isolated_probe -c '{"who": "isolated"}'"""
    )
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    print(f"\nenv --isolated (with db migrate) + airflow dags test: {elapsed:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    isolated_home = stack.home / "isolated"
    assert [state for _, state in _run_db(isolated_home, "isolated_probe")] == ["success"]
    assert client.dag_runs("isolated_probe") == []
    assert stack.healthy()

    # The isolated database is migrated once: `env --isolated` does not migrate it again.
    migrate_log = isolated_home / "logs" / "db-migrate.log"
    size = migrate_log.stat().st_size
    started = time.monotonic()
    exports = subprocess.run(env_command, capture_output=True, text=True, timeout=300, check=True).stdout
    print(f"env --isolated again: {time.monotonic() - started:.1f} s")
    assert f"export AIRFLOW_HOME={isolated_home}" in exports.splitlines()
    assert migrate_log.stat().st_size == size
