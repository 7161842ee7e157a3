"""The whole pipeline with its data root on a real S3 server (SeaweedFS on loopback).

- the CLI / pod path: ``python -m trading_lib --data-root s3://...`` with the standard AWS_* env;
- the Airflow path: analyze_symbol and aggregate_portfolio with ``dag.test()``, credentials from an
  Airflow connection given by environment (AIRFLOW_CONN_*), in a subprocess (tests/s3/run_dag.py)
  because Airflow reads that environment at import; aggregate_portfolio consumes the asset event
  trading_orchestrator emits and reports on the run it names (its run record);
- an S3 outage while partitions run, survived by the task's retries;
- wrong credentials in the connection: a clear error naming the connection id.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from s3.conftest import seaweedfs_fixture, seaweedfs_private_fixture  # noqa: F401 - fixtures
from s3.run_dag import RESULT_PREFIX

from trading_lib import layout, pipeline
from trading_lib.storage import Storage
from trading_lib.store import BarStore

pytestmark = [pytest.mark.s3, pytest.mark.airflow]

PROJECT = Path(__file__).resolve().parents[2]
RUN_DAG = PROJECT / "tests" / "s3" / "run_dag.py"
VENV_BIN = Path(sys.executable).parent
CONTRACTS = ["AAPL", "MSFT", "GOOGL"]
RUN_ID = "s3-pipeline-run"
# The analytics modules of trading_lib are written in parallel with these tests.
needs_analytics = pytest.mark.skipif(
    any(
        importlib.util.find_spec(f"trading_lib.{m}") is None
        for m in ("analytics", "sample_data", "portfolio")
    ),
    reason="trading_lib.analytics / sample_data / portfolio not there yet",
)


# -- helpers --------------------------------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    """The environment without this test process's Airflow, AWS and trading settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "TRADING_"))}


def _cli(server, data_root: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "trading_lib", "--data-root", data_root, *args],
        env=_clean_env() | server.aws_env(),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """An Airflow home of this module with a migrated SQLite metadata DB."""
    home = tmp_path_factory.mktemp("airflow_home")
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=_airflow_env(home, {}),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return home


def _airflow_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    return (
        _clean_env()
        | {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "TRADING_ORCHESTRATOR_SCHEDULE": "none",
            "TRADING_EXECUTION_MODE": "local",
        }
        | extra
    )


def _s3_env(server, data_root: str, conn_id: str = "aws_default", **connection) -> dict[str, str]:
    env = {
        "TRADING_DATA_ROOT": data_root,
        f"AIRFLOW_CONN_{conn_id.upper()}": server.airflow_connection(**connection),
    }
    if conn_id != "aws_default":
        env["TRADING_AWS_CONN_ID"] = conn_id
    return env


def _runner(home: Path, env: dict[str, str], runs: list[tuple[str, dict]]) -> subprocess.Popen:
    """tests/s3/run_dag.py running ``runs``; its output goes to a file (a pipe would fill up and block)."""
    log = tempfile.NamedTemporaryFile(prefix="run_dag-", suffix=".log", dir=home, delete=False)  # noqa: SIM115
    runner = subprocess.Popen(
        [sys.executable, str(RUN_DAG), json.dumps(runs)],
        env=_airflow_env(home, env),
        cwd=PROJECT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    runner.log_path = Path(log.name)
    return runner


def _results(runner: subprocess.Popen, timeout: float = 900) -> tuple[list[dict], str]:
    runner.wait(timeout)
    output = runner.log_path.read_text(errors="replace")
    assert runner.returncode == 0, output[-6000:]
    results = [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in output.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    return results, output


def _run_dags(home: Path, env: dict[str, str], runs: list[tuple[str, dict]]) -> tuple[list[dict], str]:
    return _results(_runner(home, env, runs))


def _states(result: dict, task_id: str) -> list[str]:
    return [ti["state"] for ti in result["task_instances"] if ti["task_id"] == task_id]


def _s3_storage(server, data_root: str) -> Storage:
    return Storage(data_root, **server.storage_options())


def _local_copy(s3: Storage, folder: Path) -> Storage:
    """The bar store of ``s3`` (its Delta table: the log and every data file) copied into a local
    data root."""
    local = Storage(str(folder))
    keys = s3.list_keys(layout.BARS_PREFIX)
    assert keys, f"no bars under {s3.url(layout.BARS_PREFIX)}"
    for key in keys:
        local.write_bytes(key, s3.read_bytes(key))
    assert BarStore(local).sessions() == BarStore(s3).sessions()
    return local


def _is_partition(key: str) -> bool:
    """output/trading-results/<YYYY-MM-DD>/<SEG>_<HHMMSS>.parquet, not a session roll-up beside it."""
    return key.startswith(layout.RESULTS_PREFIX + "/") and key.count("/") == 3 and key.endswith(".parquet")


def _partitions(files: dict[str, bytes]) -> dict[str, bytes]:
    return {key: data for key, data in files.items() if _is_partition(key)}


def _local_files(local: Storage, prefix: str) -> dict[str, bytes]:
    return {key: local.read_bytes(key) for key in local.list_keys(prefix)}


def _expected_partitions(local: Storage, contracts: list[str], window=None) -> dict[str, bytes]:
    """Every partition file of ``contracts`` in ``window`` (default: the last 24 stored bars)
    computed locally by trading_lib: key -> bytes."""
    window = window or pipeline.resolve_window(local)
    expected = {}
    for contract in contracts:
        timestamps = pipeline.list_partitions(local, contract, window=window)
        for item in pipeline.analyze_partition(local, contract, timestamps):
            expected[item["key"]] = local.read_bytes(item["key"])
    return expected


def _stored(server, data_root: str, prefix: str) -> dict[str, bytes]:
    """Objects under ``<data root>/<prefix>``, keyed like Storage keys."""
    root = data_root.removeprefix(f"s3://{server.bucket}/")
    return {key.removeprefix(root + "/"): data for key, data in server.objects(f"{root}/{prefix}/").items()}


def _without_run_details(report: dict) -> dict:
    """A report or run record without what differs between two runs of the same computation:
    when it was produced or updated, and the Airflow run that produced it."""
    report = json.loads(json.dumps(report))
    # and the versions of the two data roots' own tables (each root counts its own commits)
    for key in ("produced_at", "aggregation_run_id", "created_at", "updated_at", "report", "versions"):
        report.pop(key, None)
    return report


def _assert_same_rollups(s3: Storage, local: Storage) -> None:
    """The per-session roll-ups hold the same rows. (Not the same bytes: a roll-up records the
    listing it was built from, and S3 modification times are not local ones.)"""

    def rollups(storage: Storage) -> list[str]:  # not the results table's files (results_history)
        history = f"{layout.RESULTS_PREFIX}/_history/"
        keys = storage.list_keys(layout.RESULTS_PREFIX, suffix=".parquet")
        return [k for k in keys if not _is_partition(k) and not k.startswith(history)]

    keys = rollups(local)
    assert keys, "no per-session roll-up was written"
    assert rollups(s3) == keys
    for key in keys:
        pd.testing.assert_frame_equal(s3.read_parquet(key), local.read_parquet(key), check_exact=True)


# -- the CLI / pod path -----------------------------------------------------------------------------
@needs_analytics
def test_cli_pipeline_on_s3_writes_what_a_local_run_writes(seaweedfs, tmp_path):
    data_root = f"s3://{seaweedfs.bucket}/{seaweedfs.new_prefix()}"
    _cli(seaweedfs, data_root, "generate")
    summary = _cli(seaweedfs, data_root, "run", "--contracts", "3", "--run-id", RUN_ID)

    s3 = _s3_storage(seaweedfs, data_root)
    local = _local_copy(s3, tmp_path / "local")
    local_summary = _cli(seaweedfs, str(tmp_path / "local"), "run", "--contracts", "3", "--run-id", RUN_ID)
    record = pipeline.read_run(s3, RUN_ID)
    assert record["state"] == "success" and record["validation"]["status"] == "PASS"
    contracts = record["contracts"]
    assert len(contracts) == 3
    assert _without_run_details(record) == _without_run_details(pipeline.read_run(local, RUN_ID))

    partitions = _partitions(_stored(seaweedfs, data_root, layout.RESULTS_PREFIX))
    expected = _partitions(_local_files(local, layout.RESULTS_PREFIX))
    assert {layout.parse_result_name(key) for key in expected} == set(contracts)
    assert len(expected) == 3 * pipeline.DEFAULT_WINDOW_BARS
    assert partitions == expected  # every partition, once, byte for byte
    _assert_same_rollups(s3, local)

    for prefix in (layout.REPORTS_PREFIX, layout.RUNS_PREFIX):
        assert sorted(_stored(seaweedfs, data_root, prefix)) == local.list_keys(prefix)
    for key in (
        layout.report_key(pipeline.PORTFOLIO_REPORT),
        layout.report_key(pipeline.VALIDATION_REPORT),
        layout.run_key(RUN_ID, pipeline.PORTFOLIO_REPORT),
        layout.run_key(RUN_ID, pipeline.VALIDATION_REPORT),
    ):
        assert _without_run_details(s3.read_json(key)) == _without_run_details(local.read_json(key)), key
    run_report = s3.read_json(layout.run_key(RUN_ID, pipeline.PORTFOLIO_REPORT))
    assert run_report["scope"]["run_id"] == RUN_ID and run_report["scope"]["contracts"] == contracts
    assert run_report["missing_partitions"] == []
    assert run_report["summary"]["partitions"] == len(expected)
    assert summary["report"] == layout.report_key(pipeline.PORTFOLIO_REPORT)
    assert summary["runs"] == {
        RUN_ID: {"missing_partitions": [], "total_pnl": run_report["summary"]["total_pnl"]}
    }
    assert _without_run_details(summary) == _without_run_details(local_summary)


# -- the Airflow path ---------------------------------------------------------------------------------
@needs_analytics
def test_dags_on_s3_write_every_partition_and_the_portfolio_of_a_direct_computation(
    seaweedfs, airflow_home, tmp_path
):
    data_root = f"s3://{seaweedfs.bucket}/{seaweedfs.new_prefix()}"
    _cli(seaweedfs, data_root, "generate", "--contracts", "4")
    s3 = _s3_storage(seaweedfs, data_root)
    window = pipeline.resolve_window(s3)
    # What trading_orchestrator records (select_contracts) and asks of each analyze_symbol run,
    # and the event its publish_results emits: the run aggregate_portfolio reports on.
    scope = {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}
    run = {"contracts": CONTRACTS, **scope}
    pipeline.record_run(s3, RUN_ID, dag_id="trading_orchestrator", **run, state="success")
    event = {"source": "trading_orchestrator", "orchestrator_run_id": RUN_ID, "contracts": len(CONTRACTS)}

    runs = [("analyze_symbol", {"contract": c, **scope, "orchestrator_run_id": RUN_ID}) for c in CONTRACTS]
    runs.append(("aggregate_portfolio", {}, {"asset_events": [event]}))
    results, output = _run_dags(airflow_home, _s3_env(seaweedfs, data_root), runs)
    assert [r["state"] for r in results] == ["success"] * 4, output[-6000:]
    assert f"orchestrator runs: ['{RUN_ID}']" in output

    local = _local_copy(s3, tmp_path / "local")
    expected = _expected_partitions(local, CONTRACTS, window)
    assert len(expected) == len(CONTRACTS) * pipeline.DEFAULT_WINDOW_BARS
    stored = _stored(seaweedfs, data_root, layout.RESULTS_PREFIX)
    assert _partitions(stored) == expected  # each once, identical bytes
    for result, contract in zip(results, CONTRACTS, strict=False):
        count = len([k for k in expected if layout.parse_result_name(k) == contract])
        assert _states(result, "analyze_partition") == ["success"] * count

    pipeline.record_run(local, RUN_ID, dag_id="trading_orchestrator", **run, state="success")
    direct = pipeline.aggregate(local, run_ids=[RUN_ID])
    _assert_same_rollups(s3, local)
    portfolio = s3.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    assert portfolio["aggregation_run_id"] == results[-1]["run_id"]
    assert portfolio["scope"]["runs"] == [RUN_ID]
    assert _without_run_details(portfolio) == _without_run_details(
        local.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    )
    assert portfolio["summary"] | {"report": direct["report"]} == {
        k: v
        for k, v in direct.items()
        if k not in ("period_start", "period_end", "runs", "missing", "versions")
    }
    run_report = s3.read_json(layout.run_key(RUN_ID, pipeline.PORTFOLIO_REPORT))
    assert run_report["scope"]["contracts"] == CONTRACTS and run_report["missing_partitions"] == []
    assert run_report["summary"]["partitions"] == len(expected)
    assert _without_run_details(run_report) == _without_run_details(
        local.read_json(layout.run_key(RUN_ID, pipeline.PORTFOLIO_REPORT))
    )


@needs_analytics
def test_partitions_survive_an_s3_outage_through_task_retries(seaweedfs_private, airflow_home, tmp_path):
    server = seaweedfs_private
    data_root = f"s3://{server.bucket}/{server.new_prefix()}"
    _cli(server, data_root, "generate", "--contracts", "1")
    s3 = _s3_storage(server, data_root)
    local = _local_copy(s3, tmp_path / "local")
    expected = _expected_partitions(local, ["AAPL"])

    # One attempt per S3 call: the outage fails the task, and the task's retry must heal it.
    env = _s3_env(server, data_root) | {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            json.loads(server.airflow_connection())
            | {
                "extra": {
                    "endpoint_url": server.endpoint,
                    "region_name": "us-east-1",
                    "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
                }
            }
        )
    }
    runner = _runner(airflow_home, env, [("analyze_symbol", {"contract": "AAPL"})])
    try:
        deadline = time.monotonic() + 300
        while len(_partitions(_stored(server, data_root, layout.RESULTS_PREFIX))) < 2:
            assert runner.poll() is None, runner.log_path.read_text(errors="replace")[-6000:]
            assert time.monotonic() < deadline, "no partition was written"
            time.sleep(0.1)
        written_before = len(_partitions(_stored(server, data_root, layout.RESULTS_PREFIX)))
        server.kill()
        time.sleep(4)
        server.start()  # same ports, same data folder
        (result,), output = _results(runner)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert written_before < len(expected), "the outage came after the last partition"
    assert result["state"] == "success", output[-6000:]
    retried = [
        ti for ti in result["task_instances"] if ti["task_id"] == "analyze_partition" and ti["try_number"] > 1
    ]
    assert retried, "no partition task was retried: the outage was not seen"
    assert _states(result, "analyze_partition") == ["success"] * len(expected)
    assert _stored(server, data_root, layout.RESULTS_PREFIX) == expected  # nothing lost, nothing twice


# -- wrong credentials ------------------------------------------------------------------------------
def test_wrong_credentials_in_the_connection_fail_naming_the_connection(seaweedfs, airflow_home):
    data_root = f"s3://{seaweedfs.bucket}/{seaweedfs.new_prefix()}"
    env = _s3_env(seaweedfs, data_root, conn_id="trading_s3", login="no-such-key")
    (result,), output = _run_dags(airflow_home, env, [("analyze_symbol", {"contract": "AAPL"})])

    assert result["state"] == "failed"
    assert _states(result, "list_partitions") == ["failed"]
    assert f"S3 connection 'trading_s3' was refused by {seaweedfs.endpoint}" in output, output[-4000:]
    assert "InvalidAccessKeyId" in output
    assert seaweedfs.objects(data_root.removeprefix(f"s3://{seaweedfs.bucket}/")) == {}
