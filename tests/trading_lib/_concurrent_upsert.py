"""One writer of the concurrency tests, run as its own process:

    python _concurrent_upsert.py <data root> <stock> <go file> [<storage options as JSON>]

It says it is ready (<go file>.ready-<stock>), waits for <go file> (every writer starts at once),
then upserts one session of <stock>, ^GSPC and ^VIX (the indices are the same bars in every
writer: they collide) and prints
its UpsertReport as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _store_data import session_data  # noqa: E402

from trading_lib.storage import Storage  # noqa: E402
from trading_lib.store import BarStore  # noqa: E402


def main() -> None:
    root, stock, go = sys.argv[1:4]
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    store = BarStore(Storage(root, **options))
    Path(f"{go}.ready-{stock}").write_text("ready")  # imported and connected: only the write is left
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{go} never appeared")
        time.sleep(0.005)
    report = store.write(session_data("2024-01-02", contracts=(stock,)), f"writer {stock}")
    print(json.dumps(report.to_dict()))


if __name__ == "__main__":
    main()
