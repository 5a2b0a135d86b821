"""Hardware-aware search: what a genome costs on the trading PC, before it is ever trained.

The winner runs on a CPU-only trading PC, one decision per closed bar: the features over the
stream's tail of bars (:mod:`evo.pipeline.stream`), then model A and model B on ONE window each (batch 1).
``python -m evo calibrate --out PROFILE.json`` measures that PC once; the search machine then
estimates any genome's per-decision latency from the profile (:func:`estimate_latency_ms`) and
skips genomes over a hard limit (:func:`hard_limit_violation`) without training them.

Profile (JSON, ``format`` = :data:`PROFILE_FORMAT`)::

    {"format": "evo-hardware-profile/1", "name": "tradingpc", "created": "2025-01-01T12:00:00Z",
     "threads": 1, "quick": false, "seconds": 10.9,
     "machine": {"platform": "Linux-6.8...", "machine": "x86_64", "processor": "...", "node": "tradingpc",
                 "cpu_count": 4, "python": "3.11.9", "torch": "2.13.0+cpu", "xlstm": "2.0.6",
                 "torch_threads": 1},
     "models": [{"embedding_dim": 64, "num_blocks": 4, "num_heads": 4, "slstm_at": [1], "seq_len": 64,
                 "n_features": 16, "params": 125404, "ms": 10.01, "min_ms": 9.40, "cpu_ms": 9.97,
                 "repeats": 15}, ...],
     "features": [{"tail_bars": 800, "ms": 6.6, "min_ms": 6.3, "cpu_ms": 6.5, "repeats": 9}, ...],
     "fit": {"statistic_used": "cpu_ms", "form": "...", "model_ms": {"c0": 0.55, "m0": 0.59, ...},
             "features_ms": {"f0": 3.1, "f1": 0.0042}, "ratio_min": 0.73, "ratio_max": 1.31,
             "rms_log_ratio": 0.12, "jitter": 1.0}}     # informational: recomputed on every load

``models`` holds one entry per reference model, timed over interleaved rounds: ``ms`` the
median and ``min_ms`` the least wall time in milliseconds of one forward pass
(``models.predict_proba`` on one window, batch 1, ``threads`` torch threads, random weights; the
same call ``evo predict`` makes), and ``cpu_ms`` the median CPU time of the calling thread (only
with one thread, on platforms with a fine thread clock; else null). ``features`` holds the same
for ``features.compute_features`` over the last ``tail_bars`` bars of real data. The measurements
are the facts; the fit is recomputed from them whenever a profile is loaded.

The latency model is fitted to the undisturbed cost of each call: ``cpu_ms`` where there is one,
else ``min_ms``. With one torch thread all the work runs on the calling thread, so its CPU time
is the latency the call has on an otherwise idle machine, and time spent preempted by other
processes does not count. A median wall time on a busy machine is inflated non-linearly (a 10 ms
call is nearly always preempted, a 1 ms call rarely), which no additive model can describe: on
the shared 2-core test machine, with other jobs running, a fit to wall-clock medians missed test
genomes by up to x1.9 (x2.3 with two more busy processes), a fit to thread CPU times by at most
x1.2. ``fit.jitter`` (median of ``ms`` over the fitted cost) says how busy the machine was during
calibration (1.0 on an idle one). The estimates are therefore idle-machine latencies; calibrate
with ``--threads`` as the bot will run.

Latency model (milliseconds, per decision)::

    latency(genome)   = model(A) + model(B) + features(tail_bars)
    model(m)          = c0 + sum over mLSTM blocks of (m0 + m1 * S * P_m / 1e6 + m2 * S^2 * Ei / 1e6
                                                        + m3 * S^2 * H / 1e6)
                           + sum over sLSTM blocks of (s0 + s1 * S + s2 * S * P_s / 1e6)
    features(n)       = f0 + f1 * n

with ``S`` = seq_len, ``P_m``/``P_s`` the block's parameter count (each weight is one
multiply-add per time step, so ``S * P`` is the block's matmul work), ``Ei`` the mLSTM cell width
and ``H`` its heads (the parallel mLSTM multiplies S x S matrices, ``S^2 * Ei``, and builds an
S x S decay matrix per head with a dozen element-wise operations, ``S^2 * H``), and ``n`` the
stream's tail (:func:`evo.pipeline.stream.tail_bars_for` of the pair's features and window; the whole
catalog is computed on every bar, so the chosen features matter only through the tail). The
constant terms dominate at batch 1 on a CPU: every block launches a few dozen small kernels. The sLSTM
``s1 * S`` term is the vanilla backend's Python loop over the time steps, which makes sLSTM
blocks seq_len-bound. The eight model coefficients (and the two feature ones) are non-negative
least squares on the relative error (each row divided by its measurement), so the fit minimises
the ratio estimated / measured rather than the absolute milliseconds of the largest models.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evo.errors import ConfigError
from evo.genome import Genome, ModelGenes

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_TERMS",
    "PROFILE_FORMAT",
    "HardwareProfile",
    "RefModel",
    "Timing",
    "calibrate",
    "count_params",
    "estimate_features_ms",
    "estimate_latency_ms",
    "estimate_model_ms",
    "genome_params",
    "hard_limit_violation",
    "load_profile",
    "measure_latencies_ms",
    "measure_latency_ms",
    "model_measurement",
    "reference_models",
    "save_profile",
    "thread_clock_step_ms",
    "time_forwards",
]

PROFILE_FORMAT = "evo-hardware-profile/1"

MODEL_TERMS = ("c0", "m0", "m1", "m2", "m3", "s0", "s1", "s2")
"""Coefficients of the per-model latency (ms): see the module docstring."""

FEATURE_TERMS = ("f0", "f1")

WARMUP_CALLS = 3        # untimed calls per model first (allocator, lazy init, caches)
DEFAULT_TAIL_BARS = 600  # tail used when a genome names a feature outside the catalog


# --------------------------------------------------------------------------------------------
# parameter count (exact, analytic)


def count_params(genes: ModelGenes, n_features: int | None = None) -> int:
    """Exact number of parameters of one :class:`models.DirectionModel` built from ``genes``
    reading ``n_features`` columns per timeframe (default: ``len(genes.features)``, plus the two
    regime columns when ``genes.regime == "features"``); computed from the layer shapes, so it
    needs no model (tests pin it against built models). A model with several timeframes
    (:class:`models.multi.MultiTimeframeModel`) counts every encoder and its fusion layer."""
    from models.shapes import direction_model_params

    F = len(genes.features) + (2 if genes.regime == "features" else 0) if n_features is None else int(n_features)
    return direction_model_params(F, int(genes.embedding_dim), int(genes.num_heads), int(genes.num_blocks),
                                  len(genes.slstm_at), genes.proj_factor, len(genes.timeframes), genes.fusion)


def genome_params(genome: Genome) -> int:
    """Parameters of the pair (model A + model B), each reading its own features."""
    return count_params(genome.model_a) + count_params(genome.model_b)


# --------------------------------------------------------------------------------------------
# the latency model


def _model_row(E: int, H: int, num_blocks: int, n_slstm: int, S: int, proj_factor: float = 2.0) -> np.ndarray:
    """Design row (one per model) for the coefficients :data:`MODEL_TERMS`."""
    from models.shapes import mlstm_block_params, mlstm_inner_dim, slstm_block_params

    n_m = num_blocks - n_slstm
    Ei = mlstm_inner_dim(E, proj_factor)
    return np.array([
        1.0,
        n_m,
        n_m * S * mlstm_block_params(E, H, proj_factor) / 1e6,
        n_m * S * S * Ei / 1e6,
        n_m * S * S * H / 1e6,
        n_slstm,
        n_slstm * S,
        n_slstm * S * slstm_block_params(E, H) / 1e6,
    ], dtype=np.float64)


def _nnls(A: np.ndarray, b: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Non-negative least squares ``min ||A x - b||, x >= 0`` (Lawson and Hanson's active set).
    numpy only: the trading PC has no scipy necessarily."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-10 * max(1.0, float(np.abs(A).max())) * max(1.0, float(np.abs(b).max()))
    for _ in range(max_iter):
        w = A.T @ (b - A @ x)
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = float(np.min(x[neg] / (x[neg] - z[neg])))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x


def _fit_relative(rows: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the sum of squared relative errors."""
    scale = np.abs(rows).max(axis=0)
    scale[scale == 0] = 1.0
    A = rows / ms[:, None] / scale  # column scaling for conditioning; undone below
    return _nnls(A, np.ones(len(ms))) / scale


@dataclass(frozen=True)
class RefModel:
    """One reference model of the calibration grid (``n_features`` columns in, batch 1)."""

    embedding_dim: int
    num_blocks: int
    num_heads: int
    slstm_at: tuple[int, ...]
    seq_len: int
    n_features: int = 16
    proj_factor: float = 2.0

    def genes(self) -> ModelGenes:
        return ModelGenes(features=tuple(f"x{i}" for i in range(self.n_features)),
                          embedding_dim=self.embedding_dim, num_blocks=self.num_blocks,
                          num_heads=self.num_heads, slstm_at=tuple(self.slstm_at), dropout=0.0,
                          proj_factor=self.proj_factor)


def reference_models(quick: bool = False) -> list[RefModel]:
    """The calibration grid: widths 16..256 (and 512), windows 16..192 bars, 1-4 blocks, 1-8
    heads, all-mLSTM, all-sLSTM and mixed stacks, two narrower mLSTM cells (60 models). ``quick`` is a 16-model subset
    (widths 16 and 128, windows 16 and 64) for tests and a first look."""
    if quick:
        return [RefModel(E, nb, H, sl, S) for E in (16, 128) for S in (16, 64)
                for nb, H, sl in ((1, 4, ()), (3, 1, ()), (1, 4, (0,)), (2, 2, (0, 1)))]
    grid = []
    for E in (16, 64, 128, 256):
        for S in (16, 64, 128):
            grid.append(RefModel(E, 1, 4, (), S))
            grid.append(RefModel(E, 4, 4, (), S))
            grid.append(RefModel(E, 1, 4, (0,), S))
        for S in (16, 64):
            grid.append(RefModel(E, 2, 4, (0, 1), S))
    # heads: the parallel mLSTM builds an S x S decay matrix per head
    grid += [RefModel(16, 2, 8, (), 128), RefModel(64, 2, 1, (), 128), RefModel(64, 2, 8, (), 128),
             RefModel(256, 2, 1, (), 64), RefModel(64, 1, 1, (0,), 64), RefModel(64, 1, 8, (0,), 64)]
    # the longest windows of the GPU budget
    grid += [RefModel(64, 1, 2, (), 192), RefModel(64, 1, 8, (), 192), RefModel(128, 1, 4, (0,), 192)]
    # mixed stacks and the widest models
    grid += [RefModel(64, 4, 4, (1,), 64), RefModel(128, 2, 2, (0,), 32), RefModel(32, 3, 2, (0, 2), 48),
             RefModel(512, 1, 8, (), 32), RefModel(512, 1, 8, (0,), 32)]
    # narrower mLSTM cells (the up-projection gene)
    grid += [RefModel(256, 2, 4, (), 64, proj_factor=1.0), RefModel(512, 1, 8, (), 32, proj_factor=1.0)]
    return grid


def feature_tails(quick: bool = False) -> tuple[int, ...]:
    """Tail lengths (bars) at which calibration times ``features.compute_features``."""
    return (128, 800) if quick else (128, 400, 800, 1600)


@dataclass(frozen=True, eq=False)
class HardwareProfile:
    """A calibrated machine: its measurements and the latency model fitted to them.

    Build with :meth:`from_dict` (or :func:`load_profile`); the coefficients are fitted there,
    once. The estimate functions also take the plain dict, but then refit on every call.
    """

    name: str
    threads: int
    machine: dict[str, Any]
    models: tuple[dict[str, Any], ...]
    features: tuple[dict[str, Any], ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    model_coef: np.ndarray = field(repr=False, compare=False)
    feature_coef: np.ndarray = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "profile") -> HardwareProfile:
        """Check a profile dict (as :func:`calibrate` makes it) and fit its latency model.
        Raises :class:`ConfigError` naming ``source`` and the problem."""
        if not isinstance(d, Mapping) or d.get("format") != PROFILE_FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ConfigError(f"{source}: not a hardware profile (format {got!r}, expected {PROFILE_FORMAT!r}); "
                              "make one with `python -m evo calibrate --out PROFILE.json` on the trading PC")
        try:
            models = tuple(dict(m) for m in d["models"])
            feats = tuple(dict(f) for f in d["features"])
            rows = np.array([_model_row(int(m["embedding_dim"]), int(m["num_heads"]), int(m["num_blocks"]),
                                        len(m["slstm_at"]), int(m["seq_len"]), float(m.get("proj_factor", 2.0)))
                             for m in models])
            ms = np.array([_cost_ms(m) for m in models])
            f_rows = np.array([[1.0, float(f["tail_bars"])] for f in feats])
            f_ms = np.array([_cost_ms(f) for f in feats])
            medians = np.array([float(m["ms"]) for m in models])
            name, threads = str(d["name"]), int(d["threads"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed hardware profile ({exc!r})") from None
        if len(models) < len(MODEL_TERMS) or len(feats) < 1:
            raise ConfigError(f"{source}: a profile needs at least {len(MODEL_TERMS)} model and 1 feature "
                              f"measurements, has {len(models)} and {len(feats)}")
        if not all(np.isfinite(v).all() and (v > 0).all() for v in (ms, f_ms, medians)):
            raise ConfigError(f"{source}: measurements must be finite times > 0 ms")
        f_coef = _fit_relative(f_rows, f_ms) if len(feats) >= 2 else np.array([f_ms[0], 0.0])
        return cls(name=name, threads=threads, machine=dict(d.get("machine", {})), models=models,
                   features=feats, raw=dict(d), model_coef=_fit_relative(rows, ms), feature_coef=f_coef)

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready dict, with ``fit`` brought up to date."""
        d = dict(self.raw)
        d["fit"] = self.fit_report()
        return d

    def fit_report(self) -> dict[str, Any]:
        """Coefficients and the ratios estimated / measured over the profile's own models."""
        cost = [_cost_ms(m) for m in self.models]
        ratios = [estimate_model_ms(_genes_of(m), int(m["seq_len"]), self) / t for m, t in zip(self.models, cost)]
        logs = np.log(ratios)
        used = sorted({next(k for k in ("cpu_ms", "min_ms", "ms") if m.get(k) is not None) for m in self.models})
        return {
            "statistic_used": "+".join(used),
            "form": "model = c0 + n_mlstm*(m0 + m1*S*P_m/1e6 + m2*S^2*Ei/1e6 + m3*S^2*H/1e6) "
                    "+ n_slstm*(s0 + s1*S + s2*S*P_s/1e6); features = f0 + f1*tail_bars; "
                    "latency = model(A) + model(B) + features (ms)",
            "model_ms": {k: float(v) for k, v in zip(MODEL_TERMS, self.model_coef)},
            "features_ms": {k: float(v) for k, v in zip(FEATURE_TERMS, self.feature_coef)},
            "ratio_min": float(np.min(ratios)), "ratio_max": float(np.max(ratios)),
            "rms_log_ratio": float(np.sqrt(np.mean(logs ** 2))),
            "jitter": float(np.median([float(m["ms"]) / t for m, t in zip(self.models, cost)])),
        }


def _cost_ms(m: Mapping[str, Any]) -> float:
    """The time the latency model is fitted to: the median thread CPU time where measured (one
    torch thread), else the least wall time, else the median wall time."""
    for key in ("cpu_ms", "min_ms", "ms"):
        if m.get(key) is not None:
            return float(m[key])
    raise KeyError("ms")


def _genes_of(m: Mapping[str, Any]) -> ModelGenes:
    return RefModel(int(m["embedding_dim"]), int(m["num_blocks"]), int(m["num_heads"]),
                    tuple(int(i) for i in m["slstm_at"]), int(m["seq_len"]), int(m.get("n_features", 16)),
                    float(m.get("proj_factor", 2.0))).genes()


def _as_profile(profile: HardwareProfile | Mapping[str, Any]) -> HardwareProfile:
    return profile if isinstance(profile, HardwareProfile) else HardwareProfile.from_dict(profile)


def estimate_model_ms(genes: ModelGenes, seq_len: int, profile: HardwareProfile | Mapping[str, Any]) -> float:
    """Estimated forward time (ms) of one model on one window on the profiled machine."""
    p = _as_profile(profile)
    row = _model_row(int(genes.embedding_dim), int(genes.num_heads), int(genes.num_blocks),
                     len(genes.slstm_at), int(seq_len), genes.proj_factor)
    return float(row @ p.model_coef) * len(genes.timeframes)   # one encoder per timeframe, same window


def _tail_bars(genome: Genome) -> int:
    from evo.pipeline.stream import frame_tail_bars, tail_bars_for

    try:
        return max([tail_bars_for(genome.model_a.features + genome.model_b.features, genome.seq_len)]
                   + [frame_tail_bars(m.features, m.timeframes, m.regime, genome.seq_len)
                      for m in (genome.model_a, genome.model_b)])
    except KeyError:  # a name outside the catalog (a hand-made genome): assume a typical tail
        return genome.seq_len + DEFAULT_TAIL_BARS


def estimate_features_ms(genome: Genome, profile: HardwareProfile | Mapping[str, Any]) -> float:
    """Estimated time (ms) of ``features.compute_features`` over the genome's stream tail
    (:func:`evo.pipeline.stream.tail_bars_for`): the whole catalog is computed, so only the tail matters."""
    p = _as_profile(profile)
    return float(p.feature_coef @ np.array([1.0, _tail_bars(genome)]))


def estimate_latency_ms(genome: Genome, profile: HardwareProfile | Mapping[str, Any], *,
                        include_features: bool = True) -> float:
    """Estimated per-decision latency (ms) on the profiled machine: model A + model B on one
    window each, plus (``include_features``) the feature computation over the stream's tail."""
    p = _as_profile(profile)
    ms = estimate_model_ms(genome.model_a, genome.seq_len, p) + estimate_model_ms(genome.model_b, genome.seq_len, p)
    return ms + (estimate_features_ms(genome, p) if include_features else 0.0)


def hard_limit_violation(genome: Genome, profile: HardwareProfile | Mapping[str, Any] | None,
                         max_latency_ms: float | None, max_params: int | None) -> str | None:
    """Why ``genome`` must not be trained, or ``None`` when it is within every given limit.

    ``max_params`` bounds the pair (model A + model B, :func:`genome_params`); ``max_latency_ms``
    bounds :func:`estimate_latency_ms` on ``profile`` (features included) and needs a profile.
    """
    if max_params is not None:
        n = genome_params(genome)
        if n > max_params:
            return (f"{n:,} parameters > {int(max_params):,} (A {count_params(genome.model_a):,}, "
                    f"B {count_params(genome.model_b):,})")
    if max_latency_ms is not None:
        if profile is None:
            raise ConfigError("a latency limit needs a hardware profile: run `python -m evo calibrate --out "
                              "PROFILE.json` on the trading PC and pass it with --target PROFILE.json")
        p = _as_profile(profile)
        ms = estimate_latency_ms(genome, p)
        if ms > max_latency_ms:
            return f"estimated latency {ms:.1f} ms > {max_latency_ms:g} ms on {p.name}"
    return None


# --------------------------------------------------------------------------------------------
# measuring


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    if int(threads) < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _model_config(genes: ModelGenes, seq_len: int, n_features: int):
    """One encoder's config (what a decision costs per timeframe): :func:`evo.genome.model_config`."""
    from evo.genome import model_config

    cfg = model_config(genes, seq_len, "cpu", n_features=n_features)
    return getattr(cfg, "base", cfg)


def _forward_call(genes: ModelGenes, seq_len: int, n_features: int, seed: int) -> Callable[[], object]:
    """A call that runs what ``evo predict`` runs for one model: ``predict_proba`` on one window."""
    import torch

    from models import DirectionModel, predict_proba

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DirectionModel(_model_config(genes, seq_len, n_features)).eval()
    x = np.random.default_rng(seed).normal(size=(1, int(seq_len), int(n_features))).astype(np.float32)
    return lambda: predict_proba(model, x)


@dataclass(frozen=True)
class Timing:
    """Interleaved timings of one call (ms, one value per round): wall-clock latency and the
    calling thread's CPU time (which, with one torch thread, is the latency the call would have
    had on an idle machine: time spent preempted by other processes is not counted)."""

    wall_ms: tuple[float, ...]
    cpu_ms: tuple[float, ...]

    def summary(self, threads: int) -> dict[str, Any]:
        """``ms`` (median wall), ``min_ms`` (least wall), ``cpu_ms`` (median thread CPU time;
        ``None`` unless ``threads`` is 1, since other threads' work would be missed, and unless
        this platform's thread clock is fine-grained: Windows counts it in 15.6 ms ticks),
        ``repeats``."""
        cpu_ok = int(threads) == 1 and thread_clock_step_ms() <= FINE_CLOCK_MS
        return {"ms": round(statistics.median(self.wall_ms), 4), "min_ms": round(min(self.wall_ms), 4),
                "cpu_ms": round(statistics.median(self.cpu_ms), 4) if cpu_ok else None,
                "repeats": len(self.wall_ms)}


FINE_CLOCK_MS = 0.01  # a thread clock that moves in steps above this is too coarse for ms-scale calls


@functools.lru_cache(maxsize=1)
def thread_clock_step_ms() -> float:
    """Smallest step (ms) of ``time.thread_time`` seen while spinning: ~1e-6 on Linux and macOS,
    15.6 on Windows. Spins for at most ~50 ms."""
    steps = []
    deadline = time.perf_counter() + 0.05
    while len(steps) < 5 and time.perf_counter() < deadline:
        t0 = time.thread_time()
        t1 = t0
        while t1 == t0 and time.perf_counter() < deadline:
            t1 = time.thread_time()
        if t1 > t0:
            steps.append(t1 - t0)
    return 1e3 * min(steps) if steps else float("inf")


def time_interleaved(calls: Sequence[Callable[[], object]], *, repeats: int, warmup: int = WARMUP_CALLS,
                     deadline_s: float | None = None, min_repeats: int = 3, rotate: bool = True) -> list[Timing]:
    """Time each call ``repeats`` rounds after ``warmup`` untimed rounds (evo's one timing helper:
    calibration and ``python -m evo bench`` both use it). Each round runs every call once, so all
    calls meet the same machine load; with ``rotate`` each round starts one position later (no
    call is always first after a pause). Stops early after ``min_repeats`` rounds once
    ``deadline_s`` (a ``time.perf_counter`` value) passed."""
    for _ in range(warmup):
        for call in calls:
            call()
    wall: list[list[float]] = [[] for _ in calls]
    cpu: list[list[float]] = [[] for _ in calls]
    n = len(calls)
    for r in range(repeats):
        for k in range(n):
            i = (k + r) % n if rotate else k
            c0, t0 = time.thread_time(), time.perf_counter()
            calls[i]()
            t1, c1 = time.perf_counter(), time.thread_time()
            wall[i].append(1e3 * (t1 - t0))
            cpu[i].append(1e3 * (c1 - c0))
        if deadline_s is not None and r + 1 >= min_repeats and time.perf_counter() > deadline_s:
            break
    return [Timing(tuple(w), tuple(c)) for w, c in zip(wall, cpu)]


def time_forwards(specs: Sequence[tuple[ModelGenes, int, int]], *, threads: int = 1, repeats: int = 15,
                  warmup: int = WARMUP_CALLS, deadline_s: float | None = None) -> list[Timing]:
    """Timings of one forward pass of each model ``(genes, seq_len, n_features)`` on THIS
    machine: ``models.predict_proba`` on one random window (batch 1), random weights (seeded by
    position), ``threads`` torch threads; the global torch RNG is left as it was.

    The models are built first, then timed interleaved: ``warmup`` untimed rounds, then up to
    ``repeats`` rounds that each run every model once (from a rotating start), so all meet the
    same machine load; after 3 rounds it stops once ``deadline_s`` (a ``time.perf_counter``
    value) has passed."""
    with _torch_threads(threads):
        calls = [_forward_call(genes, seq_len, n_features, seed=i)
                 for i, (genes, seq_len, n_features) in enumerate(specs)]
        return time_interleaved(calls, repeats=repeats, warmup=warmup, deadline_s=deadline_s)


STATISTICS = ("median", "min", "cpu")


def measure_latencies_ms(genomes: Sequence[Genome], *, n_features: Sequence[tuple[int, int]] | None = None,
                         threads: int = 1, repeats: int = 15, warmup: int = WARMUP_CALLS,
                         statistic: str = "median") -> list[float]:
    """Measured per-decision model latency (ms) of each genome on THIS machine: model A's plus
    model B's forward pass on one window each (:func:`time_forwards`, all genomes interleaved),
    each summarised over ``repeats`` rounds by ``statistic``: ``"median"`` wall time, ``"min"``
    the least wall time, ``"cpu"`` the median thread CPU time (``threads=1`` only; immune to
    other processes). Features are not included. ``n_features``: (A, B) columns per genome
    (default: the genes' feature counts)."""
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if statistic == "cpu" and threads != 1:
        raise ConfigError(f"statistic='cpu' times the calling thread only; it needs threads=1, got {threads}")
    if statistic == "cpu" and thread_clock_step_ms() > FINE_CLOCK_MS:
        raise ConfigError(f"statistic='cpu': this platform's thread clock moves in {thread_clock_step_ms():.3g} ms "
                          "steps, too coarse; use 'min' or 'median'")
    if n_features is None:
        n_features = [(len(g.model_a.features), len(g.model_b.features)) for g in genomes]
    specs = []
    for g, (fa, fb) in zip(genomes, n_features, strict=True):
        specs += [(g.model_a, g.seq_len, int(fa)), (g.model_b, g.seq_len, int(fb))]
    timings = time_forwards(specs, threads=threads, repeats=repeats, warmup=warmup)
    stat = {"median": lambda t: statistics.median(t.wall_ms), "min": lambda t: min(t.wall_ms),
            "cpu": lambda t: statistics.median(t.cpu_ms)}[statistic]
    return [float(stat(timings[2 * i]) + stat(timings[2 * i + 1])) for i in range(len(genomes))]


def measure_latency_ms(genome: Genome, n_features_a: int | None = None, n_features_b: int | None = None,
                       threads: int = 1, repeats: int = 15, statistic: str = "median") -> float:
    """Measured per-decision model latency (ms) of one genome on THIS machine; see
    :func:`measure_latencies_ms`."""
    fa = len(genome.model_a.features) if n_features_a is None else n_features_a
    fb = len(genome.model_b.features) if n_features_b is None else n_features_b
    return measure_latencies_ms([genome], n_features=[(fa, fb)], threads=threads, repeats=repeats,
                                statistic=statistic)[0]


def model_measurement(ref: RefModel, timing: Timing, threads: int = 1) -> dict[str, Any]:
    """A profile's ``models`` entry: the reference model and its timing summary (ms)."""
    return {"embedding_dim": ref.embedding_dim, "num_blocks": ref.num_blocks, "num_heads": ref.num_heads,
            "slstm_at": list(ref.slstm_at), "seq_len": ref.seq_len, "n_features": ref.n_features,
            "proj_factor": ref.proj_factor, "params": count_params(ref.genes()), **timing.summary(threads)}


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """This machine, for a calibration profile or a benchmark report (evo's one description of
    it): platform, CPU model, cores, memory (GiB), torch threads, CUDA, library versions."""
    import importlib.metadata as md

    import torch

    model = platform.processor() or platform.machine()
    mem_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "xlstm", "vectorbt", "numba", "numpy", "pandas", "backtesting"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    threads = torch.get_num_threads() if threads is None else int(threads)
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu": model, "node": platform.node(), "cpu_count": os.cpu_count(), "cores": os.cpu_count(),
            "memory_gib": mem_gib, "python": platform.python_version(), "torch": torch.__version__,
            "xlstm": versions["xlstm"] or "unknown", "torch_threads": threads,
            "cuda": bool(torch.cuda.is_available()), "versions": versions}


def calibrate(*, threads: int = 1, quick: bool = False, bars=None, name: str | None = None,
              budget_s: float = 45.0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure this machine; return the profile dict (module docstring; no file written).

    Times each :func:`reference_models` model over up to 15 interleaved rounds (5 with
    ``quick``; the rounds stop early once ``budget_s`` seconds have passed, after at least 3) and
    ``features.compute_features`` over the last :func:`feature_tails` bars of ``bars`` (default:
    the embedded demo data), with ``threads`` torch threads, as the trading PC will run them.
    About 10 s on a 2-core server core, 5 s with ``quick``.
    """
    from features import compute_features

    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    if bars is None:
        from evo.data import load_bars

        bars, _ = load_bars(None)
    tails = [n for n in feature_tails(quick) if n <= len(bars)] or [len(bars)]
    refs = reference_models(quick)
    repeats = 5 if quick else 15
    say(f"timing {len(refs)} reference models, up to {repeats} interleaved rounds, {threads} torch thread(s)")
    timings = time_forwards([(r.genes(), r.seq_len, r.n_features) for r in refs], threads=threads,
                            repeats=repeats, warmup=2 if quick else WARMUP_CALLS, deadline_s=t_start + budget_s)
    say(f"timing features.compute_features on tails of {tails} bars")
    with _torch_threads(threads):
        f_calls = [lambda tail=bars.iloc[-n:]: compute_features(tail) for n in tails]
        f_timings = time_interleaved(f_calls, repeats=3 if quick else 9, warmup=1,
                                      deadline_s=t_start + budget_s + 10.0)
    models = [model_measurement(r, t, threads) for r, t in zip(refs, timings)]
    # compute_features is single-threaded (numpy, TA-Lib, numba without parallel): CPU time is valid
    feats = [{"tail_bars": int(n), **t.summary(1)} for n, t in zip(tails, f_timings)]
    profile = {
        "format": PROFILE_FORMAT,
        "name": name or platform.node() or "unnamed",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": int(threads), "quick": bool(quick),
        "machine": machine_facts(threads), "models": models, "features": feats,
    }
    profile["seconds"] = round(time.perf_counter() - t_start, 2)
    return HardwareProfile.from_dict(profile).to_dict()


# --------------------------------------------------------------------------------------------
# files


def save_profile(profile: HardwareProfile | Mapping[str, Any], path: Path | str) -> None:
    """Check a profile, bring its ``fit`` up to date and write it as JSON via
    temp-file-then-rename."""
    from evo.fileio import write_json_atomic

    write_json_atomic(Path(path), _as_profile(profile).to_dict())


def load_profile(path: Path | str) -> HardwareProfile:
    """Read and check a profile written by ``python -m evo calibrate``; fit its latency model.
    Raises :class:`ConfigError` for a missing or malformed file."""
    import json

    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such hardware profile; make one with "
                          "`python -m evo calibrate --out PROFILE.json` on the trading PC") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON hardware profile ({exc})") from None
    return HardwareProfile.from_dict(d, source=str(path))
