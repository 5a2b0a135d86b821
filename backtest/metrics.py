"""Performance metrics on per-bar simple returns: one definition, used everywhere in evo.

Inputs are 1-D arrays of per-bar **simple returns as fractions** (0.01 = +1 % over that bar),
e.g. :attr:`backtest.BacktestResult.returns`. All results are plain finite ``float``; non-finite
input raises :class:`evo.errors.DataError` rather than leaking NaN or inf into a Pareto front.

numpy only at import time (pandas is imported inside :func:`periods_per_year`), so
``import backtest`` stays light.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from evo.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "calmar_ratio", "max_drawdown", "periods_per_year", "profit_factor", "sharpe_ratio", "sortino_ratio",
    "total_return", "turnover", "win_rate",
]

_SECONDS_PER_YEAR = 365.25 * 24 * 3600.0

# A per-bar standard deviation at or below this is treated as zero (a flat equity curve whose
# returns differ only by rounding), so the Sharpe ratio is 0.0 instead of a huge number.
_STD_EPS = 1e-12


def _returns_array(returns: object) -> np.ndarray:
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"returns must be a 1-D array of per-bar fractions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise DataError(f"returns must be finite, element {bad} is {float(arr[bad])!r}")
    return arr


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per calendar year actually observed: ``(len(index) - 1) / years spanned``.

    Years spanned is ``(index[-1] - index[0])`` in units of 365.25 days. Counting the bars that
    really occurred (rather than assuming a calendar) makes weekends, holidays and overnight
    gaps come out right: NVDA daily bars 1999-01-22 .. 2014-12-31 give 4011 steps / 15.94 years
    ~= 251.6 (the familiar 252), and 1-minute index-future bars with ~8.5-hour sessions give
    ~2e5. ``len - 1`` counts bar-to-bar steps, so two daily bars one day apart give 365.25.

    Compute it once on the whole bar frame and pass it to every fold's backtest: a short slice
    (a few days of intraday bars) over- or under-counts weekends.

    Args:
        index: strictly increasing, tz-naive ``DatetimeIndex`` of at least 2 bars.

    Returns:
        bars per year (float > 0), the annualisation factor for :func:`sharpe_ratio`.
    """
    import pandas as pd

    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"periods_per_year needs a pandas DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        raise DataError(f"periods_per_year needs at least 2 bars, got {len(index)}")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise DataError(
            "periods_per_year needs a strictly increasing DatetimeIndex; sort and drop duplicates"
        )
    span_s = (index[-1] - index[0]).total_seconds()
    return (len(index) - 1) / (span_s / _SECONDS_PER_YEAR)


def check_periods_per_year(periods_per_year: object) -> None:
    """Raise ConfigError unless ``periods_per_year`` is a finite number > 0 (bars per year)."""
    if isinstance(periods_per_year, bool) or not (
        isinstance(periods_per_year, (int, float, np.floating, np.integer))
        and math.isfinite(periods_per_year)
        and periods_per_year > 0
    ):
        raise ConfigError(
            f"periods_per_year must be a finite number > 0 (e.g. 252), got {periods_per_year!r}"
        )


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio: ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``.

    Risk-free rate 0; ``r`` are per-bar simple returns (fractions) including the bars spent flat
    (zeros). Returns exactly 0.0 when there are fewer than 2 returns or the standard deviation is
    0 (up to 1e-12): a strategy that never trades scores 0, not +inf.

    Worked value: ``r = [0.01, -0.01, 0.02]`` has mean 0.00667, std 0.01528, so with 252 bars a
    year the Sharpe ratio is ``0.4364 * sqrt(252) = 6.928``.

    Args:
        returns: 1-D float array of per-bar returns (fractions).
        periods_per_year: bars per year (> 0), e.g. from :func:`periods_per_year`.
    """
    r = _returns_array(returns)
    check_periods_per_year(periods_per_year)
    if r.size < 2:
        return 0.0
    std = float(np.std(r, ddof=1))
    if std <= _STD_EPS:
        return 0.0
    return float(np.mean(r)) / std * math.sqrt(float(periods_per_year))


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough fall of the compounded equity curve, as a **positive** fraction.

    Equity starts at 1 before the first return, ``E_i = prod_{j <= i} (1 + r_j)``; the drawdown
    at ``i`` is ``1 - E_i / max(1, E_0, ..., E_i)`` and this returns the maximum over ``i``,
    capped at 1.0 (all capital lost). 0.23 means a 23 % fall; no returns or a flat curve give 0.0.

    Worked value: ``r = [0.1, -0.5, 0.2]`` -> equity 1.1, 0.55, 0.66 -> drawdown
    ``1 - 0.55 / 1.1 = 0.5``; ``r = [-0.2]`` -> 0.2 (measured from the starting capital).
    """
    r = _returns_array(returns)
    if r.size == 0:
        return 0.0
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    dd = float(np.max(1.0 - equity / peak))
    return min(max(dd, 0.0), 1.0)


def total_return(returns: np.ndarray) -> float:
    """Compounded return over all bars, as a fraction: ``prod(1 + r) - 1``.

    Worked value: ``r = [0.1, -0.5, 0.2]`` -> ``1.1 * 0.5 * 1.2 - 1 = -0.34`` (-34 %).
    """
    r = _returns_array(returns)
    return float(np.prod(1.0 + r) - 1.0)


def sortino_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sortino ratio: ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)``.

    The downside deviation uses every bar (flat bars count as 0, target return 0). 0.0 when
    there is no downside or fewer than 2 returns.

    Worked value: ``r = [0.02, -0.01, 0.02, -0.01]``: mean 0.005, downside deviation
    ``sqrt((0.0001 + 0.0001) / 4) = 0.007071``, so with 252 bars a year ``0.7071 * 15.87 = 11.22``.
    """
    r = _returns_array(returns)
    if r.size < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside <= _STD_EPS:
        return 0.0
    return float(np.mean(r)) / downside * math.sqrt(float(periods_per_year))


def calmar_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Calmar ratio: compound annual growth rate divided by max drawdown (both fractions).

    ``CAGR = (1 + total_return) ** (periods_per_year / N) - 1``. 0.0 when the drawdown is 0.

    Worked value: 252 bars returning +10 % in total with a 5 % max drawdown -> 0.10 / 0.05 = 2.0.
    """
    r = _returns_array(returns)
    dd = max_drawdown(r)
    if r.size == 0 or dd <= 0.0:
        return 0.0
    growth = float(np.prod(1.0 + r))
    if growth <= 0.0:
        return -1.0 / dd
    cagr = growth ** (float(periods_per_year) / r.size) - 1.0
    return float(cagr / dd)


def win_rate(trade_returns: np.ndarray) -> float:
    """Share of closed trades with a positive return (after costs), in [0, 1]; 0.0 without trades.

    Worked value: trade returns ``[0.02, -0.01, 0.03, 0.0]`` -> 2 of 4 -> 0.5.
    """
    t = np.asarray(trade_returns, dtype=np.float64).reshape(-1)
    return float((t > 0).mean()) if t.size else 0.0


PROFIT_FACTOR_CAP = 100.0


def profit_factor(trade_returns: np.ndarray) -> float:
    """Sum of winning trade returns over the absolute sum of losing ones, capped at 100
    (no losing trade with at least one win gives the cap; no trades gives 0.0).

    Worked value: ``[0.02, -0.01, 0.03, -0.01]`` -> 0.05 / 0.02 = 2.5.
    """
    t = np.asarray(trade_returns, dtype=np.float64).reshape(-1)
    wins, losses = float(t[t > 0].sum()), float(-t[t < 0].sum())
    if losses <= 0.0:
        return PROFIT_FACTOR_CAP if wins > 0 else 0.0
    return min(wins / losses, PROFIT_FACTOR_CAP)


def turnover(position: np.ndarray, periods_per_year: float) -> float:
    """Annualised turnover: ``sum |position[i] - position[i-1]| / N * periods_per_year``, where
    ``position`` is the held position per bar as a fraction of equity (1 long, -1 short, 0 flat;
    fractional under fixed-fraction sizing). It counts how many times a year the strategy trades
    its equity one way: entering and leaving a full position once is 2.

    Worked value: positions ``[0, 1, 1, 0]`` over 4 bars with 252 bars a year -> 2 / 4 * 252 = 126.
    """
    p = np.asarray(position, dtype=np.float64).reshape(-1)
    if p.size == 0:
        return 0.0
    changes = np.abs(np.diff(np.concatenate([[0.0], p]))).sum()
    return float(changes / p.size * float(periods_per_year))
