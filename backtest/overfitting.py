"""Selection-bias honesty: the Deflated Sharpe Ratio and the Probability of Backtest Overfitting.

A search that tries many genomes on one history finds a high Sharpe by chance alone. These two
figures say how much of the best one's Sharpe survives that:

- **Deflated Sharpe Ratio** (Bailey & López de Prado, 2014, "The Deflated Sharpe Ratio"): the
  probability that the true Sharpe exceeds the Sharpe expected of the *best* of ``n_trials``
  unskilled strategies, given the variance of the trials' Sharpe ratios and the non-normality
  (skewness, kurtosis) of the returns. Below 0.95: no evidence of skill at the 5 % level.
- **Probability of Backtest Overfitting** (Bailey, Borwein, López de Prado & Zhu, 2015,
  combinatorially symmetric cross-validation): split the common out-of-sample period into ``S``
  blocks; for every way of choosing half of them as "in-sample", take the best strategy there
  and see where it ranks on the other half. PBO is the share of splits in which the in-sample
  winner ranks below the median out of sample. 0.5 is what pure noise gives.

Trials that never trade: their returns are all zero and their Sharpe is 0, so they tie with each
other in every split of PBO (the winner among ties would be whichever column comes first) and
shrink the variance of trial Sharpes that DSR's expected maximum is built on. They are not
strategies that were judged and lost, so both figures leave them out: PBO drops all-zero columns
itself, and callers pass DSR the Sharpes of trading trials only (:mod:`evo.reporting.front` counts
what it left out). Below :data:`MIN_TRIALS` trading trials neither figure is meaningful (NaN here).

Pure numpy + the standard library (``statistics.NormalDist``); Sharpe ratios here are per bar
(not annualised) unless a function says otherwise.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()
MIN_TRIALS = 2   # trading trials PBO and DSR need: one trial has no rank among others, no Sharpe variance


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] of ``n_trials`` independent zero-skill trials whose Sharpe ratios have variance
    ``sharpe_variance`` (same units as the Sharpe ratios): the "SR0" of the DSR paper, eq. (2)."""
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    z1 = _N.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true SR > ``benchmark``) for an observed per-bar ``sharpe`` over ``n_obs`` returns with
    the given skewness and (non-excess) kurtosis (normal returns: skew 0, kurtosis 3)."""
    if n_obs < 2:
        return 0.0
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        return 0.0
    return _N.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def deflated_sharpe(sharpe: float, n_obs: int, skew: float, kurtosis: float, *, n_trials: int,
                    sharpe_variance: float) -> float:
    """The Deflated Sharpe Ratio, a probability in [0, 1].

    Worked example from the paper: annual SR 2.5 on 1250 daily returns (per day 2.5/√250), skew −3,
    kurtosis 10, 100 trials whose annual Sharpe ratios have variance 0.5 (per day 0.5/250):
    SR0 = 0.1132 per day and DSR ≈ 0.90.
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe(sharpe, sr0, n_obs, skew, kurtosis)


def return_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """(per-bar Sharpe, skewness, non-excess kurtosis) of a return series; zeros if flat."""
    r = np.asarray(returns, dtype=np.float64)
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    if not sd > 0:
        return 0.0, 0.0, 3.0
    z = (r - r.mean()) / r.std(ddof=0)
    return float(r.mean() / sd), float((z**3).mean()), float((z**4).mean())


def deflated_sharpe_of(returns: np.ndarray, all_sharpes: np.ndarray, *, n_trials: int | None = None) -> float:
    """DSR of one strategy's per-bar ``returns`` among trials whose per-bar Sharpe ratios are
    ``all_sharpes`` (the variance theirs; the number of trials their count, or ``n_trials`` when
    more trials were tried than have Sharpe ratios here, e.g. screens judged on the same span).
    Pass trading trials only (see the module docstring)."""
    sr, skew, kurt = return_moments(returns)
    trials = np.asarray(all_sharpes, dtype=np.float64)
    variance = float(trials.var(ddof=1)) if len(trials) > 1 else 0.0
    n = len(trials) if n_trials is None else int(n_trials)
    return deflated_sharpe(sr, len(returns), skew, kurt, n_trials=n, sharpe_variance=variance)


def traded_columns(returns: np.ndarray) -> np.ndarray:
    """bool ``(N,)``: which columns of a (T, N) return matrix ever moved (a trial that never trades
    has returns of exactly zero on every bar)."""
    m = np.asarray(returns, dtype=np.float64)
    return np.any(m != 0.0, axis=0)


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = 16) -> float:
    """PBO by combinatorially symmetric cross-validation.

    ``returns`` is (T, N): T common out-of-sample bars of N strategies (trials). The T rows are cut
    into ``n_blocks`` contiguous blocks (even number); each of the C(S, S/2) halves is in-sample
    once. Returns the share of splits whose in-sample best strategy has an out-of-sample relative
    rank at or below the median (logit ≤ 0).

    Independent of the column order: where several strategies tie for the best in-sample Sharpe,
    the split's out-of-sample relative rank is the mean of the tied winners' ranks (and ties out of
    sample share their mean rank). Columns that are zero on every bar (trials that never traded) are
    left out first. NaN ("not meaningful") with fewer than :data:`MIN_TRIALS` strategies left or
    fewer than ``2 * n_blocks`` bars.
    """
    m = np.asarray(returns, dtype=np.float64)
    if n_blocks % 2:
        raise ValueError("n_blocks must be even")
    m = m[:, traded_columns(m)]
    t, n = m.shape
    if n < MIN_TRIALS or t < n_blocks * 2:
        return float("nan")
    edges = np.linspace(0, t, n_blocks + 1).astype(int)
    # Per block and strategy: count, sum and sum of squares, so any union of blocks is cheap.
    cnt = np.diff(edges).astype(np.float64)
    s1 = np.add.reduceat(m, edges[:-1], axis=0)
    s2 = np.add.reduceat(m * m, edges[:-1], axis=0)

    def sharpe(mask: np.ndarray) -> np.ndarray:
        c = cnt[mask].sum()
        mean = s1[mask].sum(axis=0) / c
        var = np.maximum(s2[mask].sum(axis=0) / c - mean**2, 0.0) * c / max(c - 1, 1)
        sd = np.sqrt(var)
        return np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), 0.0)

    logits = []
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        is_mask = np.zeros(n_blocks, dtype=bool)
        is_mask[list(combo)] = True
        in_sample = sharpe(is_mask)
        winners = np.flatnonzero(in_sample == in_sample.max())  # every tied winner, not the first one
        oos = sharpe(~is_mask)
        w = oos[winners][:, None]
        # 1..N, ties out of sample averaged; then averaged over the tied in-sample winners
        rank = float(np.mean((oos < w).sum(axis=1) + 0.5 * ((oos == w).sum(axis=1) - 1) + 1))
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    return float(np.mean(np.asarray(logits) <= 0))
