"""End to end on the Celery stack (`make demo STACK=celery`): PostgreSQL, Redis, SeaweedFS (the
s3:// data root, through the Airflow connection), api-server, scheduler, dag-processor, triggerer and
two Celery workers, all real processes (scripts/celery_stack.py), driven through the REST API.

The tests run in order and share one stack: the whole pipeline (the same assertions as the SQLite
stack's test_end_to_end.py), the partitions spread over both workers, results byte-identical to the
SQLite + local-disk path on the same input, reprocessing one partition by clearing it, invalid conf,
and last a run during which one worker's whole process tree is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from airflow_rest import AirflowError
from celery_stack import WORKERS, CeleryAirflow
from demo import PARTITION_TASK, run_pipeline
from install_stack_tools import missing_packages
from local_airflow import LocalAirflow, free_port
from processes import listening_inodes, proc_info
from test_end_to_end import _symbol_runs, _task_log, _wait_for_new_aggregations

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
CONTRACTS = 4  # 96 partitions: both workers, every mechanism; 240 run on the local stack
PARTITIONS_PER_CONTRACT = 24
KILL_RUN_CONTRACTS = 2  # the worker-kill run: fewer partitions, same mechanics
RUN_DAG = PROJECT / "tests" / "s3" / "run_dag.py"  # dag.test() of a list of runs in a fresh process
# What an aggregation writes that names its run or its time, or the table versions of its own data
# root (the rest of the period report depends only on the stored bars and partition results).
RUN_SPECIFIC = ("produced_at", "aggregation_run_id", "versions")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = missing_packages()
    if missing:
        pytest.skip(f"the Celery stack needs {', '.join(missing)} (scripts/install_stack_tools.py)")
    # PostgreSQL runs as the postgres user with its data under the home, so every folder above the
    # home must let it through. pytest's own root (/tmp/pytest-of-<user>) is 0700 and pytest resets
    # it to 0700 on purpose, so the home is a folder of its own in the system temp folder.
    home = Path(tempfile.mkdtemp(prefix="celery-stack-"))
    home.chmod(0o711)  # traverse only, no listing
    instance = CeleryAirflow(home, free_port())
    try:
        instance.start(timeout=600)
        yield instance
    finally:
        instance.stop()
        still_listening = [p for p in instance.all_ports if _listening(p)]
        shutil.rmtree(home, ignore_errors=True)
        assert still_listening == [], f"ports still listening after stop: {still_listening}"


def _listening(port: int) -> bool:
    return bool(listening_inodes(port))


@pytest.fixture(scope="module")
def storage(stack) -> Storage:
    return stack.storage()


@pytest.fixture(scope="module")
def client(stack):
    return stack.client()


@pytest.fixture(scope="module")
def first_run(stack, storage):
    pipeline.generate_inputs(storage, num_contracts=CONTRACTS)
    return run_pipeline(stack, {"num_contracts": CONTRACTS}, show_progress=False, timeout=2400)


@pytest.fixture(scope="module")
def first_outputs(first_run, storage, client) -> dict[str, bytes]:
    """The partition files and the period report right after the first run (later tests rewrite
    them)."""
    _wait_for_new_aggregations(client, set())
    return {**_outputs(storage), "period report": _period_report(storage)}


def _outputs(storage: Storage) -> dict[str, bytes]:
    """Every partition file (<YYYY-MM-DD>/<SEG>_<HHMMSS>.parquet; not the per-session roll-ups,
    which are caches) with its bytes."""
    storage.fs.invalidate_cache()
    keys = [k for k in storage.list_keys(layout.RESULTS_PREFIX, suffix=".parquet") if k.count("/") == 3]
    return {key: storage.read_bytes(key) for key in keys}


def _period_report(storage: Storage) -> dict:
    """The cumulative portfolio report without what names the aggregation run and its time."""
    report = storage.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    for key in RUN_SPECIFIC:
        report.pop(key)
    report["scope"].pop("runs")
    return report


def _partitions(client, run_prefix: str) -> list[dict]:
    instances = []
    for run in client.dag_runs("analyze_symbol"):
        if run["dag_run_id"].startswith(run_prefix):
            instances += client.task_instances("analyze_symbol", run["dag_run_id"], PARTITION_TASK)
    return instances


def test_pipeline_runs_every_partition_and_aggregates_once(client, storage, first_run, first_outputs):
    orchestrator = first_run["orchestrator"]
    assert orchestrator["state"] == "success"
    run_id = orchestrator["dag_run_id"]
    symbol_runs = _symbol_runs(client, run_id)
    assert len(symbol_runs) == CONTRACTS
    assert {r["state"] for r in symbol_runs} == {"success"}
    expected = CONTRACTS * PARTITIONS_PER_CONTRACT
    prefix = f"{run_id}__"
    assert client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix) == expected
    assert client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix, "success") == expected

    aggregations = client.dag_runs("aggregate_portfolio")
    assert len(aggregations) == 1, (
        f"expected one aggregation run, got {[r['dag_run_id'] for r in aggregations]}"
    )
    assert aggregations[0]["state"] == "success"

    assert len(_outputs(storage)) == expected
    record = pipeline.read_run(storage, run_id)
    assert record["state"] == "success" and len(record["contracts"]) == CONTRACTS
    run_report = storage.read_json(layout.run_key(run_id, pipeline.PORTFOLIO_REPORT))
    assert run_report["summary"]["partitions"] == expected
    assert run_report["summary"]["missing_partitions"] == 0
    assert run_report["aggregation_run_id"] == aggregations[0]["dag_run_id"]


def test_partitions_ran_on_both_workers(client, first_run):
    instances = _partitions(client, f"{first_run['orchestrator']['dag_run_id']}__")
    per_worker = {worker: sum(ti["hostname"] == worker for ti in instances) for worker in WORKERS}
    print(f"partitions per worker: {per_worker}")
    assert sum(per_worker.values()) == CONTRACTS * PARTITIONS_PER_CONTRACT, per_worker
    assert all(count > 0 for count in per_worker.values()), per_worker


def test_results_are_byte_identical_to_the_sqlite_local_disk_path(
    client, first_run, first_outputs, tmp_path_factory
):
    """The same input and the same analyze_symbol confs through the SQLite stack's `dags test`
    (make dags-test: in-process tasks, SQLite, a local folder), then the cumulative aggregation."""
    local_root = tmp_path_factory.mktemp("sqlite-reference-data")
    pipeline.generate_inputs(Storage(str(local_root)), num_contracts=CONTRACTS)
    symbol_runs = _symbol_runs(client, first_run["orchestrator"]["dag_run_id"])
    runs = [["analyze_symbol", run["conf"]] for run in symbol_runs] + [["aggregate_portfolio", {}]]
    reference = LocalAirflow(
        tmp_path_factory.mktemp("sqlite-reference"), free_port(), str(local_root), db="sqlite"
    )
    isolated = reference.prepare_isolated()
    result = subprocess.run(
        [sys.executable, str(RUN_DAG), json.dumps(runs)],
        env=isolated.env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    states = [
        json.loads(line.split(" ", 1)[1])["state"]
        for line in result.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert states == ["success"] * len(runs)

    local = _outputs(Storage(str(local_root)))
    celery = {k: v for k, v in first_outputs.items() if k != "period report"}
    assert len(local) == CONTRACTS * PARTITIONS_PER_CONTRACT
    assert sorted(local) == sorted(celery)
    differing = sorted(key for key in local if local[key] != celery[key])
    assert differing == [], f"{len(differing)} partition file(s) differ, e.g. {differing[:5]}"
    assert _period_report(Storage(str(local_root))) == first_outputs["period report"]


def test_clearing_one_mapped_instance_reprocesses_only_it(client, storage, first_run, first_outputs):
    run_id = first_run["orchestrator"]["dag_run_id"]
    symbol_run = f"{run_id}__MSFT"
    instances = client.task_instances("analyze_symbol", symbol_run, PARTITION_TASK)
    target = next(ti for ti in instances if ti["map_index"] == 5)
    timestamp = target["rendered_map_index"].split(" ", 1)[1]
    key = f"{layout.RESULTS_PREFIX}/" + layout.result_relative_key(
        "MSFT", layout.parse_partition_timestamp(timestamp)
    )
    modified_before = storage.fs.info(storage.path(key))["LastModified"]
    known = {r["dag_run_id"] for r in client.dag_runs("aggregate_portfolio")}

    client.clear_mapped_instance("analyze_symbol", symbol_run, PARTITION_TASK, 5)
    assert client.wait_for_run("analyze_symbol", symbol_run, timeout=900)["state"] == "success"

    tries = {
        ti["map_index"]: ti["try_number"]
        for ti in client.task_instances("analyze_symbol", symbol_run, PARTITION_TASK)
    }
    assert tries[5] == 2
    assert {i: t for i, t in tries.items() if i != 5} == {i: 1 for i in tries if i != 5}
    storage.fs.invalidate_cache()
    assert storage.fs.info(storage.path(key))["LastModified"] > modified_before, "not rewritten"
    assert storage.read_bytes(key) == first_outputs[key], "rewritten with other bytes"
    aggregations = _wait_for_new_aggregations(client, known, timeout=900)
    assert [r["state"] for r in aggregations] == ["success"]


def test_invalid_conf_is_rejected_at_trigger_time(client, first_run):
    with pytest.raises(AirflowError) as excinfo:
        client.trigger("trading_orchestrator", {"num_contracts": 0})
    assert excinfo.value.status == 400 and "num_contracts" in excinfo.value.body


def test_invalid_conf_fails_the_first_task_and_writes_nothing(client, storage, first_run):
    before = _outputs(storage)
    run = client.trigger("analyze_symbol", {"contract": "ZZZZ"})
    assert client.wait_for_run("analyze_symbol", run["dag_run_id"], timeout=900)["state"] == "failed"
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances("analyze_symbol", run["dag_run_id"])}
    assert states["list_partitions"] == "failed"
    # The task log, served by the api-server, of a task a Celery worker ran.
    assert "contract: 'ZZZZ' has no stored bar" in _task_log(
        client, "analyze_symbol", run["dag_run_id"], "list_partitions"
    )
    assert _outputs(storage) == before


def test_killing_a_worker_mid_run_loses_and_duplicates_nothing(stack, client, storage, first_outputs):
    """Runs last. SIGKILL one worker's process tree (its Celery main process, pool and task
    processes) while it runs partitions: its tasks miss their heartbeats, the scheduler fails them
    after the heartbeat timeout, and their retries run on the other worker or on the killed one,
    which the stack's supervisor starts again."""
    known = {r["dag_run_id"] for r in client.dag_runs("aggregate_portfolio")}
    run = client.trigger("trading_orchestrator", {"num_contracts": KILL_RUN_CONTRACTS})
    run_id = run["dag_run_id"]
    victim = WORKERS[1]
    restarts = stack.component_states()[victim]["restarts"]
    deadline = time.monotonic() + 900
    while True:  # until the victim is running partitions of this run
        running = [
            ti
            for ti in _partitions(client, f"{run_id}__")
            if ti["state"] == "running" and ti["hostname"] == victim
        ]
        if running:
            break
        assert time.monotonic() < deadline, f"{victim} never ran a partition of {run_id}"
        time.sleep(0.5)
    tree = stack.worker_processes(victim)
    assert len(tree) > 2, "expected the worker's main process, its pool and task processes"
    for info in tree:
        os.kill(info.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    final = client.wait_for_run("trading_orchestrator", run_id, timeout=1800)
    print(f"pipeline finished {time.monotonic() - killed_at:.0f} s after the kill")
    assert final["state"] == "success"
    assert all(proc_info(p.pid) is None or proc_info(p.pid).start != p.start for p in tree)
    assert stack.component_states()[victim]["restarts"] == restarts + 1, stack.events()
    instances = _partitions(client, f"{run_id}__")
    expected = KILL_RUN_CONTRACTS * PARTITIONS_PER_CONTRACT
    labels = [ti["rendered_map_index"] for ti in instances]
    assert len(labels) == len(set(labels)) == expected, "a partition is missing or doubled"
    assert {ti["state"] for ti in instances} == {"success"}
    retried = [ti for ti in instances if ti["try_number"] > 1]
    assert retried, "no partition was retried: the kill hit nothing"
    assert {ti["hostname"] for ti in retried} <= set(WORKERS)
    where = sorted(ti["hostname"] for ti in retried)
    print(f"{len(retried)} partition(s) retried after {victim} was killed (on {where}); it was restarted")

    # Nothing lost or doubled in storage: the same files, the same bytes, the run's report whole.
    after = _outputs(storage)
    assert sorted(after) == sorted(k for k in first_outputs if k != "period report")
    assert [k for k in after if after[k] != first_outputs[k]] == []
    aggregations = _wait_for_new_aggregations(client, known, timeout=900)
    assert [r["state"] for r in aggregations] == ["success"]
    report = storage.read_json(layout.run_key(run_id, pipeline.PORTFOLIO_REPORT))
    assert report["summary"]["partitions"] == expected
    assert report["summary"]["missing_partitions"] == 0
