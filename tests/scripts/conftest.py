"""Tests of scripts/: the local Airflow manager (scripts/local_airflow.py) with DAGs of their own."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# One task that sleeps on its first try (long enough to kill its worker) and succeeds at once on
# its retry.
WORKER_CRASH_DAG = """
import time
from datetime import timedelta

from airflow.sdk import dag, task


@dag(dag_id="worker_crash_probe", schedule=None, catchup=False)
def worker_crash_probe():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def sleep_on_first_try(ti=None):
        if ti.try_number == 1:
            time.sleep(60)
        return ti.try_number

    sleep_on_first_try()


worker_crash_probe()
"""

# A DAG for `airflow dags test` in the isolated home.
ISOLATED_PROBE_DAG = """
import os

from airflow.sdk import dag, task


@dag(dag_id="isolated_probe", schedule=None, catchup=False)
def isolated_probe():
    @task
    def where(params=None, dag_run=None):
        print("AIRFLOW_HOME", os.environ["AIRFLOW_HOME"], "conf", dag_run.conf)
        return os.environ["AIRFLOW_HOME"]

    where()


isolated_probe()
"""


def write_dags(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker_crash_probe.py").write_text(textwrap.dedent(WORKER_CRASH_DAG))
    (folder / "isolated_probe.py").write_text(textwrap.dedent(ISOLATED_PROBE_DAG))
    return folder


@pytest.fixture(scope="module")
def probe_dags(tmp_path_factory) -> Path:
    return write_dags(tmp_path_factory.mktemp("probe-dags"))
