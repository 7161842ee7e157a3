"""Task heartbeat timeout on a busy machine: false failures against recovery time.

    python bench/bench_heartbeat.py [--timeouts 20,60] [--contracts 10] [--hogs 3]

For each `[scheduler] task_instance_heartbeat_timeout`, a fresh `make demo` stack (PostgreSQL,
LocalExecutor) beside ``--hogs`` CPU-bound processes runs the pipeline once with nothing killed,
and counts the task instances that needed more than one try (a live task failed for a missed
heartbeat comes back as try 2; the pipeline's tasks have no other reason to fail on sample data),
with the 1-min load average; then it SIGKILLs one running partition's supervisor and task process
(a dead worker) and measures the time to that task's `up_for_retry` and success. The figures go
into docs/local-airflow.md (Task heartbeats on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "scripts"))

from demo import PARTITION_TASK, run_pipeline  # noqa: E402
from local_airflow import LocalAirflow, free_port  # noqa: E402
from processes import processes  # noqa: E402


def retried(client, dag_ids: list[str]) -> list[tuple[str, str, int, int]]:
    """(dag, task, map index, try) of every task instance that ran more than once."""
    found = []
    for dag_id in dag_ids:
        for run in client.dag_runs(dag_id):
            for ti in client.task_instances(dag_id, run["dag_run_id"]):
                if ti["try_number"] > 1:
                    found.append((dag_id, ti["task_id"], ti["map_index"], ti["try_number"]))
    return found


def kill_one_partition(client, run_prefix: str) -> dict:
    """SIGKILL the supervisor and task process of one running partition; time its recovery."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for run in client.dag_runs("analyze_symbol", state="running"):
            if not run["dag_run_id"].startswith(run_prefix):
                continue
            for ti in client.task_instances("analyze_symbol", run["dag_run_id"], PARTITION_TASK, "running"):
                victims = [p for p in processes() if ti["id"] in p.cmdline]
                if not victims:
                    continue
                for p in sorted(victims, key=lambda p: "LocalExecutor" not in p.cmdline):
                    os.kill(p.pid, signal.SIGKILL)
                killed, retry_at = time.monotonic(), None
                while time.monotonic() - killed < 900:
                    current = [
                        t
                        for t in client.task_instances("analyze_symbol", run["dag_run_id"], PARTITION_TASK)
                        if t["map_index"] == ti["map_index"]
                    ][0]
                    if retry_at is None and (current["state"] == "up_for_retry" or current["try_number"] > 1):
                        retry_at = time.monotonic() - killed
                    if current["state"] == "success":
                        return {"up_for_retry_s": retry_at, "success_s": round(time.monotonic() - killed, 1)}
                    time.sleep(0.5)
                raise TimeoutError("the killed partition did not recover")
        time.sleep(0.5)
    raise TimeoutError("no running partition to kill")


def measure(timeout: int, contracts: int, hogs: int) -> dict:
    from trading_lib import pipeline
    from trading_lib.storage import Storage

    with tempfile.TemporaryDirectory(prefix="bench-heartbeat-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # PostgreSQL's user reaches its data under the home
        pipeline.generate_inputs(Storage(str(root / "data")), num_contracts=contracts)
        airflow = LocalAirflow(
            root / "home",
            free_port(),
            str(root / "data"),
            {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(timeout)},
        )
        hog_processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
        try:
            airflow.start(progress=print)
            client = airflow.client()
            loads = [os.getloadavg()[0]]
            outcome = run_pipeline(airflow, {"num_contracts": contracts}, show_progress=False)
            loads.append(os.getloadavg()[0])
            dags = ["trading_orchestrator", "analyze_symbol", "aggregate_portfolio"]
            false_failures = retried(client, dags)
            # the recovery run: the same pipeline, one partition's worker killed
            run = client.trigger("trading_orchestrator", {"num_contracts": contracts})
            recovery = kill_one_partition(client, f"{run['dag_run_id']}__")
            client.wait_for_run("trading_orchestrator", run["dag_run_id"], timeout=3600)
        finally:
            for hog in hog_processes:
                hog.kill()
                hog.wait()
            airflow.stop()
    return {
        "heartbeat_timeout_s": timeout,
        "run_state": outcome["orchestrator"]["state"],
        "tasks_retried_without_a_kill": false_failures,
        "load_1min_before_after": loads,
        "killed_worker_recovery": recovery,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeouts", default="20,60")
    parser.add_argument("--contracts", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    for timeout in (int(t) for t in args.timeouts.split(",")):
        results.append(measure(timeout, args.contracts, args.hogs))
        print(json.dumps(results[-1]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
