"""``python -m trading_lib <command>``: the one entry point of the library.

The Kubernetes pod runs ``python -m trading_lib analyze-partition --contract C --timestamp T``; the
Airflow task in local mode calls the same :func:`trading_lib.pipeline.analyze_partition` in-process.
Results go to stdout as JSON. Errors go to stderr as one line (no traceback) with an exit status:
0 success, 1 validation FAIL, 2 bad input (arguments or data), 3 partial ingestion (nothing
written; --allow-partial keeps what was fetched), 4 an outside system failed (storage, Yahoo):
try again later.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trading_lib import pipeline
from trading_lib.errors import BadInputError, TransientError
from trading_lib.run_request import (
    DEFAULT_WINDOW_BARS,
    parse_date,
    parse_date_range,
    parse_timestamp,
    reanalysis_runs,
)
from trading_lib.symbols import validate_symbol

EXIT_OK, EXIT_VALIDATION_FAILED, EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_TRANSIENT = 0, 1, 2, 3, 4
DEFAULT_RUN_ID = "cli"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trading_lib", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root",
        help="local folder or s3://bucket/prefix (default: TRADING_DATA_ROOT, else the project folder)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)

    generate = commands.add_parser("generate", help="write sample (or real) bars into the bar store")
    generate.add_argument(
        "--contracts", type=int, default=10, help="number of generated contracts (default 10)"
    )
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--start", default="2024-01-02", help="first session of sample data (YYYY-MM-DD)")
    generate.add_argument("--real", metavar="FOLDER", help="load the real Yahoo bars in FOLDER instead")

    ingest = commands.add_parser("ingest", help="fetch missing hourly bars from Yahoo Finance into the store")
    ingest.add_argument("--symbols", nargs="+", required=True)
    ingest.add_argument("--start", help="first session, YYYY-MM-DD (default: the last 5 sessions)")
    ingest.add_argument("--end", help="end date, exclusive, YYYY-MM-DD")
    ingest.add_argument(
        "--allow-partial", action="store_true", help="store what was fetched if a ticker fails"
    )

    validate = commands.add_parser("validate", help="check a window of stored bars; exit 1 on FAIL")
    validate.add_argument("--contracts", nargs="*")
    _window_arguments(validate)

    partition = commands.add_parser("analyze-partition", help="analyse (contract, timestamp) partitions")
    partition.add_argument("--contract", required=True)
    partition.add_argument("--timestamp", action="append", required=True, help="ISO 8601; repeat for several")

    symbol = commands.add_parser("analyze-symbol", help="analyse every partition of a contract in a window")
    symbol.add_argument("--contract", required=True)
    symbol.add_argument("--timestamp", action="append", help="only these partitions (repeatable)")
    _window_arguments(symbol)

    aggregate = commands.add_parser("aggregate", help="portfolio reports from stored results")
    aggregate.add_argument(
        "--output-dir",
        help="trading-results folder (default: <data root>/output/trading-results); must exist",
    )
    aggregate.add_argument("--period-start", help="first session of the period report, YYYY-MM-DD")
    aggregate.add_argument("--period-end", help="last session of the period report, YYYY-MM-DD")
    aggregate.add_argument("--run-id", action="append", default=[], help="also report this run (repeatable)")
    aggregate.add_argument(
        "--as-of",
        metavar="REPORT",
        help="recompute the report stored at this key (e.g. output/runs/<run_id>/portfolio.json) as of "
        "the bar store and results versions it names, into <REPORT>.as-of.json; the other options "
        "are taken from the report",
    )

    commands.add_parser(
        "migrate-store",
        help="convert an earlier release's bar store (bars/<YYYY-MM-DD>.parquet) to the Delta table, once",
    )
    commands.add_parser(
        "compact-store",
        help="rewrite each session of the bar store into one file; run it while no ingestion runs",
    )
    store = commands.add_parser("store-info", help="the bar store's version, sessions and latest commits")
    store.add_argument("--history", type=int, default=5, help="how many commits to show (default 5)")

    run = commands.add_parser(
        "run", help="the whole pipeline in this process (validate, partitions, aggregate)"
    )
    run.add_argument("--contracts", type=int, default=10, help="number of contracts to analyse")
    run.add_argument(
        "--run-id", default=DEFAULT_RUN_ID, help=f"id of the run record (default {DEFAULT_RUN_ID})"
    )
    _window_arguments(run)
    return parser


def _window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-start", help="ISO 8601 date-time with offset (with --window-end)")
    parser.add_argument("--window-end", help="ISO 8601 date-time with offset, exclusive")
    parser.add_argument(
        "--bars", type=int, default=DEFAULT_WINDOW_BARS, help="without a window: the last N stored bars"
    )


def _window(storage, args: argparse.Namespace):
    start = parse_timestamp(args.window_start, "--window-start")
    end = parse_timestamp(args.window_end, "--window-end")
    return pipeline.resolve_window(storage, start, end, args.bars)


def _run(args: argparse.Namespace) -> tuple[int, object]:
    storage = pipeline.open_storage(root=args.data_root)
    if args.command == "generate":
        parse_date(args.start, "--start")
        return EXIT_OK, pipeline.generate_inputs(
            storage, num_contracts=args.contracts, seed=args.seed, real_folder=args.real, start=args.start
        )
    if args.command == "ingest":
        from trading_lib.ingestion import ingest_market_data, yahoo_session
        from trading_lib.run_request import default_ingestion_dates
        from trading_lib.settings import load_settings

        start, end = parse_date_range(args.start, args.end, ("--start", "--end"))
        if start is None:
            start, end = default_ingestion_dates()
        session = yahoo_session(load_settings().yahoo_endpoint)
        report = ingest_market_data(
            storage, args.symbols, start, end, allow_partial=args.allow_partial, session=session
        )
        return EXIT_OK, report.to_dict()
    if args.command == "validate":
        result = pipeline.validate(storage, _window(storage, args), args.contracts or None)
        return (EXIT_VALIDATION_FAILED if result["status"] == "FAIL" else EXIT_OK), result
    if args.command == "analyze-partition":
        return EXIT_OK, pipeline.analyze_partition(storage, args.contract, args.timestamp)
    if args.command == "analyze-symbol":
        args.contract = validate_symbol(args.contract)  # before the window: name the bad field first
        window = None if args.timestamp else _window(storage, args)
        timestamps = pipeline.list_partitions(
            storage, args.contract, window=window, timestamps=args.timestamp
        )
        pipeline.analyze_partition(storage, args.contract, timestamps)
        return EXIT_OK, pipeline.summarize_symbol(storage, args.contract, timestamps)
    if args.command == "aggregate":
        results = pipeline.open_storage(root=args.output_dir) if args.output_dir else None
        if args.as_of:
            return EXIT_OK, pipeline.recompute_report(storage, args.as_of, results_storage=results)
        return EXIT_OK, pipeline.aggregate(
            storage,
            run_ids=args.run_id,
            period_start=parse_date(args.period_start, "--period-start"),
            period_end=parse_date(args.period_end, "--period-end"),
            results_storage=results,
        )
    if args.command == "migrate-store":
        from trading_lib.store import migrate_legacy_store

        return EXIT_OK, migrate_legacy_store(storage)
    if args.command == "compact-store":
        from trading_lib.store import BarStore

        store = BarStore(storage)
        removed = store.compact()
        return EXIT_OK, {"store": store.url, "files_removed": removed, "version": store.refresh().version}
    if args.command == "store-info":
        import pandas as pd

        from trading_lib.store import BarStore

        store = BarStore(storage)
        sessions = store.sessions()
        return EXIT_OK, {
            "store": store.url,
            "version": store.version,
            "sessions": len(sessions),
            "first_session": sessions[0] if sessions else None,
            "last_session": sessions[-1] if sessions else None,
            "history": [
                {
                    "version": commit.get("version"),
                    "timestamp": pd.Timestamp(commit.get("timestamp", 0), unit="ms", tz="UTC").isoformat(),
                    "operation": commit.get("operation"),
                    "read_version": commit.get("readVersion"),
                    "metrics": commit.get("operationMetrics"),
                }
                for commit in store.history(args.history)
            ],
        }
    if args.command == "run":
        # Every check comes before the first write: a bad request leaves no record behind.
        window = _window(storage, args)
        contracts = pipeline.select_contracts(storage, args.contracts, window)
        timestamps = {c: pipeline.list_partitions(storage, c, window=window) for c in contracts}
        validation = pipeline.validate(storage, window, contracts, run_id=args.run_id)
        since = pipeline.revision_baseline(pipeline.latest_run(storage))
        revisions = pipeline.reanalysis_plan(storage, since, window, contracts)
        record = {
            "dag_id": None,
            "run_type": "cli",
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "contracts": contracts,
            "analyze_symbol_run_ids": [],
            "validation": validation,
            "ingestion": None,
            "revisions": {k: v for k, v in revisions.items() if k != "timestamps"},
            "bar_store_version": revisions["until_version"],
        }
        if validation["status"] == "FAIL":
            pipeline.record_run(storage, args.run_id, **record, state="failed")
            return EXIT_VALIDATION_FAILED, validation
        pipeline.record_run(storage, args.run_id, **record, state="running")
        for contract in contracts:
            pipeline.analyze_partition(storage, contract, timestamps[contract])
            pipeline.summarize_symbol(storage, contract, timestamps[contract], args.run_id)
        for again in reanalysis_runs(args.run_id, revisions):  # what revised bars changed
            pipeline.analyze_partition(storage, again["conf"]["contract"], again["conf"]["timestamps"])
        pipeline.record_run(storage, args.run_id, state="success")
        return EXIT_OK, pipeline.aggregate(storage, run_ids=[args.run_id])
    raise AssertionError(args.command)  # argparse only accepts the commands above


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status, result = _run(args)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TransientError as exc:
        from trading_lib.ingestion import PartialIngestionError

        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL if isinstance(exc, PartialIngestionError) else EXIT_TRANSIENT
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
