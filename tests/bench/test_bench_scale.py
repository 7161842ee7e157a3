"""bench/bench_scale.py's readings: a task log's phases (the log format of Airflow 3.3's task
runner), the components named from command lines, the stats."""

from __future__ import annotations

import pytest
from bench_scale import _stats, log_phases, role_of

EVENTS = [  # abridged from a real analyze_partition log
    {"timestamp": "2026-11-30T15:42:07.427112Z", "event": "::group::Pre Execute"},
    {"timestamp": "2026-11-30T15:42:08.530014Z", "event": "DAG bundles loaded: dags-folder"},
    {
        "timestamp": "2026-11-30T15:42:09.994758Z",
        "event": "Worker startup parse complete",
        "dag_file_parse_ms": 1346,
    },
    {"timestamp": "2026-11-30T15:42:10.424011Z", "event": "::endgroup::"},
    {"timestamp": "2026-11-30T15:42:12.312208Z", "event": "partition GOOGL 2024-01-19T15:30:00-05:00: ..."},
    {"timestamp": "2026-11-30T15:42:12.363710Z", "event": "Done. Returned value was: 1"},
    {"timestamp": "2026-11-30T15:42:12.363931Z", "event": "::group::Post Execute"},
    {"timestamp": "2026-11-30T15:42:12.435794Z", "event": "Pushing xcom"},
    {"timestamp": "2026-11-30T15:42:12.634204Z", "event": "::endgroup::"},
]
TI = {"start_date": "2026-11-30T15:42:07.249081Z", "end_date": "2026-11-30T15:42:12.600000Z"}


def test_log_phases_split_the_run_at_the_task_runner_markers():
    phases = log_phases(EVENTS, TI)
    assert phases["before_first_log"] == pytest.approx(0.178031)
    assert phases["startup"] == pytest.approx(2.996899)  # first line -> end of Pre Execute
    assert phases["dag_file_parse"] == pytest.approx(1.346)
    assert phases["work"] == pytest.approx(1.939699)  # end of Pre Execute -> "Done."
    assert phases["post_execute"] == pytest.approx(0.270494)


def test_a_log_without_the_markers_gives_nothing():
    assert log_phases([e for e in EVENTS if not e["event"].startswith("Done.")], TI) is None


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        ("airflow worker -- LocalExecutor: <idle>", "executor worker"),
        ("/v/bin/python /v/bin/airflow scheduler", "scheduler"),
        (
            "/v/bin/python -B -c from multiprocessing.resource_tracker import main;main(9)",
            "api-server worker",
        ),
        ("/v/bin/python /v/bin/airflow triggerer", "triggerer"),
        ("/usr/lib/postgresql/15/bin/postgres -D /h/postgres/data", "postgres"),
        ("airflow serve-logs", "other: airflow serve-logs"),
        ("airflow supervisor: 01a22e58-e82b-7c06-81da-224298a968c7", "task supervisor"),
    ],
)
def test_roles_from_command_lines(cmdline, role):
    assert role_of(cmdline) == role


def test_stats():
    assert _stats([3.0, 1.0, None, 2.0]) == {"median": 2.0, "p90": 2.0, "max": 3.0, "sum": 6.0, "n": 3}
    assert _stats([]) == {}
