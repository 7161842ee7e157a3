"""
### validate_data: PASS / WARN / FAIL report on stored bars

The same task trading_orchestrator runs (it branches on the result), standalone: checks the
bars of a window (default: the last 24 stored bars) and the warm-up sessions before it against
the data contract (finite positive prices, high/low consistent, unique bars), missing values,
>3σ outliers on returns, completeness against the NYSE calendar and ^VIX/^GSPC present for every
stock bar; writes `output/reports/validation.json`. The run fails when the status is FAIL.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from trading_airflow.runtime import DEFAULT_ARGS, START_DATE, VALIDATE_DAG, bad_input_fails_fast
from trading_airflow.tasks import validate_data as validate_task
from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id=VALIDATE_DAG,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "validate"],
    default_args=DEFAULT_ARGS,
    params={
        "contracts": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            title="Contracts",
            description="Only these contracts (Yahoo tickers); default: every contract with bars "
            "in the window.",
        ),
    },
)
def validate_data():
    @task(retries=0)
    def fail_on_fail(validation: dict):
        from airflow.sdk.exceptions import AirflowFailException

        if validation["status"] == "FAIL":
            raise AirflowFailException(f"{validation['summary']} ({validation['report']})")
        return validation

    @task(retries=0)
    def build_request(params=None, dag_run=None):
        from trading_lib.run_request import check_keys

        with bad_input_fails_fast():
            check_keys(dag_run.conf, ("contracts",))
        return {"validate": True, "contracts": params.get("contracts")}

    fail_on_fail(validate_task(build_request()))


validate_data()
