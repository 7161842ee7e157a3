"""Local storage: atomic, idempotent writes and clear errors. (S3: tests/trading_lib/test_storage_s3.py.)"""

import os

import pandas as pd
import pytest

from trading_lib.storage import CorruptInputError, MissingInputError, Storage, StorageError


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-02 09:30", periods=3, freq="h", tz="America/New_York"),
            "contract": ["AAPL", "AAPL", "MSFT"],
            "close": [1.5, 2.5, 3.5],
        }
    )


def test_parquet_round_trip_with_metadata_and_filters(tmp_path, frame):
    storage = Storage(str(tmp_path))
    storage.write_parquet("input/x.parquet", frame, {"trading.window_start": "2024"})
    pd.testing.assert_frame_equal(storage.read_parquet("input/x.parquet"), frame)
    assert storage.read_parquet_metadata("input/x.parquet") == {"trading.window_start": "2024"}
    only_aapl = storage.read_parquet("input/x.parquet", filters=[("contract", "==", "AAPL")])
    assert only_aapl["contract"].tolist() == ["AAPL", "AAPL"]


def test_same_frame_gives_same_bytes_and_one_file(tmp_path, frame):
    storage = Storage(str(tmp_path))
    storage.write_parquet("out/a.parquet", frame)
    first = (tmp_path / "out" / "a.parquet").read_bytes()
    storage.write_parquet("out/a.parquet", frame.copy())
    assert (tmp_path / "out" / "a.parquet").read_bytes() == first
    assert os.listdir(tmp_path / "out") == ["a.parquet"]  # no temporary file left behind


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, frame):
    storage = Storage(str(tmp_path))
    storage.write_bytes("out/a.bin", b"old")
    # A write interrupted half-way (here: the data cannot be written) must not touch the target.
    with pytest.raises(TypeError):
        storage.write_bytes("out/a.bin", object())  # type: ignore[arg-type]
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"old"
    assert os.listdir(tmp_path / "out") == ["a.bin"]


def test_list_keys_skips_hidden_temporaries(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_bytes("r/AAPL/1.parquet", b"1")
    storage.write_bytes("r/MSFT/2.parquet", b"2")
    (tmp_path / "r" / "AAPL" / ".3.parquet.abc.tmp").write_bytes(b"partial")
    assert storage.list_keys("r", suffix=".parquet") == ["r/AAPL/1.parquet", "r/MSFT/2.parquet"]
    assert storage.list_keys("missing") == []
    assert storage.child("r").list_keys("AAPL") == ["AAPL/1.parquet"]
    assert storage.child("r").list_keys("", suffix=".parquet") == ["AAPL/1.parquet", "MSFT/2.parquet"]


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    storage = Storage(str(tmp_path))
    with pytest.raises(MissingInputError, match="nothere.parquet"):
        storage.read_parquet("nothere.parquet")
    storage.write_bytes("bad.parquet", b"not parquet at all")
    with pytest.raises(CorruptInputError, match="bad.parquet"):
        storage.read_parquet("bad.parquet")
    storage.write_bytes("bad.json", b"{")
    with pytest.raises(CorruptInputError, match="bad.json"):
        storage.read_json("bad.json")


@pytest.mark.parametrize("key", ["", "../escape", "a/../../b"])
def test_keys_cannot_escape_the_root(tmp_path, key):
    with pytest.raises(StorageError, match="invalid storage key"):
        Storage(str(tmp_path)).path(key)


def test_json_is_strict_and_stable(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_json("r.json", {"b": 1, "a": pd.Timestamp("2024-01-02", tz="UTC")})
    assert storage.read_json("r.json") == {"a": "2024-01-02T00:00:00+00:00", "b": 1}
    with pytest.raises(ValueError):
        storage.write_json("nan.json", {"x": float("nan")})
    assert not storage.exists("nan.json")


def test_a_refused_local_write_is_an_access_error_naming_the_file(tmp_path):
    """Not a bare PermissionError: the storage error class, not retried (configuration to fix).
    The folder is made immutable, which even root cannot write into."""
    import subprocess

    from trading_lib.errors import BadInputError
    from trading_lib.storage import AccessDeniedError

    storage = Storage(str(tmp_path))
    storage.write_bytes("out/a.bin", b"old")
    folder = tmp_path / "out"
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        with pytest.raises(AccessDeniedError, match=r"cannot write .*out/b.bin") as excinfo:
            storage.write_bytes("out/b.bin", b"new")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert isinstance(excinfo.value, StorageError) and isinstance(excinfo.value, BadInputError)
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin"]


def test_a_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The bytes reach the disk before the new name points at them (then the folder entry)."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: calls.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))) or real_fsync(fd),
    )
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", b)) or real_replace(a, b))
    Storage(str(tmp_path)).write_bytes("out/a.bin", b"payload")
    assert calls == [("fsync", False), ("replace", str(tmp_path / "out" / "a.bin")), ("fsync", True)]
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"payload"


def test_a_same_size_rewrite_within_one_timestamp_tick_is_seen(tmp_path):
    """folder_version backs the aggregation's roll-up cache. On a coarse filesystem a rewrite in
    the same tick as the previous write leaves the folder's modification time unchanged (played
    here by setting it back): a cache built while the folder was that fresh is never trusted, so
    the rewrite is seen; once the folder is older than a tick, its token is stable."""
    from trading_lib.pipeline import _read_rollups

    storage = Storage(str(tmp_path))
    row = pd.DataFrame(
        {
            "contract": ["AAPL"],
            "timestamp": [pd.Timestamp("2024-01-02 09:30", tz="America/New_York")],
            "signal": ["BUY"],
        }
    )
    storage.write_parquet("2024-01-02/AAPL_093000.parquet", row)
    folder = tmp_path / "2024-01-02"
    tick = os.stat(folder).st_mtime_ns
    assert _read_rollups(storage, ["2024-01-02"])[0]["2024-01-02"]["signal"].tolist() == ["BUY"]
    storage.write_parquet("2024-01-02/AAPL_093000.parquet", row.assign(signal="SEL"))  # the same size
    os.utime(folder, ns=(tick, tick))  # the same tick as before
    assert _read_rollups(storage, ["2024-01-02"])[0]["2024-01-02"]["signal"].tolist() == ["SEL"]
    old = tick - 10 * 10**9
    os.utime(folder, ns=(old, old))  # long ago: the token is stable and the roll-up is reused
    assert storage.folder_version("2024-01-02") == storage.folder_version("2024-01-02")
    assert _read_rollups(storage, ["2024-01-02"])[0]["2024-01-02"]["signal"].tolist() == ["SEL"]
    first = storage.folder_version("2024-01-02")[0]
    storage.write_parquet("2024-01-02/AAPL_093000.parquet", row.assign(signal="HLD"))
    assert storage.folder_version("2024-01-02")[0] != first
    assert _read_rollups(storage, ["2024-01-02"])[0]["2024-01-02"]["signal"].tolist() == ["HLD"]
