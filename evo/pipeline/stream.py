"""Live decisions bar by bar: a bounded tail of bars, and how long it must be.

A live bot calls :meth:`evo.deploy.bundle.Bundle.step` once per closed bar. Recomputing the features
over the whole history on every bar gets slower every day, so the bundle keeps only the last
``tail_bars`` bars (a :class:`BarTail`) and recomputes the features and both windows over them.

Why a tail reproduces the full-history decision
-----------------------------------------------
A decision at bar ``t`` reads feature rows ``t-seq_len+1 .. t``. Most features have a finite
memory: the value at row ``r`` reads bars ``r-warmup_bars .. r`` (SMA, Bollinger, the candlestick
patterns, rolling counts ...), so ``seq_len + warmup_bars`` bars give the same value, up to the
rounding of running sums (~1e-12 of a feature's std, measured). ``since_<p>`` also remembers the
last firing up to its cap (50 bars) back. The recursive ones — EMA, Wilder's RSI/ATR/+DI/-DI and
ADX, MACD, TRIX, PPO, TSI — are seeded at the start of the series (TA-Lib seeds an EMA with the
SMA of its first ``n`` values). Started later, the recursion carries a different seed, and the
difference shrinks by the retention ``rho = 1 - alpha`` on every bar; through ``m`` nested
smoothings it is at most ``C(k+m-1, m-1) * rho**k`` of the initial difference after ``k`` bars.

So the tail is ``seq_len + max over the bundle's features of (warmup_bars + margin)``, where the
margin is the smallest ``k`` that brings that factor below :data:`SEED_TOLERANCE` (1e-9) for a
recursive feature, the cap for ``since_<p>``, and 0 otherwise. With ``ema_50`` (rho = 49/51) the
margin is 519 bars; measured on NVDA daily and the 1-minute index future, 552 bars after the
seed leave less than 1e-9 of a feature's std. The export also measures the difference on its own
data (:func:`tail_difference`) and lengthens the tail if a feature outside this table needs it.

Higher timeframes and regimes
-----------------------------
A model reading ``x m`` bars (:mod:`features.timeframes`) needs the same margin counted in rows of
its timeframe: the stream rebuilds the closed ``x m`` bars from its tail on every step, and a
period holds at most ``m`` base bars, so ``m x (rows + 2)`` base bars give ``rows`` closed periods
after a possibly partial first one and before the still open last one (:func:`frame_tail_bars`).
The partial first period acts like a different seed: it lies before every row the windows read
and their warm-up. Regime inputs (:mod:`evo.pipeline.regime`) remember 60 base bars before the first row
of the slowest window. Multi-timeframe bundles recompute everything on the tail at each step.

Settled decisions and fresh bars
--------------------------------
A decision with fewer than ``tail_bars`` bars of history still carries the indicators' seeds: a
longer history may decide otherwise (``Decision.settled`` is False). And a live decision is only
worth making on a bar that closed recently: :func:`bar_age` and :func:`default_max_age` say how
old the last bar is and how old it may be (``evo predict --max-age``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from evo.errors import DataError

__all__ = [
    "SEED_TOLERANCE",
    "BarTail",
    "bar_age",
    "default_max_age",
    "describe_age",
    "frame_tail_bars",
    "parse_bar",
    "parse_max_age",
    "seed_margin_bars",
    "tail_bars_for",
    "tail_difference",
]

OHLCV = ("open", "high", "low", "close", "volume")

SEED_TOLERANCE = 1e-9
"""Largest remaining fraction of a seed difference after the margin (relative to that difference)."""


def _ema(n: int) -> float:
    return 1.0 - 2.0 / (n + 1)


def _wilder(n: int) -> float:
    return 1.0 - 1.0 / n


# Recursive features of catalog version 1: (per-bar retention of the slowest smoothing, nesting).
# This is knowledge about features/ definitions; features.FeatureSpec would be its better home.
RECURSIVE: dict[str, tuple[float, int]] = {
    **{f"ema_{n}": (_ema(n), 1) for n in (10, 20, 50)},
    **{f"rsi_{n}": (_wilder(n), 1) for n in (7, 14, 21)},
    "atr_14": (_wilder(14), 1),
    "range_atr_14": (_wilder(14), 1),
    "plus_di_14": (_wilder(14), 1),
    "minus_di_14": (_wilder(14), 1),
    "adx_14": (_wilder(14), 2),              # Wilder-smoothed DM/TR, then Wilder-smoothed DX
    "macd_12_26_9": (_ema(26), 1),
    "macd_signal_12_26_9": (_ema(26), 2),    # EMA(9) of the EMA(12) - EMA(26) line
    "macd_hist_12_26_9": (_ema(26), 2),
    "ppo_12_26": (_ema(26), 1),
    "trix_15": (_ema(15), 3),                # triple EMA
    "tsi_25_13": (_ema(25), 2),              # EMA(13) of EMA(25) (pandas ewm, adjust=False)
}


def _since_cap() -> int:
    from features.catalog import SINCE_CAP_BARS

    return int(SINCE_CAP_BARS)


def seed_margin_bars(rho: float, nesting: int, tolerance: float = SEED_TOLERANCE) -> int:
    """Smallest ``k`` with ``C(k+nesting-1, nesting-1) * rho**k <= tolerance`` (bars).

    ``rho`` in (0, 1) is the per-bar retention of a recursive smoothing (``1 - 2/(n+1)`` for an
    EMA of ``n`` bars, ``1 - 1/n`` for Wilder's); ``nesting`` >= 1 smoothings in a row.
    ``seed_margin_bars(49/51, 1)`` is 519.
    """
    if not 0.0 < rho < 1.0 or nesting < 1 or not 0.0 < tolerance < 1.0:
        raise ValueError(f"seed_margin_bars: need 0 < rho < 1, nesting >= 1, 0 < tolerance < 1; "
                         f"got {rho}, {nesting}, {tolerance}")
    k = 0
    while math.comb(k + nesting - 1, nesting - 1) * rho**k > tolerance:
        k += 1
    return k


def tail_bars_for(names: Iterable[str], seq_len: int, *, tolerance: float = SEED_TOLERANCE) -> int:
    """Bars a stream must keep so the features of ``names`` over its last ``seq_len`` rows equal
    the full-history ones (within ``tolerance`` of a seed difference; module docstring).

    ``seq_len + max(warmup_bars + margin)`` over ``names``; the warm-ups come from
    :func:`features.catalog`.
    """
    from features import feature_spec

    need = 0
    for name in names:
        spec = feature_spec(name)
        margin = 0
        if name in RECURSIVE:
            margin = seed_margin_bars(*RECURSIVE[name], tolerance)
        elif name.startswith("since_"):
            margin = _since_cap()
        need = max(need, int(spec.warmup_bars) + margin)
    return int(seq_len) + need


def frame_tail_bars(features: Iterable[str], timeframes: Iterable[int], regime: str, seq_len: int) -> int:
    """Base bars a stream must keep for one model's higher timeframes and regime inputs (module
    docstring); 0 for a single-timeframe model without regime (:func:`tail_bars_for` covers it)."""
    from evo.pipeline.regime import TREND_LAG, TREND_SMA

    features = list(features)
    rows = tail_bars_for(features, seq_len)
    need = max([0] + [int(m) * (rows + 2) for m in timeframes if int(m) > 1])
    if regime != "none":
        need = max(need, max(int(m) * (seq_len + 2) for m in timeframes) + TREND_SMA + TREND_LAG)
    return need


def tail_difference(bars: pd.DataFrame, full: pd.DataFrame, columns: list[str], scale: np.ndarray,
                    seq_len: int, tail_bars: int, ends: np.ndarray) -> float:
    """Largest difference, in units of ``scale`` (the fitted scaler's std, float64), between the
    feature rows a stream with ``tail_bars`` bars would put in the window of each decision bar in
    ``ends`` and the rows computed from the whole of ``bars`` (``full``, its feature matrix).

    Rows where either value is NaN (warm-up) are skipped. Needs ``ends >= tail_bars - 1``.
    """
    from features import compute_features

    worst = 0.0
    scale = np.asarray(scale, dtype=np.float64)
    full_values = full[columns].to_numpy(dtype=np.float64)
    for t in np.asarray(ends, dtype=np.int64):
        if t < tail_bars - 1:
            raise ValueError(f"tail_difference: decision bar {t} has fewer than {tail_bars} bars behind it")
        tail = compute_features(bars.iloc[t - tail_bars + 1: t + 1])[columns].to_numpy(dtype=np.float64)
        diff = np.abs(tail[-seq_len:] - full_values[t - seq_len + 1: t + 1]) / scale
        if np.isfinite(diff).any():
            worst = max(worst, float(np.nanmax(diff)))
    return worst


def parse_bar(bar: Mapping[str, Any] | pd.Series) -> tuple[pd.Timestamp, np.ndarray]:
    """``(time, [open, high, low, close, volume])`` of one closed bar, checked like a CSV row.

    ``bar`` is a mapping (or a ``pandas.Series``) with ``time``, ``open``, ``high``, ``low``,
    ``close`` and ``volume`` (any case; volume may be missing or NaN: 0). A Series without a
    ``time`` entry uses its name (``DataFrame.iterrows`` gives the index there). ``time`` is
    anything ``pandas.Timestamp`` reads; a time zone is converted to UTC and dropped, as
    :mod:`evo.data` does. Raises :class:`DataError` for a missing field, a non-positive or
    non-finite price, a high below max(open, close) or a low above min(open, close).
    """
    items = {str(k).lower(): v for k, v in bar.items()}
    if "time" not in items and isinstance(bar, pd.Series) and bar.name is not None:
        items["time"] = bar.name
    missing = [c for c in ("time", "open", "high", "low", "close") if c not in items]
    if missing:
        raise DataError(f"bar lacks {', '.join(missing)}: expected time, open, high, low, close, volume")
    try:
        time = pd.Timestamp(items["time"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"bar time {items['time']!r} is not a time ({exc})") from None
    if time is pd.NaT:
        raise DataError("bar time is missing (NaT)")
    if time.tzinfo is not None:
        time = time.tz_convert("UTC").tz_localize(None)
    try:
        values = np.array([float(items[c]) for c in OHLCV[:4]] + [float(items.get("volume", 0.0) or 0.0)])
    except (TypeError, ValueError) as exc:
        raise DataError(f"bar at {time}: a value is not a number ({exc})") from None
    o, h, lo, c, v = values
    if np.isnan(v):
        values[4] = v = 0.0
    if not (np.isfinite(values[:4]).all() and (values[:4] > 0).all()):
        raise DataError(f"bar at {time}: prices must be finite and > 0, got {values[:4].tolist()}")
    if h < max(o, c) - 1e-12 * abs(h) or lo > min(o, c) + 1e-12 * abs(lo):
        raise DataError(f"bar at {time}: high/low do not enclose open and close ({values[:4].tolist()})")
    if not np.isfinite(v) or v < 0:
        raise DataError(f"bar at {time}: volume must be finite and >= 0, got {v}")
    return time, values


def _bar_span(clock) -> pd.Timedelta:
    return pd.Timedelta(seconds=int(clock.base_seconds))


def bar_age(last: pd.Timestamp, clock, now: pd.Timestamp) -> pd.Timedelta:
    """How long ago the bar stamped ``last`` closed, at ``now`` (both tz-naive UTC, as
    :mod:`evo.data` gives times). ``clock`` (:class:`features.timeframes.BarClock`) says whether a
    stamp marks the bar's open (close = stamp + interval, Yahoo's dates) or its close. Negative
    when the bar closes after ``now``: it is still running, or its times are not UTC."""
    close = pd.Timestamp(last) + (_bar_span(clock) if clock.label == "open" else pd.Timedelta(0))
    return pd.Timestamp(now) - close


def default_max_age(clock) -> pd.Timedelta:
    """The age beyond which a live decision refuses its last bar: 3 bar intervals for intraday
    bars (15 minutes on 5-minute bars), and for daily or longer bars the larger of 4 days and 3
    intervals (a Friday bar is still the latest on Monday night after a holiday)."""
    span = _bar_span(clock)
    return max(3 * span, pd.Timedelta(days=4)) if span >= pd.Timedelta(days=1) else 3 * span


def parse_max_age(text: str) -> pd.Timedelta | None:
    """``--max-age``: a duration as pandas reads it (``4d``, ``2h``, ``90min``, ``45s``), or
    ``0``/``none`` for no limit (None). Raises :class:`DataError` for anything else."""
    t = str(text).strip().lower()
    if t in ("0", "none", "off"):
        return None
    try:
        age = pd.Timedelta(t)
    except (TypeError, ValueError):
        age = pd.NaT
    if age is pd.NaT or not age > pd.Timedelta(0):
        raise DataError(f"--max-age {text!r}: give a duration like 4d, 2h or 90min, or 0/none for no limit")
    return age


def describe_age(age: pd.Timedelta) -> str:
    """``age`` for people: ``3.2 days``, ``5.0 h``, ``12 min``, ``40 s``."""
    s = age.total_seconds()
    if abs(s) >= 2 * 86400:
        return f"{s / 86400:.1f} days"
    if abs(s) >= 2 * 3600:
        return f"{s / 3600:.1f} h"
    if abs(s) >= 120:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


class BarTail:
    """The last ``capacity`` closed bars, oldest first (a bounded FIFO on two numpy arrays).

    ``seen`` counts every bar appended since the last :meth:`clear`, including those that have
    fallen out of the tail.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"BarTail capacity must be >= 1 bar, got {capacity}")
        self.capacity = int(capacity)
        self._times = np.empty(self.capacity, dtype="datetime64[ns]")
        self._values = np.empty((self.capacity, len(OHLCV)), dtype=np.float64)
        self._n = 0
        self.seen = 0

    def __len__(self) -> int:
        return self._n

    @property
    def last_time(self) -> pd.Timestamp | None:
        return pd.Timestamp(self._times[self._n - 1]) if self._n else None

    def volumes(self) -> np.ndarray:
        """The tail's volumes, oldest first (a read-only view, float64)."""
        v = self._values[: self._n, 4]
        v.flags.writeable = False
        return v

    def clear(self) -> None:
        self._n = 0
        self.seen = 0

    def append(self, time: pd.Timestamp, values: np.ndarray) -> None:
        """Add one bar (from :func:`parse_bar`); its time must be after the last bar's."""
        last = self.last_time
        if last is not None and time <= last:
            raise DataError(f"bar at {time} is not after the previous bar ({last}): "
                            "step() takes each closed bar once, in time order")
        if self._n == self.capacity:
            self._times[:-1] = self._times[1:]
            self._values[:-1] = self._values[1:]
            self._n -= 1
        self._times[self._n] = np.datetime64(time.to_datetime64(), "ns")
        self._values[self._n] = values
        self._n += 1
        self.seen += 1

    def extend(self, bars: pd.DataFrame) -> None:
        """Append the last ``capacity`` rows of a canonical bar frame (:mod:`evo.data`) at once."""
        last = self.last_time
        if len(bars) and last is not None and bars.index[0] <= last:
            raise DataError(f"bars from {bars.index[0]} are not after the stream's last bar ({last})")
        keep = bars.iloc[-self.capacity:]
        values = keep[list(OHLCV)].to_numpy(dtype=np.float64)
        times = keep.index.to_numpy(dtype="datetime64[ns]")
        total = min(self.capacity, self._n + len(keep))
        old = total - len(keep)                     # rows of the old tail that stay
        self._times[:old] = self._times[self._n - old: self._n]
        self._values[:old] = self._values[self._n - old: self._n]
        self._times[old:total] = times
        self._values[old:total] = values
        self._n = total
        self.seen += len(bars)

    def frame(self) -> pd.DataFrame:
        """The tail as a canonical bar frame (a copy): ``DatetimeIndex`` ``time``, float64 OHLCV."""
        index = pd.DatetimeIndex(self._times[: self._n].copy(), name="time")
        return pd.DataFrame(self._values[: self._n].copy(), index=index, columns=list(OHLCV))
