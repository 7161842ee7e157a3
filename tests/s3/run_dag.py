"""Run DAGs of the bundle with ``dag.test()``, one after the other, in a fresh process.

    python tests/s3/run_dag.py '[["analyze_symbol", {"contract": "AAPL"}], ["aggregate_portfolio", {}]]'

Airflow reads its configuration (AIRFLOW_HOME, connections from AIRFLOW_CONN_*, TRADING_* settings)
when it is imported, so a test that needs another environment runs this script with it. The last
run prints one stdout line ``RESULT <json>``: its state and every task instance's state and try
number. (One process for several runs: starting Airflow in a process costs tens of seconds here.)
The metadata DB of AIRFLOW_HOME must be migrated (``airflow db migrate``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"
RESULT_PREFIX = "RESULT "


def main(runs: list[tuple[str, dict]]) -> int:
    sys.path.insert(0, str(DAGS))  # as Airflow does for its bundle in its own processes
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    bag = DagBag(str(DAGS))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    for dag_id, conf in runs:
        run = bag.dags[dag_id].test(run_conf=conf or None)
        with create_session() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).all()
            instances = [
                {
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "state": str(ti.state),
                    "try_number": ti.try_number,
                }
                for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index))
            ]
        result = {
            "dag_id": dag_id,
            "run_id": run.run_id,
            "state": str(run.state),
            "task_instances": instances,
        }
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
