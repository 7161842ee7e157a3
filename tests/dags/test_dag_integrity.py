"""DAG integrity: the bundle parses, every DAG is documented and owned, and DAG files stay light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DAGS = PROJECT / "dags"
EXPECTED_DAGS = {
    "trading_orchestrator",
    "analyze_symbol",
    "aggregate_portfolio",
    "ingest_market_data",
    "validate_data",
}
HEAVY_MODULES = ("pandas", "numpy", "pyarrow", "yfinance", "kubernetes", "s3fs", "exchange_calendars")

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag():
    """Parsing needs no metadata DB (unlike conftest's dagbag, which dag.test() uses)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


def test_no_import_errors_and_every_dag_present(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_is_documented_tagged_and_owned(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and dag_id in dag.doc_md
    assert "trading" in dag.tags
    assert {task.owner for task in dag.tasks} == {"trading"}
    assert dag.catchup is False


def test_ingestion_retries_with_exponential_backoff(dagbag):
    for dag_id in ("ingest_market_data", "trading_orchestrator"):
        task = dagbag.dags[dag_id].get_task("ingest_market_data")
        assert task.retries >= 3
        assert task.retry_exponential_backoff
        assert task.retry_delay >= timedelta(seconds=30)


def test_every_conf_key_has_a_param_with_a_schema(dagbag):
    for dag in dagbag.dags.values():
        for name, param in dag.params.items():
            assert param.schema.get("type"), f"{dag.dag_id}.{name} has no JSON schema type"
            assert param.description or param.schema.get("description"), f"{dag.dag_id}.{name} undocumented"


def test_partitions_are_mapped_and_labelled(dagbag):
    dag = dagbag.dags["analyze_symbol"]
    partition = dag.get_task("analyze_partition")
    assert partition.map_index_template
    assert "summarize_symbol" in partition.downstream_task_ids


def test_aggregation_is_scheduled_on_the_asset_the_orchestrator_emits(dagbag):
    aggregation = dagbag.dags["aggregate_portfolio"]
    publish = dagbag.dags["trading_orchestrator"].get_task("publish_results")
    scheduled_on = {asset.name for asset in aggregation.timetable.asset_condition.objects}
    emitted = {getattr(o, "name", None) for o in publish.outlets}
    assert "trading_results" in emitted
    assert "trading_results" in scheduled_on


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_files_import_nothing_heavy(dag_file):
    """Parse each DAG file in a fresh interpreter and list the heavy modules it pulled in."""
    code = (
        "import sys, json, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(DAGS / dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_orchestrator_on_the_exchange_schedule_parses_light_and_round_trips():
    """With the default schedule (the exchange's bars) and deadline: parsing and serialising the DAG
    the way the dag-processor does imports no heavy module (the calendar is loaded on the first
    schedule computation, in the scheduler), and the scheduler's copy has the timetable and the
    deadline alert back (their classes are found through the plugin)."""
    code = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        f"bag = DagBag({str(DAGS / 'trading_orchestrator.py')!r})\n"
        "data = DagSerialization.to_dict(bag.dags['trading_orchestrator'])\n"
        f"heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
        "scheduler_dag = DagSerialization.from_dict(data)\n"
        "from airflow.serialization.decoders import decode_deadline_alert\n"
        "alert = decode_deadline_alert(data['dag']['deadline'][0])\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'heavy': heavy,\n"
        "  'timetable': type(scheduler_dag.timetable).__name__, 'summary': scheduler_dag.timetable.summary,\n"
        "  'reference': type(alert.reference.inner_ref).__name__,\n"
        "  'minutes': alert.interval.total_seconds() / 60,\n"
        "  'callback': alert.callback.path}))\n"
    )
    env = {
        **os.environ,
        "TRADING_ORCHESTRATOR_SCHEDULE": "exchange",
        "TRADING_ORCHESTRATOR_DEADLINE_MINUTES": "20",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == [] and parsed["heavy"] == []
    assert parsed["timetable"] == "ExchangeBarTimetable" and parsed["summary"] == "XNYS bars"
    assert (parsed["reference"], parsed["minutes"]) == ("BarCloseOrQueuedAt", 20)
    assert parsed["callback"] == "trading_airflow.deadlines.record_late_run"
