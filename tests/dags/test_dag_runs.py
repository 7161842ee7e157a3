"""The DAGs run for real with `dag.test()` (in-process task execution, SQLite metadata DB)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trading_lib import layout, pipeline, sample_data
from trading_lib.analytics import compute_signals
from trading_lib.portfolio import build_portfolio_report
from trading_lib.sample_data import Anomalies
from trading_lib.storage import Storage
from trading_lib.store import BarStore

pytestmark = pytest.mark.airflow
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADING_DATA_ROOT", str(tmp_path))
    return tmp_path


def _generate(root, anomalies=None, contracts=3):
    pipeline.generate_inputs(Storage(str(root)), num_contracts=contracts, anomalies=anomalies)


def _states(dag_run) -> dict[str, list[str]]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        states: dict[str, list[str]] = {}
        for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):
            states.setdefault(ti.task_id, []).append(str(ti.state))
        return states


def _stored_bars(root) -> pd.DataFrame:
    store = BarStore(Storage(str(root)))
    return store.read_sessions(store.sessions())


def _direct_results(root, contract=None) -> pd.DataFrame:
    """The kernel over every stored bar at once, cut to the default window (the last 24 bars)."""
    rows = _stored_bars(root)
    stocks = rows[~rows["symbol"].str.startswith("^")].rename(columns={"symbol": "contract"})
    direct = compute_signals(stocks, rows[rows["symbol"] == "^GSPC"], rows[rows["symbol"] == "^VIX"])
    window = pipeline.resolve_window(Storage(str(root)))
    direct = direct[window.contains(direct["timestamp"])]
    if contract:
        direct = direct[direct["contract"] == contract]
    return direct.reset_index(drop=True)


def _written(root, contract) -> pd.DataFrame:
    storage = Storage(str(root))
    keys = [
        k
        for k in storage.list_keys(layout.RESULTS_PREFIX, suffix=".parquet")
        if k.count("/") == 3 and layout.parse_result_name(k) == contract
    ]
    return storage.read_parquet_many(keys).sort_values("timestamp").reset_index(drop=True)


def test_analyze_symbol_writes_every_partition_as_the_vectorized_kernel(dagbag, data_root):
    _generate(data_root)
    run = dagbag.dags["analyze_symbol"].test(run_conf={"contract": "AAPL"})
    assert run.state == "success"
    states = _states(run)
    assert states["analyze_partition"] == ["success"] * 24
    pd.testing.assert_frame_equal(
        _written(data_root, "AAPL"), _direct_results(data_root, "AAPL"), check_exact=True
    )


def test_more_partitions_than_max_map_length_are_chunked(dagbag, data_root, monkeypatch):
    _generate(data_root, contracts=1)
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "10")
    run = dagbag.dags["analyze_symbol"].test(run_conf={"contract": "AAPL"})
    assert run.state == "success"
    assert _states(run)["analyze_partition"] == ["success"] * 8  # 24 bars in chunks of 3
    pd.testing.assert_frame_equal(
        _written(data_root, "AAPL"), _direct_results(data_root, "AAPL"), check_exact=True
    )


def test_partitions_per_task_puts_that_many_bars_in_each_mapped_instance(dagbag, data_root, monkeypatch):
    import dataclasses

    _generate(data_root, contracts=1)
    dag = dagbag.dags["analyze_symbol"]
    # TRADING_PARTITIONS_PER_TASK is read once, when the DAG file is parsed (trading_airflow.runtime)
    dag_globals = dag.get_task("list_partitions").python_callable.__globals__
    settings = dataclasses.replace(dag_globals["SETTINGS"], partitions_per_task=5)
    monkeypatch.setitem(dag_globals, "SETTINGS", settings)
    run = dag.test(run_conf={"contract": "AAPL"})
    assert run.state == "success"
    assert _states(run)["analyze_partition"] == ["success"] * 5  # 24 bars in chunks of 5, 5, 5, 5, 4
    pd.testing.assert_frame_equal(
        _written(data_root, "AAPL"), _direct_results(data_root, "AAPL"), check_exact=True
    )


def test_aggregate_portfolio_report_equals_the_direct_computation(dagbag, data_root):
    _generate(data_root)
    for contract in ("AAPL", "MSFT", "GOOGL"):
        assert dagbag.dags["analyze_symbol"].test(run_conf={"contract": contract}).state == "success"
    run = dagbag.dags["aggregate_portfolio"].test()
    assert run.state == "success"
    direct = _direct_results(data_root)
    bars = _stored_bars(data_root).rename(columns={"symbol": "contract"})
    expected = build_portfolio_report(direct, bars).to_dict()
    stored = Storage(str(data_root)).read_json(layout.report_key(pipeline.PORTFOLIO_REPORT))
    assert stored["summary"] == expected["summary"]
    assert stored["timeseries"] == expected["timeseries"]
    assert stored["summary"]["partitions"] == 72


@pytest.mark.parametrize(
    ("anomalies", "status"),
    [(None, "PASS"), (Anomalies(outliers=2), "WARN"), (Anomalies(missing_market_bars=2), "FAIL")],
)
def test_orchestrator_branches_on_the_validation_status(dagbag, data_root, anomalies, status):
    _generate(data_root, anomalies, contracts=10)
    # The per-symbol runs need a scheduler (dag.test only queues them): the trigger is marked
    # successful here; the end-to-end test runs it for real.
    run = dagbag.dags["trading_orchestrator"].test(
        # every contract: validation checks the contracts a run analyses, and the injected
        # anomalies may sit in any of the ten
        run_conf={"num_contracts": 10},
        mark_success_pattern="trigger_analyze_symbol",
    )
    states = _states(run)
    storage = Storage(str(data_root))
    validation = storage.read_json(layout.report_key(pipeline.VALIDATION_REPORT))
    assert validation["status"] == status
    record = pipeline.read_run(storage, run.run_id)
    assert record["contracts"] == sorted(sample_data.contract_names(10)) and record["run_type"] == "manual"
    assert storage.read_json(layout.run_key(run.run_id, "validation"))["status"] == status
    if status == "FAIL":
        assert run.state == "failed"
        assert states["stop_on_validation_failure"] == ["failed"]
        assert states["trigger_analyze_symbol"] == ["skipped"]
        assert record["state"] == "failed" and record["validation"]["status"] == "FAIL"
    else:
        assert run.state == "success"
        assert states["stop_on_validation_failure"] == ["skipped"]
        assert record["state"] == "success" and record["validation"]["status"] == status
        assert record["analyze_symbol_run_ids"] == [f"{run.run_id}__{c}" for c in record["contracts"]]


def test_unknown_conf_keys_and_bad_dates_fail_before_anything_is_written(dagbag, data_root):
    _generate(data_root)
    dag = dagbag.dags["trading_orchestrator"]
    for conf in (  # the messages: tests/trading_lib/test_run_request.py
        {"num_contract": 3},
        {"run_ingestion": True, "ingestion_start_date": "2026-01-09", "ingestion_end_date": "2026-01-05"},
    ):
        run = dag.test(run_conf=conf)
        assert run.state == "failed"
        assert _states(run)["check_request"] == ["failed"]
        assert not (data_root / "output" / "runs").exists(), conf


def test_a_deleted_partition_fails_the_aggregation_after_writing_the_report(dagbag, data_root):
    from trading_lib import cli

    _generate(data_root, contracts=2)
    assert cli.main(["--data-root", str(data_root), "run", "--contracts", "2", "--run-id", "r1"]) == 0
    storage = Storage(str(data_root))
    gone = sorted(_written_keys(data_root))[5]
    (data_root / gone).unlink()
    run = dagbag.dags["aggregate_portfolio"].test()
    assert run.state == "failed"
    report = storage.read_json(layout.run_key("r1", pipeline.PORTFOLIO_REPORT))
    assert report["summary"]["missing_partitions"] == 1
    (missing,) = report["missing_partitions"]
    assert layout.result_key(missing["contract"], pd.Timestamp(missing["timestamp"])) == gone
    assert report["aggregation_run_id"] == run.run_id


def _written_keys(root) -> list[str]:
    storage = Storage(str(root))
    return [k for k in storage.list_keys(layout.RESULTS_PREFIX, suffix=".parquet") if k.count("/") == 3]


def test_an_interval_without_a_bar_skips_the_run_and_fails_nothing(airflow_db, data_root, monkeypatch):
    """A cron schedule's interval on a holiday or after an early close: check_request skips, every
    task after it is skipped, the run does not fail and writes nothing. dag.test() makes manual
    runs, whose request is never idle: the rule itself is tested in test_run_request.py; here the
    request is made idle to run the rest of the DAG's skip path for real."""
    import dataclasses

    from trading_lib import run_request

    real = run_request.orchestrator_request
    monkeypatch.setattr(
        run_request,
        "orchestrator_request",
        lambda *args, **kwargs: dataclasses.replace(
            real(*args, **kwargs), idle="no XNYS bar starts in the data interval"
        ),
    )
    from airflow.dag_processing.dagbag import DagBag

    _generate(data_root)
    # a DAG parsed for this test: after a dag.test(run_conf=...) of the shared bag's DAG, Airflow
    # 3.3 ran the next dag.test() of that DAG object with the previous conf's values (seen here)
    run = DagBag(str(PROJECT / "dags")).dags["trading_orchestrator"].test()
    assert run.state == "success"
    states = _states(run)
    assert states.pop("check_request") == ["skipped"]
    assert states and {state for values in states.values() for state in values} == {"skipped"}, states
    assert not (data_root / "output" / "runs").exists()


def _xcom(dag_run, task_id):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        return XComModel.deserialize_value(row)


def test_a_revised_bar_is_reanalysed_by_its_own_analyze_symbol_run(dagbag, data_root):
    """A bar revised after a run analysed its window: the next orchestrator run (a manual run over
    the last 5 bars of AAPL) triggers one more analyze_symbol run per contract for the partitions
    that depend on it outside its own window, exactly those, and they end as the kernel over the
    revised bars computes them."""
    from trading_lib import cli
    from trading_lib.revisions import dependent_partitions

    storage = Storage(str(data_root))
    pipeline.generate_inputs(storage, num_contracts=3, window_bars=40)
    assert (
        cli.main(["--data-root", str(data_root), "run", "--contracts", "3", "--bars", "40", "--run-id", "r1"])
        == 0
    )
    first = pipeline.read_run(storage, "r1")
    assert first["bar_store_version"] == BarStore(storage).version
    store = BarStore(storage)
    rows = store.read_sessions(store.sessions())
    window = pipeline.resolve_window(storage, bars=40)
    inside = rows[window.contains(rows["timestamp"])]
    revised = pd.concat(
        [inside[inside["symbol"] == "AAPL"].iloc[[8]], inside[inside["symbol"] == "^GSPC"].iloc[[30]]]
    ).assign(close=lambda f: f["close"] * 1.03)
    revised["high"] = revised[["high", "close"]].max(axis=1)
    store.upsert(revised, "a corrected re-fetch")

    run = dagbag.dags["trading_orchestrator"].test(
        # every Param the other tests set: dag.test() leaves a run's conf in the params of the
        # session's DAG object, and an earlier test's ingestion dates would be used here
        run_conf={
            "num_contracts": 1,
            "window_bars": 5,
            "run_ingestion": False,
            "ingestion_start_date": None,
            "ingestion_end_date": None,
        },
        mark_success_pattern="trigger_analyze_symbol",
    )
    assert run.state == "success"
    record = pipeline.read_run(storage, run.run_id)
    assert record["contracts"] == ["AAPL"]
    assert record["revisions"]["since_version"] == first["bar_store_version"]
    assert record["bar_store_version"] == BarStore(storage).version

    # Exactly the dependent partitions outside the run's own window and contract, and every one of
    # them had a result (all 40 window bars were analysed by r1).
    own = pipeline.resolve_window(storage, bars=5)
    changed = revised[["symbol", "timestamp"]]
    after = _stored_bars(data_root)  # the store after the revision
    dependent = dependent_partitions(changed, after[["symbol", "timestamp", "close"]])
    dependent = dependent[window.contains(dependent["timestamp"])]
    dependent = dependent[~((dependent["contract"] == "AAPL") & own.contains(dependent["timestamp"]))]
    expected = {
        c: [layout.format_timestamp(t) for t in g["timestamp"]] for c, g in dependent.groupby("contract")
    }
    runs = _xcom(run, "symbol_runs")
    revision_runs = {r["conf"]["contract"]: r for r in runs if r["trigger_run_id"].endswith("__revised")}
    assert {c: r["conf"]["timestamps"] for c, r in revision_runs.items()} == expected
    assert set(expected) == {"AAPL", "GOOGL", "MSFT"}  # the ^GSPC bar reaches every contract
    assert record["revisions"]["partitions"] == sum(len(t) for t in expected.values())
    assert record["analyze_symbol_run_ids"] == [r["trigger_run_id"] for r in runs]

    # The triggered runs, run here (dag.test does not start the runs a trigger queues).
    for contract, triggered in sorted(revision_runs.items()):
        result = dagbag.dags["analyze_symbol"].test(run_conf=triggered["conf"])
        assert result.state == "success"
        assert len(_states(result)["analyze_partition"]) == len(expected[contract])
    for contract in ("AAPL", "GOOGL", "MSFT"):
        written = _written(data_root, contract)
        written = written[~((written["contract"] == "AAPL") & own.contains(written["timestamp"]))]
        direct = _kernel(data_root, window, contract)
        direct = direct[~((direct["contract"] == "AAPL") & own.contains(direct["timestamp"]))]
        pd.testing.assert_frame_equal(
            written.reset_index(drop=True), direct.reset_index(drop=True), check_exact=True
        )


def _kernel(root, window, contract) -> pd.DataFrame:
    rows = _stored_bars(root)
    stocks = rows[~rows["symbol"].str.startswith("^")].rename(columns={"symbol": "contract"})
    direct = compute_signals(stocks, rows[rows["symbol"] == "^GSPC"], rows[rows["symbol"] == "^VIX"])
    direct = direct[window.contains(direct["timestamp"]) & (direct["contract"] == contract)]
    return direct.reset_index(drop=True)
