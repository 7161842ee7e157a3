"""Parse time of each DAG file vs an empty DAG file, the way Airflow's dag-processor parses them.

The dag-processor keeps Airflow imported in its parent, pre-imports the `airflow.*` modules a file
names (`[dag_processor] parsing_pre_import_modules`), then forks a child that parses the file and
serialises its DAGs. This benchmark does the same: for every file, N forked children each parse
and serialise it; it prints the median per file and the ratio to an empty DAG file. Goal <= 1.2x.

A second column shows how much of it is Airflow serialising the DAG (for a DAG with Params, mostly
validating every Param's JSON schema once per task), work an empty DAG does not have.

    python bench/bench_parse.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DAGS = PROJECT / "dags"
EMPTY_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="empty", schedule=None, doc_md="empty", tags=["bench"])
def empty():
    @task
    def noop():
        pass

    noop()


empty()
"""


def _setup_environment(home: str) -> None:
    os.environ.setdefault("AIRFLOW_HOME", home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ.setdefault("TRADING_DATA_ROOT", home)
    sys.path.append(str(DAGS))


def _parse_in_child(path: Path) -> tuple[float, float]:
    """Fork, parse + serialise ``path`` in the child; return (total, serialisation) wall seconds."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: what the dag-processor's parsing process does
        os.close(read_end)
        from airflow.dag_processing.dagbag import BundleDagBag
        from airflow.serialization.serialized_objects import DagSerialization

        started = time.perf_counter()
        bag = BundleDagBag(
            dag_folder=str(path), bundle_path=path.parent, bundle_name="bench", load_op_links=False
        )
        parsed = time.perf_counter()
        for dag in bag.dags.values():
            DagSerialization.to_dict(dag)
        done = time.perf_counter()
        ok = not bag.import_errors and bag.dags
        os.write(write_end, (f"{done - started} {done - parsed}" if ok else "-1 -1").encode())
        os._exit(0)
    os.close(write_end)
    result = os.read(read_end, 128).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    total, serialisation = (float(v) for v in result.split())
    if total < 0:
        raise RuntimeError(f"{path} did not parse cleanly")
    return total, serialisation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        _setup_environment(home)
        import structlog
        from airflow.dag_processing.processor import _pre_import_airflow_modules

        log = structlog.get_logger()
        empty = Path(home) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        files = [empty, *sorted(p for p in DAGS.glob("*.py"))]
        for path in files:
            _pre_import_airflow_modules(str(path), log)
            _parse_in_child(path)  # warm the OS file cache
        samples: dict[Path, list[tuple[float, float]]] = {path: [] for path in files}
        for _ in range(args.runs):  # round-robin, so drift of the machine hits every file alike
            for path in files:
                samples[path].append(_parse_in_child(path))
    medians = {path: statistics.median(t for t, _ in values) for path, values in samples.items()}
    serialisation = {path: statistics.median(s for _, s in values) for path, values in samples.items()}
    baseline = medians[empty]
    print(f"{'DAG file':<26}{'parse (ms)':>12}{'vs empty':>10}{'of which serialisation (ms)':>30}")
    worst = 0.0
    for path, value in medians.items():
        ratio = value / baseline
        worst = max(worst, ratio)
        name = "(empty DAG file)" if path == empty else path.name
        print(f"{name:<26}{value * 1000:>12.1f}{ratio:>9.2f}x{serialisation[path] * 1000:>30.1f}")
    print(f"worst ratio {worst:.2f}x (goal <= 1.20x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
