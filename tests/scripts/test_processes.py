"""scripts/processes.py's supervisor with real processes (small shell commands) and a simulated
clock: restart with backoff, the crash loop that stops it with the log's last lines, the orphans of
an exited component ended before its restart, a dependency waited for. No Airflow."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from processes import RESTART_LIMIT, RESTART_WINDOW, Component, CrashLoop, Supervisor, proc_info


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _supervisor(tmp_path: Path, clock: Clock) -> Supervisor:
    (tmp_path / "run").mkdir(exist_ok=True)
    return Supervisor(tmp_path / "run" / "stack.json", {"boot_id": "x"}, clock=clock, sleep=lambda s: None)


def _component(tmp_path: Path, name: str, script: str, **options) -> Component:
    log = tmp_path / f"{name}.log"
    return Component(name, ["sh", "-c", script], dict(os.environ), tmp_path, log, **options)


def _until_exited(component: Component, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while component.process is not None and component.process.poll() is None:
        assert time.monotonic() < deadline, f"{component.name} did not exit"
        time.sleep(0.02)


def test_a_crashing_component_is_restarted_with_backoff_until_the_crash_loop_stops_it(tmp_path):
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    crasher = _component(tmp_path, "crasher", "echo boom from $$; exit 3")
    supervisor.add(crasher)
    delays = []
    with pytest.raises(CrashLoop) as excinfo:
        for _ in range(RESTART_LIMIT):
            _until_exited(crasher)
            supervisor.poll()  # notices the exit, schedules the restart
            delays.append(crasher.restart_at - clock.now)
            clock.now = crasher.restart_at
            supervisor.poll()  # restarts it
    assert delays == [1.0, 2.0, 4.0, 8.0]  # the fifth exit is not restarted
    assert crasher.restarts == RESTART_LIMIT - 1 and crasher.last_exit == 3
    assert excinfo.value.component == "crasher"
    assert "crasher exited 5 times in 10 minutes (last exit code 3)" in str(excinfo.value)
    tail = excinfo.value.tail
    assert len(tail) == RESTART_LIMIT and all("boom from" in line for line in tail)
    state = json.loads(supervisor.state_file.read_text())
    assert state["failure"]["component"] == "crasher" and state["failure"]["tail"] == excinfo.value.tail
    messages = [event["message"] for event in state["events"]]
    assert messages[0].startswith("crasher exited (code 3); restarting in 1 s (exit 1 of 5")
    assert messages[1].startswith("crasher restarted (restart 1; pid ")
    assert messages[-1] == "crasher exited (code 3) 5 times in 10 minutes: giving up"
    assert state["components"]["crasher"]["restarts"] == RESTART_LIMIT - 1


def test_exits_further_apart_than_the_window_never_add_up_to_a_crash_loop(tmp_path):
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    crasher = _component(tmp_path, "rare", "exit 1")
    supervisor.add(crasher)
    for _ in range(2 * RESTART_LIMIT):
        _until_exited(crasher)
        supervisor.poll()
        assert crasher.restart_at - clock.now == 1.0  # the backoff starts again too
        clock.now += RESTART_WINDOW + 1
        supervisor.poll()
    assert crasher.restarts == 2 * RESTART_LIMIT and supervisor.failure is None
    supervisor.stop_all(timeout=5)


def test_the_orphans_of_a_killed_component_are_ended_before_it_restarts(tmp_path):
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    # a child in the component's session that outlives it (as a scheduler's workers do)
    parent = _component(tmp_path, "parent", "sleep 300 & echo $! > child.pid; exec sleep 300")
    supervisor.add(parent)
    child_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 10
    while not child_file.exists() or not child_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = proc_info(int(child_file.read_text()))
    first = parent.process.pid
    os.kill(first, signal.SIGKILL)
    _until_exited(parent)
    supervisor.poll()
    assert parent.last_exit == -signal.SIGKILL
    after = proc_info(child.pid)
    assert after is None or after.start != child.start or after.state == "Z", "the orphan was left"
    clock.now = parent.restart_at
    supervisor.poll()
    assert parent.process.pid != first and parent.process.poll() is None and parent.restarts == 1
    supervisor.stop_all(timeout=5)
    assert parent.process is None


def test_a_component_restarts_only_once_what_it_requires_is_ready(tmp_path):
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    database_up = {"value": True}
    supervisor.add(_component(tmp_path, "database", "exec sleep 300", ready=lambda: database_up["value"]))
    app = _component(tmp_path, "app", "exit 2", requires=("database",))
    supervisor.add(app)
    _until_exited(app)
    database_up["value"] = False
    supervisor.poll()
    clock.now = app.restart_at + 60
    supervisor.poll()
    assert app.process is None and app.restarts == 0  # waits for the database
    database_up["value"] = True
    supervisor.poll()
    assert app.restarts == 1
    supervisor.stop_all(timeout=5)
    assert json.loads(supervisor.state_file.read_text())["phase"] == "stopped"


def test_stop_all_stops_the_services_last_with_their_own_signal(tmp_path):
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    trap = "trap 'echo got $1 >> {log}; exit 0' {sig}; while true; do sleep 0.1; done"
    order = tmp_path / "order.log"
    service = _component(
        tmp_path, "db", trap.format(log=order, sig="INT").replace("$1", "INT-db"), stop_signal=signal.SIGINT
    )
    service.service = True
    supervisor.add(service)
    supervisor.add(_component(tmp_path, "web", trap.format(log=order, sig="TERM").replace("$1", "TERM-web")))
    time.sleep(0.5)  # both have set their traps
    supervisor.stop_all(timeout=10)
    assert order.read_text().split() == ["got", "TERM-web", "got", "INT-db"]
