"""make demo's path on a busy machine, with components that die: one real stack (PostgreSQL from the
wheel, api-server, scheduler, dag-processor, triggerer; LocalExecutor) started while three CPU-bound
processes keep the 2 cores busy, the pipeline triggered and followed the way `make demo` does
(scripts/demo.py's run_pipeline), and during the run each component SIGKILLed in turn. The
supervisor (scripts/processes.py) must restart each, the run must complete with every partition
once (none lost, none twice) and one aggregation, and the demo's output must name each restart.

One stack, several kills in one run: the economical way to cover all of them.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from demo import PARTITION_TASK, run_pipeline
from local_airflow import LocalAirflow, free_port
from processes import proc_info

from trading_lib import layout, pipeline
from trading_lib.storage import Storage

pytestmark = [pytest.mark.e2e, pytest.mark.airflow]
HOGS = 3  # CPU-bound processes beside the stack: load ~5 on 2 cores with the stack's own work
CONTRACTS = 4
PARTITIONS_PER_CONTRACT = 24
# In this order: those whose restart the run notices least first, so most kills land mid-run.
KILLS = ("dag-processor", "triggerer", "scheduler", "api-server", "postgres")
BOUND = 900  # seconds: a bound for the test only (make demo waits as long as it takes)
QUIET_PERIOD = 10  # seconds without a new aggregation run before the count is final


@pytest.fixture
def hogs():
    processes = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(HOGS)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _wait(predicate, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def test_the_demo_path_survives_a_busy_machine_and_killed_components(stack_home, hogs):
    root = stack_home("supervision")
    data_root = root / "data"
    storage = Storage(str(data_root))
    pipeline.generate_inputs(storage, num_contracts=CONTRACTS)
    airflow = LocalAirflow(root / "home", free_port(), str(data_root))
    try:
        started = time.monotonic()
        airflow.start(timeout=BOUND, progress=print)
        print(f"\nstack healthy after {time.monotonic() - started:.0f} s beside {HOGS} hogs")
        client = airflow.client()

        out, outcome = io.StringIO(), {}

        def follow():
            try:
                outcome["value"] = run_pipeline(
                    airflow, {"num_contracts": CONTRACTS}, show_progress=True, timeout=2 * BOUND, out=out
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                outcome["error"] = exc

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()

        def first_partition_done():
            runs = [r for r in client.dag_runs("trading_orchestrator") if r["state"] == "running"]
            if not runs:
                return None
            prefix = f"{runs[0]['dag_run_id']}__"
            return client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix, state="success")

        _wait(first_partition_done, BOUND, "the first finished partition", poll=1)
        mid_run = {}
        for component in KILLS:
            record = airflow.component_states()[component]
            before = record["restarts"]
            mid_run[component] = follower.is_alive()
            os.kill(record["pid"], signal.SIGKILL)
            killed = time.monotonic()
            _wait(
                lambda c=component, n=before: (
                    airflow.component_states()[c]["restarts"] > n and airflow._alive(c)
                ),
                300,
                f"{component}'s restart",
            )
            took = time.monotonic() - killed
            print(f"{component} killed -> restarted in {took:.1f} s (mid-run: {mid_run[component]})")
        _wait(airflow.healthy, 300, "the stack healthy again after the kills")

        follower.join(timeout=2 * BOUND)
        assert not follower.is_alive(), "the pipeline run did not end"
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["value"]
        text = out.getvalue()
        print(text[-3000:])
        load = os.getloadavg()[0]
        print(f"1-min load average at the end: {load:.1f}; mid-run kills: {mid_run}")

        assert result["orchestrator"]["state"] == "success", text[-3000:]
        assert result["aggregation"]["state"] == "success", text[-3000:]
        assert mid_run["dag-processor"], "the first kill must land while the run is going on"
        run_id = result["orchestrator"]["dag_run_id"]

        # every partition once: its task instance succeeded, its file written, none twice
        expected = CONTRACTS * PARTITIONS_PER_CONTRACT
        prefix = f"{run_id}__"
        assert client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix) == expected
        assert client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix, "success") == expected
        results = data_root / layout.RESULTS_PREFIX
        files = sorted(p.relative_to(results) for p in results.glob("*/*.parquet"))
        assert len(files) == len(set(files)) == expected
        run_report = storage.read_json(layout.run_key(run_id, pipeline.PORTFOLIO_REPORT))
        partitions = [(p["contract"], p["timestamp"]) for p in run_report["partitions"]]
        assert len(partitions) == len(set(partitions)) == expected
        assert run_report["summary"]["missing_partitions"] == 0

        # one aggregation
        time.sleep(QUIET_PERIOD)
        aggregations = client.dag_runs("aggregate_portfolio")
        assert [r["dag_run_id"] for r in aggregations] == [result["aggregation"]["dag_run_id"]]

        # each component was restarted by the supervisor, and the demo's output said so
        states = airflow.component_states()
        assert all(states[c]["restarts"] >= 1 for c in KILLS), states
        assert airflow.failure() is None
        for component in KILLS:
            assert f"stack: {component} exited (code -9)" in text, component
        assert all(proc_info(h.pid) is not None and h.poll() is None for h in hogs), "the hogs ran throughout"
    finally:
        airflow.stop()
