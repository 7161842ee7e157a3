"""Data-quality gate before the expensive layers: PASS / WARN / FAIL plus an issues table.

The rules are the RULES constants below (and docs/validation.md); the status is the worst
severity found: FAIL if any FAIL issue, else WARN if any WARN issue, else PASS.

Outliers use the median and the MAD (x 1.4826, the normal-consistent scale) of a contract's
returns rather than the mean and standard deviation: one +10 % spike among 100 returns of 0.4 %
multiplies a standard deviation by 3.5 (a few such spikes hide each other), while the MAD barely
moves. Returns across a session boundary (the opening bar's overnight gap) get their own, larger
yardstick: on the real 2022 bars one yardstick for all flags 26 returns, 19 of them ordinary
opening bars; with the two kinds, 7, five of them the bar of the 2022-03-16 FOMC announcement
(docs/validation.md has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trading_lib import bar_contract, layout, sessions
from trading_lib.inputs import InputData
from trading_lib.symbols import MARKET_INDEX, VOLATILITY_INDEX, validate_symbols

STATUSES = ("PASS", "WARN", "FAIL")
MISSING_FAIL_FRACTION = 0.05  # more missing closes than this in one contract: FAIL
OUTLIER_SIGMA = 3.0  # |robust z| of a bar return above this: WARN
MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation for normal data
OUTLIER_MIN_RETURNS = 10  # a contract with fewer returns has no reliable scale: not checked
COMPLETENESS_FAIL_FRACTION = 0.5  # fewer of the expected bars than this in one contract: FAIL
VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
ISSUE_COLUMNS = ["check", "severity", "contract", "timestamp", "detail"]
# A close-to-close ratio within SPLIT_TOLERANCE (in log terms, ~3 %) of one of these factors or
# its inverse, while ^GSPC moved less than SPLIT_MAX_INDEX_MOVE over the same two bars, looks like
# a split that the prices were not adjusted for (forward 3:2 ... 50:1, reverse alike).
SPLIT_FACTORS = (1.5, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
SPLIT_TOLERANCE = 0.03
SPLIT_MAX_INDEX_MOVE = 0.05
STALE_MIN_BARS = 3  # a session with fewer stored bars of a contract is not judged stale

RULES = {
    "missing_values": "missing (NaN) open/high/low/close/volume, one issue per run of "
    f"consecutive bars of a contract: WARN; FAIL when more than {MISSING_FAIL_FRACTION:.0%} of a "
    "contract's closes are missing",
    "outliers": f"bar return (between adjacent bars of the NYSE grid) more than {OUTLIER_SIGMA:g} "
    "robust sigma from the contract's median return; sigma = 1.4826 x MAD, the larger of the "
    "contract's over all its returns and over those of the same kind (across a session boundary, or "
    f"intraday); contracts with fewer than {OUTLIER_MIN_RETURNS} returns are not checked: WARN",
    "completeness": "bars missing against the NYSE calendar (XNYS hourly bar starts from the data's "
    "first bar to its last; a whole missing session once, at its date; holidays are not sessions), "
    "or bars off that grid: WARN; FAIL when a contract has fewer than "
    f"{COMPLETENESS_FAIL_FRACTION:.0%} of the expected bars",
    "market_data": f"{MARKET_INDEX} and {VOLATILITY_INDEX} have a valid close (finite, > 0) of their own "
    "bar at every stock bar timestamp (a gap is never filled from an earlier bar): FAIL otherwise, "
    "one issue per index and bar (that partition could not be analysed), FAIL if either is empty",
    # The data contract (trading_lib.bar_contract) on the contracts' bars, ^GSPC and ^VIX: every violating
    # bar is one FAIL issue.
    "duplicates": f"a repeated (contract, timestamp), or a repeated {MARKET_INDEX}/{VOLATILITY_INDEX} "
    "timestamp, identical rows included: FAIL, one issue per repeat",
    "price_values": "open/high/low/close infinite, 0, negative or not a number (NaN is a missing bar, "
    "reported by missing_values): FAIL, one issue per bar and column",
    "price_range": "high below max(open, close) or low above min(open, close): FAIL, one issue per bar",
    "volume_values": "volume infinite, negative or not a number (NaN allowed): FAIL, one issue per bar",
    "timestamp_type": "timestamps not timezone-aware date-times (naive, text, integers) or missing "
    "(NaT): FAIL, one issue per bar; the calendar checks are skipped when the type is wrong",
    "columns": "a frame without its timestamp column (or the bars without contract): FAIL",
    "contracts": "every requested contract is in the data: FAIL otherwise",
    "splits": "a close-to-close ratio between consecutive stored bars of a contract within "
    f"{SPLIT_TOLERANCE:.0%} of a split factor or its inverse (x2, x3, x1/2, x1/3, x3/2 ... x50) while "
    f"{MARKET_INDEX} moved less than {SPLIT_MAX_INDEX_MOVE:.0%} between the same bars: an unadjusted "
    "split (or a re-fetch that mixes price levels): FAIL at the bar after the jump",
    "stale_feed": "a contract's session (at least "
    f"{STALE_MIN_BARS} stored bars) whose closes are all equal, or whose volumes are all zero: a "
    "stale or dead feed: FAIL at the session's first bar",
}
# Contract checks (bar_contract.CHECKS) reported under their own name; every one is a RULES key.
CONTRACT_CHECKS = tuple(bar_contract.CHECKS)
STATUS_RULE = "FAIL if any FAIL issue, else WARN if any WARN issue, else PASS"


@dataclass
class ValidationReport:
    status: str
    issues: pd.DataFrame  # ISSUE_COLUMNS; timestamp NaT for an issue about a whole contract/file
    checks: dict[str, dict[str, Any]]  # check -> {"severity": worst, "issues": n, "description"}
    rows: int
    contracts: int
    first_timestamp: pd.Timestamp | None
    last_timestamp: pd.Timestamp | None
    rules: dict[str, str] = field(default_factory=lambda: dict(RULES))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ISO 8601 timestamps, None for absent values, never NaN."""
        issues = self.issues.astype(object)
        issues["timestamp"] = self.issues["timestamp"].map(_iso, na_action="ignore").astype(object)
        issues = issues.where(self.issues.notna(), None)
        return {
            "status": self.status,
            "summary": self.summary_text(),
            "rows": self.rows,
            "contracts": self.contracts,
            "first_timestamp": _iso(self.first_timestamp),
            "last_timestamp": _iso(self.last_timestamp),
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


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None or pd.isna(ts) else ts.isoformat()


def _issues(check: str, severity: str, contract, timestamp, detail) -> pd.DataFrame:
    frame = pd.DataFrame({"contract": contract, "timestamp": timestamp, "detail": detail})
    frame["timestamp"] = layout.to_exchange_time(frame["timestamp"])
    frame.insert(0, "severity", severity)
    frame.insert(0, "check", check)
    return frame[ISSUE_COLUMNS].reset_index(drop=True)


def _missing_values(bars: pd.DataFrame) -> list[pd.DataFrame]:
    values = bars[list(VALUE_COLUMNS)].to_numpy(dtype="float64")
    # Which columns are missing, as bits: a run is consecutive bars of one contract missing the same
    # ones. Only NaN is missing: inf, 0 or a negative price is a contract violation (price_values).
    pattern = np.isnan(values) @ (1 << np.arange(len(VALUE_COLUMNS)))
    if not pattern.any():
        return []
    contract = bars["contract"].to_numpy()
    starts_run = np.r_[True, (pattern[1:] != pattern[:-1]) | (contract[1:] != contract[:-1])]
    missing = pattern > 0
    runs = (
        pd.DataFrame({"run": np.cumsum(starts_run), "pattern": pattern, "contract": contract})
        .assign(timestamp=bars["timestamp"].array)[missing]
        .groupby("run", sort=True)
        .agg(
            contract=("contract", "first"),
            pattern=("pattern", "first"),
            first=("timestamp", "first"),
            last=("timestamp", "last"),
            bars=("timestamp", "size"),
        )
    )
    names = {
        p: ", ".join(c for i, c in enumerate(VALUE_COLUMNS) if p >> i & 1) for p in np.unique(runs["pattern"])
    }
    detail = (
        runs["pattern"].map(names)
        + " missing on "
        + runs["bars"].astype(str)
        + " bar(s) to "
        + runs["last"].map(_iso)
    )
    found = [_issues("missing_values", "WARN", runs["contract"], runs["first"], detail)]

    missing_share = pd.Series(np.isnan(values[:, VALUE_COLUMNS.index("close")])).groupby(contract).mean()
    failing = missing_share[missing_share > MISSING_FAIL_FRACTION]
    if not failing.empty:
        detail = failing.map(f"{{:.1%}} of closes missing (FAIL above {MISSING_FAIL_FRACTION:.0%})".format)
        found.append(_issues("missing_values", "FAIL", failing.index, None, detail.to_numpy()))
    return found


def _outliers(bars: pd.DataFrame, expected: pd.DatetimeIndex) -> list[pd.DataFrame]:
    # A bar return links a bar to the grid bar right before it: none across a missing bar or next
    # to a missing close (completeness / missing_values report those, a multi-bar move is no outlier).
    bars = bars.assign(close=_valid(bars["close"]))  # contract violations are no returns
    contract = bars["contract"]
    position = pd.Series(expected.get_indexer(bars["timestamp"]), index=bars.index).where(lambda p: p >= 0)
    adjacent = position - position.groupby(contract).shift() == 1
    previous_close = bars.groupby("contract", sort=False)["close"].shift()
    returns = (bars["close"] / previous_close - 1.0).where(adjacent)
    session = bars["timestamp"].dt.normalize()
    across = session != session.groupby(contract).shift()  # the return spans a session boundary
    deviation = returns - returns.groupby(contract).transform("median")
    spread = deviation.abs()
    contract_sigma = spread.groupby(contract).transform("median") * MAD_TO_SIGMA
    kind_sigma = spread.groupby([contract, across]).transform("median") * MAD_TO_SIGMA
    sigma = np.fmax(contract_sigma, kind_sigma)
    enough = returns.groupby(contract).transform("count") >= OUTLIER_MIN_RETURNS
    z = deviation / sigma.where(enough & (sigma > 0))
    flagged = z.abs() > OUTLIER_SIGMA
    if not flagged.any():
        return []
    kind = across[flagged].map({True: " (across a session boundary)", False: ""})
    detail = (
        "bar return "
        + returns[flagged].map("{:+.2%}".format)
        + " is "
        + z[flagged].abs().map("{:.1f}".format)
        + " robust sigma from the contract's median"
        + kind
    )
    return [_issues("outliers", "WARN", contract[flagged], bars.loc[flagged, "timestamp"], detail)]


def _splits(bars: pd.DataFrame, spx: pd.DataFrame) -> list[pd.DataFrame]:
    """Jumps between consecutive stored bars of a contract (across gaps and sessions too: splits
    happen overnight) that look like an unadjusted split: the ratio near a split factor while the
    index stayed put between the same two bars."""
    bars = bars.assign(close=_valid(bars["close"])).dropna(subset=["close"])
    if bars.empty:
        return []
    previous = bars.groupby("contract", sort=False)[["close", "timestamp"]].shift()
    ratio = (bars["close"] / previous["close"]).to_numpy(dtype="float64")
    log_ratio = np.abs(np.log(ratio))  # NaN on each contract's first bar
    factors = np.log(np.asarray(SPLIT_FACTORS))
    distance = np.abs(log_ratio[:, None] - factors[None, :])
    nearest = np.argmin(np.where(np.isnan(distance), np.inf, distance), axis=1)
    near = distance[np.arange(len(ratio)), nearest] < SPLIT_TOLERANCE
    # ^GSPC's move between the same two instants (its last close at or before each); unknown
    # (no ^GSPC bar before) counts as no move: the jump is judged on the stock alone.
    market = spx.assign(close=_valid(spx["close"])).dropna(subset=["close"]).sort_values("timestamp")
    market_move = np.zeros(len(ratio))
    if len(market):
        times = market["timestamp"].to_numpy(dtype="datetime64[us]")
        closes = market["close"].to_numpy(dtype="float64")

        def close_at(stamps: pd.Series) -> np.ndarray:
            at = (
                np.searchsorted(
                    times, layout.to_exchange_time(stamps).to_numpy(dtype="datetime64[us]"), "right"
                )
                - 1
            )
            return np.where(at >= 0, closes[np.maximum(at, 0)], np.nan)

        with np.errstate(invalid="ignore"):
            moved = (
                close_at(bars["timestamp"]) / close_at(previous["timestamp"].fillna(bars["timestamp"])) - 1
            )
        market_move = np.nan_to_num(moved, nan=0.0)
    flagged = near & (np.abs(market_move) < SPLIT_MAX_INDEX_MOVE)
    if not flagged.any():
        return []
    factor = np.asarray(SPLIT_FACTORS)[nearest[flagged]]
    forward = ratio[flagged] < 1  # the price fell: a forward split (k-for-1)
    names = np.where(forward, pd.Series(factor).map("{:g}:1".format), pd.Series(factor).map("1:{:g}".format))
    hit = bars[flagged]
    detail = (
        "close "
        + previous.loc[flagged, "close"].map("{:.4g}".format)
        + " -> "
        + hit["close"].map("{:.4g}".format)
        + " (x"
        + pd.Series(ratio[flagged], index=hit.index).map("{:.3f}".format)
        + ") since "
        + previous.loc[flagged, "timestamp"].map(_iso)
        + f", {MARKET_INDEX} "
        + pd.Series(market_move[flagged], index=hit.index).map("{:+.2%}".format)
        + ": looks like an unadjusted "
        + pd.Series(names, index=hit.index)
        + " split"
    )
    return [_issues("splits", "FAIL", hit["contract"], hit["timestamp"], detail)]


def _stale_feed(bars: pd.DataFrame) -> list[pd.DataFrame]:
    """Sessions of a contract in which every close is the same, or every volume is zero."""
    if bars.empty:
        return []
    session = bars["timestamp"].dt.tz_localize(None).dt.normalize().rename("session")
    close = _valid(bars["close"])
    volume = bars["volume"].astype("float64")
    grouped = pd.DataFrame(
        {
            "contract": bars["contract"].to_numpy(),
            "session": session.to_numpy(),
            "close": close.to_numpy(),
        }
    ).assign(volume=volume.to_numpy(), timestamp=bars["timestamp"].array)
    per_session = grouped.groupby(["contract", "session"], sort=True).agg(
        first=("timestamp", "min"),
        bars=("timestamp", "size"),
        closes=("close", "count"),
        lowest=("close", "min"),
        highest=("close", "max"),
        volumes=("volume", "count"),
        largest_volume=("volume", "max"),
    )
    flat = (per_session["closes"] >= STALE_MIN_BARS) & (per_session["lowest"] == per_session["highest"])
    silent = (per_session["volumes"] >= STALE_MIN_BARS) & (per_session["largest_volume"] == 0)
    stale = per_session[flat | silent]
    if stale.empty:
        return []
    day = pd.Series(stale.index.get_level_values("session").strftime("%Y-%m-%d"), index=stale.index)
    flat_text = (
        "close " + stale["lowest"].map("{:.6g}".format) + " on all " + stale["closes"].astype(str) + " bars"
    )
    silent_text = "volume 0 on all " + stale["volumes"].astype(str) + " bars"
    is_flat, is_silent = flat[stale.index], silent[stale.index]
    what = np.select(
        [is_flat & is_silent, is_flat], [flat_text + ", " + silent_text, flat_text], default=silent_text
    )
    detail = "session " + day + ": " + what + ": stale feed"
    return [
        _issues(
            "stale_feed",
            "FAIL",
            stale.index.get_level_values("contract"),
            stale["first"].to_numpy(),
            detail.to_numpy(),
        )
    ]


def _expected_grid(bars: pd.DataFrame) -> pd.DatetimeIndex:
    """The NYSE bar starts from the data's first bar to its last."""
    if bars.empty:
        return pd.DatetimeIndex([], tz=layout.EXCHANGE_TZ).as_unit(layout.TIMESTAMP_UNIT)
    first, last = bars["timestamp"].min(), bars["timestamp"].max()
    expected = sessions.bar_starts(first, last)
    return expected[(expected >= first) & (expected <= last)]


def _completeness(bars: pd.DataFrame, expected: pd.DatetimeIndex) -> list[pd.DataFrame]:
    if bars.empty:
        return []
    grid = pd.MultiIndex.from_product([bars["contract"].unique(), expected], names=["contract", "timestamp"])
    present = pd.MultiIndex.from_frame(bars[["contract", "timestamp"]].drop_duplicates())
    found = []

    absent = grid.difference(present).to_frame(index=False)
    if not absent.empty:
        absent["session"] = absent["timestamp"].dt.normalize()
        bars_per_session = pd.Series(expected.normalize()).value_counts()
        absent_per_session = absent.groupby(["contract", "session"]).size().rename("absent").reset_index()
        absent_per_session["whole"] = (
            absent_per_session["absent"].to_numpy()
            == bars_per_session.reindex(absent_per_session["session"]).to_numpy()
        )
        whole = absent_per_session[absent_per_session["whole"]]
        if not whole.empty:
            detail = (
                "session "
                + whole["session"].dt.strftime("%Y-%m-%d")
                + " missing ("
                + whole["absent"].astype(str)
                + " bars)"
            )
            found.append(_issues("completeness", "WARN", whole["contract"], whole["session"], detail))
        partial = absent.merge(absent_per_session, on=["contract", "session"])
        partial = partial[~partial["whole"]]
        if not partial.empty:
            found.append(
                _issues("completeness", "WARN", partial["contract"], partial["timestamp"], "bar missing")
            )

    off_grid = present.difference(grid).to_frame(index=False)
    if not off_grid.empty:
        found.append(
            _issues(
                "completeness",
                "WARN",
                off_grid["contract"],
                off_grid["timestamp"],
                "not an NYSE hourly bar start",
            )
        )

    on_grid = present.intersection(grid).get_level_values("contract")
    coverage = pd.Series(1, index=on_grid).groupby(level=0).size() / len(expected)
    coverage = coverage.reindex(bars["contract"].unique(), fill_value=0.0)
    failing = coverage[coverage < COMPLETENESS_FAIL_FRACTION]
    if not failing.empty:
        detail = failing.map(
            f"{{:.0%}} of the expected bars (FAIL below {COMPLETENESS_FAIL_FRACTION:.0%})".format
        )
        found.append(_issues("completeness", "FAIL", failing.index, None, detail.to_numpy()))
    return found


def _market_data(bars: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> list[pd.DataFrame]:
    found = []
    stock_bars = pd.Index(bars["timestamp"].unique()).sort_values()
    for symbol, key, frame in ((MARKET_INDEX, "bar store", spx), (VOLATILITY_INDEX, "bar store", vix)):
        available = frame.loc[_valid(frame["close"]).notna(), "timestamp"]
        if available.empty:
            found.append(_issues("market_data", "FAIL", [symbol], [None], [f"{symbol} has no bars ({key})"]))
            continue
        lacking = stock_bars[~stock_bars.isin(available)]
        if len(lacking):
            found.append(
                _issues("market_data", "FAIL", symbol, lacking, f"no {symbol} close for this stock bar")
            )
    return found


def _valid(prices: pd.Series) -> pd.Series:
    """Prices that are finite and > 0; NaN elsewhere (missing, or a contract violation)."""
    values = prices.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        return pd.Series(np.where(np.isfinite(values) & (values > 0), values, np.nan), index=prices.index)


def _contract(bars: pd.DataFrame, spx: pd.DataFrame, vix: pd.DataFrame) -> dict[str, list[pd.DataFrame]]:
    """Every bar that violates the data contract, one FAIL issue each, by check name."""
    found: dict[str, list[pd.DataFrame]] = {name: [] for name in CONTRACT_CHECKS}
    for symbol, frame in ((None, bars), (MARKET_INDEX, spx), (VOLATILITY_INDEX, vix)):
        bad = bar_contract.violations(frame, symbol_column="contract" if symbol is None else None)
        if bad.empty:
            continue
        contract = bad["symbol"] if symbol is None else symbol
        issues = _issues("", "FAIL", contract, bad["timestamp"], bad["detail"])
        issues["check"] = bad["check"].to_numpy()
        for check, part in issues.groupby("check", sort=False):
            found[check].append(part.reset_index(drop=True))
    return found


def _time_checkable(*frames: pd.DataFrame) -> bool:
    """Whether every frame's timestamps are timezone-aware date-times (the calendar checks need them)."""
    return all(
        "timestamp" in f.columns and isinstance(f["timestamp"].dtype, pd.DatetimeTZDtype) for f in frames
    )


def validate_inputs(data: InputData, contracts: list[str] | None = None) -> ValidationReport:
    """Run every check on ``data`` (only ``contracts``, when given)."""
    bars = data.bars.sort_values(["contract", "timestamp"], kind="stable").reset_index(drop=True)
    spx, vix = data.spx, data.vix
    found: dict[str, list[pd.DataFrame]] = {name: [] for name in RULES}
    if contracts:
        wanted = validate_symbols(list(contracts))
        unknown = sorted(set(wanted) - set(bars["contract"].unique()))
        if unknown:
            found["contracts"].append(
                _issues("contracts", "FAIL", unknown, None, "requested contract not in the data")
            )
        bars = bars[bars["contract"].isin(wanted)].reset_index(drop=True)
    for name, parts in _contract(bars, spx, vix).items():
        found[name] += parts
    timed = _time_checkable(bars, spx, vix)
    if timed:  # a bar without a timestamp (NaT) is the contract's; the calendar checks skip it
        bars, spx, vix = (f[f["timestamp"].notna()] for f in (bars, spx, vix))
        bars = bars.reset_index(drop=True)
        unique_bars = bars.drop_duplicates(["contract", "timestamp"])  # repeats: the contract's
        found["missing_values"] += _missing_values(bars)
        expected = _expected_grid(unique_bars)
        found["outliers"] += _outliers(unique_bars, expected)
        found["completeness"] += _completeness(unique_bars, expected)
        found["market_data"] += _market_data(bars, spx, vix)
        found["splits"] += _splits(unique_bars, spx)
        found["stale_feed"] += _stale_feed(unique_bars)

    checks, frames = {}, []
    for name, parts in found.items():
        issues = pd.concat(parts, ignore_index=True) if parts else _issues(name, "PASS", [], [], [])
        frames.append(issues)
        worst = "FAIL" if (issues["severity"] == "FAIL").any() else "WARN" if len(issues) else "PASS"
        checks[name] = {"severity": worst, "issues": len(issues), "description": RULES[name]}
    issues = pd.concat(frames, ignore_index=True)
    worst = {c["severity"] for c in checks.values()}
    status = "FAIL" if "FAIL" in worst else "WARN" if "WARN" in worst else "PASS"
    return ValidationReport(
        status=status,
        issues=issues,
        checks=checks,
        rows=len(bars),
        contracts=int(bars["contract"].nunique()),
        first_timestamp=bars["timestamp"].min() if timed and len(bars) else None,
        last_timestamp=bars["timestamp"].max() if timed and len(bars) else None,
    )
