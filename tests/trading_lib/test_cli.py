"""`python -m trading_lib`: the entry point the Kubernetes pod runs."""

import json
import os
import subprocess
import sys

import pytest


def _cli(*args, root, env=None):
    return subprocess.run(
        [sys.executable, "-m", "trading_lib", "--data-root", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["analyze-partition", "--contract", "AAPL", "--timestamp", "2024-01-02T09:30:00-05:00"],
            "no bar for contract 'AAPL' at timestamp 2024-01-02T09:30:00-05:00",
        ),
        (
            ["ingest", "--symbols", "AAPL", "--start", "01/04/2026", "--end", "2026-01-10"],
            "--start='01/04/2026'",
        ),
        (["ingest", "--symbols", "AAPL", "--start", "2026-01-04T10:00", "--end", "2026-01-10"], "YYYY-MM-DD"),
        (["ingest", "--symbols", "AAPL", "--start", "2026-01-04"], "must be given together"),
        (["aggregate", "--output-dir", "typo"], "holds no partition results"),
        (["aggregate", "--period-start", "2024-13-01"], "--period-start"),
        (["validate", "--window-start", "2024-01-02"], "with offset"),
        (["analyze-partition", "--contract", "../x", "--timestamp", "2024-01-02T09:30:00-05:00"], "'../x'"),
        (["analyze-symbol", "--contract", "A B"], "'A B'"),
        (["aggregate"], "no partition results"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_2_and_write_nothing(tmp_path, args, message):
    result = _cli(*args, root=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(tmp_path):
    result = _cli("analyze-partition", "--contract", "AAPL", root=tmp_path)
    assert result.returncode == 2
    assert "--timestamp" in result.stderr


def test_aggregate_into_a_missing_folder_keeps_the_good_report(tmp_path):
    assert _cli("generate", "--contracts", "2", root=tmp_path).returncode == 0
    assert _cli("run", "--contracts", "2", "--run-id", "first", root=tmp_path).returncode == 0
    report = tmp_path / "output" / "reports" / "portfolio.json"
    before = report.read_bytes()
    result = _cli("aggregate", "--output-dir", str(tmp_path / "typo"), root=tmp_path)
    assert result.returncode == 2 and "holds no partition results" in result.stderr
    assert report.read_bytes() == before
    record = json.loads((tmp_path / "output" / "runs" / "first" / "run.json").read_text())
    assert record["state"] == "success" and record["contracts"] == ["AAPL", "MSFT"]
    assert (tmp_path / "output" / "runs" / "first" / "portfolio.json").is_file()


def test_run_with_a_bad_request_writes_no_record(tmp_path):
    assert _cli("generate", "--contracts", "2", root=tmp_path).returncode == 0
    result = _cli("run", "--contracts", "3", "--run-id", "bad", root=tmp_path)
    assert result.returncode == 2 and "num_contracts=3" in result.stderr
    assert not (tmp_path / "output" / "runs").exists()


def test_generate_then_analyze_partition_writes_the_file(tmp_path):
    generated = _cli("generate", "--contracts", "2", root=tmp_path)
    assert generated.returncode == 0, generated.stderr
    window_start = json.loads(generated.stdout)["window_start"]
    result = _cli("analyze-partition", "--contract", "AAPL", "--timestamp", window_start, root=tmp_path)
    assert result.returncode == 0, result.stderr
    [written] = json.loads(result.stdout)
    assert (tmp_path / written["key"]).is_file()
    assert written["timestamp"] == window_start


def test_aggregate_as_of_a_stored_report_rebuilds_it_byte_for_byte(tmp_path):
    assert _cli("generate", "--contracts", "2", root=tmp_path).returncode == 0
    assert _cli("run", "--contracts", "2", "--run-id", "first", root=tmp_path).returncode == 0
    record = json.loads((tmp_path / "output" / "runs" / "first" / "run.json").read_text())
    report = tmp_path / "output" / "runs" / "first" / "portfolio.json"
    assert json.loads(report.read_text())["versions"]["bar_store"] == record["bar_store_version"]
    result = _cli("aggregate", "--as-of", "output/runs/first/portfolio.json", root=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["equal"] is True and answer["target"] == "output/runs/first/portfolio.as-of.json"
    assert (tmp_path / answer["target"]).read_bytes() == report.read_bytes()
    missing = _cli("aggregate", "--as-of", "output/runs/none/portfolio.json", root=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
