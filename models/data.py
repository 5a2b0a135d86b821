"""Feature scaling, windows and labels: the numpy side of the models.

Look-ahead: the window for decision bar ``t`` holds feature rows ``t-seq_len+1 .. t`` (each of
which uses bars <= its own index); the label for ``t`` is the move from ``close[t]`` to
``close[t+horizon]``. Scalers and dead zones are fitted on training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from evo.errors import DataError, GenomeError

__all__ = [
    "CLIP",
    "Scaler",
    "fit_dead_zone",
    "fit_scaler",
    "forward_returns",
    "make_labels",
    "make_windows",
]

CLIP = 10.0  # scaled features are clipped to +-CLIP standard deviations

DOWN, FLAT, UP = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature standardisation: ``(x - mean) / scale``; mean and scale are (F,) float32."""

    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        if mean.shape != scale.shape:
            raise ValueError(f"Scaler: mean {mean.shape} and scale {scale.shape} differ in shape")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("Scaler: mean must be finite and scale finite and > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale ``X`` (..., F) to float32; NaN (warm-up, missing) becomes 0 (the training mean)
        after scaling, and values are clipped to +-10 (so +-inf become +-10)."""
        X = np.asarray(X)
        if X.shape[-1:] != self.mean.shape:
            raise ValueError(f"Scaler.transform: expected {self.n_features} feature columns, got shape {X.shape}")
        Z = (X.astype(np.float32, copy=False) - self.mean) / self.scale
        Z = np.nan_to_num(Z, nan=0.0, posinf=CLIP, neginf=-CLIP)
        return np.clip(Z, -CLIP, CLIP, out=Z).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists for JSON; :meth:`from_dict` restores the identical float32 arrays."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(mean=np.asarray(d["mean"], dtype=np.float32), scale=np.asarray(d["scale"], dtype=np.float32))


def fit_scaler(rows: np.ndarray) -> Scaler:
    """Fit a :class:`Scaler` on TRAINING rows only: ``rows`` (N, F), NaN allowed.

    NaN-aware mean and standard deviation per column; a column that is constant (std 0) or all
    NaN on these rows gets scale 1 (and mean 0 if all NaN).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise GenomeError(f"fit_scaler needs training rows of shape (N>0, F), got {rows.shape}")
    finite = np.where(np.isfinite(rows), rows, np.nan)
    seen = np.isfinite(finite).any(axis=0)
    mean = np.zeros(rows.shape[1])
    std = np.ones(rows.shape[1])
    if seen.any():
        mean[seen] = np.nanmean(finite[:, seen], axis=0)
        std[seen] = np.nanstd(finite[:, seen], axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return Scaler(mean=mean.astype(np.float32), scale=std.astype(np.float32))


def _as_ends(ends: np.ndarray) -> np.ndarray:
    ends = np.asarray(ends)
    if ends.ndim != 1 or not (np.issubdtype(ends.dtype, np.integer) or ends.size == 0):
        raise ValueError(f"ends must be a 1-D integer array of bar indices, got {ends.dtype} {ends.shape}")
    return ends.astype(np.int64, copy=False)


def make_windows(X: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Windows ``(N, seq_len, F)`` float32; window j holds rows ``ends[j]-seq_len+1 .. ends[j]``.

    ``X`` is (T, F) (scaled features); row ``t`` of ``X`` may use bars <= t only, so window j
    sees nothing after its decision bar. Raises ``GenomeError`` if a window would start before
    row 0 (``end < seq_len - 1``: the window is longer than the data) or end past the last row.
    """
    X = np.asarray(X)
    ends = _as_ends(ends)
    if X.ndim != 2:
        raise ValueError(f"make_windows needs X of shape (T, F), got {X.shape}")
    if seq_len < 1:
        raise ValueError(f"make_windows: seq_len must be >= 1, got {seq_len}")
    T, F = X.shape
    if ends.size == 0:
        return np.empty((0, seq_len, F), dtype=np.float32)
    if ends.min() < seq_len - 1 or ends.max() >= T:
        raise GenomeError(
            f"windows of {seq_len} bars need ends in [{seq_len - 1}, {T - 1}], got [{ends.min()}, {ends.max()}]: "
            "start the decision bars later or shorten the window"
        )
    view = sliding_window_view(X, seq_len, axis=0)  # (T-seq_len+1, F, seq_len), no copy
    windows = np.take(view, ends - (seq_len - 1), axis=0)  # (N, F, seq_len)
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)


def forward_returns(close: np.ndarray, ends: np.ndarray, horizon: int) -> np.ndarray:
    """Log returns ``log(close[t+horizon] / close[t])`` for each ``t`` in ``ends``: (N,) float64.

    ``horizon`` is in bars (>= 1). Raises ``GenomeError`` if ``t + horizon`` is past the last bar
    and ``DataError`` if a close used is not a finite positive price.
    """
    close = np.asarray(close, dtype=np.float64)
    ends = _as_ends(ends)
    if close.ndim != 1:
        raise ValueError(f"forward_returns needs a 1-D close array, got {close.shape}")
    if horizon < 1:
        raise ValueError(f"forward_returns: horizon must be >= 1 bar, got {horizon}")
    if ends.size == 0:
        return np.empty(0, dtype=np.float64)
    if ends.min() < 0 or ends.max() + horizon >= close.shape[0]:
        raise GenomeError(
            f"forward returns over {horizon} bars need decision bars in [0, {close.shape[0] - 1 - horizon}], "
            f"got [{ends.min()}, {ends.max()}]: the last {horizon} bars have no label"
        )
    now, later = close[ends], close[ends + horizon]
    if not (np.isfinite(now).all() and np.isfinite(later).all() and (now > 0).all() and (later > 0).all()):
        raise DataError("forward_returns: close prices must be finite and > 0")
    return np.log(later / now)


def fit_dead_zone(train_returns: np.ndarray) -> float:
    """The flat band half-width: the 1/3 quantile of ``|r|`` over the TRAINING returns.

    So about a third of the training labels are flat, a third down, a third up, and the class
    "up" means a move big enough to matter. Why a dead zone at all: on the 1-minute index-future
    file about 70% of one-bar moves are not up (70.9% over the file), mostly unchanged closes
    (42.3% of closes equal the previous one), so a plain up/not-up label would almost never give
    p(up) > 0.55. With the dead zone there are three classes, down/flat/up. When more than a
    third of the training moves are exactly 0 (that same file) the dead zone is exactly 0.0:
    unchanged closes are 'flat', every tick up is 'up', and the flat share is the share of
    unchanged closes (~42%), not a third.

    Returns a float >= 0 in log-return units (0.0139 = 1.39% for NVDA daily, one bar).
    """
    r = np.asarray(train_returns, dtype=np.float64).reshape(-1)
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise GenomeError("fit_dead_zone needs at least one finite training return")
    return float(np.quantile(np.abs(r), 1.0 / 3.0))


def make_labels(returns: np.ndarray, dead_zone: float) -> np.ndarray:
    """Classes (N,) int64: 0 down if ``r < -dead_zone``, 2 up if ``r > dead_zone``, else 1 flat."""
    r = np.asarray(returns, dtype=np.float64)
    if not (np.isfinite(dead_zone) and dead_zone >= 0):
        raise ValueError(f"make_labels: dead_zone must be finite and >= 0, got {dead_zone}")
    if not np.isfinite(r).all():
        raise GenomeError("make_labels: returns contain NaN or inf")
    labels = np.full(r.shape, FLAT, dtype=np.int64)
    labels[r < -dead_zone] = DOWN
    labels[r > dead_zone] = UP
    return labels
