"""
### aggregate_portfolio: portfolio reports of a run and over a period

Scheduled on the `trading_results` asset. It runs once per pipeline run (trading_orchestrator
emits the asset once, after every analyze_symbol run has finished) and again by itself whenever a
partition is reprocessed or analyze_symbol runs on its own.

It computes from what is stored, never from the events' payloads (events can be batched into one
run; their extras only say which orchestrator runs to report on):

- **the run's report** for each orchestrator run behind the triggering events:
  `output/runs/<run_id>/portfolio.json`;
- **the cumulative report** over a period: `output/reports/portfolio.json`, by default every
  session with results, or `period_start` .. `period_end`.

Both hold total and daily P&L, win rate, Sharpe (annualised with √1764, with the number of
returns behind it and its standard error after Lo, 2002), average beta, and per-contract,
daily and time-series tables. A trade at bar t closes once bar t+1 is in the bar store, whichever
run stored it: each scheduled run closes the previous interval's trades.

A partition the run expected but that has no result file is listed in the report, and the task
then **fails** (after writing the report), so the UI and alerting see it. Triggered by hand, it
also reports on the latest orchestrator run (`output/runs/latest.json`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from trading_airflow.params import NULLABLE_DATE
from trading_airflow.runtime import (
    AGGREGATE_DAG,
    DEFAULT_ARGS,
    RESULTS_ASSET,
    START_DATE,
    bad_input_fails_fast,
    connection_storage,
)


@dag(
    dag_id=AGGREGATE_DAG,
    schedule=[RESULTS_ASSET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["trading", "aggregate"],
    default_args=DEFAULT_ARGS,
    params={
        "period_start": Param(
            None,
            **NULLABLE_DATE,
            title="Period start",
            description="First session of the cumulative report, YYYY-MM-DD (inclusive). "
            "Default: the first session with results.",
        ),
        "period_end": Param(
            None,
            **NULLABLE_DATE,
            title="Period end",
            description="Last session of the cumulative report, YYYY-MM-DD (inclusive), not before "
            "Period start. Default: the last session with results.",
        ),
        "output_dir": Param(
            None,
            type=["null", "string"],
            minLength=1,
            title="Results folder",
            description="The trading-results folder to aggregate: a local path or s3://bucket/prefix "
            "that exists. Default: <data root>/output/trading-results.",
        ),
    },
)
def aggregate_portfolio():
    @task
    def aggregate(params=None, dag_run=None, triggering_asset_events=None):
        from airflow.sdk.exceptions import AirflowFailException

        from trading_lib import pipeline
        from trading_lib.run_request import check_keys, parse_date

        events = triggering_asset_events.get(RESULTS_ASSET, []) if triggering_asset_events else []
        run_ids = sorted(
            {e.extra["orchestrator_run_id"] for e in events if e.extra.get("orchestrator_run_id")}
        )
        output_dir = params.get("output_dir")
        with bad_input_fails_fast():
            check_keys(dag_run.conf, ("period_start", "period_end", "output_dir"))
            storage = connection_storage()
            if not events:  # triggered by hand: report on the latest orchestrator run as well
                latest = pipeline.latest_run(storage)
                if latest is not None:
                    run_ids = [latest["run_id"]]
            print(f"triggered by {len(events)} asset event(s); orchestrator runs: {run_ids or 'none'}")
            summary = pipeline.aggregate(
                storage,
                run_ids=run_ids,
                period_start=parse_date(params.get("period_start"), "period_start"),
                period_end=parse_date(params.get("period_end"), "period_end"),
                aggregation_run_id=dag_run.run_id,
                results_storage=connection_storage(output_dir) if output_dir else None,
            )
        print(
            f"period {summary['period_start']} .. {summary['period_end']}: "
            f"{summary['partitions']} partitions, "
            f"{summary['closed_trades']} closed trades, P&L {summary['total_pnl']:.2f} USD, "
            f"Sharpe {summary['sharpe_ratio']} over {summary['sharpe_returns']} returns"
        )
        missing = [
            (rid, run["missing_partitions"])
            for rid, run in summary["runs"].items()
            if run["missing_partitions"]
        ]
        if missing:
            names = [f"{p['contract']} {p['timestamp']}" for _, parts in missing for p in parts]
            raise AirflowFailException(
                f"{len(names)} expected partition(s) have no result (reports written): "
                + ", ".join(names[:20])
            )
        return summary

    aggregate()


aggregate_portfolio()
