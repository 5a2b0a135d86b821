"""Consensus and risk parameters per genome, tuned with nevergrad on validation predictions only.

The genome fixes the discrete choices (the consensus rule) and a starting threshold; the
continuous parameters a trader would otherwise guess — threshold, model A's weight in the
``weighted`` rule, stop-loss and take-profit — are tuned for each genome by nevergrad's ``NGOpt``
to maximise the annualised Sharpe ratio over the folds' **validation** segments (which lie before
each test fold, after a purge gap). Test folds never enter the tuning.

Position size is not tuned: the Sharpe ratio does not change when every position is scaled, so
tuning it on Sharpe would only pick a bound. It comes from the budget instead: a fixed fraction of
equity, or a Kelly fraction ``mean / variance`` of the trade returns that the fold-0 models make
on their own **training** rows (in-sample, so it is capped by ``kelly_cap``).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from evo.config import EvalBudget, SearchSpace
from evo.genome import Genome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskParams:
    """What turns two models' probabilities into positions, for one genome."""

    threshold: float                 # probability a side must exceed
    weight: float = 0.5              # model A's share in the "weighted" rule
    stop_loss: float | None = None   # fraction against the entry (0.02 = 2 %)
    take_profit: float | None = None  # fraction in favour
    size: float = 1.0                # fraction of equity per position
    gate_low: float = 0.0            # threshold offset in the low-volatility regime (regime gate; 0 = none)
    gate_high: float = 0.0           # ... in the high-volatility regime (evo.pipeline.regime)

    def rules(self, breaker: float | None):
        from backtest import RiskRules

        return RiskRules(size=self.size, stop_loss=self.stop_loss, take_profit=self.take_profit, breaker=breaker)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; the gate offsets only when set (a genome without a gate reads as before)."""
        d = asdict(self)
        for key in ("gate_low", "gate_high"):
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RiskParams:
        return cls(**d)


def gates(g: Genome) -> bool:
    """True when the genome's consensus threshold depends on the volatility regime (either
    model's ``regime`` gene is ``"gate"``; see :mod:`evo.pipeline.regime`)."""
    return "gate" in (g.model_a.regime, g.model_b.regime)


def signal_for(p_a: np.ndarray, p_b: np.ndarray, g: Genome, risk: RiskParams, allow_short: bool,
               regime: np.ndarray | None = None) -> np.ndarray:
    """The consensus signal (int8, one per decision bar) under ``risk``'s threshold and weight.

    With ``regime`` (the volatility regime per decision bar, 0 low / 1 mid / 2 high) the threshold
    is ``threshold + gate_low`` in the low and ``threshold + gate_high`` in the high regime."""
    from backtest import consensus_signal

    def at(threshold: float) -> np.ndarray:
        return consensus_signal(p_a, p_b, rule=g.consensus, threshold=float(np.clip(threshold, 0.01, 0.99)),
                                weight=risk.weight, allow_short=allow_short)

    signal = at(risk.threshold)
    if regime is not None and (risk.gate_low or risk.gate_high):
        regime = np.asarray(regime)
        for r, offset in ((0, risk.gate_low), (2, risk.gate_high)):
            if offset and (regime == r).any():
                signal = np.where(regime == r, at(risk.threshold + offset), signal).astype(signal.dtype)
    return signal


@dataclass(frozen=True)
class Segment:
    """Decision bars ``[start, stop)`` of one span with both models' probabilities for them."""

    start: int
    stop: int
    p_a: np.ndarray
    p_b: np.ndarray
    regime: np.ndarray | None = None   # volatility regime per decision bar (only when the genome gates)


def segment_returns(bars: pd.DataFrame, segments: list[Segment], g: Genome, risk: RiskParams,
                    ev: EvalBudget, periods_per_year: float) -> tuple[np.ndarray, int]:
    """Per-bar strategy returns over the segments (each traded on its own, from flat), and the
    number of trades. Bars ``start..stop`` are used: the last decision fills at bar ``stop``."""
    from backtest import CostModel, backtest_signals

    costs = CostModel(fees_bps=ev.fees_bps, slippage_bps=ev.slippage_bps)
    rules = risk.rules(ev.breaker_or_none)
    parts, trades = [], 0
    for seg in segments:
        span = bars.iloc[seg.start: seg.stop + 1]
        signal = np.concatenate([signal_for(seg.p_a, seg.p_b, g, risk, ev.allow_short, seg.regime),
                                 np.zeros(1, np.int8)])
        bt = backtest_signals(span, signal[: len(span)], costs=costs, periods_per_year=periods_per_year, risk=rules)
        parts.append(bt.returns)
        trades += bt.trades
    return np.concatenate(parts) if parts else np.zeros(0), trades


def tune_risk(g: Genome, bars: pd.DataFrame, val_segments: list[Segment], space: SearchSpace, ev: EvalBudget,
              periods_per_year: float, *, seed: int) -> RiskParams:
    """Tune threshold (and weight, stops) on the validation segments with nevergrad's NGOpt.

    The genome's own threshold is tried first, so tuning never returns something worse on
    validation than the untuned genome. With ``ev.risk_trials == 0`` the genome's values are used.
    """
    from backtest import sharpe_ratio

    base = RiskParams(threshold=g.threshold)
    if ev.risk_trials <= 0 or not val_segments:
        return base
    import nevergrad as ng

    spec: dict[str, Any] = {"threshold": ng.p.Scalar(init=g.threshold, lower=space.threshold[0],
                                                     upper=space.threshold[1])}
    if g.consensus == "weighted":
        spec["weight"] = ng.p.Scalar(init=0.5, lower=0.0, upper=1.0)
    gated = gates(g) and all(seg.regime is not None for seg in val_segments)
    if gated:
        from evo.pipeline.regime import GATE_BOUND

        spec["gate_low"] = ng.p.Scalar(init=0.0, lower=-GATE_BOUND, upper=GATE_BOUND)
        spec["gate_high"] = ng.p.Scalar(init=0.0, lower=-GATE_BOUND, upper=GATE_BOUND)
    if ev.tune_stops:
        spec["stop_loss"] = ng.p.Log(init=0.05, lower=0.005, upper=0.25)
        spec["take_profit"] = ng.p.Log(init=0.10, lower=0.005, upper=0.5)
    params = ng.p.Dict(**spec)
    params.random_state = np.random.RandomState(seed)

    def loss(values: dict[str, float]) -> float:
        risk = RiskParams(threshold=float(values["threshold"]), weight=float(values.get("weight", 0.5)),
                          stop_loss=_opt(values.get("stop_loss")), take_profit=_opt(values.get("take_profit")),
                          gate_low=float(values.get("gate_low", 0.0)), gate_high=float(values.get("gate_high", 0.0)))
        returns, trades = segment_returns(bars, val_segments, g, risk, ev, periods_per_year)
        return -sharpe_ratio(returns, periods_per_year) if trades else 0.0

    optimizer = ng.optimizers.NGOpt(parametrization=params, budget=ev.risk_trials, num_workers=1)
    warnings.filterwarnings("ignore", message="COBYLA", category=UserWarning)  # scipy, for tiny budgets
    start = {"threshold": g.threshold, **({"weight": 0.5} if "weight" in spec else {}),
             **({"stop_loss": 0.05, "take_profit": 0.10} if ev.tune_stops else {}),
             **({"gate_low": 0.0, "gate_high": 0.0} if gated else {})}
    best_loss, best = math.inf, start
    for i in range(ev.risk_trials):
        if i == 0:
            optimizer.suggest(start)
        cand = optimizer.ask()
        value = loss(cand.value)
        optimizer.tell(cand, value)
        if value < best_loss:
            best_loss, best = value, dict(cand.value)
    log.debug("risk tuning for %s: best validation Sharpe %.3f", g.key(), -best_loss)
    return RiskParams(threshold=float(best["threshold"]), weight=float(best.get("weight", 0.5)),
                      stop_loss=_opt(best.get("stop_loss")), take_profit=_opt(best.get("take_profit")),
                      gate_low=float(best.get("gate_low", 0.0)), gate_high=float(best.get("gate_high", 0.0)))


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def kelly_fraction(trade_returns: np.ndarray, cap: float) -> float:
    """Kelly fraction ``mean / variance`` of per-trade returns, clipped to ``[0.01, cap]``
    (0.01 = practically flat: an in-sample edge that is not positive gets no capital).

    Worked value: trade returns with mean 0.01 and standard deviation 0.05 -> 0.01 / 0.0025 = 4,
    capped to ``cap``.
    """
    t = np.asarray(trade_returns, dtype=np.float64)
    if t.size < 2 or not t.var(ddof=1) > 0:
        return 0.01
    return float(np.clip(t.mean() / t.var(ddof=1), 0.01, cap))
