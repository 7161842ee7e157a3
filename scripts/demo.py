"""`make demo`: sample data, a real local Airflow, one pipeline run through the REST API, the summary.

    python scripts/demo.py [--stack local|celery] [--db postgres|sqlite] [--data sample|real]
                           [--contracts 10] [--port 8080] [--schedule on|CRON]

--stack local (default): PostgreSQL (from a wheel; --db sqlite for SQLite), LocalExecutor, a local
data root (scripts/local_airflow.py).
--stack celery: PostgreSQL, Redis, SeaweedFS (s3:// data root), two Celery workers: the services of
docker-compose.yaml's Celery profile as local processes (scripts/celery_stack.py).

Leaves Airflow running so the UI can be explored; `make stop` stops it, a second `make demo`
reuses it. Nothing has a fixed deadline (any number of contracts, any machine): the start waits
for the stack to be healthy saying what it waits for, REST calls that time out are tried again,
and the run is followed with a progress bar (the partition completion rate, an ETA; one line
every 10 s in a log). A queued run says what it waits for. It fails only on a real failure: a
failed run, or a component that kept crashing (then with the last lines of its log). A component
that exits is restarted by the stack's supervisor; the demo prints a line about it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from local_airflow import (
    DATABASES,
    DEFAULT_HOME,
    PROJECT,
    SCHEDULE_VARIABLE,
    USERNAME,
    LocalAirflow,
    PortInUseError,
    StackFailed,
)

# The task id of a partition; analyze_symbol's mapped task.
PARTITION_TASK = "analyze_partition"

REAL_DATA = PROJECT / "input" / "yahoo-1h-2022"
BAR_WIDTH = 40
POLL_SECONDS = 2.0
LOG_EVERY = 10.0  # seconds between progress lines when stdout is not a terminal
# No deadline: a run takes as long as the machine needs
# (2,400 partitions: 9 min on 2 quiet cores, 41 min on busy ones).
# The wait ends when the run ends, or fails when the stack stopped by itself. After this long
# without any change (a partition finished, a run expanded, a state changed), one notice says so,
# and says it again every STALL_NOTICE seconds; the wait goes on.
STALL_NOTICE = 600.0
QUEUED_CHECK = 10.0  # seconds between looks at what a queued run waits for


def _bar(done: int, total: int, about: str = "") -> str:
    filled = min(BAR_WIDTH, int(BAR_WIDTH * done / total)) if total else 0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{about}{total}"


def format_duration(seconds: float) -> str:
    """45 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Partitions done, their expected total and an ETA from the completion rate.

    The total grows while analyze_symbol runs expand their partitions (16 run at a time): until
    every expected run has expanded, it is extrapolated from the runs that have (shown with "~").
    The rate counts from the first finished partition seen, so the orchestrator's first tasks do
    not dilute it.
    """

    def __init__(self, expected_runs: int | None = None):
        self.expected_runs = expected_runs
        self.done = 0
        self.total = 0
        self.estimated = False
        self._first: tuple[float, int] | None = None  # (time, done) at the first completion seen
        self._rate: float | None = None

    def update(
        self, now: float, done: int, total: int, runs_created: int = 0, runs_expanded: int = 0
    ) -> None:
        """``total``: partition task instances counted (an unexpanded run counts 1: its placeholder);
        ``runs_created``/``runs_expanded``: analyze_symbol runs that exist / have listed their partitions."""
        runs = max(self.expected_runs or 0, runs_created)
        expanded = total - max(0, runs_created - runs_expanded)  # without the placeholders
        if 0 < runs_expanded < runs:
            self.total = max(total, round(expanded + expanded / runs_expanded * (runs - runs_expanded)))
            self.estimated = True
        else:
            self.total, self.estimated = total, False
        self.done = done
        if done > 0 and self._first is None:
            self._first = (now, done)
        elif self._first is not None and done > self._first[1] and now > self._first[0]:
            self._rate = (done - self._first[1]) / (now - self._first[0])

    @property
    def rate(self) -> float | None:
        """Partitions per second since the first finished one, None before two observations."""
        return self._rate

    def eta(self) -> float | None:
        """Seconds until the last partition finishes at the current rate; None if unknown."""
        if self.total and self.done >= self.total and not self.estimated:
            return 0.0
        if not self._rate:
            return None
        return max(0, self.total - self.done) / self._rate

    def line(self, elapsed: float, state: str) -> str:
        bar = _bar(self.done, self.total, "~" if self.estimated else "")
        eta = self.eta()
        rate = f"{self._rate:.1f}/s" if self._rate else "-/s"
        left = "ETA --" if eta is None else f"ETA {format_duration(eta)}"
        return f"  partitions {bar}  {format_duration(elapsed)}  {rate}  {left}  ({state})"


class StackExited(StackFailed):
    """The local Airflow stopped by itself while the demo waited for its run."""


def _check_stack(airflow) -> None:
    try:
        airflow.check()
    except StackFailed as exc:
        raise StackExited(str(exc)) from None


def queued_reason(client, dag_id: str, run_id: str) -> str | None:
    """What a queued run waits for: another run holding the DAG's active-run slot, and its task."""
    holders = [r for r in client.dag_runs(dag_id, state="running") if r["dag_run_id"] != run_id]
    if not holders:
        return None
    holder = holders[0]["dag_run_id"]
    running = client.task_instances(dag_id, holder, state="running") + client.task_instances(
        dag_id, holder, state="up_for_retry"
    )
    tasks = ", ".join(f"{ti['task_id']} ({ti['state']}, try {ti['try_number']})" for ti in running)
    return f"waits for {dag_id} run {holder}, which holds the active-run slot" + (
        f" with {tasks}" if tasks else ""
    )


def run_pipeline(
    airflow: LocalAirflow,
    conf: dict,
    *,
    show_progress: bool = True,
    timeout: float | None = None,
    clock=time.monotonic,
    sleep=time.sleep,
    out=None,
) -> dict:
    """Trigger trading_orchestrator, follow its partitions, wait for the aggregation it starts.

    No deadline unless ``timeout`` (seconds) is given: the tests bound their runs, the demo does
    not. Prints the supervisor's restarts of components and REST retries as they happen; fails
    (StackExited) when the stack stopped by itself; prints a notice after STALL_NOTICE seconds
    without any change, and what a queued run waits for. Returns {"orchestrator": run,
    "aggregation": run or None, "partitions": (done, total)}.
    """
    out = out or sys.stdout
    tty = out.isatty()

    def notice(message: str) -> None:
        print(f"{chr(10) if tty else ''}  {message}", flush=True, file=out)

    client = airflow.client(on_retry=notice)
    seen_events = {event["n"] for event in airflow.events()}
    for dag_id in ("trading_orchestrator", "analyze_symbol", "aggregate_portfolio"):
        client.wait_for_dag(dag_id)
    aggregations_before = {r["dag_run_id"] for r in client.dag_runs("aggregate_portfolio")}
    run = client.trigger("trading_orchestrator", conf)
    run_id = run["dag_run_id"]
    prefix = f"{run_id}__"
    started = clock()
    progress = Progress(conf.get("num_contracts"))
    runs_created = runs_expanded = 0
    next_line = 0.0
    last_seen, last_change = None, started

    def emit(line: str, final: bool = False) -> None:
        nonlocal next_line
        elapsed = clock() - started
        if tty:
            print(f"\r{line}  ", end="\n" if final else "", flush=True, file=out)
        elif final or elapsed >= next_line:
            print(line, flush=True, file=out)  # a log, not a terminal: one line every LOG_EVERY s
            next_line = elapsed + LOG_EVERY

    def waited(what: str) -> None:
        """Supervisor events, stall notice, stack check, optional deadline; then sleep one poll."""
        nonlocal last_change
        for event in airflow.events():
            if event["n"] not in seen_events:
                seen_events.add(event["n"])
                notice(f"stack: {event['message']}")
        now = clock()
        if now - last_change >= STALL_NOTICE:
            print(
                f"\n  nothing changed for {format_duration(now - last_change)} ({what}); still waiting. "
                f"Airflow UI: {airflow.base_url}; Ctrl-C stops waiting (Airflow keeps running)",
                flush=True,
                file=out,
            )
            last_change = now
        _check_stack(airflow)
        if timeout is not None and now - started > timeout:
            raise TimeoutError(f"{what} not finished after {timeout:.0f} s")
        sleep(POLL_SECONDS)

    reason, next_reason, hinted = None, 0.0, False
    while True:
        state = client.dag_run("trading_orchestrator", run_id)["state"]
        if state == "queued" and clock() >= next_reason:
            reason = queued_reason(client, "trading_orchestrator", run_id)
            next_reason = clock() + QUEUED_CHECK
            if reason and not hinted and show_progress:
                hinted = True
                notice(
                    f"run {run_id} is queued: it {reason}. Let that run finish, or end it: mark it "
                    f"failed in the UI ({airflow.base_url}/dags/trading_orchestrator/runs) or "
                    'PATCH /api/v2/dags/trading_orchestrator/dagRuns/<run id> {"state": "failed"}'
                )
        elif state != "queued":
            reason = None
        total = client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix)
        done = client.count_task_instances("analyze_symbol", PARTITION_TASK, prefix, state="success")
        if not runs_expanded or runs_expanded < max(runs_created, progress.expected_runs or 0):
            runs_created = client.count_task_instances("analyze_symbol", "list_partitions", prefix)
            runs_expanded = client.count_task_instances(
                "analyze_symbol", "list_partitions", prefix, state="success"
            )
        now = clock()
        progress.update(now, done, total, runs_created, runs_expanded)
        seen = (state, done, total, runs_created, runs_expanded)
        if seen != last_seen:
            last_seen, last_change = seen, now
        finished = state in ("success", "failed")
        if show_progress:
            label = f"queued: {reason}" if state == "queued" and reason else state
            emit(progress.line(now - started, label), final=finished)
        if finished:
            break
        waited(f"trading_orchestrator run {run_id}")
    orchestrator = client.dag_run("trading_orchestrator", run_id)
    aggregation = None
    if orchestrator["state"] == "success":
        last_change = clock()
        if show_progress:
            print("  waiting for the aggregate_portfolio run it starts", flush=True, file=out)
        while aggregation is None or aggregation["state"] not in ("success", "failed"):
            new = [
                r
                for r in client.dag_runs("aggregate_portfolio")
                if r["dag_run_id"] not in aggregations_before
            ]
            current = new[-1] if new else None
            if (current or {}).get("state") != (aggregation or {}).get("state"):
                last_change = clock()
            aggregation = current
            if aggregation is None or aggregation["state"] not in ("success", "failed"):
                waited("aggregate_portfolio")
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


def failed_task_lines(client, home: Path, dag_id: str, run_id: str) -> list[str]:
    """Each failed task of a run, with its try and where its log is."""
    lines = []
    for ti in client.task_instances(dag_id, run_id, state="failed"):
        index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
        folder = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
        if ti["map_index"] >= 0:
            folder = folder / f"map_index={ti['map_index']}"
        log = folder / f"attempt={ti['try_number']}.log"
        lines.append(f"  {ti['task_id']}{index} failed (try {ti['try_number']}): {log}")
    return lines


def print_failed_tasks(airflow: LocalAirflow, dag_id: str, run_id: str) -> None:
    for line in failed_task_lines(airflow.client(), airflow.home, dag_id, run_id):
        print(line)


def _start(airflow: LocalAirflow, step: str, what: str) -> None:
    changed = airflow.changed_settings()
    if airflow.running() and airflow.healthy() and not changed:
        print(f"{step} Reusing the local Airflow at {airflow.base_url}")
        return
    if changed and airflow.supervisor_alive():
        print(f"    {', '.join(changed)} changed: restarting the local Airflow")
    print(f"{step} Starting a local Airflow in {airflow.home} ({what})", flush=True)
    airflow.start(progress=lambda line: print(line, flush=True))


def _migrate_store(storage) -> None:
    """A checkout that ran an earlier release holds its bar store (bars/<day>.parquet): convert it
    once, as `python -m trading_lib migrate-store` does (docs/history.md, "Migration")."""
    from trading_lib.store import legacy_sessions, migrate_legacy_store

    if legacy_sessions(storage):
        print(f"    converting the earlier release's bar store: {migrate_legacy_store(storage)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["sample", "real"], default="sample")
    parser.add_argument("--contracts", type=int, default=10)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--stack",
        choices=["local", "celery"],
        default="local",
        help="local: PostgreSQL (or SQLite) + LocalExecutor + a local folder; celery: docker-compose's "
        "Celery profile as local processes (PostgreSQL, Redis, SeaweedFS S3, two Celery workers)",
    )
    parser.add_argument(
        "--db",
        choices=DATABASES,
        default="postgres",
        help="the local stack's metadata database: postgres (default, from a wheel) or sqlite",
    )
    parser.add_argument("--home", type=Path, help="the stack's AIRFLOW_HOME (default: per stack)")
    parser.add_argument(
        "--schedule",
        help="trading_orchestrator's schedule in the local Airflow: 'on' (the pipeline's default "
        "schedule: one run per exchange bar), "
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
        _migrate_store(storage)
        generated = pipeline.generate_inputs(storage, num_contracts=args.contracts, real_folder=real_folder)
    else:
        # The schedule is the local Airflow's business (LocalAirflow.env() maps 'on' to the default schedule).
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
        _migrate_store(storage)
        generated = pipeline.generate_inputs(storage, num_contracts=args.contracts, real_folder=real_folder)
        airflow = LocalAirflow(args.home or DEFAULT_HOME, args.port, str(data_root), db=args.db)
        database = "PostgreSQL 18" if args.db == "postgres" else "SQLite"
        _start(airflow, "2/4", f"{database}, LocalExecutor; ~30-60 s on a quiet machine")
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
        print_failed_tasks(airflow, "trading_orchestrator", orchestrator["dag_run_id"])
        return 1
    aggregation = outcome["aggregation"]
    print(f"4/4 aggregate_portfolio run {aggregation['dag_run_id']}: {aggregation['state']}")
    if aggregation["state"] != "success":
        print_failed_tasks(airflow, "aggregate_portfolio", aggregation["dag_run_id"])
        return 1
    _print_summary(storage, orchestrator["dag_run_id"])
    print(f"\nAirflow UI: {ui}  (user {USERNAME}, password {airflow.password})")
    print(f"Reports:    {ui}/trading-reports/   Files: {files}")
    print("Airflow keeps running for you to explore; `make stop` stops it.")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """main() with the stack's own failures as a few lines, not a traceback."""
    try:
        return main(argv)
    except PortInUseError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
    except StackFailed as exc:
        print(f"\nmake demo: the local Airflow stopped: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopped waiting; Airflow keeps running (`make stop` stops it)", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(cli())
