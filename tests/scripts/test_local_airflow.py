"""scripts/local_airflow.py without an Airflow: the environment it gives the stack (schedule switch,
isolated home), how it recognises the processes of its home, and its refusal of a held port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_airflow import (
    PASSTHROUGH,
    SCHEDULE_VARIABLE,
    STACK_MARKER,
    TUNING,
    LocalAirflow,
    PortInUseError,
    free_port,
    shell_exports,
)
from processes import boot_id, port_free, proc_info

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def caller_env(monkeypatch):
    """A caller environment without any of the schedule variables."""
    for name in (SCHEDULE_VARIABLE, *PASSTHROUGH):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def airflow(tmp_path) -> LocalAirflow:
    return LocalAirflow(tmp_path / "home", 18123, str(tmp_path / "data"))


# -- the schedule switch ---------------------------------------------------------------------------
def test_schedule_is_none_by_default(caller_env, airflow):
    env = airflow.env()
    assert env[SCHEDULE_VARIABLE] == "none"
    assert not any(name in env for name in PASSTHROUGH)


@pytest.mark.parametrize("value", ["", "  ", "off", "none", "NONE"])
def test_schedule_off_values_give_none(caller_env, airflow, value):
    caller_env.setenv(SCHEDULE_VARIABLE, value)
    assert airflow.env()[SCHEDULE_VARIABLE] == "none"


@pytest.mark.parametrize("value", ["on", "ON", "default"])
def test_schedule_on_leaves_the_pipeline_default(caller_env, airflow, value):
    caller_env.setenv(SCHEDULE_VARIABLE, value)
    env = airflow.env()
    assert SCHEDULE_VARIABLE not in env  # trading_lib/settings.py's DEFAULT_SCHEDULE applies
    exports = shell_exports(env).splitlines()
    # a shell that had TRADING_ORCHESTRATOR_SCHEDULE=on must not keep the word "on"
    assert exports[0].startswith("unset ") and SCHEDULE_VARIABLE in exports[0].split()
    assert not any(line.startswith(f"export {SCHEDULE_VARIABLE}=") for line in exports)


def test_schedule_on_means_the_settings_default(caller_env, airflow):
    from trading_lib.settings import DEFAULT_SCHEDULE, load_settings

    caller_env.setenv(SCHEDULE_VARIABLE, "on")
    env = airflow.env()
    assert load_settings(env).orchestrator_schedule == DEFAULT_SCHEDULE


def test_a_cron_passes_through(caller_env, airflow):
    caller_env.setenv(SCHEDULE_VARIABLE, "30 10-16 * * 1-5")
    env = airflow.env()
    assert env[SCHEDULE_VARIABLE] == "30 10-16 * * 1-5"
    assert f"export {SCHEDULE_VARIABLE}='30 10-16 * * 1-5'" in shell_exports(env)


def test_start_end_and_catchup_pass_through_when_set(caller_env, airflow):
    values = {
        "TRADING_ORCHESTRATOR_START_DATE": "2024-01-02",
        "TRADING_ORCHESTRATOR_END_DATE": "2024-01-31",
        "TRADING_ORCHESTRATOR_CATCHUP": "true",
    }
    for name, value in values.items():
        caller_env.setenv(name, value)
    env = airflow.env()
    assert {name: env.get(name) for name in PASSTHROUGH} == values
    assert env[SCHEDULE_VARIABLE] == "none"


def test_empty_passthrough_variables_are_left_out(caller_env, airflow):
    caller_env.setenv("TRADING_ORCHESTRATOR_START_DATE", "")
    assert "TRADING_ORCHESTRATOR_START_DATE" not in airflow.env()


def test_a_running_stack_with_another_schedule_counts_as_changed(caller_env, airflow):
    (airflow.home / "run").mkdir(parents=True)
    state = {"boot_id": boot_id(), "components": {}, "settings": airflow.pipeline_settings()}
    airflow._state_file.write_text(json.dumps(state))
    assert airflow.changed_settings() == []
    caller_env.setenv(SCHEDULE_VARIABLE, "on")
    assert airflow.changed_settings() == [SCHEDULE_VARIABLE]


def test_stack_environment_keeps_its_tuning_and_drops_the_callers_airflow_settings(caller_env, airflow):
    caller_env.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://elsewhere/db")
    env = airflow.env()
    for name, value in TUNING.items():
        assert env[name] == value
    assert (
        env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]
        == TUNING["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]
    )
    port = airflow.service_ports()["postgres"]  # chosen once, kept in run/ports.json
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{port}/airflow"
    )
    assert port not in airflow.ports and LocalAirflow(airflow.home, airflow.port).service_ports() == {
        "postgres": port
    }
    assert STACK_MARKER not in env  # only the processes start() launches carry it


def test_the_sqlite_stack_keeps_its_database_file_and_starts_no_server(caller_env, tmp_path):
    airflow = LocalAirflow(tmp_path / "home", 18123, str(tmp_path / "data"), db="sqlite")
    assert airflow.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{airflow.home / 'airflow.db'}"
    assert airflow.services == () and airflow.service_components() == []
    assert airflow.components == ("api-server", "scheduler", "dag-processor", "triggerer")
    with pytest.raises(ValueError, match="db must be one of"):
        LocalAirflow(tmp_path / "home", 18123, db="mysql")


def test_a_running_stack_on_another_database_counts_as_changed(caller_env, airflow):
    (airflow.home / "run").mkdir(parents=True)
    state = {"boot_id": boot_id(), "components": {}, "settings": airflow.pipeline_settings()}
    airflow._state_file.write_text(json.dumps(state))
    sqlite = LocalAirflow(airflow.home, airflow.port, airflow.data_root, db="sqlite")
    assert sqlite.changed_settings() == ["DB"]


# -- env --isolated --------------------------------------------------------------------------------
def test_isolated_home_has_its_own_database_and_the_same_dags_plugins_and_data(caller_env, airflow):
    live, isolated = airflow.env(), airflow.isolated().env()
    assert isolated["AIRFLOW_HOME"] == str(airflow.home / "isolated")
    assert isolated["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{airflow.home / 'isolated' / 'airflow.db'}"
    )
    assert isolated["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] != live["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for name in (
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "TRADING_DATA_ROOT",
        SCHEDULE_VARIABLE,
    ):
        assert isolated[name] == live[name]
    # nothing of the live stack (API, execution API, log servers) is reachable through it
    assert live["AIRFLOW__API__PORT"] not in isolated["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert isolated["AIRFLOW__API__PORT"] != live["AIRFLOW__API__PORT"]


def test_env_exports_unset_the_callers_other_airflow_variables(caller_env, airflow):
    caller_env.setenv("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    script = shell_exports(airflow.env())
    assert script.splitlines()[0].startswith("unset ")
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" in script.splitlines()[0].split()
    result = subprocess.run(
        ["bash", "-c", f'{script}\necho "$AIRFLOW_HOME|${{AIRFLOW__CORE__UNIT_TEST_MODE-unset}}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"{airflow.home}|unset"


# -- which processes belong to a home --------------------------------------------------------------
def _spawn(
    env_update: dict[str, str], argv: list[str] | None = None, new_session: bool = True
) -> subprocess.Popen:
    env = {**os.environ, **env_update}
    return subprocess.Popen(argv or ["sleep", "120"], env=env, start_new_session=new_session)


def test_stop_ends_marked_processes_of_its_home_only(airflow, tmp_path):
    other_home = str(tmp_path / "other-home")
    ours = _spawn({STACK_MARKER: str(airflow.home)})
    # a child that left its parent's session and group still carries the marker
    ours_detached = _spawn(
        {STACK_MARKER: str(airflow.home)},
        [sys.executable, "-c", "import os, time; os.setsid(); time.sleep(120)"],
        new_session=False,
    )
    foreign = _spawn({STACK_MARKER: other_home, "AIRFLOW_HOME": other_home})
    # e.g. a shell that eval'd `local_airflow.py env`: AIRFLOW_HOME is this home, it is no airflow
    shell = _spawn({"AIRFLOW_HOME": str(airflow.home)})
    try:
        time.sleep(0.3)
        member_pids = {p.pid for p in airflow.members()}
        assert {ours.pid, ours_detached.pid} <= member_pids
        assert foreign.pid not in member_pids and shell.pid not in member_pids
        started = time.monotonic()
        airflow.stop(timeout=10)
        assert time.monotonic() - started < 10
        assert ours.wait(timeout=5) == -15 and ours_detached.wait(timeout=5) == -15
        assert foreign.poll() is None and shell.poll() is None
    finally:
        for process in (ours, ours_detached, foreign, shell):
            process.kill()
            process.wait()


def test_stop_kills_what_ignores_sigterm(airflow):
    stubborn = _spawn(
        {STACK_MARKER: str(airflow.home)},
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
        ],
    )
    try:
        time.sleep(0.5)
        airflow.stop(timeout=2)
        assert stubborn.wait(timeout=5) == -9
    finally:
        stubborn.kill()
        stubborn.wait()


def test_proc_info_reads_session_and_group(airflow):
    process = _spawn({})
    try:
        deadline = time.monotonic() + 10
        while (info := proc_info(process.pid)).cmdline != "sleep 120" and time.monotonic() < deadline:
            time.sleep(0.02)  # between fork and exec the child still shows this Python's command line
        assert info.sid == info.pgid == process.pid and info.ppid == os.getpid()
        assert info.cmdline == "sleep 120"
    finally:
        process.kill()
        process.wait()


# -- ports -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("offset", "purpose"), [(0, "api-server"), (713, "worker log server"), (714, "triggerer log server")]
)
def test_start_refuses_a_port_held_by_another_program(tmp_path, offset, purpose):
    port = free_port()
    airflow = LocalAirflow(tmp_path / "home", port, str(tmp_path / "data"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", port + offset))
        held.listen()
        try:
            with pytest.raises(PortInUseError) as excinfo:
                airflow.start(timeout=60)
        finally:
            airflow.stop(timeout=10)
    message = str(excinfo.value)
    assert f"port {port + offset} ({purpose})" in message
    assert f"pid {os.getpid()}" in message
    assert "\n" not in message
    assert not (airflow.home / "postgres").exists(), "it must refuse before starting anything"
    assert not (airflow.home / "logs" / "supervisor.log").exists()


def test_cli_start_names_the_held_port_in_one_line(tmp_path):
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        result = subprocess.run(
            [sys.executable, str(PROJECT / "scripts" / "local_airflow.py"), "start"]
            + ["--home", str(tmp_path / "home"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"port {port} (api-server) is already in use" in result.stderr


def test_free_port_leaves_the_log_server_ports_free():
    port = free_port()
    assert all(port_free(p) for p in (port, port + 713, port + 714))
