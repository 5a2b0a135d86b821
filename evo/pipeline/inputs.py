"""A model's inputs: its features on each of its timeframes, its regime columns, and the windows.

One function chain serves the search (:mod:`evo.evaluation.evaluate`), the export and the trading PC
(:mod:`evo.deploy.bundle`), so a bundle rebuilds exactly the windows its models were trained on::

    frames (per timeframe: closed-bar feature rows, features.timeframes)
      -> model_rows (the model's columns per timeframe, + regime columns)
      -> fit_input_scaler (training rows only) -> input_windows (N, seq_len, k*F) float32

A model with the single timeframe ``(1,)`` and no regime input reads exactly what it read before
timeframes were genes: the base feature matrix's columns, one scaler fitted on the rows its
training windows see, and :func:`models.make_windows` of the scaled matrix (bit-identical).

Window of timeframe ``x m`` at decision bar ``t``: the ``seq_len`` closed ``x m`` periods ending
with the last one closed at ``t`` (``Frame.visible[t]``). Regime columns (``regime = "features"``)
are the base bars' regimes (:mod:`evo.pipeline.regime`) at the last base bar of each row's period, so
every row stays causal. Imports numpy, pandas, features and models only (``evo predict`` uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evo.errors import GenomeError

__all__ = ["Frame", "TrainingInputs", "build_frames", "first_decision_bar", "fit_input_scaler", "genes_rows",
           "genes_windows", "input_windows", "model_rows", "training_inputs", "truncate_frames"]


@dataclass(frozen=True, eq=False)
class Frame:
    """One timeframe's rows. ``values``: catalog features of its closed bars (G, n_features)
    float64 (for ``x1`` the base feature matrix itself); ``last``: (G,) int64, each row's last
    base bar; ``visible``: (n,) int64, the last row closed at base bar ``t`` (-1 while none)."""

    multiplier: int
    values: pd.DataFrame
    last: np.ndarray
    visible: np.ndarray


def build_frames(bars: pd.DataFrame, base_features: pd.DataFrame, clock, multipliers) -> dict[int, Frame]:
    """Frames for ``multipliers`` (``x1`` always included) of ``bars``; ``clock`` is a
    :class:`features.timeframes.BarClock` (ignored when only ``x1`` is asked for)."""
    from features.timeframes import resample_closed, timeframe_features

    n = len(bars)
    ident = np.arange(n, dtype=np.int64)
    frames = {1: Frame(1, base_features, ident, ident)}
    for m in sorted(set(multipliers) - {1}):
        values, visible = timeframe_features(bars, m, clock)
        group = resample_closed(bars, m, clock).group
        last = np.flatnonzero(np.append(group[1:] != group[:-1], True)).astype(np.int64)
        frames[m] = Frame(int(m), values, last, visible)
    return frames


def truncate_frames(frames: dict[int, Frame], n: int) -> dict[int, Frame]:
    """The frames of the first ``n`` base bars: rows closed by bar ``n - 1`` only (copies)."""
    out = {}
    for m, f in frames.items():
        visible = f.visible[:n].copy()
        rows = int(visible[-1]) + 1 if n else 0
        out[m] = Frame(m, f.values.iloc[:rows].copy(), f.last[:rows].copy(), visible)
    return out


def first_decision_bar(frames: dict[int, Frame], rows_needed: int) -> int:
    """First base bar at which every frame has ``rows_needed`` closed rows (warm-up + window)."""
    first = 0
    for f in frames.values():
        ok = np.flatnonzero(f.visible >= rows_needed - 1)
        if ok.size == 0:
            return len(f.visible)
        first = max(first, int(ok[0]))
    return first


def model_rows(features: tuple[str, ...] | list[str], timeframes: tuple[int, ...], frames: dict[int, Frame],
               regime: np.ndarray | None = None) -> list[np.ndarray]:
    """The model's rows per timeframe (ascending): (G_m, F) float64 of its features, plus the
    two regime columns (``regime``: (n, 2) per base bar, :func:`evo.pipeline.regime.regime_features`)
    taken at each row's last base bar."""
    out = []
    for m in timeframes:
        if m not in frames:
            raise GenomeError(f"timeframe x{m} is not available on these data ({sorted(frames)})")
        f = frames[m]
        values = f.values[list(features)].to_numpy(dtype=np.float64)
        if regime is not None:
            values = np.concatenate([values, np.asarray(regime, dtype=np.float64)[f.last]], axis=1)
        out.append(values)
    return out


def _row_spans(frames: dict[int, Frame], timeframes, ends: np.ndarray, seq_len: int) -> list[tuple[int, int]]:
    spans = []
    for m in timeframes:
        idx = frames[m].visible[ends]
        if idx.size and idx.min() < seq_len - 1:
            raise GenomeError(f"timeframe x{m}: decision bar {int(ends[idx.argmin()])} has only "
                              f"{int(idx.min()) + 1} closed rows for a window of {seq_len}")
        spans.append((int(idx.min()) - seq_len + 1, int(idx.max()) + 1))
    return spans


def fit_input_scaler(rows: list[np.ndarray], frames: dict[int, Frame], timeframes, train_ends: np.ndarray,
                     seq_len: int):
    """One :class:`models.Scaler` over the packed columns, each timeframe's block fitted on the
    rows its training windows see (training rows only)."""
    from models import Scaler, fit_scaler

    spans = _row_spans(frames, timeframes, np.asarray(train_ends, dtype=np.int64), seq_len)
    parts = [fit_scaler(r[a:b]) for r, (a, b) in zip(rows, spans)]
    if len(parts) == 1:
        return parts[0]
    return Scaler(mean=np.concatenate([p.mean for p in parts]), scale=np.concatenate([p.scale for p in parts]))


def input_windows(rows: list[np.ndarray], scaler, frames: dict[int, Frame], timeframes, ends: np.ndarray,
                  seq_len: int) -> np.ndarray:
    """Packed windows (N, seq_len, k*F) float32 at decision bars ``ends`` (module docstring)."""
    from models import Scaler, make_windows

    ends = np.asarray(ends, dtype=np.int64)
    if len(rows) == 1:
        return make_windows(scaler.transform(rows[0]), frames[timeframes[0]].visible[ends], seq_len)
    width = rows[0].shape[1]
    _row_spans(frames, timeframes, ends, seq_len)
    out = []
    for i, (m, r) in enumerate(zip(timeframes, rows)):
        block = Scaler(mean=scaler.mean[i * width:(i + 1) * width], scale=scaler.scale[i * width:(i + 1) * width])
        out.append(make_windows(block.transform(r), frames[m].visible[ends], seq_len))
    return np.concatenate(out, axis=2)


# ------------------------------------------------------------------------------------------------
# one model's rows, windows and labels, from its genes (evaluation and export call these)


def genes_rows(genes, bars: pd.DataFrame, frames: dict[int, Frame], regime=None,
               raw: np.ndarray | None = None) -> list[np.ndarray]:
    """:func:`model_rows` of a model's genes (``evo.genome.ModelGenes``): its features on each of
    its timeframes, plus the two regime columns under the fitted ``regime`` thresholds when the
    gene is ``features``. ``raw``: :func:`evo.pipeline.regime.regime_inputs` of ``bars`` if the
    caller has it already."""
    cols = None
    if genes.regime == "features":
        from evo.pipeline.regime import regime_features, regime_inputs

        cols = regime_features(regime_inputs(bars) if raw is None else raw, regime)
    return model_rows(genes.features, tuple(genes.timeframes), frames, cols)


def genes_windows(genes, bars: pd.DataFrame, frames: dict[int, Frame], regime, scaler, ends: np.ndarray,
                  seq_len: int) -> np.ndarray:
    """A fitted model's scaled input windows (N, seq_len, k*F) float32 at decision bars ``ends``."""
    rows = genes_rows(genes, bars, frames, regime)
    return input_windows(rows, scaler, frames, tuple(genes.timeframes), np.asarray(ends, dtype=np.int64), seq_len)


@dataclass(frozen=True, eq=False)
class TrainingInputs:
    """What one model trains on. ``scaler``, ``dead_zone`` and ``regime`` (thresholds, or None)
    are fitted on the training rows only; ``train`` and ``val`` are ``(X, y, r)``: windows
    (N, seq_len, k*F) float32, labels (N,) int64 in {0, 1, 2}, forward log returns (N,) float64."""

    scaler: object
    dead_zone: float
    regime: object
    train: tuple[np.ndarray, np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray, np.ndarray]


def training_inputs(genes, bars: pd.DataFrame, frames: dict[int, Frame], train_ends: np.ndarray,
                    val_ends: np.ndarray | None, seq_len: int, horizon: int) -> TrainingInputs:
    """A model's scaled training and validation windows with their labels, in one call.

    Every fitted quantity reads the rows the training windows see and nothing later: the regime
    thresholds (rows ``train_ends[0] - seq_len + 1 .. train_ends[-1]``), the scaler (the same rows
    per timeframe), the label dead zone (the training labels' returns, which end ``horizon`` bars
    after the last training bar: the walk-forward folds keep that gap before validation).
    ``val_ends`` None: the validation windows are the training ones."""
    from models import fit_dead_zone, forward_returns, make_labels

    train_ends = np.asarray(train_ends, dtype=np.int64)
    close = bars["close"].to_numpy()
    regime, raw = None, None
    if genes.regime != "none":
        from evo.pipeline.regime import fit_regime, regime_inputs

        # Row t of regime_inputs uses bars <= t; the thresholds read only the rows the training
        # windows see (fit_regime's [start, stop)), nothing later.
        raw = regime_inputs(bars)
        regime = fit_regime(raw, (max(0, int(train_ends[0]) - seq_len + 1), int(train_ends[-1]) + 1))
    rows = genes_rows(genes, bars, frames, regime, raw)
    tfs = tuple(genes.timeframes)
    # Scaler: rows seen by the training windows only (all at or before the last training bar).
    scaler = fit_input_scaler(rows, frames, tfs, train_ends, seq_len)
    dead_zone = fit_dead_zone(forward_returns(close, train_ends, horizon))

    def segment(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = forward_returns(close, ends, horizon)
        return input_windows(rows, scaler, frames, tfs, ends, seq_len), make_labels(r, dead_zone), r

    train = segment(train_ends)
    val = train if val_ends is None else segment(np.asarray(val_ends, dtype=np.int64))
    return TrainingInputs(scaler=scaler, dead_zone=dead_zone, regime=regime, train=train, val=val)
