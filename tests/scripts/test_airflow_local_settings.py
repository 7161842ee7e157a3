"""scripts/airflow_local_settings.py: what the forking parents (the scheduler, a Celery worker's main
process) load before they fork tasks, and that a task forked afterwards still works. Each case runs
in a fresh interpreter, as Airflow imports the module at a process's start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from s3.conftest import free_ports, moto_s3_fixture  # noqa: F401 - fixtures

SETTINGS = Path(__file__).resolve().parents[2] / "scripts" / "airflow_local_settings.py"

# Imports the settings as the given process would, then forks a "task" that writes and reads back
# one object through trading_lib's storage (s3fs on its own client, as a task builds it).
PROBE = """
import os, runpy, sys
sys.argv = {argv!r}
runpy.run_path({settings!r})
print("preloaded:", " ".join(m for m in ("s3fs", "trading_lib.pipeline") if m in sys.modules))
pid = os.fork()
if pid == 0:
    from trading_lib.storage import Storage
    storage = Storage(os.environ["TRADING_DATA_ROOT"])
    storage.write_bytes("probe.txt", b"forked task")
    os._exit(0 if storage.read_bytes("probe.txt") == b"forked task" else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _preloaded(result: subprocess.CompletedProcess) -> str:
    """The probe's "preloaded: ..." line (log lines may come before it)."""
    return next(line for line in result.stdout.splitlines() if line.startswith("preloaded:")).strip()


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    code = textwrap.dedent(PROBE.format(argv=argv, settings=str(SETTINGS)))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.s3
def test_a_celery_worker_preloads_s3_and_its_forked_task_reaches_the_store(moto_s3):
    prefix = moto_s3.new_prefix()
    root = f"s3://{moto_s3.bucket}/{prefix}"
    env = {**os.environ, **moto_s3.aws_env(), "TRADING_DATA_ROOT": root}
    result = _run(["airflow", "celery", "worker"], env)
    assert result.returncode == 0, result.stderr
    assert _preloaded(result) == "preloaded: s3fs trading_lib.pipeline"
    # a failed preload is only logged (a task pays the import again): it must not happen
    logged = result.stdout + result.stderr
    assert "failed" not in logged, logged
    assert moto_s3.objects(prefix) == {f"{prefix}/probe.txt": b"forked task"}


def test_a_local_data_root_preloads_the_pipeline_but_not_s3(tmp_path):
    env = {**os.environ, "TRADING_DATA_ROOT": str(tmp_path / "data")}
    result = _run(["airflow", "scheduler"], env)
    assert result.returncode == 0, result.stderr
    assert _preloaded(result) == "preloaded: trading_lib.pipeline"
    assert (tmp_path / "data" / "probe.txt").read_bytes() == b"forked task"


def test_other_processes_preload_nothing(tmp_path):
    env = {**os.environ, "TRADING_DATA_ROOT": str(tmp_path / "data")}
    result = _run(["airflow", "api-server"], env)
    assert result.returncode == 0, result.stderr
    assert _preloaded(result) == "preloaded:"
