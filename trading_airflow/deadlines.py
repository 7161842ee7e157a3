"""trading_orchestrator's deadline: Airflow's DeadlineAlert, counted from the close of the run's bar.

A scheduled run is late when it has not finished TRADING_ORCHESTRATOR_DEADLINE_MINUTES (default
20) after its data interval ended (its bar closed): the hour's portfolio is late, whether the
scheduler, Yahoo or the analysis held it up. A manual run is counted from when it was queued. A
backfill run has no deadline: its bar is long past, and Airflow queues all the runs of a backfill
at once, so each would be "late" 20 minutes into a long backfill however well it went.

When a deadline passes, the scheduler queues :func:`record_late_run` on the triggerer (an
AsyncCallback): it logs the late run and marks it in the run record (trading_lib.run_record, the
record's one writer), which the Pipeline run page shows. A run that succeeds in time has its
deadline removed by Airflow; one that fails is also reported late once its deadline passes.

The reference class is registered by the plugin (``deadline_references``), which is how the
scheduler finds it again when it reads the serialized DAG.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import AsyncCallback, BaseDeadlineReference, DeadlineAlert

if TYPE_CHECKING:
    from datetime import datetime

    from trading_lib.settings import Settings

log = logging.getLogger(__name__)


class BarCloseOrQueuedAt(BaseDeadlineReference):
    """The end of a scheduled run's data interval (the close of its bar); none for a backfill run;
    for every other run (manual, asset-triggered) and a scheduled one without an interval, when it
    was queued."""

    required_kwargs = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        from airflow._shared.timezones import timezone
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(
            select(DagRun.run_type, DagRun.data_interval_end, DagRun.queued_at).where(
                DagRun.dag_id == dag_id, DagRun.run_id == run_id
            )
        ).one_or_none()
        if row is None:
            log.warning("no run %s of %s: no deadline", run_id, dag_id)
            return None
        run_type, interval_end, queued_at = row
        run_type = str(getattr(run_type, "value", run_type))
        if run_type == "backfill":
            return None  # Airflow then creates no deadline for the run
        if run_type == "scheduled" and interval_end is not None:
            return interval_end
        return queued_at or timezone.utcnow()


async def record_late_run(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The deadline alert's callback (on the triggerer): log the late run and record it late."""
    import asyncio

    dag_run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    log.warning(
        "%s run %s is late: not finished by its deadline %s (state %s, data interval end %s, queued %s)",
        dag_run.get("dag_id"),
        run_id,
        deadline.get("deadline_time"),
        dag_run.get("state"),
        dag_run.get("data_interval_end"),
        dag_run.get("queued_at"),
    )
    if run_id:
        await asyncio.to_thread(_record_late, run_id, deadline.get("deadline_time"), dag_run.get("state"))


def _record_late(run_id: str, deadline: object, state: object) -> None:
    from trading_airflow.runtime import connection_storage
    from trading_lib.run_record import late_facts, record_run

    record_run(connection_storage(), run_id, late=late_facts(deadline, state))


def orchestrator_deadline(settings: Settings) -> DeadlineAlert | None:
    """The orchestrator's DeadlineAlert, or None when TRADING_ORCHESTRATOR_DEADLINE_MINUTES=none."""
    if settings.orchestrator_deadline_minutes is None:
        return None
    return DeadlineAlert(
        reference=BarCloseOrQueuedAt(),
        interval=timedelta(minutes=settings.orchestrator_deadline_minutes),
        callback=AsyncCallback(record_late_run),
        name="hour_late",
    )
