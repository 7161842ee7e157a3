"""Scale benchmark: many partitions through a real Airflow stack, against the no-op floor.

    python bench/bench_scale.py [--stack local] [--contracts 100] [--bars 24] [--rounds 1]
    python bench/bench_scale.py --stack local,sqlite --contracts 10   # PostgreSQL vs SQLite, one run
    python bench/bench_scale.py --stack celery --contracts 10 --bars year --partitions-per-task 28

Default: 100 contracts x 24 bars = 2,400 mapped partitions (1 orchestrator run, 100 analyze_symbol
runs, 1 aggregation) in the stack `make demo` runs (PostgreSQL, LocalExecutor, parallelism 16), and
the no-op pipeline of the same shape (bench/noop_dags/) in the same Airflow. `--bars year` is 1,764
bars per contract: analyze_symbol groups them into chunks of consecutive bars, 882 chunks of 2
(past [core] max_map_length) or `--partitions-per-task` bars each, the no-op floor the same way.
After a small warm-up of each (2 contracts), the pipelines run one after the other, interleaved,
the order swapped every round, so load from other work on the machine falls on both alike.
`--stack a,b` measures each stack in turn (one stack at a time, each in a fresh home) and prints
them side by side.

Each run reports:
- wall: the orchestrator run's queued_at -> the end of the aggregation run it starts (server
  timestamps); the ratio of the pipeline's median wall to the floor's;
- peak memory: PSS summed over every process of the stack, sampled every second from
  /proc/<pid>/smaps_rollup, and each component's share at the peak;
- where the time goes: the phases of the run (until the first partition starts, the partitions,
  after the last one); per partition task instance (REST timestamps) scheduled -> queued (waiting
  for a free executor slot and the scheduler loop), queued -> start (executor pick-up and task
  process start), start -> end (the task run); within the run, from a sample of task logs, the
  start-up (DAG bundle + DAG file parse), the task's own work (execute) and post-execute (XCom,
  state); CPU seconds by component (own, and that of their reaped child processes);
- the machine load: 1-min loadavg before and after the run, its mean during it, and the CPU the
  machine spent outside the stack meanwhile (other engineers' work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "scripts"))
sys.path.insert(0, str(PROJECT / "bench"))

from bench_pipeline import _dags_folder, _parse_time, follow_run  # noqa: E402
from demo import PARTITION_TASK  # noqa: E402
from local_airflow import LocalAirflow, free_port  # noqa: E402
from processes import proc_info  # noqa: E402

YEAR_BARS = 1764  # 252 sessions x 7 hourly bars
NOOP_PARTITION_TASK = "analyze_partition"  # bench/noop_dags/noop_pipeline.py's mapped task
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Pipeline:
    orchestrator: str
    symbol_dag: str
    partition_task: str
    aggregation: str


PIPELINES = {
    "trading": Pipeline("trading_orchestrator", "analyze_symbol", PARTITION_TASK, "aggregate_portfolio"),
    "no-op": Pipeline("noop_orchestrator", "noop_symbol", NOOP_PARTITION_TASK, "noop_aggregate"),
}


# -- stacks ----------------------------------------------------------------------------------------
class LocalStack:
    """`make demo`'s stack (scripts/local_airflow.py) in a home of its own, on free ports."""

    name = "local"
    db = "postgres"
    description = "PostgreSQL 18 (wheel), LocalExecutor, parallelism 16 (make demo's stack)"

    def __init__(self, root: Path, env: dict[str, str]):
        root.chmod(0o711)  # PostgreSQL runs as a user of its own and keeps its data under the home
        self.data_root = root / "data"
        self.airflow = LocalAirflow(
            root / "home", free_port(), str(self.data_root), env, _dags_folder(root), db=self.db
        )

    def start(self) -> None:
        self.airflow.start(timeout=900)

    def stop(self) -> None:
        self.airflow.stop()

    def client(self):
        return self.airflow.client()

    def storage(self):
        from trading_lib.storage import Storage

        return Storage(str(self.data_root))

    def pids(self) -> list[int]:
        return [info.pid for info in self.airflow.members()]


class CeleryStack(LocalStack):
    """`make demo STACK=celery`'s stack (scripts/celery_stack.py: PostgreSQL, Redis, SeaweedFS as
    the s3:// data root, two Celery workers) in a home of its own, on free ports."""

    name = "celery"
    description = "PostgreSQL, Redis, 2 Celery workers, SeaweedFS (make demo STACK=celery's stack)"

    def __init__(self, root: Path, env: dict[str, str]):
        try:
            from celery_stack import CeleryAirflow
        except ImportError:
            raise SystemExit("--stack celery: scripts/celery_stack.py is not on this branch") from None
        root.chmod(0o711)  # PostgreSQL runs as a user of its own and keeps its data under the home
        self.airflow = CeleryAirflow(root / "home", free_port(), env, _dags_folder(root))

    def start(self) -> None:
        self.airflow.start(timeout=900)

    def storage(self):
        return self.airflow.storage()

    def pids(self) -> list[int]:
        from celery_stack import WORKERS

        found = [*self.airflow.members(), *self.airflow.service_members()]
        for worker in WORKERS:  # its pool and task processes (setproctitle hides their environment)
            found.extend(self.airflow.worker_processes(worker))
        return sorted({info.pid for info in found})


class SqliteStack(LocalStack):
    """`make demo DB=sqlite`'s stack: the same, on SQLite."""

    name = "sqlite"
    db = "sqlite"
    description = "SQLite, LocalExecutor, parallelism 16 (make demo DB=sqlite)"


STACKS = {"local": LocalStack, "sqlite": SqliteStack, "celery": CeleryStack}


# -- process sampling: PSS and CPU of the stack ------------------------------------------------------
ROLES = (  # first match of the command line wins
    ("airflow supervisor", "task supervisor"),
    ("LocalExecutor", "executor worker"),
    ("airflow worker", "executor worker"),
    ("multiprocessing", "api-server worker"),
    ("celery", "celery worker"),
    ("scheduler", "scheduler"),
    ("dag-processor", "dag-processor"),
    ("dag_processor", "dag-processor"),
    ("triggerer", "triggerer"),
    ("api-server", "api-server"),
    ("api_server", "api-server"),
    ("uvicorn", "api-server"),
    ("postgres", "postgres"),
    ("redis", "redis"),
    ("weed", "seaweedfs"),
    ("task", "task"),
)


def role_of(cmdline: str) -> str:
    for needle, role in ROLES:
        if needle in cmdline:
            return role
    return "other: " + " ".join(cmdline.split()[:3])[:60]


def read_pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def read_cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(own utime + stime, reaped children's cutime + cstime) in clock ticks."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def machine_busy_ticks() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


class StackSampler(threading.Thread):
    """Every ``interval`` s: PSS and CPU of each process of the stack, and the 1-min loadavg.

    CPU: for each process alive at the last sample, its own and its reaped children's ticks since
    its first sample (0 if it started after the first sample). A process that ended meanwhile is
    counted by its parent when the parent reaped it (task processes by their executor worker);
    one whose parent ended too is missed: the figures are lower bounds.
    """

    def __init__(self, pids, interval: float = 1.0, label: str = ""):
        super().__init__(daemon=True)
        self._pids, self.interval, self.label = pids, interval, label
        self._halt = threading.Event()
        self.peak_kib, self.peak_roles, self.peak_processes = 0, {}, 0
        self.commands: dict[str, str] = {}  # role -> one command line seen (what the role stands for)
        self.loads: list[float] = []
        self._first: dict[tuple[int, int], tuple[int, int]] = {}
        self._last: dict[tuple[int, int], tuple[str, int, int]] = {}
        self._samples = 0
        self._t0 = time.monotonic()
        self._busy_start = machine_busy_ticks()
        self._busy_end = self._busy_start

    def sample(self) -> None:
        total, roles, alive = 0, {}, {}
        for pid in self._pids():
            info = proc_info(pid)
            pss, cpu = read_pss_kib(pid), read_cpu_ticks(pid)
            if info is None or pss is None or cpu is None:
                continue
            role = role_of(info.cmdline)
            self.commands.setdefault(role, info.cmdline[:160])
            total += pss
            roles[role] = roles.get(role, 0) + pss
            key = (pid, info.start)
            if key not in self._first:
                self._first[key] = cpu if self._samples == 0 else (0, 0)
            alive[key] = (role, *cpu)
        self._last = alive
        self._samples += 1
        self._busy_end = machine_busy_ticks()
        self.loads.append(os.getloadavg()[0])
        if total > self.peak_kib:
            self.peak_kib, self.peak_roles, self.peak_processes = total, roles, len(alive)

    def run(self) -> None:
        next_report = 60.0
        while not self._halt.is_set():
            self.sample()
            elapsed = time.monotonic() - self._t0
            if elapsed >= next_report:
                print(
                    f"    {self.label} {elapsed:5.0f} s: {len(self._last)} processes, "
                    f"PSS peak {self.peak_kib / 1024:,.0f} MiB, load {self.loads[-1]:.1f}",
                    flush=True,
                )
                next_report += 60
            self._halt.wait(self.interval)

    def finish(self) -> dict:
        self._halt.set()
        self.join()
        self.sample()
        cpu: dict[str, dict[str, float]] = {}
        stack_ticks = 0
        for key, (role, own, children) in self._last.items():
            own0, children0 = self._first.get(key, (0, 0))
            entry = cpu.setdefault(role, {"own": 0.0, "children": 0.0})
            entry["own"] += (own - own0) / CLOCK_TICKS
            entry["children"] += (children - children0) / CLOCK_TICKS
            stack_ticks += own - own0 + children - children0
        seconds = time.monotonic() - self._t0
        busy = (self._busy_end - self._busy_start) / CLOCK_TICKS
        return {
            "peak_pss_mib": round(self.peak_kib / 1024, 1),
            "peak_pss_by_role_mib": {k: round(v / 1024, 1) for k, v in sorted(self.peak_roles.items())},
            "processes_at_peak": self.peak_processes,
            "cpu_s_by_role": {k: {n: round(v, 1) for n, v in e.items()} for k, e in sorted(cpu.items())},
            "stack_cpu_s": round(stack_ticks / CLOCK_TICKS, 1),
            "machine_busy_cpu_s": round(busy, 1),
            "other_cpu_s": round(busy - stack_ticks / CLOCK_TICKS, 1),
            "sampled_s": round(seconds, 1),
            "load_mean": round(statistics.fmean(self.loads), 2) if self.loads else None,
            "samples": self._samples,
            "commands": dict(sorted(self.commands.items())),
        }


# -- where the time goes: REST timestamps and task logs ----------------------------------------------
def _seconds(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    return (_parse_time(later) - _parse_time(earlier)).total_seconds()


def _stats(values: list[float]) -> dict:
    values = sorted(v for v in values if v is not None)
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 2),
        "p90": round(values[int(0.9 * (len(values) - 1))], 2),
        "max": round(values[-1], 2),
        "sum": round(sum(values), 1),
        "n": len(values),
    }


def symbol_runs(client, pipeline: Pipeline, orchestrator_run_id: str) -> list[str]:
    prefix = f"{orchestrator_run_id}__"
    return [
        r["dag_run_id"] for r in client.dag_runs(pipeline.symbol_dag) if r["dag_run_id"].startswith(prefix)
    ]


def partition_instances(client, pipeline: Pipeline, run_ids: list[str]) -> list[dict]:
    items = []
    for run_id in run_ids:
        items.extend(client.task_instances(pipeline.symbol_dag, run_id, pipeline.partition_task))
    return items


def task_log(client, dag_id: str, ti: dict) -> list[dict]:
    """The task instance's structured log events (REST; any stack), those with a timestamp."""
    run = urllib.parse.quote(ti["dag_run_id"], safe="")
    path = (
        f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
        f"?map_index={ti['map_index']}&full_content=true"
    )
    content = client.get(path).get("content") or []
    return [e for e in content if isinstance(e, dict) and e.get("timestamp")]


def log_phases(events: list[dict], ti: dict) -> dict | None:
    """Seconds: start_date -> first log line, start-up (bundle + parse), own work, post-execute
    (XCom, state; partly after end_date); None if the log lacks the markers."""
    times = [_parse_time(e["timestamp"]) for e in events]
    names = [str(e.get("event", "")) for e in events]
    try:
        pre_end = names.index("::endgroup::")
        done = next(i for i, n in enumerate(names) if n.startswith("Done."))
    except (ValueError, StopIteration):
        return None
    parse_ms = next((e.get("dag_file_parse_ms") for e in events if "dag_file_parse_ms" in e), None)
    start = _parse_time(ti["start_date"])
    return {
        "before_first_log": (times[0] - start).total_seconds(),
        "startup": (times[pre_end] - times[0]).total_seconds(),
        "dag_file_parse": None if parse_ms is None else parse_ms / 1000,
        "work": (times[done] - times[pre_end]).total_seconds(),
        "post_execute": (times[-1] - times[done]).total_seconds(),
    }


def breakdown(client, pipeline: Pipeline, outcome: dict, log_sample: int) -> dict:
    run = outcome["run"]
    runs = symbol_runs(client, pipeline, run["dag_run_id"])
    tis = partition_instances(client, pipeline, runs)
    done = [ti for ti in tis if ti["state"] == "success" and ti["start_date"] and ti["end_date"]]
    queued_at = run["queued_at"]
    end = max(r["end_date"] for r in outcome["aggregations"])
    first_start = min(ti["start_date"] for ti in done)
    last_end = max(ti["end_date"] for ti in done)
    runs_s = [_seconds(ti["end_date"], ti["start_date"]) for ti in done]
    partitions_wall = _seconds(last_end, first_start)
    result = {
        "symbol_runs": len(runs),
        "partition_instances": len(tis),
        "succeeded": len(done),
        "retried": sum(1 for ti in tis if (ti.get("try_number") or 1) > 1),
        "phases_s": {
            "until_first_partition_starts": round(_seconds(first_start, queued_at), 1),
            "partitions": round(partitions_wall, 1),
            "after_last_partition": round(_seconds(end, last_end), 1),
        },
        "per_instance_s": {
            "scheduled_to_queued": _stats([_seconds(ti["queued_when"], ti["scheduled_when"]) for ti in done]),
            "queued_to_start": _stats([_seconds(ti["start_date"], ti["queued_when"]) for ti in done]),
            "start_to_end": _stats(runs_s),
        },
        "mean_running": round(sum(runs_s) / partitions_wall, 1) if partitions_wall else None,
    }
    if log_sample and done:
        ordered = sorted(done, key=lambda ti: ti["start_date"])
        step = max(1, len(ordered) // log_sample)
        phases = []
        for ti in ordered[::step][:log_sample]:
            try:
                found = log_phases(task_log(client, pipeline.symbol_dag, ti), ti)
            except Exception as exc:  # noqa: BLE001 - a missing log leaves the sample smaller, said below
                print(f"    log of {ti['dag_run_id']} [{ti['map_index']}] unreadable: {exc}", flush=True)
                found = None
            if found:
                phases.append(found)
        result["log_sample"] = len(phases)
        result["from_logs_s"] = {k: _stats([p[k] for p in phases]) for k in (phases[0] if phases else {})}
    return result


# -- the benchmark ------------------------------------------------------------------------------------
def measure(stack, client, name: str, conf: dict, log_sample: int, label: str) -> dict:
    pipeline = PIPELINES[name]
    load_before = os.getloadavg()
    sampler = StackSampler(stack.pids, label=f"{label} {name}")
    sampler.start()
    try:
        outcome = follow_run(
            client, pipeline.orchestrator, pipeline.aggregation, conf, timeout=None, poll=2.0
        )
    finally:
        memory = sampler.finish()
    load_after = os.getloadavg()
    result = {
        "pipeline": name,
        "label": label,
        "conf": conf,
        "orchestrator_run_id": outcome["run"]["dag_run_id"],
        "wall_s": round(outcome["wall"], 1),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "memory_cpu": memory,
    }
    result["breakdown"] = breakdown(client, pipeline, outcome, log_sample)
    print(
        f"{label:<8} {name:<8} wall {result['wall_s']:7.1f} s  peak PSS {memory['peak_pss_mib']:,.0f} MiB  "
        f"load {load_before[0]:.2f} -> mean {memory['load_mean']} -> {load_after[0]:.2f}  "
        f"other CPU {memory['other_cpu_s']} s",
        flush=True,
    )
    print("    " + json.dumps(result["breakdown"]), flush=True)
    return result


def summarise(results: list[dict]) -> dict:
    measured = [r for r in results if r["label"] != "warm-up"]
    walls = {name: [r["wall_s"] for r in measured if r["pipeline"] == name] for name in PIPELINES}
    peaks = {
        name: [r["memory_cpu"]["peak_pss_mib"] for r in measured if r["pipeline"] == name]
        for name in PIPELINES
    }
    summary = {
        name: {"walls_s": walls[name], "peak_pss_mib": peaks[name]} for name in PIPELINES if walls[name]
    }
    for name in summary:
        summary[name]["median_wall_s"] = round(statistics.median(walls[name]), 1)
    if walls["trading"] and walls["no-op"]:
        summary["ratio"] = round(statistics.median(walls["trading"]) / statistics.median(walls["no-op"]), 2)
    return summary


def parse_bars(value: str) -> int:
    return YEAR_BARS if value == "year" else int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stack", default="local", help=f"one or more, comma-separated, of {', '.join(sorted(STACKS))}"
    )
    parser.add_argument("--contracts", type=int, default=100)
    parser.add_argument("--bars", type=parse_bars, default=24, help="bars per contract, or 'year' (1,764)")
    parser.add_argument(
        "--partitions-per-task", type=int, default=1, help="TRADING_PARTITIONS_PER_TASK of both pipelines"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pipelines", default="trading,no-op", help="comma-separated: trading, no-op")
    parser.add_argument("--warmup-contracts", type=int, default=2, help="0: no warm-up runs")
    parser.add_argument("--log-sample", type=int, default=40, help="task logs read per run")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    unknown = set(names) - set(PIPELINES)
    if unknown:
        parser.error(f"unknown pipeline(s) {sorted(unknown)}")
    stacks = [n.strip() for n in args.stack.split(",") if n.strip()]
    if not stacks or set(stacks) - set(STACKS):
        parser.error(f"unknown stack(s) {sorted(set(stacks) - set(STACKS))}; known: {sorted(STACKS)}")

    started_at = datetime.now(UTC)
    summaries, results = {}, []
    for stack_name in stacks:
        stack_results = run_stack(stack_name, names, args)
        results += [{**r, "stack": stack_name} for r in stack_results]
        summaries[stack_name] = summarise(stack_results)
    summary = summaries[stacks[0]] if len(stacks) == 1 else summaries
    report = {
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "stack": args.stack,
        "contracts": args.contracts,
        "bars": args.bars,
        "partitions_per_task": args.partitions_per_task,
        "cpus": os.cpu_count(),
        "summary": summary,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    for stack_name in stacks:
        print(
            f"\n{args.contracts} contracts x {args.bars} bars ({args.partitions_per_task} per task), "
            f"{stack_name} stack: {json.dumps(summaries[stack_name])}"
        )
    return 0


def run_stack(stack_name: str, names: list[str], args) -> list[dict]:
    """The warm-up and the measured rounds of ``names`` on one stack, in a fresh home."""
    from trading_lib import pipeline

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        stack = STACKS[stack_name](Path(tmp), {"TRADING_PARTITIONS_PER_TASK": str(args.partitions_per_task)})
        try:
            t = time.monotonic()
            stack.start()
            print(f"{stack_name} stack ({stack.description}) healthy after {time.monotonic() - t:.1f} s")
            t = time.monotonic()
            pipeline.generate_inputs(stack.storage(), num_contracts=args.contracts, window_bars=args.bars)
            print(f"{args.contracts} contracts x {args.bars} bars stored in {time.monotonic() - t:.1f} s")
            client = stack.client()
            for name in names:
                client.wait_for_dag(PIPELINES[name].orchestrator)
            conf = {"num_contracts": args.contracts, "window_bars": args.bars}
            if args.warmup_contracts:
                warm = {"num_contracts": args.warmup_contracts, "window_bars": 24}
                for name in names:
                    results.append(measure(stack, client, name, warm, 0, "warm-up"))
            for round_number in range(1, args.rounds + 1):
                order = names if round_number % 2 else names[::-1]
                for name in order:
                    results.append(
                        measure(stack, client, name, conf, args.log_sample, f"round {round_number}")
                    )
                    if args.json:  # what is measured so far, should a later run fail
                        partial = args.json.with_suffix(f".{stack_name}.partial.json")
                        partial.write_text(json.dumps({"results": results}, indent=1))
        finally:
            stack.stop()
    return results


if __name__ == "__main__":
    sys.exit(main())
