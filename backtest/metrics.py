"""Performance metrics on per-bar simple returns: one definition, used everywhere in evo.

Inputs are 1-D arrays of per-bar **simple returns as fractions** (0.01 = +1 % over that bar),
e.g. :attr:`backtest.BacktestResult.returns`. All results are plain finite ``float``; non-finite
input raises :class:`evo.errors.DataError` rather than leaking NaN or inf into a Pareto front.
Finite input never overflows: compounding is done in logs, and a figure too large to mean anything
(an annualisation over bars one second apart, a series doubling a thousand times) is clipped to
``+-METRIC_CAP`` (1e12), a value no real strategy reaches.

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
    "METRIC_CAP", "calmar_ratio", "max_drawdown", "periods_per_year", "profit_factor", "sharpe_ratio",
    "sortino_ratio", "total_return", "turnover", "win_rate",
]

_DAYS_PER_YEAR = 365.25
_SECONDS_PER_YEAR = _DAYS_PER_YEAR * 24 * 3600.0

METRIC_CAP = 1e12   # |Sharpe|, |Sortino|, |Calmar|, total return, CAGR and turnover are clipped to it


def _capped(x: float) -> float:
    """``x`` clipped to ``+-METRIC_CAP`` (NaN from inf / inf: 0.0)."""
    if math.isnan(x):
        return 0.0
    return float(min(max(x, -METRIC_CAP), METRIC_CAP))


def _log_growth(r: np.ndarray) -> np.ndarray:
    """``log(prod(1 + r[:i+1]))`` for each ``i`` (float64), where every ``r > -1``; overflow-free."""
    return np.cumsum(np.log1p(r))


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
    """Bars per year, as observed in ``index``.

    Daily or coarser bars (at most one bar on most dates): bar-to-bar steps per calendar year,
    ``(len(index) - 1) / years spanned`` (years of 365.25 days). Counting the bars that really
    occurred makes weekends and holidays come out right: NVDA daily bars 1999-01-22 .. 2014-12-31
    give 4011 steps / 15.94 years ~= 251.6 (the familiar 252); two daily bars one day apart give
    365.25.

    Intraday bars (more than one bar on most dates): **bars per session x sessions per year**, a
    session being a calendar date with bars. Sessions per year = sessions observed / days in the
    span that fall on a weekday the data trades on x those weekdays per year (``365.25 * k / 7``
    for ``k`` trading weekdays: 260.9 for Monday-Friday, 365.25 for 24/7 data), so a span that
    starts on a Monday and ends on a Friday is not taken for 5/7 of its calendar days (a span
    shorter than a week counts Monday-Friday plus the weekdays it has). Bars per
    session is the mean over the sessions between the first and the last (those two are often
    cut short by the file's ends) when there are at least 3. The 1-minute index-future file
    (Jan-Feb 2006, 41 sessions on 41 weekdays, 758 bars a full session) gives 260.9 x 758 ~=
    197 750; steps over calendar time gave 199 534 on the whole file and 203 470 / 185 203 on its
    first 80 % / last 20 %.

    Compute it once (the search span's value serves its holdout too: evo.evaluation.dataset) and
    pass it to every fold's backtest.

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
    days = index.normalize()
    dates, per_date = np.unique(days.to_numpy(), return_counts=True)
    if np.median(per_date) <= 1:
        span_s = (index[-1] - index[0]).total_seconds()
        return (len(index) - 1) / (span_s / _SECONDS_PER_YEAR)
    first, last = dates[0].astype("datetime64[D]"), dates[-1].astype("datetime64[D]")
    weekdays = set(pd.DatetimeIndex(dates).day_of_week)
    if last - first < np.timedelta64(7, "D"):  # under a week: which weekdays trade is not seen
        weekdays |= {0, 1, 2, 3, 4}
    mask = [int(d in weekdays) for d in range(7)]  # numpy's weekmask: Monday first, as day_of_week
    trading_days = int(np.busday_count(first, last + np.timedelta64(1, "D"), weekmask=mask))
    sessions_per_year = dates.shape[0] / trading_days * _DAYS_PER_YEAR * len(weekdays) / 7.0
    full = per_date[1:-1] if per_date.shape[0] >= 3 else per_date
    return float(full.mean() * sessions_per_year)


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
    with np.errstate(over="ignore", invalid="ignore"):
        std = float(np.std(r, ddof=1))
        mean = float(np.mean(r))
    if not std > _STD_EPS:
        return 0.0
    return _capped(mean / std * math.sqrt(float(periods_per_year)))


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
    if np.any(r <= -1.0):
        return 1.0  # the equity reached zero (or below): everything was lost
    log_equity = _log_growth(r)
    log_peak = np.maximum.accumulate(np.maximum(log_equity, 0.0))
    dd = float(-np.expm1(np.min(log_equity - log_peak)))
    return min(max(dd, 0.0), 1.0)


def total_return(returns: np.ndarray) -> float:
    """Compounded return over all bars, as a fraction: ``prod(1 + r) - 1``.

    Worked value: ``r = [0.1, -0.5, 0.2]`` -> ``1.1 * 0.5 * 1.2 - 1 = -0.34`` (-34 %).
    """
    r = _returns_array(returns)
    if r.size and not np.any(r <= -1.0):
        return _capped(math.expm1(min(float(_log_growth(r)[-1]), 700.0)))
    with np.errstate(over="ignore", invalid="ignore"):
        return _capped(float(np.prod(1.0 + r) - 1.0))


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
    with np.errstate(over="ignore", invalid="ignore"):
        downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
        mean = float(np.mean(r))
    if not downside > _STD_EPS:
        return 0.0
    return _capped(mean / downside * math.sqrt(float(periods_per_year)))


def calmar_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Calmar ratio: compound annual growth rate divided by max drawdown (both fractions).

    ``CAGR = (1 + total_return) ** (periods_per_year / N) - 1``, computed in logs. 0.0 when the
    drawdown is 0; clipped to ``+-METRIC_CAP`` (a short span annualised over many bars a year,
    e.g. bars one second apart, would overflow).

    Worked value: 252 bars returning +10 % in total with a 5 % max drawdown -> 0.10 / 0.05 = 2.0.
    """
    r = _returns_array(returns)
    dd = max_drawdown(r)
    if r.size == 0 or dd <= 0.0:
        return 0.0
    if np.any(r <= -1.0):
        return -1.0 / dd  # the account was wiped out
    log_cagr = float(_log_growth(r)[-1]) * float(periods_per_year) / r.size
    cagr = math.expm1(min(log_cagr, 700.0))  # e^700 ~ 1e304: finite, far above the cap
    return _capped(cagr / dd)


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
    return _capped(float(changes / p.size * float(periods_per_year)))
