"""dependent_partitions against the kernel itself: the partitions it names are the rows whose
result changes when the bars are revised (compute_signals before and after), plus only rows whose
beta window holds the revised return but has too few observations for a beta (NaN either way:
the dependence is there, the value cannot show it)."""

import numpy as np
import pandas as pd
import pytest
from _frames import one_factor, real, with_gaps

from trading_lib import layout
from trading_lib.analytics import compute_signals
from trading_lib.inputs import InputData
from trading_lib.revisions import dependent_partitions
from trading_lib.store import to_store_rows


@pytest.fixture(scope="module")
def gappy() -> InputData:
    return with_gaps(one_factor(sessions=20)[0])


def _results(before: InputData, after: InputData) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = compute_signals(before.bars, before.spx, before.vix)
    b = compute_signals(after.bars, after.spx, after.vix)
    assert a[["contract", "timestamp"]].equals(b[["contract", "timestamp"]])
    return a, b


def _changed_rows(before: InputData, after: InputData) -> pd.DataFrame:
    """The (contract, timestamp) rows whose result differs between the two inputs (NaN == NaN)."""
    a, b = _results(before, after)
    differs = np.zeros(len(a), dtype=bool)
    for column in layout.RESULT_COLUMNS[2:]:
        x, y = a[column], b[column]
        differs |= ((x != y) & ~(x.isna() & y.isna())).to_numpy()
    return a.loc[differs, ["contract", "timestamp"]].reset_index(drop=True)


def _assert_exact(found: pd.DataFrame, before: InputData, after: InputData) -> None:
    """``found`` holds every changed row, and besides them only rows with no beta before or after."""
    changed = _changed_rows(before, after)
    assert len(changed)  # the revision changes something: the test can fail
    keys = ["contract", "timestamp"]
    assert not found.duplicated(keys).any()
    assert found.equals(found.sort_values(keys, ignore_index=True))
    merged = found.merge(changed.assign(changed=True), on=keys, how="outer", indicator=True)
    assert (merged["_merge"] != "right_only").all(), merged[merged["_merge"] == "right_only"]
    extra = merged.loc[merged["_merge"] == "left_only", keys]
    a, b = _results(before, after)
    for result in (a, b):
        rows = extra.merge(result, on=keys)
        assert len(rows) == len(extra) and rows["beta"].isna().all(), rows


def _revise(data: InputData, symbol: str, positions, factor: float = 1.01) -> tuple[InputData, pd.DataFrame]:
    """``data`` with the closes of ``symbol``'s bars at ``positions`` (its own row order) scaled."""
    bars, spx, vix = data.bars.copy(), data.spx.copy(), data.vix.copy()
    if symbol == "^GSPC":
        frame, rows = spx, spx.index
    elif symbol == "^VIX":
        frame, rows = vix, vix.index
    else:
        frame, rows = bars, bars.index[bars["contract"] == symbol]
    chosen = rows[list(positions)]
    frame.loc[chosen, "close"] = frame.loc[chosen, "close"] * factor
    revised = pd.DataFrame({"symbol": symbol, "timestamp": frame.loc[chosen, "timestamp"].to_numpy()})
    return InputData(bars, vix, spx, data.window), revised


def _dependent(after: InputData, revised: pd.DataFrame) -> pd.DataFrame:
    return dependent_partitions(revised, to_store_rows(after)[["symbol", "timestamp", "close"]])


@pytest.mark.parametrize(
    ("symbol", "positions"),
    [
        ("AAA", [0]),  # the first bar: no earlier window
        ("AAA", [50]),  # mid-history: the bar, the next one, and 70 market rows of betas
        ("AAA", [38, 39]),  # around the missing bar (row 40 was dropped): the next bar spans the gap
        ("AAA", [53]),  # the bar before the NaN close: the next return is NaN either way
        ("BBB", [130, 139]),  # the last bar of the contract and one shortly before
        ("CCC", [0, 5]),  # the contract listed late: its first bars
        ("^GSPC", [10]),
        ("^GSPC", [58, 59]),  # around the ^GSPC bar that is missing (a stock bar has no market row)
        ("^GSPC", [120]),  # near the end: the window runs past the data
        ("^VIX", [3, 68, 69]),  # around the missing VIX bar
    ],
)
def test_exactly_the_rows_whose_result_changes(gappy, symbol, positions):
    after, revised = _revise(gappy, symbol, positions)
    _assert_exact(_dependent(after, revised), gappy, after)


def test_revisions_of_several_symbols_at_once_are_the_union(gappy):
    after, first = _revise(gappy, "AAA", [20])
    after, second = _revise(after, "^GSPC", [100])
    after, third = _revise(after, "^VIX", [130])
    revised = pd.concat([first, second, third], ignore_index=True)
    _assert_exact(_dependent(after, revised), gappy, after)


def test_a_split_rebasing_of_one_contract_on_real_bars():
    # A re-fetch adjusted for a split: every stored close of one contract halves. Returns are
    # unchanged except across the re-based part's edge, but every partition from the first revised
    # bar on must be named (its close changed), and only that contract's.
    data = real()
    bars = data.bars.copy()
    rows = bars.index[bars["contract"] == "TSLA"][40:]
    bars.loc[rows, "close"] /= 3.0
    after = InputData(bars, data.vix, data.spx, data.window)
    revised = pd.DataFrame({"symbol": "TSLA", "timestamp": bars.loc[rows, "timestamp"].to_numpy()})
    found = _dependent(after, revised)
    assert set(found["contract"]) == {"TSLA"}
    assert len(found) == len(rows)
    _assert_exact(found, data, after)


def test_the_previous_bar_keeps_its_result(gappy):
    # Its outcome is the revised bar's return, but the outcome is not in the partition's result:
    # the aggregation reads it from the bar store.
    after, revised = _revise(gappy, "AAA", [50])
    stamp = gappy.bars.loc[gappy.bars["contract"] == "AAA", "timestamp"].iloc[49]
    found = _dependent(after, revised)
    assert not ((found["contract"] == "AAA") & (found["timestamp"] == stamp)).any()
    assert found["timestamp"].min() == revised["timestamp"].iloc[0]


def test_nothing_revised_or_unknown_symbols(gappy):
    bars = to_store_rows(gappy)[["symbol", "timestamp", "close"]]
    assert dependent_partitions(bars.iloc[:0], bars).empty
    unknown = pd.DataFrame({"symbol": ["ZZZ"], "timestamp": [gappy.spx["timestamp"].iloc[5]]})
    assert dependent_partitions(unknown, bars).empty


def test_a_missing_close_filled_by_a_refetch(gappy):
    # NaN -> a number: two returns appear, the windows gain a pair (beta_observations change).
    bars = gappy.bars.copy()
    missing = bars.index[(bars["contract"] == "AAA") & bars["close"].isna()][0]
    bars.loc[missing, "close"] = bars.loc[missing - 1, "close"]
    after = InputData(bars, gappy.vix, gappy.spx, gappy.window)
    revised = pd.DataFrame({"symbol": ["AAA"], "timestamp": [bars.loc[missing, "timestamp"]]})
    _assert_exact(_dependent(after, revised), gappy, after)
