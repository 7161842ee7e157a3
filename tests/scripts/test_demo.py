"""scripts/demo.py's progress: the ETA from the partition completion rate, the lines it prints,
and a wait without deadline (a fake Airflow on a simulated clock: no real time passes)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from demo import LOG_EVERY, STALL_NOTICE, Progress, StackExited, format_duration, run_pipeline
from local_airflow import StackFailed


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (44.6, "45 s"),
        (59.4, "59 s"),
        (60, "1 min 00 s"),
        (185, "3 min 05 s"),
        (3720, "1 h 02 min"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_eta_from_the_rate_since_the_first_finished_partition():
    progress = Progress(expected_runs=2)
    progress.update(0, done=0, total=48, runs_created=2, runs_expanded=2)
    assert progress.eta() is None  # nothing finished yet: no rate
    progress.update(100, done=8, total=48, runs_created=2, runs_expanded=2)  # 100 s of start-up
    assert progress.eta() is None  # one observation: still no rate
    progress.update(110, done=18, total=48, runs_created=2, runs_expanded=2)
    assert progress.rate == pytest.approx(1.0)  # 10 partitions in 10 s, the start-up left out
    assert progress.eta() == pytest.approx(30.0)
    line = progress.line(110, "running")
    assert "18/48" in line and "1.0/s" in line and "ETA 30 s" in line and "(running)" in line
    progress.update(140, done=48, total=48, runs_created=2, runs_expanded=2)
    assert progress.eta() == 0


def test_total_is_extrapolated_until_every_run_has_expanded():
    progress = Progress(expected_runs=100)
    # 20 runs exist, 4 expanded (24 partitions each), 16 still count their placeholder only
    progress.update(0, done=0, total=4 * 24 + 16, runs_created=20, runs_expanded=4)
    assert progress.estimated and progress.total == 2400
    assert "0/~2400" in progress.line(0, "running")
    progress.update(10, done=10, total=2400, runs_created=100, runs_expanded=100)
    assert not progress.estimated and progress.total == 2400
    assert "10/2400" in progress.line(10, "running")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeClient:
    """An orchestrator run whose partitions finish slowly: one every ``per_partition`` simulated
    seconds after ``start_up``; the aggregation succeeds ``aggregation_after`` s after it."""

    def __init__(self, clock, partitions=2400, per_partition=3.0, start_up=60.0, stall=0.0):
        self.clock, self.partitions, self.per_partition = clock, partitions, per_partition
        self.start_up, self.stall = start_up, stall
        self.finished_at = start_up + stall + partitions * per_partition

    def wait_for_dag(self, dag_id):
        return {"dag_id": dag_id}

    def trigger(self, dag_id, conf):
        return {"dag_run_id": "manual__1"}

    def _done(self) -> int:
        t = self.clock.now - self.start_up - self.stall
        return max(0, min(self.partitions, int(t / self.per_partition)))

    def dag_run(self, dag_id, run_id):
        return {"dag_run_id": run_id, "state": "success" if self.clock.now >= self.finished_at else "running"}

    def count_task_instances(self, dag_id, task_id, prefix, state=None):
        if task_id == "list_partitions":
            return 100
        if state == "success":
            return self._done()
        return self.partitions

    def dag_runs(self, dag_id, state=None):
        if self.clock.now < self.finished_at:
            return []
        return [{"dag_run_id": "asset_triggered__1", "state": "success"}]


class FakeAirflow:
    base_url = "http://127.0.0.1:1"
    home = Path("/nonexistent/airflow-home")

    def __init__(self, client, alive=lambda: True, events=lambda: []):
        self._client, self._alive, self._events = client, alive, events

    def client(self, on_retry=None):
        return self._client

    def check(self):
        if not self._alive():
            raise StackFailed("scheduler exited 5 times in 10 minutes; its log: /x/scheduler.log")

    def events(self):
        return self._events()


def test_a_run_longer_than_any_former_deadline_is_followed_to_its_end():
    clock = FakeClock()
    client = FakeClient(clock, partitions=2400, per_partition=3.0)  # 2 h of simulated time
    out = io.StringIO()
    outcome = run_pipeline(
        FakeAirflow(client), {"num_contracts": 100}, clock=clock, sleep=clock.sleep, out=out
    )
    assert clock.now >= 2 * 3600
    assert outcome["orchestrator"]["state"] == "success"
    assert outcome["aggregation"]["state"] == "success"
    assert outcome["partitions"] == (2400, 2400)
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("  partitions [####") and "2400/2400" in lines[-2]
    assert "waiting for the aggregate_portfolio" in lines[-1]
    # a log (not a terminal): one line per LOG_EVERY simulated seconds, with an ETA once the rate is known
    progress_lines = [line for line in lines if line.startswith("  partitions")]
    assert len(progress_lines) == pytest.approx(clock.now / LOG_EVERY, rel=0.05)
    assert "ETA --" in progress_lines[0]
    assert any("ETA 1 h" in line for line in progress_lines), "a 2-hour run's ETA is shown in hours"
    assert "ETA 0 s" in progress_lines[-1]


def test_a_long_stall_is_reported_not_failed():
    clock = FakeClock()
    client = FakeClient(clock, partitions=24, per_partition=1.0, stall=3 * STALL_NOTICE)
    out = io.StringIO()
    outcome = run_pipeline(FakeAirflow(client), {"num_contracts": 1}, clock=clock, sleep=clock.sleep, out=out)
    assert outcome["orchestrator"]["state"] == "success"
    assert out.getvalue().count("nothing changed for 10 min") >= 2


def test_a_stack_that_stopped_by_itself_fails_the_wait():
    clock = FakeClock()
    client = FakeClient(clock, partitions=24, per_partition=1.0)
    with pytest.raises(StackExited, match="scheduler exited 5 times"):
        run_pipeline(
            FakeAirflow(client, alive=lambda: clock.now < 30),
            {"num_contracts": 1},
            clock=clock,
            sleep=clock.sleep,
            out=io.StringIO(),
        )


def test_an_explicit_timeout_still_applies():
    clock = FakeClock()
    client = FakeClient(clock, partitions=2400, per_partition=3.0)
    with pytest.raises(TimeoutError):
        run_pipeline(
            FakeAirflow(client),
            {"num_contracts": 100},
            timeout=900,
            clock=clock,
            sleep=clock.sleep,
            out=io.StringIO(),
        )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_rewritten_at_each_poll():
    clock = FakeClock()
    client = FakeClient(clock, partitions=24, per_partition=1.0, start_up=4.0)
    out = Terminal()
    run_pipeline(FakeAirflow(client), {"num_contracts": 1}, clock=clock, sleep=clock.sleep, out=out)
    text = out.getvalue()
    first, _, rest = text.partition("\n")
    assert first.count("\r  partitions") == first.count("\r") > 5  # one rewritten line...
    assert "24/24" in first.rsplit("\r", 1)[1] and "ETA 0 s" in first.rsplit("\r", 1)[1]  # ...ending done
    assert rest.startswith("  waiting for the aggregate_portfolio")


def test_a_restart_by_the_supervisor_is_printed_once_and_the_wait_goes_on():
    clock = FakeClock()
    client = FakeClient(clock, partitions=24, per_partition=1.0)
    restart = {"n": 7, "at": 0.0, "message": "scheduler exited (code -9); restarting in 1 s"}
    out = io.StringIO()
    outcome = run_pipeline(
        FakeAirflow(client, events=lambda: [restart] if clock.now > 20 else []),
        {"num_contracts": 1},
        clock=clock,
        sleep=clock.sleep,
        out=out,
    )
    assert outcome["orchestrator"]["state"] == "success"
    assert out.getvalue().count("stack: scheduler exited (code -9); restarting in 1 s") == 1


class QueuedClient(FakeClient):
    """The run waits behind an earlier scheduled run (max_active_runs=1) for its first 100 s."""

    def dag_run(self, dag_id, run_id):
        if self.clock.now < 100:
            return {"dag_run_id": run_id, "state": "queued"}
        return super().dag_run(dag_id, run_id)

    def dag_runs(self, dag_id, state=None):
        if state == "running":
            return [{"dag_run_id": "scheduled__2026-12-01T15:30:00+00:00", "state": "running"}]
        return super().dag_runs(dag_id, state)

    def task_instances(self, dag_id, run_id, task_id=None, state=None):
        if state == "up_for_retry":
            return [{"task_id": "ingest_market_data", "state": "up_for_retry", "try_number": 3}]
        return []


def test_a_queued_run_says_what_holds_it_and_how_to_clear_it():
    clock = FakeClock()
    client = QueuedClient(clock, partitions=24, per_partition=1.0, start_up=110)
    out = io.StringIO()
    run_pipeline(FakeAirflow(client), {"num_contracts": 1}, clock=clock, sleep=clock.sleep, out=out)
    text = out.getvalue()
    holder = "scheduled__2026-12-01T15:30:00+00:00"
    assert text.count(f"is queued: it waits for trading_orchestrator run {holder}") == 1  # the hint, once
    assert "mark it failed in the UI" in text and '{"state": "failed"}' in text
    queued_lines = [line for line in text.splitlines() if line.startswith("  partitions")][:3]
    assert all(f"(queued: waits for trading_orchestrator run {holder}" in line for line in queued_lines)
    assert "ingest_market_data (up_for_retry, try 3)" in queued_lines[0]


def test_a_failed_run_names_each_failed_task_and_its_log():
    from demo import failed_task_lines

    class Client:
        def task_instances(self, dag_id, run_id, task_id=None, state=None):
            assert state == "failed"
            return [
                {"task_id": "validate_data", "map_index": -1, "try_number": 1},
                {"task_id": "analyze_partition", "map_index": 5, "try_number": 7},
            ]

    home = Path("/srv/airflow_home")
    lines = failed_task_lines(Client(), home, "trading_orchestrator", "manual__1")
    run_logs = home / "logs" / "dag_id=trading_orchestrator" / "run_id=manual__1"
    assert lines == [
        f"  validate_data failed (try 1): {run_logs / 'task_id=validate_data' / 'attempt=1.log'}",
        f"  analyze_partition[5] failed (try 7): "
        f"{run_logs / 'task_id=analyze_partition' / 'map_index=5' / 'attempt=7.log'}",
    ]
