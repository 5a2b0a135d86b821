"""Market regimes: realised volatility and trend, with thresholds fitted on training rows only.

Two regimes per bar, both causal (the value at bar ``t`` uses bars ``<= t``):

- **volatility**: ``realvol`` = sample std of the one-bar log returns over the last
  ``VOL_WINDOW`` (20) bars, per bar (not annualised). Low / mid / high against its 1/3 and 2/3
  quantiles on the fold's **training** rows.
- **trend**: ``slope`` = ``log(SMA50[t] / SMA50[t - 10])``, the slow moving average's change over
  ten bars. Down / flat / up against a dead band ``+-q``, ``q`` the 1/3 quantile of ``|slope|`` on
  the training rows (the label dead zone's rule, :func:`models.fit_dead_zone`).

A model's ``regime`` gene (:class:`evo.genome.ModelGenes`) uses them in one of two ways:

- ``"features"``: the two regimes (-1, 0, +1 each) are appended to that model's inputs, scaled
  with the rest.
- ``"gate"``: the consensus threshold differs by volatility regime: ``threshold + offset[r]``
  with offsets for the low and high regimes (mid: 0) tuned by nevergrad with the threshold, on the
  validation segments only (:mod:`evo.evaluation.risk`). A genome gates when either model's gene says so.

Why not the reference's "adaptive" xLSTM, whose active depth is chosen per sample from the
regime: choosing layers per sample makes every batch a mix of different networks (no single
batched forward pass, so training and inference slow down by the batch size), and the choice is
an ``if`` on a thresholded statistic, which has no gradient, so the selector cannot be trained
with the model as written. Regime inputs let the (batched, differentiable) model learn how much
the regime matters; the gate puts the regime where a threshold already lives, and evolution
decides whether either earns its place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from evo.errors import GenomeError

__all__ = [
    "GATE_BOUND",
    "REGIMES",
    "RegimeThresholds",
    "fit_regime",
    "regime_features",
    "regime_inputs",
    "vol_regime",
    "REGIME_COLUMNS",
]

REGIMES = ("none", "features", "gate")
REGIME_COLUMNS = ("regime_vol", "regime_trend")
VOL_WINDOW = 20     # bars
TREND_SMA = 50      # bars
TREND_LAG = 10      # bars
GATE_BOUND = 0.15   # largest |threshold offset| the gate may tune (probability)


def regime_inputs(bars: pd.DataFrame) -> np.ndarray:
    """Raw regime statistics (n, 2) float64: ``realvol`` and ``slope`` (module docstring); NaN
    during their warm-up (20 and 59 bars). Row ``t`` uses bars ``<= t`` only."""
    close = bars["close"].to_numpy(dtype=np.float64)
    logret = np.full(close.shape, np.nan)
    logret[1:] = np.log(close[1:] / close[:-1])
    vol = pd.Series(logret).rolling(VOL_WINDOW, min_periods=VOL_WINDOW).std(ddof=1).to_numpy()
    sma = pd.Series(close).rolling(TREND_SMA, min_periods=TREND_SMA).mean().to_numpy()
    slope = np.full(close.shape, np.nan)
    slope[TREND_LAG:] = np.log(sma[TREND_LAG:] / sma[:-TREND_LAG])
    return np.column_stack([vol, slope])


@dataclass(frozen=True)
class RegimeThresholds:
    """Fitted on training rows: ``vol_low``/``vol_high`` (per-bar std of log returns) and the
    trend dead band ``trend`` (log change of the SMA over ten bars)."""

    vol_low: float
    vol_high: float
    trend: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegimeThresholds:
        return cls(vol_low=float(d["vol_low"]), vol_high=float(d["vol_high"]), trend=float(d["trend"]))


def fit_regime(raw: np.ndarray, rows: tuple[int, int]) -> RegimeThresholds:
    """Thresholds from the TRAINING rows ``[start, stop)`` of :func:`regime_inputs` only."""
    part = np.asarray(raw, dtype=np.float64)[rows[0]: rows[1]]
    vol, slope = part[:, 0], part[:, 1]
    vol, slope = vol[np.isfinite(vol)], slope[np.isfinite(slope)]
    if vol.size == 0 or slope.size == 0:
        raise GenomeError(f"regime thresholds need training rows past the regime warm-up, got rows {rows}")
    lo, hi = np.quantile(vol, [1.0 / 3.0, 2.0 / 3.0])
    return RegimeThresholds(vol_low=float(lo), vol_high=float(hi), trend=float(np.quantile(np.abs(slope), 1 / 3)))


def vol_regime(raw: np.ndarray, thr: RegimeThresholds) -> np.ndarray:
    """Volatility regime per row (n,) int8: 0 low, 1 mid (also during warm-up), 2 high."""
    vol = np.asarray(raw, dtype=np.float64)[:, 0]
    out = np.ones(vol.shape, dtype=np.int8)
    out[vol < thr.vol_low] = 0
    out[vol > thr.vol_high] = 2
    return out


def regime_features(raw: np.ndarray, thr: RegimeThresholds) -> np.ndarray:
    """The two regimes as model inputs (n, 2) float64 in {-1, 0, 1}: volatility low/mid/high and
    trend down/flat/up (0 during warm-up)."""
    raw = np.asarray(raw, dtype=np.float64)
    vol = vol_regime(raw, thr).astype(np.float64) - 1.0
    slope = raw[:, 1]
    trend = np.zeros(slope.shape)
    trend[slope > thr.trend] = 1.0
    trend[slope < -thr.trend] = -1.0
    return np.column_stack([vol, trend])
