"""``python -m trading_lib <command>``: the one entry point of the library.

The Kubernetes pod runs ``python -m trading_lib analyze-partition --contract C --timestamp T``; the
Airflow task in local mode calls the same :mod:`trading_lib.pipeline` function in-process.
Results go to stdout as JSON; errors to stderr as one line naming the field, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trading_lib import pipeline
from trading_lib.settings import SettingsError, load_settings
from trading_lib.storage import Storage, StorageError
from trading_lib.symbols import SymbolError

EXIT_OK, EXIT_VALIDATION_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trading_lib", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root",
        help="local folder or s3://bucket/prefix (default: TRADING_DATA_ROOT, else the project folder)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    generate = commands.add_parser("generate", help="write the three input files (sample or real data)")
    generate.add_argument(
        "--contracts", type=int, default=10, help="number of generated contracts (default 10)"
    )
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument(
        "--real", metavar="FOLDER", help="load the real Yahoo bars in FOLDER instead of generating"
    )

    ingest = commands.add_parser("ingest", help="fetch hourly bars from Yahoo Finance into the input files")
    ingest.add_argument("--symbols", nargs="+", required=True)
    ingest.add_argument("--start", help="first session (YYYY-MM-DD); default: the recent sessions")
    ingest.add_argument("--end", help="end date, exclusive (YYYY-MM-DD)")

    validate = commands.add_parser("validate", help="check the inputs; exit 1 on FAIL")
    validate.add_argument("--contracts", nargs="*")

    partition = commands.add_parser("analyze-partition", help="analyse (contract, timestamp) partitions")
    partition.add_argument("--contract", required=True)
    partition.add_argument("--timestamp", action="append", required=True, help="ISO 8601; repeat for several")

    symbol = commands.add_parser("analyze-symbol", help="analyse every partition of a contract")
    symbol.add_argument("--contract", required=True)
    symbol.add_argument("--timestamp", action="append", help="only these partitions (repeatable)")

    aggregate = commands.add_parser("aggregate", help="compute the portfolio report from stored results")
    aggregate.add_argument(
        "--output-dir", help="trading-results folder (default: <data root>/output/trading-results)"
    )

    run = commands.add_parser(
        "run", help="the whole pipeline in this process (validate, partitions, aggregate)"
    )
    run.add_argument("--contracts", type=int, default=10, help="number of contracts to analyse")
    return parser


def _storage(args: argparse.Namespace) -> Storage:
    root = args.data_root or load_settings().data_root
    return Storage(root)


def _run(args: argparse.Namespace) -> tuple[int, object]:
    storage = _storage(args)
    if args.command == "generate":
        return EXIT_OK, pipeline.generate_inputs(
            storage, num_contracts=args.contracts, seed=args.seed, real_folder=args.real
        )
    if args.command == "ingest":
        from trading_lib.ingestion import default_window, ingest_market_data

        if bool(args.start) != bool(args.end):
            raise pipeline.PipelineInputError("--start and --end must be given together")
        start, end = (args.start, args.end) if args.start else default_window()
        return EXIT_OK, ingest_market_data(storage, args.symbols, start, end).to_dict()
    if args.command == "validate":
        result = pipeline.validate(storage, args.contracts or None)
        return (EXIT_VALIDATION_FAILED if result["status"] == "FAIL" else EXIT_OK), result
    if args.command == "analyze-partition":
        return EXIT_OK, pipeline.run_partitions(storage, args.contract, args.timestamp)
    if args.command == "analyze-symbol":
        labels = pipeline.list_partitions(storage, args.contract, timestamps=args.timestamp)
        pipeline.run_partitions(storage, args.contract, labels)
        return EXIT_OK, pipeline.summarize_symbol(storage, args.contract, labels)
    if args.command == "aggregate":
        results = Storage(args.output_dir, fs=None) if args.output_dir else None
        return EXIT_OK, pipeline.aggregate(storage, results)
    if args.command == "run":
        validation = pipeline.validate(storage)
        if validation["status"] == "FAIL":
            return EXIT_VALIDATION_FAILED, validation
        contracts = pipeline.select_contracts(storage, args.contracts)
        window = pipeline.resolve_window(storage)
        pipeline.write_manifest(
            storage, contracts=contracts, window=window, validation_status=validation["status"]
        )
        for contract in contracts:
            labels = pipeline.list_partitions(storage, contract, window=window)
            pipeline.run_partitions(storage, contract, labels)
            pipeline.summarize_symbol(storage, contract, labels)
        return EXIT_OK, pipeline.aggregate(storage)
    raise AssertionError(args.command)  # argparse only accepts the commands above


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status, result = _run(args)
    except (
        pipeline.PipelineInputError,
        SymbolError,
        SettingsError,
        StorageError,
        ValueError,
        LookupError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
