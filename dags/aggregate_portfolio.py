"""
### aggregate_portfolio: portfolio analytics over every partition result

Layer 6 of the trading pipeline, scheduled on the `trading_results` asset (Airflow 3's name for a
Dataset). It runs once per pipeline run (trading_orchestrator emits the asset once, after every
analyze_symbol run has finished) and again by itself whenever a partition is reprocessed or
analyze_symbol runs on its own.

It computes the report from what is in storage, never from the asset events' payloads (events can
be batched into one run, and their extras are informational): total P&L, win rate, Sharpe ratio
(annualised), average beta, a per-contract table and a time series, and the partitions that were
expected but are missing. Output: `output/reports/portfolio.json` (shown in the Trading reports
view of the Airflow UI).

Param `output_dir`: the trading-results folder to aggregate (local path or s3://), default
`<TRADING_DATA_ROOT>/output/trading-results`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from common.runtime import (
    DEFAULT_ARGS,
    RESULTS_ASSET,
    START_DATE,
    bad_input_fails_fast,
    storage_at,
    task_storage,
)


@dag(
    dag_id="aggregate_portfolio",
    schedule=[RESULTS_ASSET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["trading", "layer-6"],
    default_args=DEFAULT_ARGS,
    params={
        "output_dir": Param(
            None,
            type=["null", "string"],
            minLength=1,
            description="trading-results folder to aggregate (default: <data root>/output/trading-results)",
        ),
    },
)
def aggregate_portfolio():
    @task
    def aggregate() -> dict:
        from trading_lib import pipeline

        context = get_current_context()
        events = context["triggering_asset_events"].get(RESULTS_ASSET, [])
        print(f"triggered by {len(events)} asset event(s): {[e.extra for e in events][:10]}")
        output_dir = context["params"].get("output_dir")
        with bad_input_fails_fast():
            return pipeline.aggregate(task_storage(), storage_at(output_dir) if output_dir else None)

    aggregate()


aggregate_portfolio()
