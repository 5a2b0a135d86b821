"""Higher timeframes built from closed base bars only, and their features aligned to the base bars.

A *timeframe* is a multiplier ``m`` of the data's base bar: on 1-minute data ``x5`` is the
5-minute bar, ``x60`` the hour; on daily data ``x5`` is the calendar week. Periods are cut on
the clock (intraday: ``m x base interval`` floored from midnight, so 5/15/60-minute periods start
at :00, :05, ...; daily ``x5``: the calendar week from Monday), so a live stream and the training
data cut exactly the same periods.

Closed bars only
----------------
A base bar with timestamp ``tau`` covers ``[s, s + base)`` where ``s = tau`` when the data's
timestamps mark bar opens (``BarClock.label = "open"``, Yahoo's daily dates) and
``s = tau - base`` when they mark bar closes (``"close"``: the shared 1-minute file runs
09:01 .. 22:00 for a 09:00-22:00 session). Bar ``t`` closes at ``c_t = s_t + base``. A
higher-timeframe bar (one *group* of consecutive base bars of one period) is **visible** at base
bar ``t`` only when

- its period has ended by ``t``'s close (period end ``<= c_t``), or
- a base bar of a later group has arrived at or before ``t``.

A partly formed bar is never used: at 10:37 the hour 10:00-11:00 is not visible, the aligned
``x60`` row is the 09:00-10:00 hour. A group is a run of consecutive bars of one period; a new
group also starts after a bar that closed its period (only possible on data whose bars come closer
together than the base interval), so a group never gains a bar after it became visible.
Everything is causal: the group of bar ``t`` and its visibility depend on bars ``t-1`` and ``t``
only, and a visible group holds only bars ``<= t``. So every aligned value at ``t`` is unchanged
when the bars after ``t`` are deleted (tested for every timeframe on the minute and daily data).

Features per timeframe come from the same catalog: :func:`features.compute_features` on the
closed higher-timeframe bars (OHLC: first open, max high, min low, last close; volume summed),
named ``<feature>@x<m>`` (``rsi_14@x5``) and aligned to the base bars as "the last closed
period's row" (NaN before the first closed period and during the higher timeframe's warm-up).
The first group of a frame may be partial when the frame starts inside a period; like an
indicator's seed it stops mattering after the higher timeframe's warm-up (see :mod:`evo.pipeline.stream`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evo.errors import DataError

__all__ = [
    "LABELS",
    "BarClock",
    "Resampled",
    "aligned_features",
    "column_name",
    "infer_clock",
    "resample_closed",
    "timeframe_features",
]

LABELS = ("open", "close")
DAY_SECONDS = 86400
WEEK_ANCHOR = np.datetime64("1970-01-05T00:00:00", "ns")  # a Monday
INTRADAY_PERIODS_S = (300, 900, 3600, 14400)  # 5 min, 15 min, 1 h, 4 h: higher timeframes on intraday data
MAX_INTRADAY_TIMEFRAMES = 3


@dataclass(frozen=True)
class BarClock:
    """How the data's bars sit on the clock; fixes how higher-timeframe periods are cut.

    ``base_seconds``: the base bar interval in seconds (60 for minute bars, 86400 for daily),
    the median spacing of the bars. ``label``: ``"open"`` when a timestamp marks the bar's start,
    ``"close"`` when it marks its end. ``week_days``: daily data only, the trading days of a
    calendar week (5 = Monday to Friday, so Friday's close ends the week; 7 when the data trade on
    weekends).
    """

    base_seconds: int
    label: str = "open"
    week_days: int = 5

    def __post_init__(self) -> None:
        if int(self.base_seconds) < 1:
            raise DataError(f"BarClock.base_seconds must be >= 1 s, got {self.base_seconds}")
        object.__setattr__(self, "base_seconds", int(self.base_seconds))
        if self.label not in LABELS:
            raise DataError(f"BarClock.label must be one of {LABELS}, got {self.label!r}")
        if self.week_days not in (5, 7):
            raise DataError(f"BarClock.week_days must be 5 or 7, got {self.week_days}")

    @property
    def daily(self) -> bool:
        return self.base_seconds == DAY_SECONDS

    def multipliers(self) -> tuple[int, ...]:
        """Timeframes this data supports, as multiples of the base bar, ascending, 1 first.

        Intraday: the 5 min, 15 min, 1 h and 4 h periods that are whole multiples of the base
        bar (at most three): ``(1, 5, 15, 60)`` on minute data. Daily: ``(1, 5)`` (the calendar
        week). Anything else: ``(1,)``.
        """
        if self.daily:
            return (1, 5)
        if self.base_seconds > DAY_SECONDS:
            return (1,)
        ms = [p // self.base_seconds for p in INTRADAY_PERIODS_S
              if p > self.base_seconds and p % self.base_seconds == 0]
        return (1, *ms[:MAX_INTRADAY_TIMEFRAMES])

    def to_dict(self) -> dict:
        return {"base_seconds": self.base_seconds, "label": self.label, "week_days": self.week_days}

    @classmethod
    def from_dict(cls, d: dict) -> BarClock:
        return cls(base_seconds=int(d["base_seconds"]), label=str(d["label"]), week_days=int(d["week_days"]))


def _index_ns(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(index.to_numpy(dtype="datetime64[ns]"))


def infer_clock(index: pd.DatetimeIndex) -> BarClock:
    """The :class:`BarClock` of a bar index: median spacing, open/close labels, week length.

    Labels (intraday only; daily dates are bar opens): the first bars of sessions (after a gap of
    more than 5 base bars, and bar 0) are checked against the clock. ``09:00``-style starts mean
    open labels, ``09:01``-style starts (one base bar past a 5-bar boundary) mean close labels.
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        raise DataError("a bar clock needs a DatetimeIndex of at least 2 bars")
    ns = _index_ns(index).astype(np.int64)
    gaps = np.diff(ns)
    if (gaps <= 0).any():
        raise DataError("bar times must be strictly increasing")
    base = int(round(float(np.median(gaps)) / 1e9))
    if base >= DAY_SECONDS:
        base = DAY_SECONDS if base < 2 * DAY_SECONDS else base
        weekday = index.day_of_week
        return BarClock(base, "open", 7 if bool(((weekday >= 5)).any()) else 5)
    step = base * 10**9
    starts = np.concatenate([[0], np.flatnonzero(gaps > 5 * step) + 1])
    phase = ns[starts] % (5 * step)
    n_open, n_close = int((phase == 0).sum()), int((phase == step).sum())
    return BarClock(base, "close" if n_close > n_open else "open", 5)


@dataclass(frozen=True)
class Resampled:
    """Closed higher-timeframe bars of one timeframe and where each base bar stands.

    ``bars``: one row per group (float64 OHLCV, indexed by the time of the group's last base
    bar). ``group``: (n,) int64, the group of each base bar. ``visible``: (n,) int64, the last
    group that is closed at base bar ``t`` (-1 while none is).
    """

    multiplier: int
    bars: pd.DataFrame
    group: np.ndarray
    visible: np.ndarray


def _period_bounds(start_ns: np.ndarray, m: int, clock: BarClock) -> tuple[np.ndarray, np.ndarray]:
    """(period id, period end in ns) of bars starting at ``start_ns``."""
    if clock.daily:
        if m != 5:
            raise DataError(f"daily data support the timeframes x1 and x5 (week), not x{m}")
        week = np.int64(7 * DAY_SECONDS * 10**9)
        rel = start_ns - WEEK_ANCHOR.astype(np.int64)
        pid = rel // week
        end = WEEK_ANCHOR.astype(np.int64) + pid * week + np.int64(clock.week_days * DAY_SECONDS * 10**9)
        return pid, end
    period = np.int64(m * clock.base_seconds * 10**9)
    pid = start_ns // period
    return pid, (pid + 1) * period


def resample_closed(bars: pd.DataFrame, m: int, clock: BarClock) -> Resampled:
    """Group the base bars of ``bars`` into closed ``x m`` bars (module docstring).

    ``m = 1`` is the identity (every base bar is its own closed group). Raises
    :class:`DataError` for a multiplier this clock does not support.
    """
    n = len(bars)
    if m == 1:
        ident = np.arange(n, dtype=np.int64)
        return Resampled(1, bars[["open", "high", "low", "close", "volume"]].astype(np.float64), ident, ident.copy())
    if m not in clock.multipliers():
        raise DataError(f"timeframe x{m} is not one of this data's {clock.multipliers()}")
    step = np.int64(clock.base_seconds * 10**9)
    ns = _index_ns(bars.index).astype(np.int64)
    start = ns - (step if clock.label == "close" else 0)
    pid, end = _period_bounds(start, m, clock)
    closed = start + step >= end
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (pid[1:] != pid[:-1]) | closed[:-1]
    group = np.cumsum(new, dtype=np.int64) - 1
    visible = np.where(closed, group, group - 1)
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, n - 1) if n else first
    o, h, lo, c, v = (bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
    if n:
        frame = pd.DataFrame(
            {"open": o[first], "high": np.maximum.reduceat(h, first), "low": np.minimum.reduceat(lo, first),
             "close": c[last], "volume": np.add.reduceat(v, first)},
            index=pd.DatetimeIndex(bars.index[last], name="time"),
        )
    else:
        frame = bars[["open", "high", "low", "close", "volume"]].astype(np.float64).iloc[:0]
    return Resampled(int(m), frame, group, visible)


def column_name(feature: str, m: int) -> str:
    """``rsi_14@x5``: the name of a feature on timeframe ``x m`` (``x1`` keeps the plain name)."""
    return feature if m == 1 else f"{feature}@x{m}"


def timeframe_features(bars: pd.DataFrame, m: int, clock: BarClock,
                       names: list[str] | tuple[str, ...] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Catalog features of the closed ``x m`` bars, one row per group, and ``visible`` (n,) int64.

    Row ``g`` of the frame uses groups ``<= g`` only; base bar ``t`` may read rows ``<=
    visible[t]``. ``names`` selects columns (catalog order otherwise).
    """
    from features.catalog import compute_features

    r = resample_closed(bars, m, clock)
    feats = compute_features(r.bars) if len(r.bars) else compute_features(bars.iloc[:0])
    if names is not None:
        feats = feats[list(names)]
    return feats, r.visible


def aligned_features(bars: pd.DataFrame, m: int, clock: BarClock,
                     names: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """Features of timeframe ``x m`` aligned to the base bars: row ``t`` is the last closed
    period's row (NaN while none is closed), columns ``<feature>@x<m>``, float64, same index."""
    feats, visible = timeframe_features(bars, m, clock, names)
    values = feats.to_numpy(dtype=np.float64)
    out = np.full((len(bars), values.shape[1]), np.nan)
    ok = visible >= 0
    out[ok] = values[visible[ok]]
    return pd.DataFrame(out, index=bars.index, columns=[column_name(f, m) for f in feats.columns])
