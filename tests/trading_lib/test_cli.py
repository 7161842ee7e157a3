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
            "does not exist",
        ),
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


def test_generate_then_analyze_partition_writes_the_file(tmp_path):
    generated = _cli("generate", "--contracts", "2", root=tmp_path)
    assert generated.returncode == 0, generated.stderr
    window_start = json.loads(generated.stdout)["window_start"]
    result = _cli("analyze-partition", "--contract", "AAPL", "--timestamp", window_start, root=tmp_path)
    assert result.returncode == 0, result.stderr
    [written] = json.loads(result.stdout)
    assert (tmp_path / written["key"]).is_file()
    assert written["timestamp"] == window_start
