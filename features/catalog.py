"""The feature catalog: every feature a genome may pick, with its name, kind, source and warm-up.

Bars in, one float64 column per catalog name out (:func:`compute_features`). The value at bar
``t`` uses bars ``<= t`` only, and rows ``< warmup_bars`` are NaN in both modes. ``raw=True``
gives each feature's own value (``sma_20`` in price units, ``obv`` cumulative);
``raw=False`` (the default, what the models read) gives a stationary, bounded-memory transform
(price levels become ratios to the close, oscillators are divided by 100, a cumulative level
becomes a windowed change). Where a transform is the identity the two modes agree.

Kinds and which model reads them:

- ``pattern`` (model A, TA-Lib): all 61 TA-Lib candlestick functions, ``cdl_<name>`` for
  ``CDL<NAME>`` (``cdl_engulfing``, ``cdl_3blackcrows``, ...). Raw: TA-Lib's integer signal,
  sign = direction (+-100; +-80 for the weaker forms of ENGULFING, HARAMI and HARAMICROSS;
  +-200 for a confirmed HIKKAKE/HIKKAKEMOD; 0 = no pattern). Model: raw / 100. Warm-up:
  TA-Lib's lookback for the function (0 to 14 bars).
- ``pattern_feature`` (model A, numpy/numba): bar geometry and pattern history, table below.
- ``indicator`` (model B): technical indicators from TA-Lib, from ``ta`` only for the ones TA-Lib
  lacks (Keltner, Chaikin money flow, TSI, ulcer index), and log-return statistics in
  numpy/numba. One library per feature, never mixed.

Pattern features (``range = high - low``; ``p`` is one of :data:`PATTERN_EVENTS`; ``L(p)`` is
the TA-Lib lookback of ``CDL<P>``):

====================  ============================================  ======================  ======
name                  raw value                                     model-ready             warmup
====================  ============================================  ======================  ======
body_range            (close - open) / range; 0 when range == 0      same, in [-1, 1]        0
upper_shadow          (high - max(open, close)) / range; 0 if flat   same, in [0, 1]         0
lower_shadow          (min(open, close) - low) / range; 0 if flat    same, in [0, 1]         0
close_pos             (close - low) / range; 0.5 when range == 0     same, in [0, 1]         0
gap                   (open[t] - close[t-1]) / close[t-1]            same (fraction)         1
range_atr_14          range / ATR(14) (Wilder, TA-Lib seeding); 0    same                    14
                      when ATR == 0
since_<p>             bars since CDL<P> last fired (non-zero),       raw / 50, in [0, 1]     L(p)
                      capped at 50
count_<p>_20          bars among the last 20 where CDL<P> fired      raw / 20, in [0, 1]     L(p)+19
pattern_strength      sum of all 61 patterns' TA-Lib values          raw / 100               14
vol_confirm           volume / mean(volume, last 20 bars); 0 when    same                    19
                      the mean is 0 (needs volume)
trend_context_20      close / mean(close, last 20 bars) - 1          same (fraction)         19
====================  ============================================  ======================  ======

Indicators (TA-Lib unless noted; ``/close`` means divided by the bar's close):

==========================================  ========================================  ======
name                                        model-ready value (raw = the indicator's)  warmup
==========================================  ========================================  ======
sma_10, sma_20, sma_50                      SMA / close - 1                           n - 1
ema_10, ema_20, ema_50                      EMA / close - 1                           n - 1
rsi_7, rsi_14, rsi_21                       RSI / 100                                 n
atr_14                                      ATR / close                               14
adx_14, plus_di_14, minus_di_14             value / 100                               27, 14
macd_12_26_9, macd_signal_12_26_9,          value / close                             33
macd_hist_12_26_9
bb_upper_20_2, bb_lower_20_2                band / close - 1                          19
bb_pctb_20_2                                (close - lower) / (upper - lower), 0.5    19
                                            when the bands meet (raw = model)
bb_width_20_2                               (upper - lower) / middle (raw = model)    19
stoch_k_14_3, stoch_d_14_3                  slow %K, slow %D (14, 3, 3; SMA) / 100    17
willr_14                                    Williams %R / 100, in [-1, 0]             13
roc_10                                      ROC (percent) / 100                       10
cci_20                                      CCI / 100                                 19
aroonosc_14                                 Aroon oscillator / 100                    14
ultosc_7_14_28                              ultimate oscillator / 100                 28
trix_15                                     TRIX (percent) / 100                      43
ppo_12_26                                   PPO (percent, EMA) / 100                  25
linreg_slope_14                             slope of the 14-bar regression / close    13
mfi_14 (volume)                             MFI / 100                                 14
obv (volume)                                (obv[t] - obv[t-20]) / sum(volume,        20
                                            last 20 bars), in [-1, 1]; 0 if no volume
vol_sma_ratio_20 (volume)                   volume / SMA(volume, 20); 0 when the      19
                                            SMA is 0 (raw = model)
keltner_upper_20, keltner_lower_20 (ta)     band / close - 1 (original Keltner:       19
                                            SMA of typical price +- mean range)
keltner_pos_20 (ta)                         (close - lower) / (upper - lower), 0.5    19
                                            when the channel has zero width
cmf_20 (ta, volume)                         Chaikin money flow, in [-1, 1]            19
tsi_25_13 (ta)                              TSI (percent) / 100                       37
ulcer_14 (ta)                               ulcer index (percent) / 100               26
logret_1, logret_5, logret_20 (numpy)       log(close[t] / close[t-k]) (raw = model)  k
realvol_20 (numba)                          sample std of logret_1 over 20 bars       20
                                            (per bar, not annualised; raw = model)
==========================================  ========================================  ======

Catalog order: the 61 patterns (TA-Lib's order), then the pattern features, then the
indicators. Bump :data:`CATALOG_VERSION` whenever any name, order, warm-up or definition
changes: it is part of the feature cache key and of a bundle's identity.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evo.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "CATALOG_VERSION",
    "FeatureSpec",
    "KINDS",
    "OHLCV_COLUMNS",
    "PATTERN_EVENTS",
    "SOURCES",
    "catalog",
    "compute_features",
    "feature_spec",
    "has_usable_volume",
    "model_a_features",
    "model_b_features",
    "usable_features",
]

CATALOG_VERSION = "1"
"""Version of every feature definition; part of the cache key. Bump on any change."""

KINDS = ("pattern", "pattern_feature", "indicator")
SOURCES = ("talib", "ta", "numba", "numpy")
OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")

PATTERN_EVENTS = ("engulfing", "hammer", "doji", "morningstar", "eveningstar", "shootingstar")
"""Patterns that get a ``since_<p>`` and a ``count_<p>_20`` feature."""

SINCE_CAP_BARS = 50
COUNT_WINDOW_BARS = 20


@dataclass(frozen=True)
class FeatureSpec:
    """One catalog entry.

    ``name``: stable snake_case ``name_param`` identifier (``"rsi_14"``, ``"cdl_engulfing"``).
    ``kind``: ``"pattern"`` | ``"pattern_feature"`` (model A) or ``"indicator"`` (model B).
    ``source``: the library that computes it: ``"talib"`` | ``"ta"`` | ``"numba"`` | ``"numpy"``.
    ``warmup_bars``: leading bars where the value is NaN (in both modes); from that bar on the
    value is finite on clean bars (positive prices, and positive volume where ``needs_volume``).
    ``needs_volume``: the feature reads the volume column, so it is meaningless on data without
    volume (see :func:`usable_features`).
    """

    name: str
    kind: str
    source: str
    warmup_bars: int
    needs_volume: bool

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.source not in SOURCES:
            raise ValueError(f"feature {self.name!r}: source {self.source!r} is not one of {SOURCES}")
        if self.warmup_bars < 0:
            raise ValueError(f"feature {self.name!r}: warmup_bars must be >= 0, got {self.warmup_bars}")


Pair = tuple[np.ndarray, np.ndarray]
"""(raw, model-ready) float64 arrays of shape (n,)."""


@dataclass(frozen=True)
class _Def:
    spec: FeatureSpec
    compute: Callable[[_Bars], Pair]


class _Bars:
    """The five columns as contiguous float64 arrays, plus a memo for shared computations."""

    def __init__(self, ohlcv: pd.DataFrame) -> None:
        arrays = {c: np.ascontiguousarray(ohlcv[c].to_numpy(dtype=np.float64)) for c in OHLCV_COLUMNS}
        self.open = arrays["open"]
        self.high = arrays["high"]
        self.low = arrays["low"]
        self.close = arrays["close"]
        self.volume = arrays["volume"]
        self.n = len(self.close)
        self.range = self.high - self.low
        self._memo: dict[Any, Any] = {}

    def once(self, key: Any, thunk: Callable[[], Any]) -> Any:
        """``thunk()``, computed once per frame and shared by the features that need it."""
        if key not in self._memo:
            self._memo[key] = thunk()
        return self._memo[key]

    def series(self, column: str) -> pd.Series:
        """A column as a pandas Series (with a RangeIndex), for the ``ta`` library."""
        return self.once(("series", column), lambda: pd.Series(getattr(self, column)))


# ---------------------------------------------------------------------------- small transforms


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """``num / den``, ``fill`` where ``den == 0`` (NaN stays NaN)."""
    out = np.full(np.shape(num), fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _same(x: np.ndarray) -> Pair:
    return x, x


def _level(b: _Bars, x: np.ndarray) -> Pair:
    """A price level: model-ready value is its ratio to the close, minus 1."""
    return x, x / b.close - 1.0


def _per_close(b: _Bars, x: np.ndarray) -> Pair:
    """A price difference (ATR, MACD, slope): model-ready value is a fraction of the close."""
    return x, x / b.close


def _scaled(x: np.ndarray, by: float) -> Pair:
    return x, x / by


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _kernels() -> Any:
    from features import _kernels

    return _kernels


def _talib_lookback(function: str, **params: Any) -> int:
    from talib import abstract

    return int(abstract.Function(function, **params).lookback)


# ---------------------------------------------------------------------------------- definitions


def _pattern_functions() -> tuple[str, ...]:
    import talib

    return tuple(talib.get_function_groups()["Pattern Recognition"])


def _pattern(b: _Bars, function: str) -> np.ndarray:
    """TA-Lib's integer output for ``CDL...`` as float64, computed once per frame."""
    import talib

    return b.once(("cdl", function), lambda: _f64(getattr(talib, function)(b.open, b.high, b.low, b.close)))


def _pattern_defs() -> list[_Def]:
    defs = []
    for function in _pattern_functions():
        spec = FeatureSpec(
            name="cdl_" + function[3:].lower(),
            kind="pattern",
            source="talib",
            warmup_bars=_talib_lookback(function),
            needs_volume=False,
        )
        defs.append(_Def(spec, lambda b, f=function: _scaled(_pattern(b, f), 100.0)))
    return defs


def _wilder_atr_14(b: _Bars) -> np.ndarray:
    return b.once("wilder_atr_14", lambda: _kernels().wilder_atr(b.high, b.low, b.close, 14))


def _pattern_feature_defs() -> list[_Def]:
    defs: list[_Def] = []

    def add(name: str, source: str, warmup: int, compute: Callable[[_Bars], Pair], needs_volume: bool = False) -> None:
        defs.append(_Def(FeatureSpec(name, "pattern_feature", source, warmup, needs_volume), compute))

    add("body_range", "numpy", 0, lambda b: _same(_safe_div(b.close - b.open, b.range, 0.0)))
    add("upper_shadow", "numpy", 0, lambda b: _same(_safe_div(b.high - np.maximum(b.open, b.close), b.range, 0.0)))
    add("lower_shadow", "numpy", 0, lambda b: _same(_safe_div(np.minimum(b.open, b.close) - b.low, b.range, 0.0)))
    add("close_pos", "numpy", 0, lambda b: _same(_safe_div(b.close - b.low, b.range, 0.5)))

    def gap(b: _Bars) -> Pair:
        out = np.full(b.n, np.nan)
        out[1:] = (b.open[1:] - b.close[:-1]) / b.close[:-1]
        return _same(out)

    add("gap", "numpy", 1, gap)
    add("range_atr_14", "numba", 14, lambda b: _same(_safe_div(b.range, _wilder_atr_14(b), 0.0)))

    for event in PATTERN_EVENTS:
        function = "CDL" + event.upper()
        lookback = _talib_lookback(function)

        def since(b: _Bars, f: str = function, start: int = lookback) -> Pair:
            fired = _pattern(b, f) != 0
            return _scaled(_kernels().bars_since(fired, start, SINCE_CAP_BARS), float(SINCE_CAP_BARS))

        def count(b: _Bars, f: str = function, start: int = lookback) -> Pair:
            fired = _pattern(b, f) != 0
            return _scaled(_kernels().rolling_count(fired, start, COUNT_WINDOW_BARS), float(COUNT_WINDOW_BARS))

        add(f"since_{event}", "numba", lookback, since)
        add(f"count_{event}_{COUNT_WINDOW_BARS}", "numba", lookback + COUNT_WINDOW_BARS - 1, count)

    functions = _pattern_functions()

    def strength(b: _Bars) -> Pair:
        total = np.zeros(b.n)
        for f in functions:
            total += _pattern(b, f)
        return _scaled(total, 100.0)

    add("pattern_strength", "numpy", max(_talib_lookback(f) for f in functions), strength)
    add(
        "vol_confirm",
        "numba",
        19,
        lambda b: _same(_safe_div(b.volume, _kernels().rolling_mean(b.volume, 20), 0.0)),
        needs_volume=True,
    )
    add("trend_context_20", "numba", 19, lambda b: _same(b.close / _kernels().rolling_mean(b.close, 20) - 1.0))
    return defs


def _indicator_defs() -> list[_Def]:
    import ta
    import talib

    defs: list[_Def] = []

    def add(name: str, source: str, warmup: int, compute: Callable[[_Bars], Pair], needs_volume: bool = False) -> None:
        defs.append(_Def(FeatureSpec(name, "indicator", source, warmup, needs_volume), compute))

    lb = _talib_lookback

    for n in (10, 20, 50):
        add(f"sma_{n}", "talib", lb("SMA", timeperiod=n), lambda b, n=n: _level(b, talib.SMA(b.close, n)))
    for n in (10, 20, 50):
        add(f"ema_{n}", "talib", lb("EMA", timeperiod=n), lambda b, n=n: _level(b, talib.EMA(b.close, n)))
    for n in (7, 14, 21):
        add(f"rsi_{n}", "talib", lb("RSI", timeperiod=n), lambda b, n=n: _scaled(talib.RSI(b.close, n), 100.0))

    add("atr_14", "talib", lb("ATR", timeperiod=14), lambda b: _per_close(b, talib.ATR(b.high, b.low, b.close, 14)))
    add("adx_14", "talib", lb("ADX", timeperiod=14), lambda b: _scaled(talib.ADX(b.high, b.low, b.close, 14), 100.0))
    add(
        "plus_di_14",
        "talib",
        lb("PLUS_DI", timeperiod=14),
        lambda b: _scaled(talib.PLUS_DI(b.high, b.low, b.close, 14), 100.0),
    )
    add(
        "minus_di_14",
        "talib",
        lb("MINUS_DI", timeperiod=14),
        lambda b: _scaled(talib.MINUS_DI(b.high, b.low, b.close, 14), 100.0),
    )

    def macd(b: _Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return b.once("macd", lambda: talib.MACD(b.close, 12, 26, 9))

    w_macd = lb("MACD", fastperiod=12, slowperiod=26, signalperiod=9)
    add("macd_12_26_9", "talib", w_macd, lambda b: _per_close(b, macd(b)[0]))
    add("macd_signal_12_26_9", "talib", w_macd, lambda b: _per_close(b, macd(b)[1]))
    add("macd_hist_12_26_9", "talib", w_macd, lambda b: _per_close(b, macd(b)[2]))

    def bbands(b: _Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return b.once("bbands", lambda: talib.BBANDS(b.close, 20, 2.0, 2.0, 0))

    def pctb(b: _Bars) -> Pair:
        upper, _, lower = bbands(b)
        return _same(_safe_div(b.close - lower, upper - lower, 0.5))

    def width(b: _Bars) -> Pair:
        upper, middle, lower = bbands(b)
        return _same((upper - lower) / middle)

    w_bb = lb("BBANDS", timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    add("bb_upper_20_2", "talib", w_bb, lambda b: _level(b, bbands(b)[0]))
    add("bb_lower_20_2", "talib", w_bb, lambda b: _level(b, bbands(b)[2]))
    add("bb_pctb_20_2", "talib", w_bb, pctb)
    add("bb_width_20_2", "talib", w_bb, width)

    def stoch(b: _Bars) -> tuple[np.ndarray, np.ndarray]:
        return b.once("stoch", lambda: talib.STOCH(b.high, b.low, b.close, 14, 3, 0, 3, 0))

    w_stoch = lb("STOCH", fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0)
    add("stoch_k_14_3", "talib", w_stoch, lambda b: _scaled(stoch(b)[0], 100.0))
    add("stoch_d_14_3", "talib", w_stoch, lambda b: _scaled(stoch(b)[1], 100.0))

    add(
        "willr_14",
        "talib",
        lb("WILLR", timeperiod=14),
        lambda b: _scaled(talib.WILLR(b.high, b.low, b.close, 14), 100.0),
    )
    add("roc_10", "talib", lb("ROC", timeperiod=10), lambda b: _scaled(talib.ROC(b.close, 10), 100.0))
    add("cci_20", "talib", lb("CCI", timeperiod=20), lambda b: _scaled(talib.CCI(b.high, b.low, b.close, 20), 100.0))
    add(
        "aroonosc_14",
        "talib",
        lb("AROONOSC", timeperiod=14),
        lambda b: _scaled(talib.AROONOSC(b.high, b.low, 14), 100.0),
    )
    add(
        "ultosc_7_14_28",
        "talib",
        lb("ULTOSC", timeperiod1=7, timeperiod2=14, timeperiod3=28),
        lambda b: _scaled(talib.ULTOSC(b.high, b.low, b.close, 7, 14, 28), 100.0),
    )
    add("trix_15", "talib", lb("TRIX", timeperiod=15), lambda b: _scaled(talib.TRIX(b.close, 15), 100.0))
    add(
        "ppo_12_26",
        "talib",
        lb("PPO", fastperiod=12, slowperiod=26, matype=1),
        lambda b: _scaled(talib.PPO(b.close, 12, 26, 1), 100.0),
    )
    add(
        "linreg_slope_14",
        "talib",
        lb("LINEARREG_SLOPE", timeperiod=14),
        lambda b: _per_close(b, talib.LINEARREG_SLOPE(b.close, 14)),
    )

    add(
        "mfi_14",
        "talib",
        lb("MFI", timeperiod=14),
        lambda b: _scaled(talib.MFI(b.high, b.low, b.close, b.volume, 14), 100.0),
        needs_volume=True,
    )

    def obv(b: _Bars) -> Pair:
        level = talib.OBV(b.close, b.volume)
        change = np.full(b.n, np.nan)
        change[20:] = level[20:] - level[:-20]
        return level, _safe_div(change, talib.SUM(b.volume, 20), 0.0)

    add("obv", "talib", max(lb("OBV"), 20), obv, needs_volume=True)
    add(
        "vol_sma_ratio_20",
        "talib",
        lb("SMA", timeperiod=20),
        lambda b: _same(_safe_div(b.volume, talib.SMA(b.volume, 20), 0.0)),
        needs_volume=True,
    )

    def keltner(b: _Bars) -> Any:
        return b.once(
            "keltner",
            lambda: ta.volatility.KeltnerChannel(
                b.series("high"), b.series("low"), b.series("close"), window=20, fillna=False, original_version=True
            ),
        )

    def keltner_pos(b: _Bars) -> Pair:
        k = keltner(b)
        upper = _f64(k.keltner_channel_hband())
        lower = _f64(k.keltner_channel_lband())
        return _same(_safe_div(b.close - lower, upper - lower, 0.5))

    add("keltner_upper_20", "ta", 19, lambda b: _level(b, _f64(keltner(b).keltner_channel_hband())))
    add("keltner_lower_20", "ta", 19, lambda b: _level(b, _f64(keltner(b).keltner_channel_lband())))
    add("keltner_pos_20", "ta", 19, keltner_pos)
    add(
        "cmf_20",
        "ta",
        19,
        lambda b: _same(
            _f64(
                ta.volume.ChaikinMoneyFlowIndicator(
                    b.series("high"), b.series("low"), b.series("close"), b.series("volume"), window=20, fillna=False
                ).chaikin_money_flow()
            )
        ),
        needs_volume=True,
    )
    # TSI: EWM(25) then EWM(13) of the close change; pandas' min_periods make it NaN until bar 37.
    add(
        "tsi_25_13",
        "ta",
        37,
        lambda b: _scaled(
            _f64(ta.momentum.TSIIndicator(b.series("close"), window_slow=25, window_fast=13, fillna=False).tsi()),
            100.0,
        ),
    )
    # ta's ulcer index takes each drawdown from a running max with min_periods=1, so bars 13..25
    # would use partial windows; 2 * (14 - 1) = 26 leaves only full-definition values.
    add(
        "ulcer_14",
        "ta",
        26,
        lambda b: _scaled(
            _f64(ta.volatility.UlcerIndex(b.series("close"), window=14, fillna=False).ulcer_index()), 100.0
        ),
    )

    def logret(b: _Bars) -> np.ndarray:
        def compute() -> np.ndarray:
            out = np.full(b.n, np.nan)
            out[1:] = np.log(b.close[1:] / b.close[:-1])
            return out

        return b.once("logret_1", compute)

    def logret_k(b: _Bars, k: int) -> Pair:
        out = np.full(b.n, np.nan)
        out[k:] = np.log(b.close[k:] / b.close[:-k])
        return _same(out)

    add("logret_1", "numpy", 1, lambda b: _same(logret(b)))
    add("logret_5", "numpy", 5, lambda b: logret_k(b, 5))
    add("logret_20", "numpy", 20, lambda b: logret_k(b, 20))
    add("realvol_20", "numba", 20, lambda b: _same(_kernels().rolling_std(logret(b), 20, 1)))
    return defs


@functools.cache
def _definitions() -> tuple[_Def, ...]:
    defs = tuple(_pattern_defs() + _pattern_feature_defs() + _indicator_defs())
    names = [d.spec.name for d in defs]
    if len(set(names)) != len(names):
        raise RuntimeError("duplicate feature names in the catalog")
    return defs


# ----------------------------------------------------------------------------------- public API


def catalog() -> tuple[FeatureSpec, ...]:
    """Every feature, in catalog order (patterns, pattern features, indicators)."""
    return tuple(d.spec for d in _definitions())


@functools.cache
def _spec_by_name() -> dict[str, FeatureSpec]:
    return {s.name: s for s in catalog()}


def feature_spec(name: str) -> FeatureSpec:
    """The spec of one feature; ``KeyError`` naming the feature if it is not in the catalog."""
    try:
        return _spec_by_name()[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a feature of catalog version {CATALOG_VERSION}") from None


def model_a_features() -> tuple[str, ...]:
    """Names model A may use: candlestick patterns and pattern-derived features, catalog order."""
    return tuple(s.name for s in catalog() if s.kind in ("pattern", "pattern_feature"))


def model_b_features() -> tuple[str, ...]:
    """Names model B may use: technical indicators, catalog order."""
    return tuple(s.name for s in catalog() if s.kind == "indicator")


def has_usable_volume(ohlcv: pd.DataFrame) -> bool:
    """True when the volume column is finite everywhere and positive somewhere.

    FX/CFD feeds carry all-zero (or missing) volume; volume features are meaningless there.
    """
    volume = ohlcv["volume"].to_numpy(dtype=np.float64)
    return bool(np.isfinite(volume).all() and (volume > 0).any())


def usable_features(ohlcv: pd.DataFrame, *, warn: bool = False, source: str | None = None) -> tuple[str, ...]:
    """Catalog names that carry information on these bars, catalog order.

    Drops every ``needs_volume`` feature when :func:`has_usable_volume` is false. Decide this on
    the training bars once, not per window: it looks at the whole frame. With ``warn=True`` such
    a drop logs one warning naming the dropped features (prefixed by ``source``, the dataset's
    label, when given); call it that way once per dataset, where the data enter a run or command.
    """
    keep_volume = has_usable_volume(ohlcv)
    if warn and not keep_volume:
        dropped = [s.name for s in catalog() if s.needs_volume]
        log.warning(
            "%svolume is missing or zero: %d volume features are left out (%s)",
            f"{source}: " if source else "",
            len(dropped),
            ", ".join(dropped),
        )
    return tuple(s.name for s in catalog() if keep_volume or not s.needs_volume)


def _check_bars(ohlcv: pd.DataFrame) -> None:
    if not isinstance(ohlcv, pd.DataFrame):
        raise DataError(f"features need a pandas DataFrame of bars, got {type(ohlcv).__name__}")
    missing = [c for c in OHLCV_COLUMNS if c not in ohlcv.columns]
    if missing:
        raise DataError(f"bars lack column(s) {', '.join(missing)}; expected {', '.join(OHLCV_COLUMNS)}")


def compute_feature(ohlcv: pd.DataFrame, name: str, *, raw: bool = False) -> np.ndarray:
    """One catalog feature of ``ohlcv`` as a float64 array (n,): the very column
    :func:`compute_features` gives for ``name`` (NaN during its warm-up), computed alone.
    ``KeyError`` naming the feature if it is not in the catalog."""
    _check_bars(ohlcv)
    feature_spec(name)
    d = next(d for d in _definitions() if d.spec.name == name)
    values = np.array(d.compute(_Bars(ohlcv))[0 if raw else 1], dtype=np.float64)
    values[: d.spec.warmup_bars] = np.nan
    return values


def compute_features(ohlcv: pd.DataFrame, *, raw: bool = False) -> pd.DataFrame:
    """The feature matrix of ``ohlcv``: float64, same index, one column per catalog name in order.

    ``raw=False`` gives the model-ready, stationary values; ``raw=True`` each feature's own value
    (see the module docstring for both). Rows ``< warmup_bars`` of a feature are NaN; after that
    the value is finite on clean bars. The value at bar ``t`` uses bars ``<= t`` only:
    appending or changing later bars never changes it. Volume features are computed whatever the
    volume; use :func:`usable_features` to drop them on data without volume.

    Raises :class:`evo.errors.DataError` when ``ohlcv`` is not a frame with the five columns.
    """
    _check_bars(ohlcv)
    started = time.perf_counter()
    bars = _Bars(ohlcv)
    defs = _definitions()
    out = np.empty((bars.n, len(defs)), dtype=np.float64, order="F")
    for j, d in enumerate(defs):
        values = d.compute(bars)[0 if raw else 1]
        column = out[:, j]
        column[:] = values
        column[: d.spec.warmup_bars] = np.nan
    frame = pd.DataFrame(out, index=ohlcv.index, columns=[d.spec.name for d in defs], copy=False)
    log.debug("computed %d features on %d bars in %.3f s", len(defs), bars.n, time.perf_counter() - started)
    return frame
