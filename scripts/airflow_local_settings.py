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
if sys.argv[1:2] == ["scheduler"] and os.environ.get("LOCAL_AIRFLOW_PRELOAD", "1") != "0":
    import pyarrow.parquet  # noqa: F401
    import trading_lib.analytics  # noqa: F401
    import trading_lib.pipeline  # noqa: F401
    import trading_lib.portfolio  # noqa: F401
    import trading_lib.validation  # noqa: F401
