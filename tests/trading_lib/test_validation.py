import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from trading_lib import layout
from trading_lib.sample_data import Anomalies, generate_sample_data, load_real_bars
from trading_lib.symbols import SymbolError
from trading_lib.validation import (
    COMPLETENESS_FAIL_FRACTION,
    ISSUE_COLUMNS,
    MISSING_FAIL_FRACTION,
    RULES,
    STATUSES,
    validate_inputs,
)

REAL_BARS = "input/yahoo-1h-2022"


def _issues(report, check):
    return report.issues[report.issues["check"] == check]


def _ts(text):
    return pd.Timestamp(text, tz=layout.EXCHANGE_TZ)


def _keys(frame):
    return set(zip(frame["contract"], frame["timestamp"], strict=True))


@pytest.mark.parametrize(
    "arguments",
    [{}, {"seed": 3}, {"num_contracts": 50, "start": "2024-11-20"}, {"num_contracts": 3, "window_bars": 300}],
)
def test_clean_sample_data_passes(arguments):
    report = validate_inputs(generate_sample_data(**arguments))
    assert report.status == "PASS", report.issues
    assert report.issues.empty and list(report.issues.columns) == ISSUE_COLUMNS
    assert report.summary_text() == (f"PASS: 0 issues over {report.contracts} contracts, {report.rows} bars")
    assert set(report.checks) == set(RULES) and {c["severity"] for c in report.checks.values()} == {"PASS"}


def test_real_2022_bars_miss_three_trading_days_but_not_good_friday():
    report = validate_inputs(load_real_bars(REAL_BARS))
    assert report.status == "WARN"
    assert (report.issues["severity"] == "WARN").all()
    completeness = _issues(report, "completeness")
    days = sorted({t.date().isoformat() for t in completeness["timestamp"]})
    assert days == ["2022-03-21", "2022-03-29", "2022-04-06"]  # not 2022-04-15, Good Friday
    assert len(completeness) == 3 * 5  # once per missing session and contract, not once per bar
    assert (completeness["timestamp"] == completeness["timestamp"].dt.normalize()).all()
    assert completeness["detail"].str.endswith("missing (7 bars)").all()
    # Measured: 7 of 765 bar returns flagged; 5 of them the 14:30 bar of 2022-03-16, when the Fed
    # announced its first rate rise since 2018 at 14:00. Opening bars (overnight gaps) are not flagged.
    outliers = _issues(report, "outliers")
    assert 0 < len(outliers) <= 0.02 * report.rows
    fomc = outliers[outliers["timestamp"] == _ts("2022-03-16 14:30")]
    assert sorted(fomc["contract"]) == ["AAPL", "FB", "GOOG", "NFLX", "TSLA"]
    assert not (outliers["timestamp"].dt.strftime("%H:%M") == "09:30").any()
    assert set(report.issues["check"]) == {"completeness", "outliers"}
    assert report.summary_text().startswith(f"WARN: {len(report.issues)} issues (outliers: ")


def _anomalous(**counts):
    return generate_sample_data(), generate_sample_data(anomalies=Anomalies(**counts))


def _only(report, check, severity):
    assert report.status == severity
    assert set(report.issues["check"]) == {check}
    found = _issues(report, check)
    assert set(found["severity"]) == {severity}
    assert report.checks[check] == {"severity": severity, "issues": len(found), "description": RULES[check]}
    return found


def test_nan_runs_are_reported_once_each_where_they_are():
    clean, data = _anomalous(nan_runs=2)
    found = _only(validate_inputs(data), "missing_values", "WARN")
    nan_rows = data.bars[data.bars["close"].isna()].sort_values(["contract", "timestamp"])
    assert len(found) == 2
    assert _keys(found) == _keys(nan_rows.groupby("contract").head(1))
    assert found["detail"].str.startswith("close missing on 3 bar(s) to ").all()


def test_an_outlier_is_the_spike_and_its_reversal():
    clean, data = _anomalous(outliers=1)
    found = _only(validate_inputs(data), "outliers", "WARN")
    both = clean.bars.merge(data.bars, on=["contract", "timestamp"], suffixes=("", "_anomalous"))
    changed = both[both["close"] != both["close_anomalous"]]
    assert len(changed) == 1
    contract, spike = changed["contract"].iloc[0], changed["timestamp"].iloc[0]
    bars = clean.bars.loc[clean.bars["contract"] == contract, "timestamp"]
    reversal = bars[bars > spike].iloc[0]
    assert _keys(found) == {(contract, spike), (contract, reversal)}
    sigmas = found["detail"].str.extract(r"is (\d+\.\d) robust sigma")[0].astype(float)
    assert (sigmas > 7).all()


def test_missing_bars_are_reported_at_their_timestamps():
    clean, data = _anomalous(missing_bars=3)
    found = _only(validate_inputs(data), "completeness", "WARN")
    dropped = clean.bars.merge(data.bars, on=["contract", "timestamp"], how="left", indicator=True)
    dropped = dropped[dropped["_merge"] == "left_only"]
    assert len(dropped) == 3 and _keys(found) == _keys(dropped)
    assert (found["detail"] == "bar missing").all()


def test_duplicated_bars_fail():
    clean, data = _anomalous(duplicated_bars=2)
    found = _only(validate_inputs(data), "duplicates", "FAIL")
    repeated = data.bars[data.bars.duplicated(["contract", "timestamp"])]
    assert len(found) == 2 and _keys(found) == _keys(repeated)


def test_missing_market_bars_fail_at_the_stock_bars_that_lack_them():
    clean, data = _anomalous(missing_market_bars=3)
    found = _only(validate_inputs(data), "market_data", "FAIL")
    expected = set()
    for symbol, before, after in (("^GSPC", clean.spx, data.spx), ("^VIX", clean.vix, data.vix)):
        gone = before["timestamp"][~before["timestamp"].isin(after["timestamp"])]
        expected |= {(symbol, t) for t in gone}
    assert len(expected) == 4 and _keys(found) == expected  # both, ^GSPC alone, ^VIX alone


def _with(data, **frames):
    return dataclasses.replace(data, **frames)


def test_too_many_missing_closes_fail():
    data = generate_sample_data(num_contracts=2)
    bars = data.bars.copy()
    aapl = bars.index[bars["contract"] == "AAPL"]
    too_many = int(len(aapl) * MISSING_FAIL_FRACTION) + 1
    bars.loc[aapl[10 : 10 + too_many], "close"] = np.nan
    bars.loc[aapl[50], ["open", "volume"]] = np.nan
    report = validate_inputs(_with(data, bars=bars))
    assert report.status == "FAIL"
    found = _issues(report, "missing_values")
    failing = found[found["severity"] == "FAIL"]
    assert failing["contract"].tolist() == ["AAPL"] and failing["timestamp"].isna().all()
    warned = found[found["severity"] == "WARN"].sort_values("timestamp")
    assert warned["detail"].str.split(" missing").str[0].tolist() == ["close", "open, volume"]
    assert warned["timestamp"].tolist() == bars.loc[[aapl[10], aapl[50]], "timestamp"].tolist()
    # one fewer missing close stays a warning
    bars.loc[aapl[10], "close"] = data.bars.loc[aapl[10], "close"]
    assert validate_inputs(_with(data, bars=bars)).status == "WARN"


def test_whole_sessions_sparse_contracts_and_off_grid_bars():
    data = generate_sample_data(num_contracts=3)
    h = data.bars
    day = h["timestamp"].dt.normalize()
    second_session = day.drop_duplicates().iloc[1]
    bars = h[~((h["contract"] == "AAPL") & (day == second_session))]  # a whole session, once
    msft = bars.index[bars["contract"] == "MSFT"]
    bars = bars.drop(index=msft[::2])  # every other bar: no whole session, 50 of 101 left
    assert 50 / 101 < COMPLETENESS_FAIL_FRACTION < 51 / 101
    odd = (
        h[h["contract"] == "GOOGL"]
        .iloc[[5]]
        .assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(minutes=30))
    )
    report = validate_inputs(_with(data, bars=pd.concat([bars, odd])))
    found = _issues(report, "completeness")
    assert report.status == "FAIL"
    whole = found[found["detail"].str.startswith("session")]
    assert whole[["contract", "timestamp"]].values.tolist() == [["AAPL", second_session]]
    assert found.loc[found["severity"] == "FAIL", "contract"].tolist() == ["MSFT"]
    assert ((found["contract"] == "MSFT") & (found["detail"] == "bar missing")).sum() == 51
    off_grid = found[found["detail"] == "not an NYSE hourly bar start"]
    assert _keys(off_grid) == _keys(odd)


def test_market_data_checks():
    data = generate_sample_data(num_contracts=2)
    report = validate_inputs(_with(data, vix=data.vix.iloc[0:0]))
    assert report.status == "FAIL"
    assert _issues(report, "market_data")["detail"].tolist() == ["^VIX has no bars (bar store)"]
    spx = data.spx.copy()
    spx.loc[5, "close"] = np.nan  # present row, no usable close
    duplicated = pd.concat([data.vix, data.vix.iloc[[7]]], ignore_index=True)
    report = validate_inputs(_with(data, spx=spx, vix=duplicated))
    assert _keys(_issues(report, "market_data")) == {("^GSPC", spx.loc[5, "timestamp"])}
    assert _keys(_issues(report, "duplicates")) == {("^VIX", data.vix.loc[7, "timestamp"])}


def test_requested_contracts():
    data = generate_sample_data(num_contracts=3)
    report = validate_inputs(data, ["aapl", "ZZZ", "YYY"])
    assert report.status == "FAIL" and report.contracts == 1 and report.rows == 101
    assert _issues(report, "contracts")["contract"].tolist() == ["YYY", "ZZZ"]
    assert validate_inputs(data, ["MSFT", "GOOGL"]).status == "PASS"
    with pytest.raises(SymbolError, match="a b"):
        validate_inputs(data, ["a b"])


def test_report_is_strict_json_with_rules():
    data = generate_sample_data(anomalies=Anomalies(nan_runs=1, duplicated_bars=1, outliers=1))
    bars = data.bars.copy()
    bars.loc[bars["contract"] == "V", "close"] = np.nan  # a FAIL without a timestamp
    report = validate_inputs(_with(data, bars=bars))
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert payload["status"] == "FAIL" and payload["status"] in STATUSES
    assert payload["rules"] == RULES and set(payload["checks"]) == set(RULES)
    assert payload["summary"] == report.summary_text()
    assert len(payload["issues"]) == len(report.issues)
    timestamps = [i["timestamp"] for i in payload["issues"]]
    assert None in timestamps
    assert all(pd.Timestamp(t).utcoffset() is not None for t in timestamps if t is not None)
    assert pd.Timestamp(payload["first_timestamp"]) == bars["timestamp"].min()
    assert payload["checks"]["duplicates"]["severity"] == "FAIL"


def test_infinite_zero_and_negative_prices_fail_once_per_bar_and_are_not_missing():
    data = generate_sample_data(num_contracts=3)
    bars, spx = data.bars.copy(), data.spx.copy()
    aapl = bars.index[bars["contract"] == "AAPL"]
    bars.loc[aapl[20], "close"] = np.inf
    bars.loc[aapl[21], "open"] = 0.0
    bars.loc[aapl[22], "low"] = -1.0
    spx.loc[30, "close"] = np.inf
    report = validate_inputs(_with(data, bars=bars, spx=spx))
    assert report.status == "FAIL"
    found = _issues(report, "price_values")
    assert set(found["severity"]) == {"FAIL"}
    assert _keys(found) == {
        *(("AAPL", bars.loc[row, "timestamp"]) for row in aapl[20:23]),
        ("^GSPC", spx.loc[30, "timestamp"]),
    }
    assert sorted(found["detail"]) == [
        "column close must be finite and > 0, is inf",
        "column close must be finite and > 0, is inf",
        "column low must be finite and > 0, is -1.0",
        "column open must be finite and > 0, is 0.0",
    ]
    assert _issues(report, "missing_values").empty  # inf is no longer "missing"
    # the inf ^GSPC close leaves that stock bar without a market close: that partition cannot run
    assert _keys(_issues(report, "market_data")) == {("^GSPC", spx.loc[30, "timestamp"])}
    # a bad close makes no bar return, so no outlier either
    assert set(report.issues["check"]) == {"price_values", "market_data"}


def test_inconsistent_bars_and_negative_volume_fail_once_per_bar():
    data = generate_sample_data(num_contracts=2)
    bars, vix = data.bars.copy(), data.vix.copy()
    msft = bars.index[bars["contract"] == "MSFT"]
    bars.loc[msft[5], "high"] = bars.loc[msft[5], ["open", "close"]].max() * 0.999
    bars.loc[msft[6], "low"] = bars.loc[msft[6], ["open", "close"]].min() * 1.001
    bars.loc[msft[7], "volume"] = -10.0
    vix.loc[8, "high"] = vix.loc[8, "close"] / 2
    report = validate_inputs(_with(data, bars=bars, vix=vix))
    assert report.status == "FAIL"
    ranges, volumes = _issues(report, "price_range"), _issues(report, "volume_values")
    assert _keys(ranges) == {
        ("MSFT", bars.loc[msft[5], "timestamp"]),
        ("MSFT", bars.loc[msft[6], "timestamp"]),
        ("^VIX", vix.loc[8, "timestamp"]),
    }
    assert _keys(volumes) == {("MSFT", bars.loc[msft[7], "timestamp"])}
    assert report.checks["price_range"] == {
        "severity": "FAIL",
        "issues": 3,
        "description": RULES["price_range"],
    }
    assert set(report.issues["check"]) == {"price_range", "volume_values"}


def test_repeated_bars_say_whether_they_are_identical():
    data = generate_sample_data(num_contracts=2)
    h = data.bars
    changed = h.iloc[[4]].assign(volume=h["volume"].iloc[4] + 100.0)
    report = validate_inputs(_with(data, bars=pd.concat([h, h.iloc[[3]], changed], ignore_index=True)))
    found = _only(report, "duplicates", "FAIL")
    assert _keys(found) == _keys(h.iloc[[3, 4]])
    assert sorted(found["detail"]) == [
        "(contract, timestamp) must be unique, appears 2 times (identical to an earlier row)",
        "(contract, timestamp) must be unique, appears 2 times (with different values)",
    ]


def test_timestamps_without_a_time_zone_fail_every_bar_and_skip_the_calendar_checks():
    data = generate_sample_data(num_contracts=2)
    naive = data.bars.assign(timestamp=data.bars["timestamp"].dt.tz_localize(None))
    report = validate_inputs(_with(data, bars=naive))
    found = _only(report, "timestamp_type", "FAIL")
    assert len(found) == len(naive) and found["timestamp"].isna().all()
    assert set(found["contract"]) == set(naive["contract"])
    assert (
        found["detail"]
        .eq("column timestamp must be a timezone-aware date-time, is naive (datetime64[us], no time zone)")
        .all()
    )
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert payload["first_timestamp"] is None and payload["checks"]["completeness"]["issues"] == 0
    # a single bar without a timestamp: that bar fails, the calendar checks run on the others
    bars = data.bars.copy()
    bars.loc[7, "timestamp"] = pd.NaT
    report = validate_inputs(_with(data, bars=bars))
    assert _keys(_issues(report, "timestamp_type")) == {(bars.loc[7, "contract"], pd.NaT)}
    completeness = _issues(report, "completeness")
    assert _keys(completeness) == {(bars.loc[7, "contract"], data.bars.loc[7, "timestamp"])}


def _real_with(change):
    """The real 2022 bars with ``change(bars, spx)`` applied to copies of the frames."""
    data = load_real_bars(REAL_BARS)
    bars, spx = data.bars.copy(), data.spx.copy()
    change(bars, spx)
    return dataclasses.replace(data, bars=bars, spx=spx)


@pytest.mark.parametrize(("factor", "name"), [(1 / 3, "3:1"), (0.5, "2:1"), (2.0, "1:2"), (1 / 10, "10:1")])
def test_an_unadjusted_split_fails_at_the_bar_after_the_jump(factor, name):
    def split(bars, spx):
        rows = bars.index[bars["contract"] == "TSLA"][60:]
        bars.loc[rows, ["open", "high", "low", "close"]] *= factor

    data = _real_with(split)
    jump = data.bars.loc[data.bars["contract"] == "TSLA", "timestamp"].iloc[60]
    report = validate_inputs(data)
    assert report.status == "FAIL"
    splits = _issues(report, "splits")
    assert _keys(splits) == {("TSLA", jump)}
    assert splits["severity"].eq("FAIL").all()
    assert f"unadjusted {name} split" in splits["detail"].iloc[0]
    assert report.checks["splits"]["severity"] == "FAIL"


def test_a_jump_the_index_made_too_is_no_split():
    # Every price, the index included, halves at one bar: a crash of the whole market, not a split.
    def crash(bars, spx):
        stamp = spx["timestamp"].iloc[80]
        bars.loc[bars["timestamp"] >= stamp, ["open", "high", "low", "close"]] *= 0.5
        spx.loc[spx["timestamp"] >= stamp, ["open", "high", "low", "close"]] *= 0.5

    report = validate_inputs(_real_with(crash))
    assert _issues(report, "splits").empty
    assert report.status == "WARN"  # the outliers still say so


def test_real_bars_and_sample_data_have_no_split_or_stale_session():
    for data in (load_real_bars(REAL_BARS), generate_sample_data(num_contracts=20, window_bars=300)):
        report = validate_inputs(data)
        assert _issues(report, "splits").empty and _issues(report, "stale_feed").empty


def test_a_stale_session_fails_naming_its_first_bar():
    def stale(bars, spx):
        day = (bars["contract"] == "AAPL") & (bars["timestamp"].dt.strftime("%Y-%m-%d") == "2022-03-24")
        bars.loc[day, ["open", "high", "low", "close"]] = bars.loc[day, "close"].iloc[0]
        silent = (bars["contract"] == "GOOG") & (bars["timestamp"].dt.strftime("%Y-%m-%d") == "2022-04-01")
        bars.loc[silent, "volume"] = 0.0
        # Two equal closes in a session whose other closes are missing are no stale feed (fewer
        # than STALE_MIN_BARS closes).
        netflix = bars.index[bars["contract"] == "NFLX"]
        bars.loc[netflix[[7, 8]], "close"] = bars.loc[netflix[7], "close"]
        bars.loc[netflix[9:14], "close"] = np.nan

    report = validate_inputs(_real_with(stale))
    issues = _issues(report, "stale_feed")
    assert _keys(issues) == {("AAPL", _ts("2022-03-24 09:30")), ("GOOG", _ts("2022-04-01 09:30"))}
    assert report.status == "FAIL"
    details = dict(zip(issues["contract"], issues["detail"], strict=True))
    assert details["AAPL"].startswith("session 2022-03-24: close ") and "on all 7 bars" in details["AAPL"]
    assert details["GOOG"] == "session 2022-04-01: volume 0 on all 7 bars: stale feed"
