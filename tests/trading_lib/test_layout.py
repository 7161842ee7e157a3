import pandas as pd
import pytest

from trading_lib import layout


def test_partition_keys_use_exchange_local_time():
    ts = layout.parse_partition_timestamp("2024-01-02T09:30:00-05:00")
    assert layout.format_timestamp(ts) == "2024-01-02T09:30:00-05:00"
    assert layout.result_key("AAPL", ts) == "output/trading-results/2024-01-02/AAPL_093000.parquet"
    assert layout.parse_result_name("2024-01-02/AAPL_093000.parquet") == "AAPL"
    # The same instant given in UTC names the same partition.
    assert layout.parse_partition_timestamp("2024-01-02T14:30:00+00:00") == ts
    # Naive timestamps are New York time; summer time gives a -04:00 offset.
    assert (
        layout.format_timestamp(layout.parse_partition_timestamp("2024-07-01 10:30"))
        == "2024-07-01T10:30:00-04:00"
    )


@pytest.mark.parametrize("value", ["", "yesterday", None, 5, "2024-13-45T09:30"])
def test_bad_partition_timestamps_are_named(value):
    with pytest.raises(layout.PartitionKeyError, match="timestamp"):
        layout.parse_partition_timestamp(value)


def test_index_symbols_get_safe_folders():
    ts = layout.parse_partition_timestamp("2024-01-02T09:30:00-05:00")
    assert layout.result_key("^VIX", ts) == "output/trading-results/2024-01-02/_VIX_093000.parquet"
    assert layout.parse_result_name("_VIX_093000.parquet") == "^VIX"


def test_to_exchange_time_normalises_series():
    series = layout.to_exchange_time(pd.Series(["2024-01-02 14:30:00+00:00", "2024-01-02 15:30:00+00:00"]))
    assert str(series.dt.tz) == "America/New_York"
    assert series.dt.hour.tolist() == [9, 10]


@pytest.mark.parametrize("name", ["", "../x", "a//b", "a/../b", "."])
def test_report_key_rejects_path_tricks(name):
    with pytest.raises(ValueError, match="bad report name"):
        layout.report_key(name)


@pytest.mark.parametrize(
    ("count", "limit", "per_task", "sizes"),
    [
        (24, 1024, 1, [1] * 24),
        (24, 10, 1, [3] * 8),
        (1764, 1024, 1, [2] * 882),
        (5, 2, 1, [3, 2]),
        (0, 10, 1, []),
        (1764, 1024, 28, [28] * 63),
        (24, 10, 5, [5, 5, 5, 5, 4]),
        (1764, 20, 28, [89] * 19 + [73]),  # the limit wins over a smaller chunk
    ],
)
def test_chunking_keeps_mapped_instances_within_the_limit(count, limit, per_task, sizes):
    labels = [f"t{i}" for i in range(count)]
    chunks = layout.chunk_partitions(labels, limit, per_task)
    assert [len(c) for c in chunks] == sizes
    assert len(chunks) <= limit
    assert [label for chunk in chunks for label in chunk] == labels
