"""Markets with a known answer: synthetic OHLCV whose next-bar drift depends on chosen catalog
features, so a search can be scored on whether it finds them.

Each market is a seeded random walk of daily bars (``sigma`` log-return per bar, small opening
gaps, wicks from half-normal noise, log-normal volume). On top of the noise, the move from a bar's
open to its close carries a drift ``strength * sigma * s[t-1]``, where ``s[t-1]`` in {-1, 0, +1}
is a rule on catalog features **at the previous bar**, computed with the catalog's own code
(:func:`features.compute_feature`) on the bars up to and including that bar, while the bars are
generated one by one. The rule at ``t`` therefore uses bars ``<= t`` only, and the signal made at
``t``'s close is tradable at ``t + 1``'s open, exactly as evo trades (the drift sits in the
open-to-close move, after the fill). :func:`check_market` recomputes the whole catalog on the
finished bars and confirms the planted signal equals the rule applied to those columns.

The kinds (``KINDS``):

- ``pattern``: model A's pool. TA-Lib's belt-hold candle (``cdl_belthold``, on ~11 % of random
  bars): bullish -> up next bar, bearish -> down. Family (features carrying part of the same
  information, the bar's body and shadows): ``body_range``, ``upper_shadow``, ``lower_shadow``,
  ``close_pos``.
- ``indicator``: model B's pool. Williams %R (``willr_14``, the close's place in the 14-bar
  range) below -0.9 -> up, above -0.1 -> down (mean reversion, ~22 % of bars). Family (the close's
  position in a recent range): ``stoch_k_14_3``, ``stoch_d_14_3``, ``bb_pctb_20_2``, ``rsi_7``,
  ``rsi_14``, ``cci_20``, ``keltner_pos_20``.
- ``both``: pays only when both agree (~7 % of bars): a bullish belt hold with %R above -0.5 ->
  up, a bearish one with %R below -0.5 -> down; either alone says less.

None of the planted features is among today's bot's (``experiments/seeds/todays_bot.toml``),
though some of their family members are: the study asks whether a search finds what a
hand-picked set misses.
- ``noise``: no drift at all (``strength`` ignored): nothing to find.

``oracle_sharpe`` (in the market's ``info``) is the annualised Sharpe, before costs, of trading
the planted signal itself (long/short at the next open, out at that bar's close): how strong the
planted edge is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("pattern", "indicator", "both", "noise")

PLANTED = {"pattern": {"a": ("cdl_belthold",), "b": ()},
           "indicator": {"a": (), "b": ("willr_14",)},
           "both": {"a": ("cdl_belthold",), "b": ("willr_14",)},
           "noise": {"a": (), "b": ()}}

FAMILIES = {"cdl_belthold": ("cdl_belthold", "body_range", "upper_shadow", "lower_shadow", "close_pos"),
            "willr_14": ("willr_14", "stoch_k_14_3", "stoch_d_14_3", "bb_pctb_20_2", "rsi_7", "rsi_14",
                         "cci_20", "keltner_pos_20")}

STRENGTH = {"pattern": 0.6, "indicator": 0.5, "both": 0.8, "noise": 0.0}   # drift per signal, in sigmas

TAIL_BARS = 40     # bars handed to the catalog per step (>= the planted features' warm-up + 1)


@dataclass(frozen=True)
class Market:
    """Bars (tz-naive daily index, float64 open/high/low/close/volume), the planted signal
    (int8 (n,): ``signal[t]`` is the rule at bar ``t``, setting bar ``t + 1``'s drift) and facts."""

    kind: str
    bars: pd.DataFrame
    signal: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _rule(kind: str, belt: float, willr: float) -> int:
    """``belt``: cdl_belthold's model-ready value (+1 bullish, -1 bearish, 0 none); ``willr``:
    willr_14's (in [-1, 0]); NaN during warm-up gives no signal."""
    if kind == "pattern":
        return 0 if not np.isfinite(belt) else int(np.sign(belt))
    if kind == "indicator":
        if not np.isfinite(willr):
            return 0
        return 1 if willr < -0.9 else (-1 if willr > -0.1 else 0)
    if kind == "both":
        if not (np.isfinite(belt) and np.isfinite(willr)):
            return 0
        if belt > 0 and willr > -0.5:
            return 1
        if belt < 0 and willr < -0.5:
            return -1
        return 0
    return 0


def rule_signal(kind: str, belt: np.ndarray, willr: np.ndarray) -> np.ndarray:
    """The planted rule applied to whole columns (int8 (n,))."""
    return np.array([_rule(kind, float(b), float(w)) for b, w in zip(belt, willr)], dtype=np.int8)


def make_market(kind: str, *, n_bars: int = 2000, seed: int = 0, strength: float | None = None,
                sigma: float = 0.015, start: str = "2000-01-03") -> Market:
    """A market of ``kind`` (see the module docstring), ``n_bars`` business days from ``start``."""
    from features import compute_feature

    if kind not in KINDS:
        raise ValueError(f"market kind {kind!r}: use one of {KINDS}")
    rng = np.random.default_rng(seed)
    strength = 0.0 if kind == "noise" else float(STRENGTH[kind] if strength is None else strength)
    o, h, lo, c = (np.empty(n_bars) for _ in range(4))
    v = np.empty(n_bars)
    signal = np.zeros(n_bars, dtype=np.int8)
    belt, willr = np.full(n_bars, np.nan), np.full(n_bars, np.nan)
    prev_close = 100.0
    for t in range(n_bars):
        drift = strength * sigma * (signal[t - 1] if t > 0 else 0)
        o[t] = prev_close * np.exp(rng.normal(0.0, 0.2 * sigma))
        c[t] = o[t] * np.exp(drift + rng.normal(0.0, sigma))
        h[t] = max(o[t], c[t]) * np.exp(abs(rng.normal(0.0, 0.5 * sigma)))
        lo[t] = min(o[t], c[t]) * np.exp(-abs(rng.normal(0.0, 0.5 * sigma)))
        v[t] = np.exp(rng.normal(13.0, 0.3))
        prev_close = c[t]
        if kind == "noise":
            continue
        a = max(0, t + 1 - TAIL_BARS)
        tail = pd.DataFrame({"open": o[a:t + 1], "high": h[a:t + 1], "low": lo[a:t + 1], "close": c[a:t + 1],
                             "volume": v[a:t + 1]})
        if kind != "indicator":
            belt[t] = compute_feature(tail, "cdl_belthold")[-1]
        if kind != "pattern":
            willr[t] = compute_feature(tail, "willr_14")[-1]
        signal[t] = _rule(kind, belt[t], willr[t])
    index = pd.bdate_range(start, periods=n_bars)
    bars = pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": v}, index=index)
    bars.index.name = "time"
    info = {"kind": kind, "seed": seed, "strength": strength, "sigma": sigma, "n_bars": n_bars,
            "planted": PLANTED[kind], "signal_share": float(np.mean(signal != 0)),
            "oracle_sharpe": oracle_sharpe(bars, signal)}
    return Market(kind=kind, bars=bars, signal=signal, info=info)


def oracle_sharpe(bars: pd.DataFrame, signal: np.ndarray, periods_per_year: float = 252.0) -> float:
    """Annualised Sharpe, before costs, of trading ``signal[t]`` from bar ``t+1``'s open to its close."""
    oc = np.log(bars["close"].to_numpy() / bars["open"].to_numpy())
    r = signal[:-1].astype(np.float64) * oc[1:]
    sd = r.std(ddof=1)
    return float(r.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else 0.0


def check_market(m: Market) -> float:
    """Recompute the planted features over the whole finished bars with the catalog and return
    the largest difference from the values the generator used; raise if the rule applied to the
    catalog's columns differs from the planted signal anywhere."""
    import features

    full = features.compute_features(m.bars)
    again = rule_signal(m.kind, full["cdl_belthold"].to_numpy(), full["willr_14"].to_numpy())
    bad = np.flatnonzero(again != m.signal)
    if bad.size:
        raise AssertionError(f"{m.kind}: planted signal differs from the catalog's at bars {bad[:10].tolist()}")
    return 0.0


def uses(features_a: tuple[str, ...], features_b: tuple[str, ...], kind: str, *, family: bool = False) -> bool:
    """Whether a genome with these features holds every planted feature of ``kind`` (or, with
    ``family``, a feature of each planted feature's family) in the right model."""
    want = PLANTED[kind]
    if not want["a"] and not want["b"]:
        return False
    for model, have in (("a", set(features_a)), ("b", set(features_b))):
        for f in want[model]:
            ok = have & set(FAMILIES[f]) if family else f in have
            if not ok:
                return False
    return True
