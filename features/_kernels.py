"""Numba loops behind the pattern features and the rolling statistics of the catalog.

Every kernel is causal: ``out[t]`` reads inputs at rows ``<= t`` only, and each window is summed
afresh in a fixed order (no running sums), so the value at ``t`` is bit-for-bit the same whatever
follows ``t`` and however long the array is. All outputs are float64 arrays of shape ``(n,)`` with
NaN where the value is not defined yet.

Imported lazily by :mod:`features.catalog` (importing numba costs ~0.15 s).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``x[t-window+1 .. t]``; NaN for ``t < window - 1``. float64 ``(n,)``."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        total = 0.0
        for k in range(t - window + 1, t + 1):
            total += x[k]
        out[t] = total / window
    return out


@numba.njit(cache=True)
def rolling_std(x: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Standard deviation of ``x[t-window+1 .. t]`` (two-pass, ``ddof`` as numpy's); NaN before."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        total = 0.0
        for k in range(t - window + 1, t + 1):
            total += x[k]
        mean = total / window
        sq = 0.0
        for k in range(t - window + 1, t + 1):
            d = x[k] - mean
            sq += d * d
        out[t] = np.sqrt(sq / (window - ddof))
    return out


@numba.njit(cache=True)
def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Average true range, Wilder smoothing, seeded as TA-Lib's ``ATR`` (price units).

    ``out[period]`` is the mean of the true ranges of bars ``1 .. period``; after that
    ``atr[t] = (atr[t-1] * (period - 1) + tr[t]) / period``. NaN for ``t < period``.
    """
    n = high.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    tr = np.empty(n)
    tr[0] = np.nan
    for t in range(1, n):
        prev = close[t - 1]
        greatest = high[t] - low[t]
        up = abs(prev - high[t])
        down = abs(prev - low[t])
        if up > greatest:
            greatest = up
        if down > greatest:
            greatest = down
        tr[t] = greatest
    total = 0.0
    for t in range(1, period + 1):
        total += tr[t]
    atr = total / period
    out[period] = atr
    for t in range(period + 1, n):
        atr = (atr * (period - 1) + tr[t]) / period
        out[t] = atr
    return out


@numba.njit(cache=True)
def bars_since(fired: np.ndarray, start: int, cap: int) -> np.ndarray:
    """Bars since ``fired`` was last true (0 on a firing bar), capped at ``cap``; NaN before ``start``.

    Only firings at rows ``>= start`` count, so a bar with no firing in the last ``cap`` bars
    (or none yet) reads ``cap``.
    """
    n = fired.shape[0]
    out = np.full(n, np.nan)
    last = -1
    for t in range(start, n):
        if fired[t]:
            last = t
        if last < 0 or t - last >= cap:
            out[t] = cap
        else:
            out[t] = t - last
    return out


@numba.njit(cache=True)
def rolling_count(fired: np.ndarray, start: int, window: int) -> np.ndarray:
    """Number of true values in ``fired[t-window+1 .. t]``; NaN for ``t < start + window - 1``."""
    n = fired.shape[0]
    out = np.full(n, np.nan)
    for t in range(start + window - 1, n):
        count = 0
        for k in range(t - window + 1, t + 1):
            if fired[k]:
                count += 1
        out[t] = count
    return out
