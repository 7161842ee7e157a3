"""Data-quality gate before the expensive layers: PASS / WARN / FAIL plus an issues table.

Checks (each issue has a severity; the status is the worst severity found, PASS if none):

- missing_values: NaN in open/high/low/close/volume of a contract. WARN; FAIL when more than
  MISSING_FAIL_FRACTION of a contract's closes are missing.
- outliers: bar returns (not prices) more than OUTLIER_SIGMA robust standard deviations from the
  contract's median return, the deviation measured by the MAD (x 1.4826) so that the spike being
  looked for does not inflate its own yardstick as it would a plain standard deviation. WARN.
- completeness: bars against the NYSE calendar (exchange_calendars XNYS, hourly starts from each
  session's open while before its close) between the first and last session of the data; a
  missing session is reported once, missing bars of a present session each. Holidays are not
  sessions, so never missing. WARN; FAIL when a contract has less than COMPLETENESS_FAIL_FRACTION
  of the expected bars. The expected range runs from the data's first bar to its last.
- market_data: ^GSPC and ^VIX each have a finite close at every stock bar: FAIL otherwise (that
  partition could not be analysed).
- duplicates: a repeated (contract, timestamp), or a repeated index timestamp: FAIL.
- contracts: a requested contract absent from the data: FAIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trading_lib import layout
from trading_lib.inputs import InputData

STATUSES = ("PASS", "WARN", "FAIL")
MISSING_FAIL_FRACTION = 0.05
OUTLIER_SIGMA = 3.0
MAD_TO_SIGMA = 1.4826
COMPLETENESS_FAIL_FRACTION = 0.5
EXCHANGE = "XNYS"
BARS_PER_SESSION = 7
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
ISSUE_COLUMNS = ["check", "severity", "contract", "timestamp", "detail"]

RULES = {
    "missing_values": "NaN values per contract and column: WARN; "
    f"FAIL above {MISSING_FAIL_FRACTION:.0%} missing closes",
    "outliers": f"|bar return - median| > {OUTLIER_SIGMA:g} x 1.4826 x MAD of the contract's returns: WARN",
    "completeness": "bars missing against the NYSE calendar (whole sessions reported once): WARN; "
    f"FAIL below {COMPLETENESS_FAIL_FRACTION:.0%} of expected bars",
    "market_data": "^GSPC and ^VIX close present for every stock bar: FAIL otherwise",
    "duplicates": "repeated (contract, timestamp) or index timestamps: FAIL",
    "contracts": "requested contracts present in the data: FAIL otherwise",
}
STATUS_RULE = "FAIL if any FAIL issue, else WARN if any WARN issue, else PASS"


@dataclass
class ValidationReport:
    status: str
    issues: pd.DataFrame
    checks: dict[str, dict[str, Any]]
    rows: int
    contracts: int
    first_timestamp: pd.Timestamp | None
    last_timestamp: pd.Timestamp | None
    rules: dict[str, str] = field(default_factory=lambda: dict(RULES))

    def to_dict(self) -> dict[str, Any]:
        issues = self.issues.copy()
        issues["timestamp"] = [
            t.isoformat() if isinstance(t, pd.Timestamp) else t for t in issues["timestamp"]
        ]
        issues["contract"] = issues["contract"].astype(object).where(issues["contract"].notna(), None)
        return {
            "status": self.status,
            "summary": self.summary_text(),
            "rows": self.rows,
            "contracts": self.contracts,
            "first_timestamp": self.first_timestamp.isoformat() if self.first_timestamp is not None else None,
            "last_timestamp": self.last_timestamp.isoformat() if self.last_timestamp is not None else None,
            "checks": self.checks,
            "issues": issues.to_dict(orient="records"),
            "rules": self.rules,
            "status_rule": STATUS_RULE,
        }

    def summary_text(self) -> str:
        counts = ", ".join(f"{name}: {c['issues']}" for name, c in self.checks.items() if c["issues"])
        detail = f" ({counts})" if counts else ""
        scope = f"{self.contracts} contracts, {self.rows} bars"
        return f"{self.status}: {len(self.issues)} issues{detail} over {scope}"


def _issues(check: str, severity: str, contract, timestamp, detail) -> pd.DataFrame:
    frame = pd.DataFrame({"contract": contract, "timestamp": timestamp, "detail": detail})
    frame.insert(0, "severity", severity)
    frame.insert(0, "check", check)
    return frame[ISSUE_COLUMNS]


def _missing_values(holdings: pd.DataFrame) -> list[pd.DataFrame]:
    found = []
    for column in PRICE_COLUMNS:  # a loop over 5 columns, each check vectorized over all rows
        rows = holdings[holdings[column].isna()]
        if not rows.empty:
            found.append(
                _issues("missing_values", "WARN", rows["contract"], rows["timestamp"], f"{column} is missing")
            )
    missing_share = holdings["close"].isna().groupby(holdings["contract"]).mean()
    failing = missing_share[missing_share > MISSING_FAIL_FRACTION]
    if not failing.empty:
        found.append(
            _issues(
                "missing_values",
                "FAIL",
                failing.index,
                None,
                [f"{share:.1%} of closes missing (> {MISSING_FAIL_FRACTION:.0%})" for share in failing],
            )
        )
    return found


def _outliers(holdings: pd.DataFrame) -> list[pd.DataFrame]:
    bars = holdings.dropna(subset=["close"])
    returns = bars.groupby("contract")["close"].pct_change()
    grouped = returns.groupby(bars["contract"])
    median = grouped.transform("median")
    mad = (returns - median).abs().groupby(bars["contract"]).transform("median") * MAD_TO_SIGMA
    z = (returns - median) / mad.where(mad > 0)
    flagged = bars.assign(z=z, ret=returns)[z.abs() > OUTLIER_SIGMA]
    if flagged.empty:
        return []
    detail = [
        f"bar return {r:+.2%} is {abs(v):.1f} robust sigma from the median"
        for r, v in zip(flagged["ret"], flagged["z"], strict=True)
    ]
    return [_issues("outliers", "WARN", flagged["contract"], flagged["timestamp"], detail)]


def expected_bar_starts(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """NYSE hourly bar starts of every session from ``first``'s to ``last``'s (exchange time)."""
    import exchange_calendars as xcals

    calendar = xcals.get_calendar(EXCHANGE)
    sessions = calendar.sessions_in_range(
        first.tz_convert(layout.EXCHANGE_TZ).date(), last.tz_convert(layout.EXCHANGE_TZ).date()
    )
    opens = calendar.opens.loc[sessions].to_numpy(dtype="datetime64[ns]")
    closes = calendar.closes.loc[sessions].to_numpy(dtype="datetime64[ns]")
    starts = opens[:, None] + np.arange(BARS_PER_SESSION) * np.timedelta64(1, "h")
    starts = starts[starts < closes[:, None]]
    return (
        pd.DatetimeIndex(starts)
        .tz_localize("UTC")
        .tz_convert(layout.EXCHANGE_TZ)
        .as_unit(layout.TIMESTAMP_UNIT)
    )


def _completeness(holdings: pd.DataFrame) -> list[pd.DataFrame]:
    if holdings.empty:
        return []
    first, last = holdings["timestamp"].min(), holdings["timestamp"].max()
    expected = expected_bar_starts(first, last)
    expected = expected[(expected >= first) & (expected <= last)]
    contracts = holdings["contract"].unique()
    grid = pd.MultiIndex.from_product([contracts, expected], names=["contract", "timestamp"])
    present = pd.MultiIndex.from_frame(holdings[["contract", "timestamp"]].drop_duplicates())
    absent = grid.difference(present).to_frame(index=False)
    if absent.empty:
        return []
    absent["session"] = absent["timestamp"].dt.normalize()
    expected_per_session = pd.Series(expected.normalize()).value_counts()
    missing_per_session = absent.groupby(["contract", "session"]).size()
    whole = missing_per_session[
        missing_per_session.to_numpy()
        == expected_per_session.reindex(missing_per_session.index.get_level_values("session")).to_numpy()
    ]
    whole_index = whole.index.to_frame(index=False)
    found = []
    if not whole_index.empty:
        found.append(
            _issues(
                "completeness",
                "WARN",
                whole_index["contract"],
                whole_index["session"],
                [
                    f"session {d.date()} missing ({n} bars)"
                    for d, n in zip(whole_index["session"], whole.to_numpy(), strict=True)
                ],
            )
        )
    partial = absent.merge(whole_index.assign(_whole=True), on=["contract", "session"], how="left")
    partial = partial[partial["_whole"].isna()]
    if not partial.empty:
        found.append(
            _issues("completeness", "WARN", partial["contract"], partial["timestamp"], "bar missing")
        )
    coverage = holdings.drop_duplicates(["contract", "timestamp"]).groupby("contract").size() / len(expected)
    failing = coverage[coverage < COMPLETENESS_FAIL_FRACTION]
    if not failing.empty:
        found.append(
            _issues(
                "completeness",
                "FAIL",
                failing.index,
                None,
                [f"only {c:.0%} of the expected bars" for c in failing],
            )
        )
    return found


def _market_data(holdings: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> list[pd.DataFrame]:
    found = []
    stock_ts = pd.Index(holdings["timestamp"].unique())
    for name, frame in ((layout.SPX_KEY, spx), (layout.VIX_KEY, vix)):
        label = "^GSPC" if frame is spx else "^VIX"
        if frame.dropna(subset=["close"]).empty:
            found.append(_issues("market_data", "FAIL", [None], [None], [f"{label} data is empty ({name})"]))
            continue
        available = pd.Index(frame.loc[frame["close"].notna(), "timestamp"])
        lacking = stock_ts[~stock_ts.isin(available)].sort_values()
        if len(lacking):
            found.append(
                _issues("market_data", "FAIL", None, lacking, f"no {label} close for this stock bar")
            )
    return found


def _duplicates(holdings: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> list[pd.DataFrame]:
    found = []
    repeated = holdings[holdings.duplicated(["contract", "timestamp"], keep="first")]
    if not repeated.empty:
        found.append(
            _issues("duplicates", "FAIL", repeated["contract"], repeated["timestamp"], "duplicated bar")
        )
    for label, frame in (("^GSPC", spx), ("^VIX", vix)):
        repeated = frame[frame.duplicated("timestamp", keep="first")]
        if not repeated.empty:
            found.append(
                _issues("duplicates", "FAIL", label, repeated["timestamp"], f"duplicated {label} bar")
            )
    return found


def validate_inputs(data: InputData, contracts: list[str] | None = None) -> ValidationReport:
    """Run every check on ``data`` (only ``contracts`` of the holdings, when given)."""
    holdings = data.holdings
    found: dict[str, list[pd.DataFrame]] = {name: [] for name in RULES}
    if contracts:
        unknown = sorted(set(contracts) - set(holdings["contract"].unique()))
        if unknown:
            found["contracts"].append(
                _issues("contracts", "FAIL", unknown, None, "requested contract not in the data")
            )
        holdings = holdings[holdings["contract"].isin(contracts)]
    found["missing_values"] += _missing_values(holdings)
    found["outliers"] += _outliers(holdings)
    found["completeness"] += _completeness(holdings)
    found["market_data"] += _market_data(holdings, data.spx, data.vix)
    found["duplicates"] += _duplicates(holdings, data.spx, data.vix)

    checks, frames = {}, []
    for name, parts in found.items():
        issues = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ISSUE_COLUMNS)
        frames.append(issues)
        worst = "FAIL" if (issues["severity"] == "FAIL").any() else "WARN" if len(issues) else "PASS"
        checks[name] = {"severity": worst, "issues": len(issues), "description": RULES[name]}
    issues = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame(columns=ISSUE_COLUMNS)
    )
    severities = {c["severity"] for c in checks.values()}
    status = "FAIL" if "FAIL" in severities else "WARN" if "WARN" in severities else "PASS"
    return ValidationReport(
        status=status,
        issues=issues,
        checks=checks,
        rows=len(holdings),
        contracts=int(holdings["contract"].nunique()),
        first_timestamp=holdings["timestamp"].min() if len(holdings) else None,
        last_timestamp=holdings["timestamp"].max() if len(holdings) else None,
    )
