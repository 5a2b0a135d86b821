"""Consensus rules: two models' class probabilities -> one long/flat/short signal per decision bar.

numpy only: ``evo predict`` on the trading PC imports this module, so it must stay light (no
pandas, no vectorbt).

Probabilities are float64 arrays of shape ``(N, 3)`` with class order ``(down, flat, up)``
(``models``' classes 0, 1, 2). Row ``i`` belongs to decision bar ``t_i``; the signal made from it at
the close of ``t_i`` trades at the open of ``t_i + 1`` (see :func:`backtest.backtest_signals`).

Each rule is one function of the same shape, ``rule(up_a, down_a, up_b, down_b, threshold) ->
bool mask`` ("go long here"); the short side is the same rule with up and down swapped. All
comparisons are strict (``>``), so a tie never opens a position.

Rules, with ``threshold = 0.5`` and rows ``(down, flat, up)``:

* ``"both"``: long where **both** models have ``p_up > threshold`` and each model's
  ``p_up > p_down``. ``a = (0.1, 0.3, 0.6)``, ``b = (0.2, 0.25, 0.55)`` -> long;
  ``b = (0.2, 0.3, 0.5)`` -> flat (0.5 is not > 0.5).
* ``"either"``: long where **at least one** model has ``p_up > threshold`` and **neither** model
  has ``p_down > threshold`` (one confident model suffices unless the other confidently
  disagrees). ``a = (0.1, 0.3, 0.6)``, ``b = (0.3, 0.4, 0.3)`` -> long;
  ``b = (0.55, 0.3, 0.15)`` -> flat.
* ``"weighted"``: long where ``w * p_up_A + (1 - w) * p_up_B > threshold`` and the same
  weighted ``p_up`` beats the weighted ``p_down``; ``w`` (``weight``, default 0.5 = the plain
  mean) says how much model A counts. ``a = (0.1, 0.1, 0.8)``, ``b = (0.3, 0.4, 0.3)``, w 0.5 ->
  weighted up 0.55 -> long; with w 0.2 -> 0.40 -> flat.

Long and short are mutually exclusive under every rule (each requires its side to beat the other).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evo.errors import ConfigError, DataError

__all__ = ["CONSENSUS_RULES", "consensus_scores", "consensus_signal", "quantile_threshold"]

# Rows of probabilities must sum to 1 within this tolerance (catches logits passed by mistake).
_SUM_TOL = 1e-4

RuleFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float], np.ndarray]


def _rule_both(
    up_a: np.ndarray, down_a: np.ndarray, up_b: np.ndarray, down_b: np.ndarray, threshold: float, weight: float
) -> np.ndarray:
    return (up_a > threshold) & (up_b > threshold) & (up_a > down_a) & (up_b > down_b)


def _rule_either(
    up_a: np.ndarray, down_a: np.ndarray, up_b: np.ndarray, down_b: np.ndarray, threshold: float, weight: float
) -> np.ndarray:
    return ((up_a > threshold) | (up_b > threshold)) & ~(down_a > threshold) & ~(down_b > threshold)


def _rule_weighted(
    up_a: np.ndarray, down_a: np.ndarray, up_b: np.ndarray, down_b: np.ndarray, threshold: float, weight: float
) -> np.ndarray:
    up = weight * up_a + (1.0 - weight) * up_b
    down = weight * down_a + (1.0 - weight) * down_b
    return (up > threshold) & (up > down)


_RULES: dict[str, RuleFn] = {"both": _rule_both, "either": _rule_either, "weighted": _rule_weighted}

#: Names accepted by :func:`consensus_signal`, in genome order.
CONSENSUS_RULES: tuple[str, ...] = tuple(_RULES)  # ("both", "either", "weighted")


def _check_proba(name: str, p: object) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"{name} must have shape (N, 3) with columns (down, flat, up), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or inf; pass class probabilities from predict_proba")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise DataError(f"{name} has values outside [0, 1]; pass probabilities (softmax), not logits")
    sums = arr.sum(axis=1)
    if arr.size and not np.allclose(sums, 1.0, rtol=0.0, atol=_SUM_TOL):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise DataError(f"{name} rows must sum to 1 (probabilities), row {worst} sums to {sums[worst]:.6f}")
    return arr


def consensus_signal(
    p_a: np.ndarray,
    p_b: np.ndarray,
    *,
    rule: str,
    threshold: float,
    weight: float = 0.5,
    allow_short: bool = False,
) -> np.ndarray:
    """Combine two models' probabilities into a target position per decision bar.

    Args:
        p_a: model A's probabilities, float ``(N, 3)``, columns ``(down, flat, up)``, rows sum to 1.
        p_b: model B's probabilities, same shape and bars as ``p_a``.
        rule: one of :data:`CONSENSUS_RULES` (``"both"``, ``"either"``, ``"weighted"``; see the
            module docstring for definitions and worked values).
        threshold: probability a side must strictly exceed, in ``(0, 1)``; 0.5 means "more likely
            than not".
        weight: model A's weight in ``[0, 1]`` for the ``"weighted"`` rule (ignored by the others).
        allow_short: if False (long/flat), bars where the short condition holds are 0 (flat).

    Returns:
        int8 array of shape ``(N,)`` with values in ``{-1, 0, 1}`` (short, flat, long): the position
        wanted from the open of the next bar.

    Raises:
        ConfigError: unknown ``rule`` or ``threshold`` outside ``(0, 1)``.
        DataError: probabilities with the wrong shape, non-finite, outside ``[0, 1]`` or with rows
            not summing to 1.
    """
    if rule not in _RULES:
        raise ConfigError(f"unknown consensus rule {rule!r}; use one of {CONSENSUS_RULES}")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.floating))
        or not 0.0 < threshold < 1.0
    ):
        raise ConfigError(
            f"threshold must be a probability strictly between 0 and 1 (e.g. 0.5), got {threshold!r}"
        )
    if not 0.0 <= float(weight) <= 1.0:
        raise ConfigError(f"weight must lie in [0, 1] (model A's share), got {weight!r}")
    a = _check_proba("p_a", p_a)
    b = _check_proba("p_b", p_b)
    if a.shape != b.shape:
        raise DataError(f"p_a and p_b must cover the same bars, got shapes {a.shape} and {b.shape}")
    fn = _RULES[rule]
    thr = float(threshold)
    down_a, up_a = a[:, 0], a[:, 2]
    down_b, up_b = b[:, 0], b[:, 2]
    w = float(weight)
    signal = fn(up_a, down_a, up_b, down_b, thr, w).astype(np.int8)
    if allow_short:
        short = fn(down_a, up_a, down_b, up_b, thr, w)
        signal[short] = -1
    return signal


_SCORES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "both": lambda a, b, w: np.minimum(a, b),
    "either": lambda a, b, w: np.maximum(a, b),
    "weighted": lambda a, b, w: w * a + (1.0 - w) * b,
}


def consensus_scores(p_a: np.ndarray, p_b: np.ndarray, *, rule: str, weight: float = 0.5,
                     allow_short: bool = False) -> np.ndarray:
    """The number each side of ``rule`` compares with the threshold, per decision bar: the smaller
    ``p_up`` of the two models for ``"both"``, the larger for ``"either"``, the weighted ``p_up`` for
    ``"weighted"``; with ``allow_short`` the same of ``p_down`` follows (shape ``(2N,)``, else ``(N,)``).
    A side opens only where its score exceeds the threshold (and beats the other side)."""
    if rule not in _SCORES:
        raise ConfigError(f"unknown consensus rule {rule!r}; use one of {CONSENSUS_RULES}")
    a, b = _check_proba("p_a", p_a), _check_proba("p_b", p_b)
    w = float(weight)
    up = _SCORES[rule](a[:, 2], b[:, 2], w)
    return np.concatenate([up, _SCORES[rule](a[:, 0], b[:, 0], w)]) if allow_short else up


def quantile_threshold(p_a: np.ndarray, p_b: np.ndarray, q: float, *, rule: str, weight: float = 0.5,
                       allow_short: bool = False) -> float:
    """The threshold that ``q`` of the bars' :func:`consensus_scores` fall at or below: a
    threshold relative to the models' own probabilities (``q = 0.8``: the top 20 % of scores
    clear it), for models whose ``p_up`` rarely reaches an absolute level. Clipped to [0.01, 0.99]
    (a probability :func:`consensus_signal` accepts). Fit it on rows that end before the bars it
    trades: validation predictions, never the test bars themselves.

    Worked value: ``"either"`` scores 0.40, 0.45, 0.50, 0.55 and q = 0.5 -> 0.475 (linear
    interpolation, numpy's default)."""
    if not 0.0 < float(q) < 1.0:
        raise ConfigError(f"a quantile threshold needs q strictly between 0 and 1, got {q!r}")
    scores = consensus_scores(p_a, p_b, rule=rule, weight=weight, allow_short=allow_short)
    if scores.size == 0:
        raise DataError("a quantile threshold needs at least one bar of probabilities to be fitted on")
    return float(np.clip(np.quantile(scores, float(q)), 0.01, 0.99))
