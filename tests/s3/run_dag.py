"""Run DAGs of the bundle with ``dag.test()``, one after the other, in a fresh process.

    python tests/s3/run_dag.py '[["analyze_symbol", {"contract": "AAPL"}], ["aggregate_portfolio", {}]]'

Airflow reads its configuration (AIRFLOW_HOME, connections from AIRFLOW_CONN_*, TRADING_* settings)
when it is imported, so a test that needs another environment runs this script with it. Each run
prints one stdout line ``RESULT <json>``: its state and every task instance's state and try number.
(One process for several runs: starting Airflow in a process costs tens of seconds here.)
The metadata DB of AIRFLOW_HOME must be migrated (``airflow db migrate``).

A run may carry a third item, ``{"asset_events": [extra, ...]}``: events of the trading_results
asset, with these extras, that the run consumes as its triggering asset events, as if the scheduler
had started it on them (``dag.test()`` alone never gives a run any). For aggregate_portfolio:
``{"asset_events": [{"source": "trading_orchestrator", "orchestrator_run_id": "<run id>"}]}`` is
what trading_orchestrator's publish_results emits at the end of a pipeline run.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

DAGS = Path(__file__).resolve().parents[2] / "dags"
RESULT_PREFIX = "RESULT "


def _consuming(extras: list[dict]):
    """Patch dag.test()'s DAG run factory: the new run consumes asset events with ``extras``."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    from trading_airflow.runtime import RESULTS_ASSET

    create = dagrun_module.get_or_create_dagrun

    def get_or_create_dagrun(*, session, **kwargs):
        run = create(session=session, **kwargs)
        asset = session.scalar(
            select(AssetModel).where(
                AssetModel.name == RESULTS_ASSET.name, AssetModel.uri == RESULTS_ASSET.uri
            )
        )
        if asset is None:
            raise RuntimeError(f"asset {RESULTS_ASSET.name} ({RESULTS_ASSET.uri}) is not in the metadata DB")
        for extra in extras:
            event = AssetEvent(
                asset_id=asset.id,
                extra=extra,
                source_dag_id=extra.get("source"),
                source_run_id=extra.get("orchestrator_run_id"),
            )
            session.add(event)
            run.consumed_asset_events.append(event)
        session.commit()
        return run

    return mock.patch.object(dagrun_module, "get_or_create_dagrun", get_or_create_dagrun)


def main(runs: list[list]) -> int:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    bag = DagBag(str(DAGS))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    for dag_id, conf, *options in runs:
        extras = options[0].get("asset_events") if options else None
        with _consuming(extras) if extras else nullcontext():
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
