"""Portfolio analytics over partition results: trade quality, P&L, win rate, Sharpe, average beta.

Trade quality needs the full series: a BUY at t is good when the contract's NEXT bar return is
positive, a SELL when it is negative. The next bar is the next bar of the exchange grid
(trading_lib.sessions: 15:30 -> the next session's 09:30), and its close comes from the input
bars, so one missing partition does not hide its neighbour's outcome, while a missing bar or
session keeps the trade open (never closed against a later bar). Open trades are counted and
listed with the reason. Formulas: docs/formulas.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trading_lib import layout, sessions
from trading_lib.errors import BadDataError

SESSIONS_PER_YEAR = 252  # NYSE sessions in a year, the usual annualisation convention
BARS_PER_YEAR = SESSIONS_PER_YEAR * sessions.BARS_PER_SESSION  # full sessions' bars (Sharpe annualisation)
NOTIONAL_PER_TRADE = 10_000.0  # USD committed by each BUY or SELL
POSITIONS = {"BUY": 1, "SELL": -1, "HOLD": 0}
# Why a trade is open (evaluate_trades' open_reason), in the order they are checked.
OPEN_REASONS = {
    "close": "no close at the trade's bar",
    "missing": "next bar of the grid missing (a later bar is stored)",
    "next_close": "next bar stored without a close",
    "pending": "next bar not stored yet",
}
OPEN_TRADE_COLUMNS = ["contract", "timestamp", "signal", "next_bar", "reason"]


class PortfolioInputError(BadDataError):
    """Results or bars the portfolio cannot be computed from; the message names the column or value."""


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PortfolioInputError(f"{name}: missing column(s) {', '.join(missing)}")


def _columns(frame: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    """``frame``'s ``columns`` (a copy), timestamps in exchange time so that every frame joins."""
    _require(frame, columns, name)
    out = frame[columns].copy()
    out["timestamp"] = layout.to_exchange_time(out["timestamp"])
    return out


def evaluate_trades(results: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """``results`` plus position, next_bar, next_return, is_trade, is_closed, is_good, pnl (USD)
    and open_reason (an OPEN_REASONS key for an open trade, else None).

    next_bar is the next bar of the exchange grid after the result's bar; next_return =
    close(next_bar) / close(t) - 1 from ``bars``, NaN when either close is not there."""
    out = results.copy()
    out["timestamp"] = _columns(results, ["contract", "timestamp", "signal"], "results")["timestamp"]
    position = out["signal"].map(POSITIONS)
    if position.isna().any():
        bad = sorted(map(str, out.loc[position.isna(), "signal"].unique()))
        raise PortfolioInputError(
            f"results: column signal holds {', '.join(bad)}; expected BUY, SELL or HOLD"
        )
    bars = _columns(bars, ["contract", "timestamp", "close"], "bars")
    bars = bars.drop_duplicates(["contract", "timestamp"], keep="last")
    closes = bars.set_index(["contract", "timestamp"])["close"]
    # The contract's next bar of the grid, whether or not that bar has a partition result; a
    # missing bar or session is never bridged by the bar stored after it.
    next_bar = sessions.next_bar_starts(out["timestamp"])
    close = closes.reindex(pd.MultiIndex.from_arrays([out["contract"], out["timestamp"]])).to_numpy()
    wanted = pd.MultiIndex.from_arrays([out["contract"], next_bar])
    next_close = closes.reindex(wanted).to_numpy()
    out["next_bar"] = next_bar.array  # tz-aware as it is (to_numpy() would box every timestamp)
    out["next_return"] = next_close / close - 1.0
    out["position"] = position.to_numpy(dtype=np.int64)
    out["is_trade"] = out["position"] != 0
    out["is_closed"] = out["is_trade"] & out["next_return"].notna()
    latest = bars["timestamp"].max() if len(bars) else None
    stored = wanted.isin(closes.index)
    reason = np.select(
        [
            np.isnan(close),
            ~stored & (next_bar <= latest).to_numpy() if latest is not None else np.zeros(len(out), bool),
            stored,
        ],
        ["close", "missing", "next_close"],
        "pending",
    )
    out["open_reason"] = pd.Series(reason, index=out.index, dtype=object).where(
        out["is_trade"] & ~out["is_closed"], None
    )
    out["is_good"] = out["is_closed"] & (np.sign(out["next_return"]) == out["position"])
    out["pnl"] = (out["position"] * out["next_return"] * NOTIONAL_PER_TRADE).where(out["is_closed"], 0.0)
    return out


@dataclass
class PortfolioReport:
    summary: dict[str, Any]
    contracts: pd.DataFrame
    timeseries: pd.DataFrame
    daily: pd.DataFrame
    missing_partitions: pd.DataFrame
    open_trades: pd.DataFrame  # OPEN_TRADE_COLUMNS: every trade without an outcome, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: timestamps as ISO 8601 strings, NaN as None, numpy scalars as Python ones."""
        return {
            "summary": _json_safe(self.summary),
            "contracts": _records(self.contracts),
            "timeseries": _records(self.timeseries),
            "daily": _records(self.daily),
            "missing_partitions": _records(self.missing_partitions),
            "open_trades": _records(self.open_trades),
        }


def build_portfolio_report(
    results: pd.DataFrame, bars: pd.DataFrame, expected: pd.DataFrame | None = None
) -> PortfolioReport:
    """The portfolio report of ``results``; ``expected`` partitions absent from results are listed,
    and so are the open trades (OPEN_REASONS says why each is open)."""
    _require(results, ["beta"], "results")
    trades = evaluate_trades(results, bars)
    missing = _missing(results, expected)

    trades["is_buy"], trades["is_sell"] = trades["position"] == 1, trades["position"] == -1
    beta = pd.to_numeric(trades["beta"]).astype(np.float64)
    trades["finite_beta"] = beta.where(np.isfinite(beta))
    per_contract = trades.groupby("contract", sort=True)
    contracts = pd.DataFrame(
        {
            "partitions": per_contract.size(),
            "trades": per_contract["is_trade"].sum(),
            "closed_trades": per_contract["is_closed"].sum(),
            "good_trades": per_contract["is_good"].sum(),
            "total_pnl": per_contract["pnl"].sum(),
            "average_beta": per_contract["finite_beta"].mean(),
            "buys": per_contract["is_buy"].sum(),
            "sells": per_contract["is_sell"].sum(),
        }
    ).reset_index()
    contracts.insert(
        5,
        "win_rate",
        (contracts["good_trades"] / contracts["closed_trades"]).where(contracts["closed_trades"] > 0),
    )

    # Equal weight over the contracts analysed at t (HOLD = 0); a contract without a next bar has
    # no known outcome and drops out of the mean, a bar where none has one drops out entirely.
    trades["weighted"] = trades["position"] * trades["next_return"]
    per_bar = trades.groupby("timestamp", sort=True)
    timeseries = pd.DataFrame(
        {
            "partitions": per_bar.size(),
            "trades": per_bar["is_trade"].sum(),
            "pnl": per_bar["pnl"].sum(),
            "portfolio_return": per_bar["weighted"].mean(),
        }
    ).reset_index()
    timeseries.insert(4, "cumulative_pnl", timeseries["pnl"].cumsum())

    per_day = trades.groupby(trades["timestamp"].dt.normalize().rename("date"), sort=True)
    daily = pd.DataFrame(
        {
            "partitions": per_day.size(),
            "trades": per_day["is_trade"].sum(),
            "closed_trades": per_day["is_closed"].sum(),
            "good_trades": per_day["is_good"].sum(),
            "pnl": per_day["pnl"].sum(),
        }
    ).reset_index()
    daily["date"] = daily["date"].dt.strftime("%Y-%m-%d")  # one string per session, not per row
    win_rate = (daily["good_trades"] / daily["closed_trades"]).where(daily["closed_trades"] > 0)
    daily.insert(5, "win_rate", win_rate)
    daily["cumulative_pnl"] = daily["pnl"].cumsum()

    returns = timeseries["portfolio_return"].dropna()
    sharpe = sharpe_ratio(returns)
    closed = int(trades["is_closed"].sum())
    open_trades = trades.loc[trades["open_reason"].notna()].sort_values(
        ["timestamp", "contract"], kind="stable"
    )
    open_trades = open_trades.assign(reason=open_trades["open_reason"].map(OPEN_REASONS))[OPEN_TRADE_COLUMNS]
    signals = trades["signal"].value_counts()
    summary = {
        "contracts": int(trades["contract"].nunique()),
        "partitions": len(trades),
        "expected_partitions": len(expected) if expected is not None else len(trades),
        "missing_partitions": len(missing),
        "trades": int(trades["is_trade"].sum()),
        "closed_trades": closed,
        "open_trades": len(open_trades),
        "open_trades_missing_bar": int((trades["open_reason"] == "missing").sum()),
        "good_trades": int(trades["is_good"].sum()),
        "win_rate": int(trades["is_good"].sum()) / closed if closed else None,
        "total_pnl": float(trades["pnl"].sum()),
        "sharpe_ratio": sharpe,
        "sharpe_returns": len(returns),
        "sharpe_standard_error": sharpe_standard_error(sharpe, len(returns)),
        "sharpe_annualisation": f"mean / std of per-bar portfolio returns x sqrt({BARS_PER_YEAR})",
        "average_beta": float(trades["finite_beta"].mean()),
        "bars_per_year": BARS_PER_YEAR,
        "notional_per_trade": NOTIONAL_PER_TRADE,
        "first_timestamp": trades["timestamp"].min() if len(trades) else None,
        "last_timestamp": trades["timestamp"].max() if len(trades) else None,
        "signals": {s: int(signals.get(s, 0)) for s in layout.SIGNALS},
    }
    return PortfolioReport(summary, contracts, timeseries, daily, missing, open_trades.reset_index(drop=True))


def sharpe_ratio(returns: pd.Series) -> float:
    """Annualised Sharpe ratio of per-bar returns, risk-free rate 0 (NaN without a spread)."""
    if len(returns) < 2:
        return float("nan")
    std = float(returns.std(ddof=1))
    return float(returns.mean()) / std * math.sqrt(BARS_PER_YEAR) if std > 0 else float("nan")


def sharpe_standard_error(annualised_sharpe: float, returns: int) -> float:
    """Standard error of an annualised Sharpe ratio estimated from ``returns`` IID returns (Lo, 2002,
    "The Statistics of Sharpe Ratios"): SE(SR) = sqrt((1 + SR^2 / 2) / T) for the per-bar SR,
    scaled by sqrt(bars per year) like the ratio itself. NaN without a ratio."""
    if returns < 2 or not math.isfinite(annualised_sharpe):
        return float("nan")
    per_bar = annualised_sharpe / math.sqrt(BARS_PER_YEAR)
    return math.sqrt((1 + per_bar**2 / 2) / returns) * math.sqrt(BARS_PER_YEAR)


def _missing(results: pd.DataFrame, expected: pd.DataFrame | None) -> pd.DataFrame:
    """The ``expected`` (contract, timestamp) pairs without a row in ``results``."""
    if expected is None or expected.empty:
        return pd.DataFrame({"contract": pd.Series(dtype=object), "timestamp": pd.Series(dtype=object)})
    wanted = _columns(expected, ["contract", "timestamp"], "expected")
    present = _columns(results, ["contract", "timestamp"], "results").drop_duplicates()
    joined = wanted.merge(present.assign(present=True), on=["contract", "timestamp"], how="left")
    return joined.loc[joined["present"].isna(), ["contract", "timestamp"]].reset_index(drop=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_json_safe(record) for record in frame.to_dict(orient="records")]
