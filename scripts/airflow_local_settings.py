"""Airflow local settings of the local stack (`make demo`, the end-to-end tests, the benchmarks).

Linked into $AIRFLOW_HOME/config/ by scripts/local_airflow.py; Airflow imports it in every process.

In the scheduler only, it imports the pipeline's heavy libraries once. The LocalExecutor forks its
workers from the scheduler and every task process from a worker (a bare fork on Linux), so what the
scheduler has imported each task gets for free: pandas + pyarrow cost ~1.2 s of CPU in a fresh
process, about 290 CPU-s for the 240 partitions of one pipeline run on a 2-core machine, more than
the whole pipeline otherwise takes (bench/bench_pipeline.py measures both).
"""

import os
import sys

# LOCAL_AIRFLOW_PRELOAD=0 turns it off (bench/bench_pipeline.py --no-preload measures the difference).
PRELOAD = (
    "pyarrow.parquet",
    "exchange_calendars",
    "trading_lib.analytics",
    "trading_lib.pipeline",
    "trading_lib.portfolio",
    "trading_lib.validation",
)

if sys.argv[1:2] == ["scheduler"] and os.environ.get("LOCAL_AIRFLOW_PRELOAD", "1") != "0":
    import importlib
    import logging

    for _module in PRELOAD:
        try:
            importlib.import_module(_module)
        except Exception:  # a broken preload must never stop the scheduler: tasks import it again
            logging.getLogger(__name__).exception("preloading %s failed", _module)
