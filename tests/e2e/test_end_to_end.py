"""End to end, through the REST API of a real local Airflow (PostgreSQL, api-server, scheduler,
dag-processor, triggerer; LocalExecutor): the same stack `make demo` starts, in a fresh home.

The tests run in order and share one Airflow: the whole pipeline, reprocessing one partition by
clearing it, reprocessing it by triggering analyze_symbol, invalid conf, and a FAIL validation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from airflow_rest import AirflowError
from demo import run_pipeline

from trading_lib import layout, pipeline
from trading_lib.analytics import compute_signals
from trading_lib.portfolio import build_portfolio_report
from trading_lib.storage import Storage
from trading_lib.store import BarStore

pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
CONTRACTS = 10
PARTITIONS_PER_CONTRACT = 24
QUIET_PERIOD = 8  # seconds without a new aggregation run before we call the count final


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e-data")
    pipeline.generate_inputs(Storage(str(root)), num_contracts=CONTRACTS)
    return root


@pytest.fixture(scope="module")
def airflow(running_airflow, data_root):
    with running_airflow("e2e", data_root) as instance:
        yield instance


@pytest.fixture(scope="module")
def client(airflow):
    return airflow.client()


@pytest.fixture(scope="module")
def first_run(airflow):
    return run_pipeline(airflow, {"num_contracts": CONTRACTS}, show_progress=False, timeout=900)


def _aggregation_runs(client) -> list[dict]:
    return client.dag_runs("aggregate_portfolio")


def _wait_for_new_aggregations(client, known: set[str], timeout: float = 120) -> list[dict]:
    """Wait until at least one new aggregation run finished and no other appeared for a while."""
    deadline = time.monotonic() + timeout
    last_change, seen = time.monotonic(), set()
    while time.monotonic() < deadline:
        new = [r for r in _aggregation_runs(client) if r["dag_run_id"] not in known]
        ids = {r["dag_run_id"] for r in new}
        if ids != seen:
            seen, last_change = ids, time.monotonic()
        done = new and all(r["state"] in ("success", "failed") for r in new)
        if done and time.monotonic() - last_change >= QUIET_PERIOD:
            return new
        time.sleep(1)
    raise TimeoutError(f"aggregation runs did not settle: {seen}")


def _symbol_runs(client, orchestrator_run_id: str) -> list[dict]:
    return [
        r for r in client.dag_runs("analyze_symbol") if r["dag_run_id"].startswith(f"{orchestrator_run_id}__")
    ]


def _result_files(data_root: Path) -> dict[str, tuple[bytes, int]]:
    """Every partition file (<YYYY-MM-DD>/<SEG>_<HHMMSS>.parquet; not the per-session roll-ups)."""
    results = data_root / layout.RESULTS_PREFIX
    return {
        str(p.relative_to(results)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in results.glob("*/*.parquet")
    }


def _run_files(data_root: Path) -> dict[str, bytes]:
    runs = data_root / layout.RUNS_PREFIX
    return {str(p.relative_to(runs)): p.read_bytes() for p in runs.rglob("*.json")} if runs.exists() else {}


def _task_log(client, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    from urllib.parse import quote

    body = client.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        "?full_content=true"
    )
    content = body.get("content", "")
    return content if isinstance(content, str) else "\n".join(str(line) for line in content)


def test_pipeline_runs_every_partition_and_aggregates_once(client, data_root, first_run):
    orchestrator = first_run["orchestrator"]
    assert orchestrator["state"] == "success"
    run_id = orchestrator["dag_run_id"]
    symbol_runs = _symbol_runs(client, run_id)
    assert len(symbol_runs) == CONTRACTS
    assert {r["state"] for r in symbol_runs} == {"success"}
    expected = CONTRACTS * PARTITIONS_PER_CONTRACT
    prefix = f"{run_id}__"
    assert client.count_task_instances("analyze_symbol", "analyze_partition", prefix) == expected
    assert client.count_task_instances("analyze_symbol", "analyze_partition", prefix, "success") == expected

    aggregations = _wait_for_new_aggregations(client, set())
    assert len(aggregations) == 1, (
        f"expected one aggregation run, got {[r['dag_run_id'] for r in aggregations]}"
    )
    assert aggregations[0]["state"] == "success"

    assert len(_result_files(data_root)) == expected

    # The files equal the vectorized computation, and the report equals the library's direct computation.
    storage = Storage(str(data_root))
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    bars = rows[~rows["symbol"].str.startswith("^")].rename(columns={"symbol": "contract"})
    direct = compute_signals(bars, rows[rows["symbol"] == "^GSPC"], rows[rows["symbol"] == "^VIX"])
    window = pipeline.resolve_window(storage)  # a manual run's default: the last 24 stored bars
    direct = direct[window.contains(direct["timestamp"])].reset_index(drop=True)
    keys = [f"{layout.RESULTS_PREFIX}/{key}" for key in _result_files(data_root)]
    written = storage.read_parquet_many(keys).sort_values(["contract", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, direct, check_exact=True)

    expected_partitions = direct[["contract", "timestamp"]]
    report = build_portfolio_report(direct, bars, expected_partitions).to_dict()
    stored = storage.read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    assert stored["summary"] == report["summary"]
    assert stored["contracts"] == report["contracts"]
    assert stored["summary"]["missing_partitions"] == 0
    # the run's own record and report, tied to the run that made them
    record = pipeline.read_run(storage, run_id)
    assert record["state"] == "success" and len(record["contracts"]) == CONTRACTS
    assert record["analyze_symbol_run_ids"] == [r for r in sorted(r["dag_run_id"] for r in symbol_runs)]
    run_report = storage.read_json(layout.run_key(run_id, pipeline.PORTFOLIO_REPORT))
    assert run_report["scope"]["run_id"] == run_id and run_report["summary"] == report["summary"]
    assert run_report["aggregation_run_id"] == aggregations[0]["dag_run_id"]


def test_clearing_one_mapped_instance_reprocesses_only_it(client, data_root, first_run):
    run_id = first_run["orchestrator"]["dag_run_id"]
    symbol_run = f"{run_id}__MSFT"
    instances = client.task_instances("analyze_symbol", symbol_run, "analyze_partition")
    target = next(ti for ti in instances if ti["map_index"] == 5)
    timestamp = target["rendered_map_index"].split(" ", 1)[1]
    key = layout.result_relative_key("MSFT", layout.parse_partition_timestamp(timestamp))
    before = _result_files(data_root)
    known = {r["dag_run_id"] for r in _aggregation_runs(client)}

    client.clear_mapped_instance("analyze_symbol", symbol_run, "analyze_partition", 5)
    assert client.wait_for_run("analyze_symbol", symbol_run, timeout=120)["state"] == "success"

    after_instances = client.task_instances("analyze_symbol", symbol_run, "analyze_partition")
    tries = {ti["map_index"]: ti["try_number"] for ti in after_instances}
    assert tries[5] == 2
    assert {i: t for i, t in tries.items() if i != 5} == {i: 1 for i in tries if i != 5}

    after = _result_files(data_root)
    assert after[key][0] == before[key][0], "the reprocessed partition must be rewritten with identical bytes"
    assert after[key][1] > before[key][1], "the partition file was not rewritten"
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}

    aggregations = _wait_for_new_aggregations(client, known)
    assert [r["state"] for r in aggregations] == ["success"]


def test_triggering_analyze_symbol_for_one_timestamp(client, data_root, first_run):
    storage = Storage(str(data_root))
    timestamp = pipeline.list_partitions(storage, "AAPL")[3]
    key = layout.result_relative_key("AAPL", layout.parse_partition_timestamp(timestamp))
    before = _result_files(data_root)
    known = {r["dag_run_id"] for r in _aggregation_runs(client)}

    run = client.trigger("analyze_symbol", {"contract": "AAPL", "timestamps": [timestamp]})
    assert client.wait_for_run("analyze_symbol", run["dag_run_id"], timeout=120)["state"] == "success"
    instances = client.task_instances("analyze_symbol", run["dag_run_id"], "analyze_partition")
    assert [ti["rendered_map_index"] for ti in instances] == [f"AAPL {timestamp}"]

    after = _result_files(data_root)
    assert after[key][0] == before[key][0] and after[key][1] > before[key][1]
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    assert [r["state"] for r in _wait_for_new_aggregations(client, known)] == ["success"]


@pytest.mark.parametrize(
    ("dag_id", "conf", "field"),
    [
        ("trading_orchestrator", {"num_contracts": 0}, "num_contracts"),
        ("trading_orchestrator", {"num_contracts": "ten"}, "num_contracts"),
        ("trading_orchestrator", {"ingestion_symbols": ["../x"]}, "ingestion_symbols"),
        ("analyze_symbol", {"contract": "A/B"}, "contract"),
        ("analyze_symbol", {}, "contract"),
        ("analyze_symbol", {"contract": "AAPL", "timestamps": ["garbage"]}, "timestamps"),
        (
            "trading_orchestrator",
            {"ingestion_start_date": "01/04/2026", "ingestion_end_date": "2026-01-09"},
            "ingestion_start_date",
        ),
        ("aggregate_portfolio", {"period_start": "2026-13-01"}, "period_start"),
    ],
)
def test_invalid_conf_is_rejected_at_trigger_time(client, first_run, dag_id, conf, field):
    with pytest.raises(AirflowError) as excinfo:
        client.trigger(dag_id, conf)
    assert excinfo.value.status == 400
    assert field in excinfo.value.body


@pytest.mark.parametrize(
    ("dag_id", "conf", "task_id", "message"),
    [
        ("trading_orchestrator", {"num_contracts": 11}, "check_request", "num_contracts=11"),
        (
            "trading_orchestrator",
            {"ingestion_start_date": "2024-02-01", "ingestion_end_date": "2024-01-01"},
            "check_request",
            "ingestion_start_date",
        ),
        ("analyze_symbol", {"contract": "ZZZZ"}, "list_partitions", "contract: 'ZZZZ' has no stored bar"),
        (
            "analyze_symbol",
            {"contract": "AAPL", "timestamp": "x"},
            "list_partitions",
            "unknown key(s) timestamp",
        ),
        ("trading_orchestrator", {"num_contract": 3}, "check_request", "unknown key(s) num_contract"),
        (
            "analyze_symbol",
            {"contract": "AAPL", "timestamps": ["2030-01-02T09:30:00-05:00"]},
            "list_partitions",
            "timestamps[0]",
        ),
    ],
)
def test_invalid_conf_fails_the_first_task_and_writes_nothing(
    client, data_root, first_run, dag_id, conf, task_id, message
):
    before, records = _result_files(data_root), _run_files(data_root)
    run = client.trigger(dag_id, conf)
    assert client.wait_for_run(dag_id, run["dag_run_id"], timeout=120)["state"] == "failed"
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances(dag_id, run["dag_run_id"])}
    assert states[task_id] == "failed"
    assert message in _task_log(client, dag_id, run["dag_run_id"], task_id)
    assert _result_files(data_root) == before
    assert _run_files(data_root) == records


def test_validation_failure_stops_the_pipeline(client, data_root, first_run):
    """Runs last: it revises the stored volumes of every contract's last session to zero, a dead
    feed, which fails validation (stale_feed). A revision to missing would not do (the store never
    lets a missing value replace a stored one), nor would a bar that breaks the data contract (the
    store refuses it)."""
    store = BarStore(Storage(str(data_root)))
    bars = store.read_sessions(store.sessions()[-1:])
    bars = bars[~bars["symbol"].str.startswith("^")]
    report = store.upsert(bars.assign(volume=0), "test: a dead feed")
    assert report.bars_revised == len(bars) > 0
    run = client.trigger("trading_orchestrator", {"num_contracts": 3})
    assert client.wait_for_run("trading_orchestrator", run["dag_run_id"], timeout=180)["state"] == "failed"
    states = {
        ti["task_id"]: ti["state"] for ti in client.task_instances("trading_orchestrator", run["dag_run_id"])
    }
    assert states["validate_data"] == "success"
    assert states["stop_on_validation_failure"] == "failed"
    assert states["select_contracts"] == "success"
    record = pipeline.read_run(Storage(str(data_root)), run["dag_run_id"])
    assert record["state"] == "failed" and record["validation"]["status"] == "FAIL"
    assert states["trigger_analyze_symbol"] == "skipped"
    assert "FAIL" in _task_log(
        client, "trading_orchestrator", run["dag_run_id"], "stop_on_validation_failure"
    )
    assert _symbol_runs(client, run["dag_run_id"]) == []
