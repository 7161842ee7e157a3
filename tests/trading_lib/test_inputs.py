import pandas as pd
import pytest

from trading_lib import layout
from trading_lib.inputs import (
    AnalysisWindow,
    InputData,
    InputDataError,
    read_contracts,
    read_inputs,
    read_window,
    write_inputs,
)
from trading_lib.storage import CorruptInputError, MissingInputError, Storage


def _bars(n=5, start="2024-01-02 09:30"):
    ts = pd.date_range(start, periods=n, freq="h", tz="America/New_York")
    return pd.DataFrame({"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10})


def _data():
    holdings = pd.concat([_bars().assign(contract=c) for c in ("MSFT", "AAPL")], ignore_index=True)
    window = AnalysisWindow.parse("2024-01-02T11:30:00-05:00", "2024-01-02T14:30:00-05:00")
    return InputData(holdings=holdings, vix=_bars(), spx=_bars(), window=window)


def test_round_trip_keeps_schema_order_and_window(tmp_path):
    storage = Storage(str(tmp_path))
    rows = write_inputs(storage, _data())
    assert rows == {layout.HOLDINGS_KEY: 10, layout.VIX_KEY: 5, layout.SPX_KEY: 5}
    data = read_inputs(storage)
    assert list(data.holdings.columns) == layout.HOLDINGS_COLUMNS
    assert data.holdings["contract"].tolist()[:1] == ["AAPL"]  # sorted by contract, timestamp
    assert str(data.holdings["timestamp"].dt.tz) == layout.EXCHANGE_TZ
    assert data.window == _data().window
    assert read_window(storage) == _data().window
    assert read_contracts(storage) == ["AAPL", "MSFT"]
    assert read_inputs(storage, ["MSFT"]).contracts == ["MSFT"]


def test_window_must_be_ordered():
    with pytest.raises(InputDataError, match="not before"):
        AnalysisWindow.parse("2024-01-03", "2024-01-02")


def test_missing_column_names_file_and_column(tmp_path):
    storage = Storage(str(tmp_path))
    data = _data()
    with pytest.raises(InputDataError, match="spx_hourly.parquet: missing column"):
        write_inputs(storage, InputData(data.holdings, data.vix, data.spx.drop(columns="close"), data.window))
    assert storage.list_keys("input") == []  # all three are checked before any is written


def test_corrupt_or_foreign_files_give_clear_errors(tmp_path):
    storage = Storage(str(tmp_path))
    with pytest.raises(MissingInputError, match="spx_holdings_hourly.parquet does not exist"):
        read_inputs(storage)
    write_inputs(storage, _data())
    storage.write_parquet(layout.VIX_KEY, pd.DataFrame({"when": [1], "close": [2.0]}))
    with pytest.raises(CorruptInputError, match="vix_hourly.parquet: missing column"):
        read_inputs(storage)
    storage.write_parquet(layout.HOLDINGS_KEY, _data().holdings)  # no window metadata
    with pytest.raises(CorruptInputError, match="no analysis window"):
        read_window(storage)
