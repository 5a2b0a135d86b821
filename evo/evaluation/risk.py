"""Consensus and risk parameters per genome, tuned with nevergrad on validation predictions only.

The genome fixes the discrete choices (the consensus rule) and a starting threshold; the
continuous parameters a trader would otherwise guess — threshold, model A's weight in the
``weighted`` rule, stop-loss and take-profit — are tuned for each genome by nevergrad's ``NGOpt``
to maximise the annualised Sharpe ratio over folds' **validation** segments.

**One set of parameters per test fold, tuned on the past only.** With anchored folds the
validation segment of fold ``j`` lies inside earlier test folds (NVDA, ``cpu`` preset: fold 1's
validation covers 302 of test fold 0's 312 bars), so parameters tuned on all validation segments
at once would trade test fold 0 with values chosen on its own bars. Instead test fold ``k`` is
traded with parameters tuned on the validation segments that end at least the purge gap before
it starts (:func:`tuning_segments`: ``seg.stop + gap <= test.start``, ``gap`` = the longest label
horizon + embargo). With :func:`backtest.walk_forward_folds`'s layout those are the segments of
folds ``0..k``. A tuning segment's decision rows are ``< test.start - gap`` and the bars its
trades read are ``<= test.start - gap``: bars of test fold ``k`` or later never reach fold ``k``'s
parameters (tested by perturbing them). The parameters *recorded* for a genome (used on the
holdout and by the bundle) are those tuned on every validation segment: the last fold's, all of
which end before the holdout.

Position size is not tuned: the Sharpe ratio does not change when every position is scaled, so
tuning it on Sharpe would only pick a bound. It comes from the budget instead: a fixed fraction of
equity, or a Kelly fraction ``mean / variance`` of the trade returns that the fold-0 models make
on their own **training** rows (in-sample, so it is capped by ``kelly_cap``), computed for each
fold's own parameters (fold 0's training rows precede every test fold).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from evo.config import EvalBudget, SearchSpace
from evo.errors import GenomeError
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
    quantile: float | None = None    # threshold_mode "quantile": the level q ``threshold`` was fitted at

    def rules(self, breaker: float | None):
        from backtest import RiskRules

        return RiskRules(size=self.size, stop_loss=self.stop_loss, take_profit=self.take_profit, breaker=breaker)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; the gate offsets only when set (a genome without a gate reads as before)."""
        d = asdict(self)
        for key in ("gate_low", "gate_high", "quantile"):
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


def fit_threshold(risk: RiskParams, segments: list, g: Genome, allow_short: bool) -> RiskParams:
    """``risk`` with its threshold fitted at its quantile level on the ``segments``' probabilities
    (:func:`backtest.quantile_threshold`); unchanged when ``risk`` has no quantile (an absolute
    threshold). The segments must end before every bar the result trades."""
    if risk.quantile is None:
        return risk
    from backtest import quantile_threshold

    if not segments:
        raise GenomeError("a quantile threshold needs validation predictions before the bars it trades")
    p_a = np.concatenate([seg.p_a for seg in segments])
    p_b = np.concatenate([seg.p_b for seg in segments])
    thr = quantile_threshold(p_a, p_b, risk.quantile, rule=g.consensus, weight=risk.weight, allow_short=allow_short)
    return replace(risk, threshold=thr)


def genome_risk(g: Genome, space: SearchSpace) -> RiskParams:
    """The genome's own parameters before tuning: its threshold gene read as the space says
    (a probability, or a quantile level still to be fitted with :func:`fit_threshold`)."""
    if space.threshold_mode == "quantile":
        return RiskParams(threshold=0.5, quantile=g.threshold)
    return RiskParams(threshold=g.threshold)


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
    With ``space.threshold_mode == "quantile"`` the tuned value is the quantile level q and every
    candidate's threshold is fitted at its q on these same segments (:func:`fit_threshold`); the
    result carries both (with no segment at all: threshold 0.5, "more likely than not").
    """
    from backtest import sharpe_ratio

    quantile = space.threshold_mode == "quantile"
    base = fit_threshold(genome_risk(g, space), val_segments, g, ev.allow_short) if val_segments \
        else genome_risk(g, space)
    if ev.risk_trials <= 0 or not val_segments:
        return base
    import nevergrad as ng

    gene = float(np.clip(g.threshold, *space.threshold))   # a seed genome may lie outside the space
    spec: dict[str, Any] = {"threshold": ng.p.Scalar(init=gene, lower=space.threshold[0], upper=space.threshold[1])}
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

    def params_of(values: dict[str, float]) -> RiskParams:
        gene = float(values["threshold"])
        risk = RiskParams(threshold=0.5 if quantile else gene, quantile=gene if quantile else None,
                          weight=float(values.get("weight", 0.5)),
                          stop_loss=_opt(values.get("stop_loss")), take_profit=_opt(values.get("take_profit")),
                          gate_low=float(values.get("gate_low", 0.0)), gate_high=float(values.get("gate_high", 0.0)))
        return fit_threshold(risk, val_segments, g, ev.allow_short)

    def loss(values: dict[str, float]) -> float:
        returns, trades = segment_returns(bars, val_segments, g, params_of(values), ev, periods_per_year)
        return -sharpe_ratio(returns, periods_per_year) if trades else 0.0

    optimizer = ng.optimizers.NGOpt(parametrization=params, budget=ev.risk_trials, num_workers=1)
    warnings.filterwarnings("ignore", message="COBYLA", category=UserWarning)  # scipy, for tiny budgets
    start = {"threshold": gene, **({"weight": 0.5} if "weight" in spec else {}),
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
    return params_of(best)


@dataclass(frozen=True)
class FoldRisk:
    """The parameters test fold ``test`` (decision bars ``[start, stop)``) is traded with, and the
    validation spans (decision bars ``[start, stop)``) they were tuned on."""

    test: tuple[int, int]
    risk: RiskParams
    tuned_on: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"test": list(self.test), "tuned_on": [list(s) for s in self.tuned_on], **self.risk.to_dict()}


def tuning_segments(val_segments: list[Segment], test_start: int, gap: int) -> list[Segment]:
    """The validation segments a test fold starting at decision bar ``test_start`` may be tuned on:
    those with ``stop + gap <= test_start`` (their trades read bars ``<= stop``, so nothing at or
    after ``test_start - gap``). ``gap``: the purge gap in bars (longest label horizon + embargo).

    Worked value: folds with validation ``[632, 725)`` and ``[766, 859)``, gap 5: the test fold
    starting at 730 gets the first only; the one starting at 864 gets both."""
    return [seg for seg in val_segments if seg.stop + gap <= test_start]


def tune_fold_risks(g: Genome, bars: pd.DataFrame, val_segments: list[Segment], tests: list[tuple[int, int]],
                    gap: int, space: SearchSpace, ev: EvalBudget, periods_per_year: float, *,
                    seed: int) -> list[FoldRisk]:
    """:func:`tune_risk` once per test fold, on :func:`tuning_segments` only (module docstring).

    Every fold's tuner starts from the same ``seed``, so the last fold's parameters (tuned on every
    segment) are what a single tuning over all of them would give. A fold with no segment before
    it keeps the genome's own threshold. Sizes are left at 1 (the caller sizes)."""
    out, cache = [], {}
    for test in tests:
        segs = tuning_segments(val_segments, test[0], gap)
        spans = tuple((seg.start, seg.stop) for seg in segs)
        if spans not in cache:
            cache[spans] = tune_risk(g, bars, segs, space, ev, periods_per_year, seed=seed)
        out.append(FoldRisk(test=(int(test[0]), int(test[1])), risk=cache[spans], tuned_on=spans))
    return out


def trade_folds(bars: pd.DataFrame, tests: list[tuple[int, int]], signals: list[np.ndarray],
                risks: list[RiskParams], ev: EvalBudget, periods_per_year: float):
    """Trade contiguous test folds (decision bars ``tests[k]``), fold ``k`` with ``signals[k]``
    (int8, one per decision bar) under ``risks[k]``'s size and stops; a :class:`backtest.BacktestResult`
    over bars ``tests[0][0] .. tests[-1][1]`` (the last decision fills at the last bar).

    When every fold has the same size and stops (fixed sizing, no tuned stops), the folds are one
    account: one backtest of the concatenated signal, positions carried across fold boundaries.
    Otherwise each fold is its own backtest from flat, chained: a position open at a fold's end
    is marked at the boundary bar's close without an exit cost and the next fold enters anew at
    its first fill (one entry cost and one close-to-open gap per boundary). Exposure and turnover
    are then the folds' bar-weighted means. The drawdown breaker watches the chained equity and,
    as in :func:`backtest.backtest_signals`, goes flat from the bar after the first breach."""
    from backtest import (BacktestResult, CostModel, backtest_signals, calmar_ratio, max_drawdown, profit_factor,
                          sharpe_ratio, sortino_ratio, total_return, win_rate)

    costs = CostModel(fees_bps=ev.fees_bps, slippage_bps=ev.slippage_bps)
    start, stop = tests[0][0], tests[-1][1]
    signal = np.concatenate([*signals, np.zeros(1, np.int8)]).astype(np.int8)
    if len(signal) != stop - start + 1:
        raise ValueError("test folds must be contiguous, one signal per decision bar")
    rules = [r.rules(None) for r in risks]
    if all(r == rules[0] for r in rules):
        return backtest_signals(bars.iloc[start: stop + 1], signal, costs=costs, periods_per_year=periods_per_year,
                                risk=risks[0].rules(ev.breaker_or_none))

    def chained(sig: np.ndarray) -> tuple[np.ndarray, list]:
        parts, results = [], []
        for (a, b), rule in zip(tests, rules):
            own = np.concatenate([sig[a - start: b - start], np.zeros(1, np.int8)])
            bt = backtest_signals(bars.iloc[a: b + 1], own, costs=costs, periods_per_year=periods_per_year,
                                  risk=rule)
            parts.append(bt.returns if not parts else bt.returns[1:])   # the boundary bar once
            results.append(bt)
        return np.concatenate(parts), results

    returns, results = chained(signal)
    if ev.breaker_or_none is not None:
        equity = np.cumprod(1.0 + returns)
        breach = np.flatnonzero(1.0 - equity / np.maximum.accumulate(np.maximum(equity, 1.0)) > ev.breaker)
        if breach.size:
            signal = signal.copy()
            signal[int(breach[0]):] = 0
            returns, results = chained(signal)
    trades = sum(bt.trades for bt in results)
    if trades == 0:
        return BacktestResult(returns=returns, sharpe=0.0, max_drawdown=0.0, total_return=0.0, trades=0,
                              exposure=0.0, traded=False)
    weights = np.array([bt.n_bars for bt in results], dtype=np.float64)
    trade_returns = np.concatenate([bt.trade_returns for bt in results])
    return BacktestResult(
        returns=returns, sharpe=sharpe_ratio(returns, periods_per_year), max_drawdown=max_drawdown(returns),
        total_return=total_return(returns), trades=int(trades),
        exposure=float(np.average([bt.exposure for bt in results], weights=weights)), traded=True,
        sortino=sortino_ratio(returns, periods_per_year), calmar=calmar_ratio(returns, periods_per_year),
        win_rate=win_rate(trade_returns), profit_factor=profit_factor(trade_returns),
        turnover=float(np.average([bt.turnover for bt in results], weights=weights)), trade_returns=trade_returns,
    )


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
