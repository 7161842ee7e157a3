"""scripts/celery_stack.py without starting anything: its ports, its substitution of the compose
addresses, how it tells a worker is ready, and that `stop` ends this home's service processes only
(the end-to-end run of the whole stack: tests/e2e/test_celery_end_to_end.py; its agreement with compose:
tests/deploy/test_compose.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery_stack import (
    COMPOSE_ADDRESSES,
    PORT_NAMES,
    SERVICE_MARKER,
    WORKERS,
    CeleryAirflow,
    substitute,
)
from local_airflow import SHARED_ENV, WIRING


@pytest.fixture
def stack(tmp_path) -> CeleryAirflow:
    return CeleryAirflow(tmp_path / "home", 18423)


def test_service_ports_are_distinct_kept_and_apart_from_the_api(stack):
    ports = stack.service_ports()
    assert set(ports) == set(PORT_NAMES)
    assert len(set(ports.values())) == len(ports)
    assert not set(ports.values()) & set(stack.ports)
    assert CeleryAirflow(stack.home, stack.port).service_ports() == ports  # kept in run/ports.json
    renewed = stack.service_ports(renew=True)
    assert set(renewed) == set(PORT_NAMES) and stack.service_ports() == renewed


def test_every_compose_address_is_replaced(stack):
    addresses = stack.addresses()
    for name in WIRING:
        value = substitute(SHARED_ENV[name], addresses)
        assert not any(address in value for address in COMPOSE_ADDRESSES), name
    assert substitute("x@postgres:5432/y redis:6379 seaweedfs:8333 airflow-apiserver:8080", addresses) == (
        f"x@{addresses['postgres']}/y {addresses['redis']} {addresses['s3']} {addresses['api']}"
    )


def test_a_worker_is_ready_on_its_own_ready_line_only(stack):
    log = stack.home / "logs" / f"{WORKERS[0]}.log"
    log.parent.mkdir(parents=True)
    log.write_text(f" -------------- {WORKERS[0]}@vm v5.6.3\n[tasks]\n")  # the banner: not yet
    assert not stack.worker_ready(WORKERS[0])
    log.write_text(log.read_text() + f"[info] {WORKERS[1]}@vm ready.\n")  # another worker's line
    assert not stack.worker_ready(WORKERS[0])
    log.write_text(log.read_text() + f"[info] {WORKERS[0]}@vm ready.   [celery.apps.worker]\n")
    assert stack.worker_ready(WORKERS[0])


def test_stop_ends_this_homes_service_processes_only(stack, tmp_path):
    def spawn(home: str) -> subprocess.Popen:
        env = {**os.environ, SERVICE_MARKER: home}
        return subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)

    ours, foreign = spawn(str(stack.home)), spawn(str(tmp_path / "other-home"))
    try:
        time.sleep(0.3)
        assert ours.pid in {p.pid for p in stack.service_members()}
        assert foreign.pid not in {p.pid for p in stack.service_members()}
        stack.stop(timeout=10)
        assert ours.wait(timeout=5) in (-2, -9)  # SIGINT: the fast shutdown of PostgreSQL
        assert foreign.poll() is None
    finally:
        for process in (ours, foreign):
            process.kill()
            process.wait()


def test_the_status_command_reports_a_stopped_stack(stack):
    script = Path(__file__).resolve().parents[2] / "scripts" / "celery_stack.py"
    result = subprocess.run(
        [sys.executable, str(script), "status", "--home", str(stack.home), "--port", "18423"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "stopped" in result.stdout
