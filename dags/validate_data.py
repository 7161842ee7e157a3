"""
### validate_data: PASS / WARN / FAIL report on the input files

Layer 2 of the trading pipeline, standalone (trading_orchestrator runs the same task and branches
on its result). Checks missing values, >3σ outliers on returns, completeness against the NYSE
calendar, ^VIX and ^GSPC present for every stock bar, and duplicates; writes
`output/reports/validation.json`. The run fails when the status is FAIL.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from common.runtime import DEFAULT_ARGS, START_DATE
from common.tasks import validate_data as validate_task

from trading_lib.symbols import JSON_SCHEMA_PATTERN


@dag(
    dag_id="validate_data",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["trading", "layer-2"],
    default_args=DEFAULT_ARGS,
    params={
        "contracts": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": JSON_SCHEMA_PATTERN},
            description="Only these contracts (default: all in the input)",
        ),
    },
)
def validate_data():
    @task(retries=0)
    def fail_on_fail(validation: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        if validation["status"] == "FAIL":
            raise AirflowFailException(f"{validation['summary']} ({validation['report']})")
        return validation

    @task(retries=0)
    def build_request() -> dict:
        return {"run_validation": True, "contracts": get_current_context()["params"].get("contracts")}

    fail_on_fail(validate_task(build_request()))


validate_data()
