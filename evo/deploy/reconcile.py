"""``evo live --reconcile``: replay a paper ledger's bars through the backtest and list what differs.

The ledger's decided (live) bars, from its first decision to its last bar, are looked up in a bar
file (``--data``); the bundle decides them again from the file's full history
(:meth:`evo.deploy.bundle.Bundle.probabilities`, ``evo predict``'s path, not the live stream) and
:func:`backtest.backtest_signals` trades those signals with the bundle's costs and risk rules
(vectorbt: this module is never imported by the runner). Then, bar by bar:

- **bar**: a bar in one and not the other, or OHLCV values that differ by more than
  :data:`TOLERANCES` ``["bar"]`` (relative);
- **decision**: the consensus signal differs (exactly), or a model's p(up) differs by more than
  ``["p"]`` (the live stream's tail reproduces the full history within 1e-5, :mod:`evo.pipeline.stream`);
- **fill**: the number of fills in a bar differs, or a fill's units, price or fees differ by more
  than ``["fill"]`` (relative; fees also absolutely by 1e-15);
- **equity**: the account value at a close differs by more than ``["equity"]`` (relative).

A ledger that matches its backtest has no differences at all: the paper account is vectorbt's
arithmetic (:mod:`evo.deploy.paper`), so the tolerances only absorb float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evo.deploy.ledger import Ledger
from evo.errors import DataError

__all__ = ["TOLERANCES", "Difference", "Reconciliation", "reconcile"]

TOLERANCES = {"bar": 1e-12, "p": 1e-5, "fill": 1e-9, "equity": 1e-9}


@dataclass(frozen=True)
class Difference:
    """One thing that differs at bar ``time``: ``what`` (bar, decision, p_a, p_b, fill, equity)."""

    time: str
    what: str
    ledger: Any
    backtest: Any

    def line(self) -> str:
        return f"{self.time}  {self.what:<8}  ledger {_fmt(self.ledger)}  backtest {_fmt(self.backtest)}"

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "what": self.what, "ledger": self.ledger, "backtest": self.backtest}


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.12g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return str(x)


@dataclass
class Reconciliation:
    """What :func:`reconcile` compared and found. ``index``: the live bars' times; ``equity_ledger`` /
    ``equity_backtest``: float64 account values at those closes (for the figure)."""

    bars: int
    decisions: int
    fills: int
    differences: list[Difference]
    index: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    equity_ledger: np.ndarray = field(default_factory=lambda: np.zeros(0))
    equity_backtest: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        span = f"{self.index[0].isoformat()} .. {self.index[-1].isoformat()}" if len(self.index) else "no live bar"
        tol = ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items())
        return (f"reconciled {self.bars} bars ({span}): {self.decisions} decisions, {self.fills} fills, equity at "
                f"every close; {len(self.differences)} differ (tolerances: {tol})")


def _close_rel(a: float, b: float, tol: float, atol: float = 0.0) -> bool:
    return abs(a - b) <= max(tol * max(abs(a), abs(b)), atol)


def reconcile(ledger: Ledger, bundle, bars: pd.DataFrame) -> Reconciliation:
    """Compare ``ledger`` with the backtest of ``bundle`` on ``bars`` (a canonical frame holding at
    least the ledger's live bars and the history their first decision needs). Raises
    :class:`DataError` when ``bars`` hold too little history before the first decision."""
    from backtest import CostModel, RiskRules, backtest_signals, periods_per_year
    from evo.deploy.bundle import SIGNAL_NAMES
    from evo.deploy.paper import RiskSpec

    decisions = ledger.frame("decisions")
    if not len(decisions):
        return Reconciliation(0, 0, 0, [])
    lbars = ledger.frame("bars").set_index("time")
    live = lbars[lbars["role"] == "live"]
    equity = ledger.frame("equity").set_index("time")["equity"]
    fills = ledger.frame("fills")
    start, end = live.index[0], live.index[-1]
    span = bars.loc[start:end]
    diffs: list[Difference] = []
    cols = ["open", "high", "low", "close", "volume"]
    for t in live.index.difference(span.index):
        diffs.append(Difference(t.isoformat(), "bar", live.loc[t, cols].tolist(), "missing"))
    for t in span.index.difference(live.index):
        diffs.append(Difference(t.isoformat(), "bar", "missing", span.loc[t, cols].tolist()))
    common = live.index.intersection(span.index)
    a, b = live.loc[common, cols].to_numpy(np.float64), span.loc[common, cols].to_numpy(np.float64)
    bad = ~np.all(np.abs(a - b) <= TOLERANCES["bar"] * np.maximum(np.abs(a), np.abs(b)), axis=1)
    for i in np.flatnonzero(bad):
        diffs.append(Difference(common[i].isoformat(), "bar", a[i].tolist(), b[i].tolist()))

    n = len(span)
    history = bars.loc[:end]
    if len(history) < bundle.min_bars + n - 1:
        raise DataError(f"the bar file holds {len(history) - n} bars before the ledger's first decision "
                        f"({start.isoformat()}); the bundle needs {bundle.min_bars - 1}")
    probs = bundle.probabilities(history, last=n)
    signal = np.asarray(probs.signal, dtype=np.int8)
    dec = decisions.set_index("time")
    for i, t in enumerate(span.index):
        if t not in dec.index:
            continue
        row, iso = dec.loc[t], t.isoformat()
        if row["signal"] != SIGNAL_NAMES[int(signal[i])]:
            diffs.append(Difference(iso, "decision", row["signal"], SIGNAL_NAMES[int(signal[i])]))
        for name, p in (("p_a", probs.p_a[i, 2]), ("p_b", probs.p_b[i, 2])):
            if not abs(float(row[name]) - float(p)) <= TOLERANCES["p"]:
                diffs.append(Difference(iso, name, float(row[name]), float(p)))

    spec = RiskSpec.from_manifest(bundle.risk)
    bt = backtest_signals(span, signal, costs=CostModel(spec.fees_bps, spec.slippage_bps),
                          periods_per_year=periods_per_year(bars.index),
                          risk=RiskRules(size=spec.size, stop_loss=spec.stop_loss, take_profit=spec.take_profit,
                                         breaker=spec.breaker))
    bt_equity = bt.equity if len(bt.equity) else np.ones(n)
    for i, t in enumerate(span.index):
        if t in equity.index and not _close_rel(float(equity.loc[t]), float(bt_equity[i]), TOLERANCES["equity"]):
            diffs.append(Difference(t.isoformat(), "equity", float(equity.loc[t]), float(bt_equity[i])))
    led_fills = {t: g[["units", "price", "fees"]].to_numpy(np.float64) for t, g in fills.groupby("time")} \
        if len(fills) else {}
    bt_fills = {span.index[int(k)]: bt.fills[bt.fills[:, 0] == k, 1:] for k in np.unique(bt.fills[:, 0])}
    for t in sorted(set(led_fills) | set(bt_fills)):
        mine, ref = led_fills.get(t, np.zeros((0, 3))), bt_fills.get(t, np.zeros((0, 3)))
        same = mine.shape == ref.shape and all(
            _close_rel(x, y, TOLERANCES["fill"], 1e-15) for x, y in zip(mine.ravel(), ref.ravel()))
        if not same:
            diffs.append(Difference(t.isoformat(), "fill", mine.tolist(), ref.tolist()))
    diffs.sort(key=lambda d: d.time)
    index = span.index
    return Reconciliation(bars=n, decisions=len(dec), fills=len(fills), differences=diffs, index=index,
                          equity_ledger=equity.reindex(index).to_numpy(np.float64), equity_backtest=bt_equity)
