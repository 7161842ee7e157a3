"""Test-wide environment: an isolated Airflow home and data root, set before Airflow is imported.

Airflow reads its configuration once, at import; every test process therefore gets its own
AIRFLOW_HOME (SQLite) and TRADING_DATA_ROOT under a temporary folder, never the developer's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="trading-tests-"))

os.environ["AIRFLOW_HOME"] = str(_SESSION_ROOT / "airflow_home")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["TRADING_DATA_ROOT"] = str(_SESSION_ROOT / "data")
os.environ["TRADING_ORCHESTRATOR_SCHEDULE"] = "none"
# Airflow 3.3's dag.test() cannot finish a successful run of a DAG with a DeadlineAlert (its
# scheduler DAG keeps the alerts' definitions where DagRun.update_state expects their ids); the
# deadline is tested on a real scheduler (tests/e2e/test_deadline.py).
os.environ["TRADING_ORCHESTRATOR_DEADLINE_MINUTES"] = "none"
os.environ.setdefault("TRADING_EXECUTION_MODE", "local")
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def stack_home():
    """A factory of fresh homes for a local stack (make demo's), e.g. ``stack_home("e2e")``.

    The stack's PostgreSQL keeps its data under the home and, when we are root, runs as a user of
    its own (it refuses root), which must be able to walk down to it: pytest's tmp_path folders
    (/tmp/pytest-of-<user>, 0700, reset to 0700 by pytest on purpose) do not let it; these folders
    do (0711: traverse, no listing)."""
    root = _SESSION_ROOT / "stacks"
    root.mkdir(exist_ok=True)
    for folder in (_SESSION_ROOT, root):
        folder.chmod(0o711)

    def make(name: str) -> Path:
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        home.chmod(0o711)
        return home

    return make


@pytest.fixture(scope="session")
def running_airflow(stack_home):
    """A factory of started local stacks (make demo's), stopped when its block ends:
    ``with running_airflow("e2e", data_root, TRADING_SYMBOLS="AAPL") as airflow: ...``
    (keyword arguments: extra environment of the stack)."""
    from local_airflow import LocalAirflow, free_port

    @contextlib.contextmanager
    def run(name: str, data_root: Path, **extra_env: str):
        instance = LocalAirflow(stack_home(f"{name}-airflow"), free_port(), str(data_root), extra_env)
        instance.start(timeout=600)
        try:
            yield instance
        finally:
            instance.stop()

    return run


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the test session's SQLite metadata DB once (dag.test(), JWT revocation checks)."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], env=dict(os.environ), check=True, capture_output=True)
