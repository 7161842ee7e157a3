import json

import pandas as pd
import pytest

from trading_lib.sample_data import Anomalies, generate_sample_data, load_real_bars
from trading_lib.validation import validate_inputs


def _issues(report, check):
    return report.issues[report.issues["check"] == check]


def test_clean_sample_data_passes():
    report = validate_inputs(generate_sample_data())
    assert report.status == "PASS"
    assert report.issues.empty
    assert report.summary_text().startswith("PASS: 0 issues")


def test_real_2022_bars_miss_three_trading_days_but_not_good_friday():
    report = validate_inputs(load_real_bars("input/yahoo-1h-2022"))
    assert report.status == "WARN"
    completeness = _issues(report, "completeness")
    days = sorted({t.date().isoformat() for t in completeness["timestamp"]})
    assert days == ["2022-03-21", "2022-03-29", "2022-04-06"]
    assert len(completeness) == 3 * 5  # once per missing session and contract
    assert (report.issues["severity"] == "WARN").all()


@pytest.mark.parametrize(
    ("anomalies", "check", "severity", "count"),
    [
        (Anomalies(nan_runs=1), "missing_values", "WARN", 3),
        (Anomalies(outliers=1), "outliers", "WARN", 2),  # the spike and its reversal
        (Anomalies(missing_bars=2), "completeness", "WARN", 2),
        (Anomalies(duplicated_bars=2), "duplicates", "FAIL", 2),
        (Anomalies(missing_market_bars=1), "market_data", "FAIL", 2),  # ^GSPC and ^VIX
    ],
)
def test_each_anomaly_is_found_where_it_was_put(anomalies, check, severity, count):
    data = generate_sample_data(anomalies=anomalies)
    report = validate_inputs(data)
    found = _issues(report, check)
    assert len(found) == count
    assert set(found["severity"]) == {severity}
    assert report.status == severity
    assert set(report.issues["check"]) == {check}
    if check == "missing_values":
        nan_rows = data.holdings[data.holdings["close"].isna()]
        assert set(found["timestamp"]) == set(nan_rows["timestamp"])
        assert set(found["contract"]) == set(nan_rows["contract"])


def test_too_many_missing_closes_fail():
    data = generate_sample_data(num_contracts=2)
    holdings = data.holdings.copy()
    aapl = holdings.index[holdings["contract"] == "AAPL"]
    holdings.loc[aapl[:10], "close"] = float("nan")
    report = validate_inputs(type(data)(holdings, data.vix, data.spx, data.window))
    assert report.status == "FAIL"
    failing = report.issues[
        (report.issues["check"] == "missing_values") & (report.issues["severity"] == "FAIL")
    ]
    assert failing["contract"].tolist() == ["AAPL"]


def test_empty_market_data_fails_and_unknown_contracts_are_named():
    data = generate_sample_data(num_contracts=2)
    report = validate_inputs(
        type(data)(data.holdings, data.vix.iloc[0:0], data.spx, data.window), ["AAPL", "ZZZ"]
    )
    assert report.status == "FAIL"
    assert "^VIX data is empty" in " ".join(_issues(report, "market_data")["detail"])
    assert _issues(report, "contracts")["contract"].tolist() == ["ZZZ"]


def test_report_is_strict_json_with_rules():
    report = validate_inputs(generate_sample_data(anomalies=Anomalies(nan_runs=1, duplicated_bars=1)))
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert payload["status"] == "FAIL"
    assert set(payload["rules"]) == set(payload["checks"])
    assert all(isinstance(i["timestamp"], str | None) for i in payload["issues"])
    assert pd.Timestamp(payload["first_timestamp"]).tzinfo is not None
