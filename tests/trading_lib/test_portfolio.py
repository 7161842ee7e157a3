import empyrical
import numpy as np
import pandas as pd
import pytest

from trading_lib.portfolio import BARS_PER_YEAR, NOTIONAL_PER_TRADE, build_portfolio_report, evaluate_trades

TS = pd.date_range("2024-01-02 09:30", periods=4, freq="h", tz="America/New_York")


def _holdings():
    # AAPL: 100 -> 110 -> 99 -> 99 ; MSFT: 50 -> 50 -> 55 -> 44
    return pd.DataFrame(
        {
            "contract": ["AAPL"] * 4 + ["MSFT"] * 4,
            "timestamp": list(TS) * 2,
            "close": [100.0, 110.0, 99.0, 99.0, 50.0, 50.0, 55.0, 44.0],
        }
    )


def _results(signals_aapl, signals_msft, betas=(1.0, 2.0)):
    return pd.DataFrame(
        {
            "contract": ["AAPL"] * 3 + ["MSFT"] * 3,
            "timestamp": list(TS[:3]) * 2,
            "signal": list(signals_aapl) + list(signals_msft),
            "beta": [betas[0]] * 3 + [betas[1]] * 3,
        }
    )


def test_trade_quality_uses_the_next_bar():
    trades = evaluate_trades(_results(["BUY", "SELL", "HOLD"], ["BUY", "SELL", "SELL"]), _holdings())
    # AAPL next returns: +10 %, -10 %, 0 %; MSFT: 0 %, +10 %, -20 %
    assert trades["next_return"].round(12).tolist() == [0.1, -0.1, 0.0, 0.0, 0.1, -0.2]
    assert trades["is_good"].tolist() == [True, True, False, False, False, True]
    assert trades["pnl"].round(6).tolist() == [1000.0, 1000.0, 0.0, 0.0, -1000.0, 2000.0]


def test_summary_numbers_computed_independently():
    report = build_portfolio_report(_results(["BUY", "SELL", "HOLD"], ["BUY", "SELL", "SELL"]), _holdings())
    s = report.summary
    assert s["trades"] == 5 and s["closed_trades"] == 5 and s["good_trades"] == 3
    assert s["win_rate"] == pytest.approx(3 / 5)
    assert s["total_pnl"] == pytest.approx(3000.0)
    assert s["average_beta"] == pytest.approx(1.5)
    # portfolio return per bar = mean over contracts of position * next return
    expected = np.array([(0.1 + 0.0) / 2, (0.1 - 0.1) / 2, (0.0 + 0.2) / 2])
    assert report.timeseries["portfolio_return"].to_numpy() == pytest.approx(expected)
    sharpe = expected.mean() / expected.std(ddof=1) * np.sqrt(BARS_PER_YEAR)
    assert s["sharpe_ratio"] == pytest.approx(sharpe)
    assert s["sharpe_ratio"] == pytest.approx(
        empyrical.sharpe_ratio(pd.Series(expected), annualization=BARS_PER_YEAR)
    )
    assert report.timeseries["cumulative_pnl"].round(6).tolist() == [1000.0, 1000.0, 3000.0]
    aapl = report.contracts.set_index("contract").loc["AAPL"]
    assert (aapl["trades"], aapl["good_trades"], aapl["buys"], aapl["sells"]) == (2, 2, 1, 1)
    assert aapl["total_pnl"] == pytest.approx(2 * NOTIONAL_PER_TRADE * 0.1)


def test_sharpe_matches_empyrical_on_generated_data():
    from trading_lib.analytics import compute_signals
    from trading_lib.sample_data import generate_sample_data

    data = generate_sample_data(num_contracts=6, window_bars=60)
    results = compute_signals(data.holdings, data.spx, data.vix)
    results = results[data.window.contains(results["timestamp"])]
    report = build_portfolio_report(results, data.holdings)
    returns = report.timeseries["portfolio_return"].dropna()
    assert report.summary["sharpe_ratio"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=BARS_PER_YEAR)
    )


def test_open_trades_and_missing_partitions_are_reported():
    results = _results(["BUY", "SELL", "HOLD"], ["BUY", "SELL", "SELL"]).iloc[
        :-1
    ]  # MSFT's last one is missing
    expected = _results(["HOLD"] * 3, ["HOLD"] * 3)[["contract", "timestamp"]]
    report = build_portfolio_report(results, _holdings().iloc[:-1], expected)
    assert report.summary["missing_partitions"] == 1
    assert report.summary["expected_partitions"] == 6
    assert report.missing_partitions.to_dict(orient="records") == [{"contract": "MSFT", "timestamp": TS[2]}]
    payload = report.to_dict()
    assert payload["missing_partitions"] == [{"contract": "MSFT", "timestamp": TS[2].isoformat()}]


def test_to_dict_is_strict_json():
    import json

    report = build_portfolio_report(_results(["HOLD"] * 3, ["HOLD"] * 3), _holdings())
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert '"win_rate": null' in text and '"sharpe_ratio": null' in text
