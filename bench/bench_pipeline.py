"""The whole default pipeline vs a no-op pipeline of the same shape, in the same local Airflow.

Both DAG sets are loaded into one Airflow (the stack `make demo` runs: PostgreSQL, LocalExecutor,
parallelism 16). Runs alternate, real / no-op, after one warm-up each. Wall time = the
orchestrator run's queued_at → the end of the aggregation run it starts (server timestamps).
Goal: real / no-op <= 1.25.

    python bench/bench_pipeline.py [--rounds 3] [--contracts 10] [--no-preload]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "scripts"))

from local_airflow import LocalAirflow, free_port  # noqa: E402

PIPELINES = {
    "trading": ("trading_orchestrator", "aggregate_portfolio"),
    "no-op": ("noop_orchestrator", "noop_aggregate"),
}


def _dags_folder(root: Path) -> Path:
    folder = root / "dags"
    folder.mkdir()
    for path in (PROJECT / "dags").iterdir():
        if path.name != "__pycache__":
            (folder / path.name).symlink_to(path)
    (folder / "noop_pipeline.py").symlink_to(PROJECT / "bench" / "noop_dags" / "noop_pipeline.py")
    return folder


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def follow_run(
    client, orchestrator: str, aggregation: str, conf: dict, timeout: float | None = 900, poll: float = 0.5
) -> dict:
    """Trigger ``orchestrator`` with ``conf``, wait for it and for the ``aggregation`` runs it
    starts (``timeout`` None: no deadline, else ``timeout`` s for the run and 120 s for the
    aggregation). Returns {"run": the finished orchestrator run, "aggregations": its aggregation runs,
    "wall": queued_at -> end of the last aggregation, in seconds (server timestamps)}."""
    known = {r["dag_run_id"] for r in client.dag_runs(aggregation)}
    run = client.trigger(orchestrator, conf)
    finished = client.wait_for_run(
        orchestrator, run["dag_run_id"], timeout=float("inf") if timeout is None else timeout, poll=poll
    )
    if finished["state"] != "success":
        raise RuntimeError(f"{orchestrator} run {run['dag_run_id']} {finished['state']}")
    deadline = time.monotonic() + (float("inf") if timeout is None else 120)
    while time.monotonic() < deadline:
        new = [r for r in client.dag_runs(aggregation) if r["dag_run_id"] not in known]
        if new and all(r["state"] in ("success", "failed") for r in new):
            end = max(_parse_time(r["end_date"]) for r in new)
            wall = (end - _parse_time(finished["queued_at"])).total_seconds()
            return {"run": finished, "aggregations": new, "wall": wall}
        time.sleep(poll)
    raise TimeoutError(f"{aggregation} did not finish after {orchestrator}")


def run_once(client, orchestrator: str, aggregation: str, contracts: int, timeout: float = 900) -> float:
    return follow_run(client, orchestrator, aggregation, {"num_contracts": contracts}, timeout)["wall"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contracts", type=int, default=10)
    parser.add_argument(
        "--no-preload", action="store_true", help="don't preload pandas & co. in the scheduler"
    )
    args = parser.parse_args(argv)

    from trading_lib import pipeline
    from trading_lib.storage import Storage

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # PostgreSQL runs as a user of its own and keeps its data under the home
        data_root = root / "data"
        pipeline.generate_inputs(Storage(str(data_root)), num_contracts=args.contracts)
        extra_env = {"LOCAL_AIRFLOW_PRELOAD": "0"} if args.no_preload else {}
        airflow = LocalAirflow(root / "home", free_port(), str(data_root), extra_env, _dags_folder(root))
        started = time.monotonic()
        airflow.start(timeout=900)
        print(f"local Airflow healthy after {time.monotonic() - started:.1f} s")
        try:
            client = airflow.client()
            for orchestrator, _ in PIPELINES.values():
                client.wait_for_dag(orchestrator)
            walls: dict[str, list[float]] = {name: [] for name in PIPELINES}
            for round_number in range(args.rounds + 1):
                for name, (orchestrator, aggregation) in PIPELINES.items():
                    wall = run_once(client, orchestrator, aggregation, args.contracts)
                    label = "warm-up" if round_number == 0 else f"round {round_number}"
                    print(f"{label:<8} {name:<8} {wall:7.1f} s", flush=True)
                    if round_number:
                        walls[name].append(wall)
        finally:
            airflow.stop()
    real, floor = statistics.median(walls["trading"]), statistics.median(walls["no-op"])
    partitions = args.contracts * 24
    print(
        f"\n{args.contracts} contracts x 24 timestamps = {partitions} partitions, "
        f"preload={'off' if args.no_preload else 'on'}"
    )
    print(f"trading pipeline median {real:.1f} s  {walls['trading']}")
    print(f"no-op pipeline   median {floor:.1f} s  {walls['no-op']}")
    print(f"ratio {real / floor:.2f}x (goal <= 1.25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
