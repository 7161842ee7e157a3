"""docker-compose's one-shot S3 setup: create the bucket of TRADING_DATA_ROOT, then write sample
bars into the bar store unless it already holds bars (a restart never overwrites ingested data).

Credentials and endpoint come from the standard AWS_* variables (s3fs reads them), as in the pods.
Usage: python s3_init.py [--contracts N | --real FOLDER]
"""

from __future__ import annotations

import argparse
import sys

from trading_lib import pipeline
from trading_lib.layout import BARS_PREFIX
from trading_lib.settings import load_settings
from trading_lib.storage import Storage
from trading_lib.store import BarStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contracts", type=int, default=10)
    parser.add_argument("--real", metavar="FOLDER", help="load the real bars in FOLDER instead of generating")
    args = parser.parse_args(argv)

    settings = load_settings()
    if not settings.is_s3:
        print(f"error: TRADING_DATA_ROOT={settings.data_root!r} is not an s3:// URL", file=sys.stderr)
        return 2
    storage = Storage(settings.data_root)
    bucket = settings.data_root.removeprefix("s3://").split("/", 1)[0]
    if not storage.fs.exists(bucket):
        storage.fs.mkdir(bucket)
        print(f"created bucket {bucket}")
    sessions = BarStore(storage).sessions()  # any bars/<YYYY-MM-DD>.parquet
    if sessions:
        print(
            f"{storage.url(BARS_PREFIX)} holds {len(sessions)} session(s) "
            f"({sessions[0]} .. {sessions[-1]}): bars left as they are"
        )
        return 0
    result = pipeline.generate_inputs(storage, num_contracts=args.contracts, real_folder=args.real)
    print(
        f"wrote bars of {len(result['contracts'])} contracts "
        f"({len(result['store']['sessions_written'])} sessions) to {storage.url(BARS_PREFIX)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
