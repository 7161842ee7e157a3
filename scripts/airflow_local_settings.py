"""Airflow local settings of the local stack (`make demo`, the end-to-end tests, the benchmarks).

Linked into $AIRFLOW_HOME/config/ by scripts/local_airflow.py; Airflow imports it in every process.

In the scheduler and in a Celery worker's main process only, it imports the pipeline's heavy
libraries once. The LocalExecutor forks its workers from the scheduler and every task process from a
worker (a bare fork on Linux); a Celery worker forks its pool processes, and each of those forks the
task processes. So what that parent has imported each task gets for free: pandas + pyarrow cost
~1.2 s of CPU in a fresh process, about 290 CPU-s for the 240 partitions of one pipeline run on a
2-core machine, more than the whole pipeline otherwise takes (bench/bench_pipeline.py measures both).
"""

import os
import socket
import sys

# LOCAL_AIRFLOW_PRELOAD=0 turns it off (bench/bench_pipeline.py --no-preload measures the difference).
PRELOAD = (
    "pyarrow.parquet",
    "exchange_calendars",
    "deltalake",  # the bar store's table (0.3 s a task otherwise); only imported here, never used
    "trading_lib.analytics",
    "trading_lib.pipeline",
    "trading_lib.portfolio",
    "trading_lib.validation",
)
# With an s3:// data root (the Celery stack), every task also imports the S3 side: parsing a DAG
# turns the results asset's s3:// URI through the amazon provider (boto3), and storage opens s3fs.
# ~1.3 s of CPU in a fresh process.
S3_PRELOAD = ("airflow.providers.amazon.aws.hooks.s3", "s3fs")


def stack_hostname() -> str:
    """[core] hostname_callable of the Celery stack's workers (scripts/celery_stack.py): both run on
    one machine, so each names itself (LOCAL_AIRFLOW_HOSTNAME) in the task instances it runs."""
    return os.environ.get("LOCAL_AIRFLOW_HOSTNAME") or socket.getfqdn()


_FORKING_PARENT = sys.argv[1:2] == ["scheduler"] or sys.argv[1:3] == ["celery", "worker"]
if _FORKING_PARENT and os.environ.get("LOCAL_AIRFLOW_PRELOAD", "1") != "0":
    import importlib
    import logging

    _s3 = os.environ.get("TRADING_DATA_ROOT", "").startswith("s3://")
    for _module in PRELOAD + (S3_PRELOAD if _s3 else ()):
        try:
            importlib.import_module(_module)
        except Exception:  # a broken preload must never stop the scheduler: tasks import it again
            logging.getLogger(__name__).exception("preloading %s failed", _module)
