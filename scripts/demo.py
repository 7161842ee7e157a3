"""`make demo`: sample data, a real local Airflow, one pipeline run through the REST API, the summary.

    python scripts/demo.py [--stack local|celery] [--data sample|real] [--contracts 10] [--port 8080]
                           [--schedule on|CRON]

--stack local (default): SQLite, LocalExecutor, a local data root (scripts/local_airflow.py).
--stack celery: PostgreSQL, Redis, SeaweedFS (s3:// data root), two Celery workers: the services of
docker-compose.yaml's Celery profile as local processes (scripts/celery_stack.py).

Leaves Airflow running so the UI can be explored; `make stop` stops it, a second `make demo`
reuses it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_airflow import DEFAULT_HOME, PROJECT, SCHEDULE_VARIABLE, USERNAME, LocalAirflow  # noqa: E402

# The task id of a partition; analyze_symbol's mapped task.
PARTITION_TASK = "analyze_time_partition"

REAL_DATA = PROJECT / "input" / "yahoo-1h-2022"
BAR_WIDTH = 40


def _bar(done: int, total: int) -> str:
    filled = int(BAR_WIDTH * done / total) if total else 0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"


def run_pipeline(
    airflow: LocalAirflow, conf: dict, *, show_progress: bool = True, timeout: float = 900
) -> dict:
    """Trigger trading_orchestrator, follow its partitions, wait for the aggregation it starts.

    Returns {"orchestrator": run, "aggregation": run or None, "partitions": (done, total)}.
    """
    client = airflow.client()
    for dag_id in ("trading_orchestrator", "analyze_symbol", "aggregate_portfolio"):
        client.wait_for_dag(dag_id)
    aggregations_before = {r["dag_run_id"] for r in client.dag_runs("aggregate_portfolio")}
    run = client.trigger("trading_orchestrator", conf)
    run_id = run["dag_run_id"]
    prefix = f"{run_id}__"
    started = time.monotonic()
    done = total = 0
    next_line = 0.0
    while True:
        state = client.dag_run("trading_orchestrator", run_id)["state"]
        total = client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix)
        done = client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix, state="success")
        elapsed = time.monotonic() - started
        line = f"  partitions {_bar(done, total)}  {elapsed:5.0f} s  ({state})"
        if show_progress and sys.stdout.isatty():
            print(f"\r{line}  ", end="", flush=True)
        elif show_progress and (elapsed >= next_line or state in ("success", "failed")):
            print(line, flush=True)  # a log, not a terminal: one line every 10 s
            next_line = elapsed + 10
        if state in ("success", "failed"):
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"trading_orchestrator run {run_id} not finished after {timeout:.0f} s")
        time.sleep(1)
    if show_progress and sys.stdout.isatty():
        print()
    orchestrator = client.dag_run("trading_orchestrator", run_id)
    aggregation = None
    if orchestrator["state"] == "success":
        deadline = time.monotonic() + 120
        while aggregation is None or aggregation["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError("aggregate_portfolio did not finish within 120 s of the orchestrator")
            new = [
                r
                for r in client.dag_runs("aggregate_portfolio")
                if r["dag_run_id"] not in aggregations_before
            ]
            aggregation = new[-1] if new else None
            time.sleep(1)
    return {"orchestrator": orchestrator, "aggregation": aggregation, "partitions": (done, total)}


def _print_summary(storage, run_id: str) -> None:
    """The run's own report (output/runs/<run_id>/portfolio.json): the store may hold earlier runs."""
    from trading_lib import layout, pipeline

    report = storage.read_json(layout.run_key(run_id, pipeline.PORTFOLIO_REPORT))
    s = report["summary"]
    scope = report["scope"]
    print(f"\nPortfolio of run {run_id} ({scope['window_start']} .. {scope['window_end']})")
    rows = [
        ("contracts", s["contracts"]),
        ("partitions", f"{s['partitions']} of {s['expected_partitions']} expected"),
        ("trades (closed)", f"{s['trades']} ({s['closed_trades']})"),
        ("win rate", "n/a" if s["win_rate"] is None else f"{s['win_rate']:.1%}"),
        ("total P&L", f"{s['total_pnl']:,.2f} USD"),
        (
            "Sharpe ratio (annualised)",
            "n/a"
            if s["sharpe_ratio"] is None
            else f"{s['sharpe_ratio']:.2f} ± {s['sharpe_standard_error']:.2f} "
            f"over {s['sharpe_returns']} returns",
        ),
        ("average beta", "n/a" if s["average_beta"] is None else f"{s['average_beta']:.3f}"),
    ]
    for name, value in rows:
        print(f"  {name:<28} {value}")
    print("\n  contract    trades  win rate     P&L (USD)   avg beta")
    for c in report["contracts"]:
        win = "n/a" if c["win_rate"] is None else f"{c['win_rate']:.0%}"
        beta = "n/a" if c["average_beta"] is None else f"{c['average_beta']:.2f}"
        print(f"  {c['contract']:<10} {c['trades']:>6} {win:>9} {c['total_pnl']:>13,.2f} {beta:>10}")


def _start(airflow: LocalAirflow, step: str, what: str) -> None:
    changed = airflow.changed_settings()
    if airflow.running() and airflow.healthy() and not changed:
        print(f"{step} Reusing the local Airflow at {airflow.base_url}")
        return
    if changed and airflow.running():
        print(f"    {', '.join(changed)} changed: restarting the local Airflow")
    print(f"{step} Starting a local Airflow in {airflow.home} ({what})")
    airflow.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["sample", "real"], default="sample")
    parser.add_argument("--contracts", type=int, default=10)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--stack",
        choices=["local", "celery"],
        default="local",
        help="local: SQLite + LocalExecutor + a local folder; celery: docker-compose's Celery profile "
        "as local processes (PostgreSQL, Redis, SeaweedFS S3, two Celery workers)",
    )
    parser.add_argument("--home", type=Path, help="the stack's AIRFLOW_HOME (default: per stack)")
    parser.add_argument(
        "--schedule",
        help="trading_orchestrator's schedule in the local Airflow: 'on' (the pipeline's default cron), "
        f"a cron, or 'none' (default; else ${SCHEDULE_VARIABLE})",
    )
    args = parser.parse_args(argv)
    if args.schedule is not None:
        os.environ[SCHEDULE_VARIABLE] = args.schedule  # LocalAirflow.env() reads it

    from trading_lib import pipeline
    from trading_lib.settings import load_settings

    real_folder = str(REAL_DATA) if args.data == "real" else None
    if args.stack == "celery":
        from celery_stack import DEFAULT_HOME as CELERY_HOME
        from celery_stack import CeleryAirflow

        airflow = CeleryAirflow(args.home or CELERY_HOME, args.port)
        # First: the stack serves the S3 data root the bars go to.
        _start(airflow, "1/4", "PostgreSQL, Redis, SeaweedFS, CeleryExecutor with 2 workers; ~1-2 min")
        storage = airflow.storage()
        files = storage.url("output")
        print(f"2/4 Writing {args.data} bars into the bar store {storage.url('bars')}")
        generated = pipeline.generate_inputs(storage, num_contracts=args.contracts, real_folder=real_folder)
    else:
        # The schedule is the local Airflow's business (LocalAirflow.env() maps 'on' to the default cron).
        settings = load_settings({k: v for k, v in os.environ.items() if k != SCHEDULE_VARIABLE})
        if settings.is_s3:
            print(
                "make demo runs on local data; unset TRADING_DATA_ROOT or point it at a folder",
                file=sys.stderr,
            )
            return 2
        data_root = Path(settings.data_root)
        storage = pipeline.open_storage(settings)
        files = str(data_root / "output")
        print(f"1/4 Writing {args.data} bars into the bar store {data_root / 'bars'}")
        generated = pipeline.generate_inputs(storage, num_contracts=args.contracts, real_folder=real_folder)
        airflow = LocalAirflow(args.home or DEFAULT_HOME, args.port, str(data_root))
        _start(airflow, "2/4", "SQLite, LocalExecutor; ~30-60 s")
    contracts = min(args.contracts, len(generated["contracts"]))

    print(f"3/4 Triggering trading_orchestrator with num_contracts={contracts}")
    outcome = run_pipeline(airflow, {"num_contracts": contracts})
    orchestrator = outcome["orchestrator"]
    ui = f"http://localhost:{args.port}"
    if orchestrator["state"] != "success":
        print(
            f"trading_orchestrator run {orchestrator['dag_run_id']} {orchestrator['state']}: "
            f"see {ui}/dags/trading_orchestrator"
        )
        return 1
    aggregation = outcome["aggregation"]
    print(f"4/4 aggregate_portfolio run {aggregation['dag_run_id']}: {aggregation['state']}")
    if aggregation["state"] != "success":
        return 1
    _print_summary(storage, orchestrator["dag_run_id"])
    print(f"\nAirflow UI: {ui}  (user {USERNAME}, password {airflow.password})")
    print(f"Reports:    {ui}/trading-reports/   Files: {files}")
    print("Airflow keeps running for you to explore; `make stop` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
