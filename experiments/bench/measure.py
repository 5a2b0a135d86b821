"""Benchmarks of evo on this machine (issue 9): pure measurement functions that report numbers.

Nothing here fails on a timing. Each ``bench_*`` function measures one item of
``docs/benchmarks.md`` and returns a plain dict (JSON-ready); :func:`run_suite` runs them all and
:func:`render_markdown` writes the table. ``python -m evo bench`` (``evo.commands.bench``) is the
front end.

How the numbers are taken (the machine is shared, so every comparison is side by side):

- **A/B timings** are interleaved: round ``r`` runs A once, then B once, then the next round; the
  figure is the median over rounds, and a ratio is the ratio of those medians. Warm-up rounds
  (lazy imports, JIT, allocator) are run first and thrown away.
- **Start-up** figures are wall times of fresh ``python`` subprocesses, median of several.
- **The load average** (``os.getloadavg``) is recorded before and after each item.

The items, as numbered in issue 9:

1. overhead of a genome's evaluation outside the models' forward/backward passes;
2. multi-fidelity evaluation (not implemented; reported as such);
3. xLSTM training speed on the CPU against ``nn.LSTM`` and the machine's matmul peak;
4. the vectorbt backtest against backtesting.py on the same signal;
5. start-up of ``python -m evo --help`` and of ``evo predict``'s imports;
6. the feature cache (cold vs warm) and vectorbt's numba JIT cache (cold vs warm);
7. peak memory of a short search on 1-minute bars, and its growth across generations;
8. GPU (measured only where CUDA is available);

and issue 16's ``throughput``: a genome's same-shape models trained batched (``models.batched``) vs one
at a time, and the mLSTM cell against NX-AI's ``mlstm_kernels``.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_DATA_DIR",
    "backtesting_py_run",
    "bench_backtest",
    "bench_feature_cache",
    "bench_gpu",
    "bench_memory",
    "bench_mlstm_kernels",
    "bench_numba_cache",
    "bench_overhead",
    "bench_startup",
    "bench_genomes_per_hour",
    "bench_throughput",
    "bench_walk_forward_backtest",
    "bench_xlstm",
    "expected_trades",
    "interleaved",
    "machine_facts",
    "matmul_peak",
    "model_flops",
    "overhead_budget",
    "overhead_genome",
    "run_suite",
    "summarize",
    "throughput_models",
    "walk_forward_backtests",
]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"   # `evo bench --data-dir` default
MINUTE_FILE = "INDEXFUT_1m_2006.csv"
ITEMS = ("overhead", "multifidelity", "xlstm", "backtest", "startup", "caches", "memory", "gpu", "throughput")

ProgressFn = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# machine, load and timing helpers


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes; 2.0 on 2 cores = fully busy)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, memory, thread count and library versions of this machine
    (:func:`evo.search.hardware.machine_facts`)."""
    from evo.search.hardware import machine_facts as facts

    return facts()


def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times in seconds of each function, run in turn round after round (A, B, A, B ...), so
    every function meets the same machine load. ``warmup`` rounds are run first and dropped
    (:func:`evo.search.hardware.time_interleaved`, in a fixed order)."""
    from evo.search.hardware import time_interleaved

    timings = time_interleaved(list(fns.values()), repeats=repeats, warmup=warmup, rotate=False)
    return {name: [w / 1e3 for w in t.wall_ms] for name, t in zip(fns, timings)}


def summarize(seconds: list[float]) -> dict[str, float]:
    """Median, min and max of a list of wall times, in milliseconds."""
    ms = [s * 1e3 for s in seconds]
    return {"median_ms": round(statistics.median(ms), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3), "n": len(ms)}


@contextmanager
def _patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Temporarily set ``obj.attr = value`` for each triple; always restored."""
    saved = []
    try:
        for obj, attr, value in patches:
            saved.append((obj, attr, obj.__dict__.get(attr, _MISSING) if isinstance(obj, type) else
                          getattr(obj, attr, _MISSING)))
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, old in reversed(saved):
            if old is _MISSING:
                delattr(obj, attr)
            else:
                setattr(obj, attr, old)


_MISSING = object()


# ------------------------------------------------------------------------------------------------
# 1. overhead of a genome's evaluation outside the models' forward/backward


class _Sections:
    """Exclusive wall time per named section: time is charged to the innermost open section
    (a forward pass inside ``train_model`` counts as forward, not as training loop)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []
        self.mark = time.perf_counter()

    def _switch(self) -> None:
        now = time.perf_counter()
        self.totals[self.stack[-1] if self.stack else "other"] += now - self.mark
        self.mark = now

    def wrap(self, name: str, fn: Callable) -> Callable:
        sections = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            sections._switch()
            sections.stack.append(name)
            sections.calls[name] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                sections._switch()
                sections.stack.pop()

        return timed


def overhead_budget(quick: bool = False):
    """The ``cpu`` preset as it is (``quick``: its training cut to 1 epoch on 128 windows, 1 lr
    trial, 2 folds and 4 risk trials, for the tests)."""
    from experiments import load_budget

    b = load_budget("cpu")
    if quick:
        return replace(b, name="cpu-quick",
                       train=replace(b.train, max_epochs=1, patience=1, max_train_windows=128, lr_trials=1,
                                     lr_trial_epochs=1, seeds=1),
                       evaluate=replace(b.evaluate, folds=2, risk_trials=4))
    return b


def overhead_genome(ds, budget):
    """A fixed genome at the small end of ``budget``'s space: model A mLSTM, model B sLSTM, one
    block each, the smallest embedding and window, the first features of each pool."""
    from evo.genome import Genome, ModelGenes

    space = budget.search
    emb = min(space.embedding_dim)
    heads = max(h for h in space.num_heads if emb % h == 0 and emb // h >= 2 and (2 * emb) % h == 0)
    n_a, n_b = min(8, space.max_features_a, len(ds.pools.a)), min(6, space.max_features_b, len(ds.pools.b))
    return Genome(
        model_a=ModelGenes(features=ds.pools.a[:n_a], embedding_dim=emb, num_blocks=space.num_blocks[0],
                           num_heads=heads, slstm_at=(), dropout=0.1),
        model_b=ModelGenes(features=ds.pools.b[:n_b], embedding_dim=emb, num_blocks=space.num_blocks[0],
                           num_heads=heads, slstm_at=(0,), dropout=0.1),
        seq_len=min(space.seq_len), horizon=min(h for h in space.horizon if h > 1) if any(
            h > 1 for h in space.horizon) else space.horizon[0],
        consensus="either", threshold=float(sum(space.threshold) / 2),
    )


def typical_genome(ds, budget):
    """A fixed genome in the middle of ``budget``'s space: the median embedding, window and block
    count, model A mLSTM only, model B with its first block sLSTM (the presets draw about a third
    of the blocks as sLSTM), the pools' first features, as many as the overhead genome's."""
    from dataclasses import replace as _replace

    space = budget.search
    small = overhead_genome(ds, budget)
    emb = sorted(space.embedding_dim)[len(space.embedding_dim) // 2]
    heads = max(h for h in space.num_heads if emb % h == 0 and emb // h >= 2 and 64 % h == 0)
    blocks = (space.num_blocks[0] + space.num_blocks[1] + 1) // 2
    return _replace(small, seq_len=sorted(space.seq_len)[len(space.seq_len) // 2],
                    model_a=_replace(small.model_a, embedding_dim=emb, num_heads=heads, num_blocks=blocks),
                    model_b=_replace(small.model_b, embedding_dim=emb, num_heads=heads, num_blocks=blocks,
                                     slstm_at=(0,)))


def _warm_up(ds) -> float:
    """Seconds of the once-per-process work a search pays before its first genome's backtest:
    importing optuna, nevergrad and vectorbt and loading (or, with a cold ``NUMBA_CACHE_DIR``,
    compiling) the numba kernels of ``backtest_signals``, done here on the first 64 bars of ``ds``."""
    t0 = time.perf_counter()
    import nevergrad  # noqa: F401
    import optuna  # noqa: F401

    from backtest import CostModel, backtest_signals

    span = ds.bars.iloc[:64]
    backtest_signals(span, (np.arange(64) % 4 < 2).astype(np.int8), costs=CostModel(),
                     periods_per_year=ds.periods_per_year)
    return time.perf_counter() - t0


def bench_overhead(ds, budget, genome, *, seed: int = 0, warm_up: bool = True) -> dict[str, Any]:
    """Time ``evo.evaluation.evaluate.evaluate_genome(genome, ds, budget)`` once, split into sections.

    The sections are measured by wrapping, for the duration of the call only, the functions that
    do the work: ``DirectionModel.forward`` and ``FastDirectionModel.forward`` (every forward
    pass: training, validation, lr trials, prediction), the training loss on the heads' outputs
    (``models.train._loss_terms``, counted as forward: its backward is in backward),
    ``torch.Tensor.backward``, ``AdamW.step``, ``clip_grad_norm_``, the training loop and
    ``predict_proba`` themselves (their remaining time: batching, weight copies, bookkeeping),
    ``make_windows``, the risk tuning (nevergrad), ``backtest_signals`` (vectorbt). Time outside
    all of them is ``other`` (scaler, labels, consensus, Optuna, metrics, glue). Each section's
    time is exclusive (a forward inside training counts as forward).

    Returns the sections in seconds, the total, ``outside_fwd_bwd`` (share of the total not in
    forward or backward, the issue's figure) and ``outside_model`` (not in forward, backward or
    the optimiser step), plus the final walk-forward backtest's arguments (``last_backtest``:
    span, signal, costs, periods per year) and every ``backtest_signals`` call of the genome
    (``genome_backtests``: the risk tuning's, the validation returns', the test span's) for the
    backtest item.

    With ``warm_up`` the once-per-process costs (imports, vectorbt's JIT) are paid first and
    reported apart (``warmup_s``): a search pays them once, not per genome.
    """
    import torch

    import backtest
    import evo.evaluation.risk
    import models
    import models.train
    import models.tuning
    from evo.evaluation.evaluate import evaluate_genome
    from models.fast_mlstm import FastDirectionModel
    from models.network import DirectionModel

    warmup_s = _warm_up(ds) if warm_up else None
    sec = _Sections()
    captured: list[tuple] = []
    bt_fn = backtest.backtest_signals

    def capture_backtest(ohlcv, signal, **kwargs):
        captured.append((ohlcv, np.asarray(signal).copy(), kwargs))
        return bt_fn(ohlcv, signal, **kwargs)

    patches = [
        (DirectionModel, "forward", sec.wrap("forward", DirectionModel.forward)),
        # training and prediction run through models.fast_mlstm on the CPU (EVO_FAST_PATH=0: xlstm's own)
        (FastDirectionModel, "forward", sec.wrap("forward", FastDirectionModel.forward)),
        # the training loss (cross-entropy + Huber on the heads' outputs) is the graph's last forward op:
        # its backward is in "backward", so it counts as forward work, in a section of its own
        (models.train, "_loss_terms", sec.wrap("forward (loss)", models.train._loss_terms)),
        (torch.Tensor, "backward", sec.wrap("backward", torch.Tensor.backward)),
        (torch.optim.AdamW, "step", sec.wrap("optimizer step", torch.optim.AdamW.step)),
        (torch.nn.utils, "clip_grad_norm_", sec.wrap("grad clip", torch.nn.utils.clip_grad_norm_)),
        (models, "train_model", sec.wrap("training loop (rest)", models.train_model)),
        (models.tuning, "train_model", sec.wrap("training loop (rest)", models.tuning.train_model)),
        (models, "predict_proba", sec.wrap("prediction (rest)", models.predict_proba)),
        (models, "make_windows", sec.wrap("windows", models.make_windows)),
        (evo.evaluation.risk, "tune_risk", sec.wrap("risk tuning (nevergrad, rest)", evo.evaluation.risk.tune_risk)),
        (backtest, "backtest_signals", sec.wrap("backtest (vectorbt)", capture_backtest)),
    ]
    with _patched(patches):
        sec.mark = t0 = time.perf_counter()
        result = evaluate_genome(genome, ds, budget, seed=seed)
        total = time.perf_counter() - t0
        sec._switch()
    sections = {k: round(v, 4) for k, v in sorted(sec.totals.items(), key=lambda kv: -kv[1])}
    fwd_bwd = sec.totals["forward"] + sec.totals["forward (loss)"] + sec.totals["backward"]
    model = fwd_bwd + sec.totals["optimizer step"]
    ohlcv, signal, kwargs = captured[-1]
    return {
        "total_s": round(total, 3), "warmup_s": None if warmup_s is None else round(warmup_s, 3),
        "sections_s": sections, "calls": dict(sec.calls),
        "outside_fwd_bwd": (total - fwd_bwd) / total, "outside_model": (total - model) / total,
        "outside_fwd_bwd_s": round(total - fwd_bwd, 3),
        "genome": genome.to_dict(), "budget": budget.name, "trades": result.trades, "sharpe": result.sharpe,
        "last_backtest": {"ohlcv": ohlcv, "signal": signal, "costs": kwargs.get("costs"),
                          "periods_per_year": kwargs["periods_per_year"]},
        "genome_backtests": [{"ohlcv": o, "signal": sg, **kw} for o, sg, kw in captured],
    }


def bench_optimizer_step(genome, *, rounds: int = 200, warmup: int = 20) -> dict[str, Any]:
    """Per-step time of what ``models.train`` runs between backward passes, on the two models of
    ``genome`` (random gradients, evo's parameter groups): ``AdamW.step`` with torch's default (a
    per-tensor loop on the CPU, what evo ran before) vs ``foreach=True`` vs ``fused=True`` (what
    ``models.train`` runs now), and ``clip_grad_norm_`` default vs ``foreach=True`` (evo's now).
    Interleaved rounds, medians in ms."""
    import torch

    from models.config import ModelConfig
    from models.network import DirectionModel

    out = {}
    for name, genes in (("model_a", genome.model_a), ("model_b", genome.model_b)):
        torch.manual_seed(0)
        model = DirectionModel(ModelConfig(len(genes.features), genes.embedding_dim, genes.num_blocks,
                                           genes.num_heads, tuple(genes.slstm_at), genes.dropout, genome.seq_len))
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p)

        def adamw(**kw):
            groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
                      {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
            return torch.optim.AdamW(groups, lr=1e-4, **kw).step

        fns = {"adamw_default": adamw(), "adamw_foreach": adamw(foreach=True), "adamw_fused": adamw(fused=True),
               "clip_default": lambda: torch.nn.utils.clip_grad_norm_(params, 1e9),
               "clip_foreach": lambda: torch.nn.utils.clip_grad_norm_(params, 1e9, foreach=True)}
        times = interleaved(fns, repeats=rounds, warmup=warmup)
        out[name] = {"tensors": len(params), **{k: summarize(v)["median_ms"] for k, v in times.items()}}
    return out


# ------------------------------------------------------------------------------------------------
# 3. xLSTM training speed on the CPU


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a float32 ``torch.mm`` of two n x n matrices with torch's current thread count:
    ``2 n^3`` flops per product; ``peak_gflops`` is the best repeat, ``median_gflops`` the median."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return {"n": n, "peak_gflops": round(max(rates), 2), "median_gflops": round(statistics.median(rates), 2),
            "threads": torch.get_num_threads()}


def _loss(model, x):
    logits, ret = model(x)
    return logits.square().mean() + ret.square().mean()


def _fwd_bwd(model, x) -> None:
    _loss(model, x).backward()
    model.zero_grad(set_to_none=True)


def model_flops(model, x) -> int:
    """Floating-point operations of one forward + backward pass, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions; element-wise
    operations are not counted, so the utilisation figure is a lower bound)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        _loss(model, x).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _lstm_net(n_features: int, hidden: int, layers: int):
    from experiments.bench.models import _LSTMNet

    return _LSTMNet(n_features, hidden, layers)


def _lstm_cell_flops(lstm, batch: int, seq_len: int) -> int:
    """Matrix-product FLOPs of ``nn.LSTM``'s cells for one forward + backward pass, counted
    analytically (FlopCounterMode does not see inside the fused CPU kernel): per layer and step
    ``2 * B * 4H * (in + H)`` forward, twice that backward (input and weight gradients)."""
    H, total, width = lstm.hidden_size, 0, lstm.input_size
    for _ in range(lstm.num_layers):
        total += 3 * 2 * batch * seq_len * 4 * H * (width + H)
        width = H
    return total


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_xlstm(*, batch: int = 64, seq_len: int = 64, n_features: int = 16, embedding_dim: int = 64,
                num_blocks: int = 4, num_heads: int = 4, repeats: int = 5, warmup: int = 1,
                peak_n: int = 2048, threads: int | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """:func:`_bench_xlstm` with torch's CPU threads set to ``threads`` (None: as they are) for
    the duration of the call."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _bench_xlstm(batch=batch, seq_len=seq_len, n_features=n_features, embedding_dim=embedding_dim,
                            num_blocks=num_blocks, num_heads=num_heads, repeats=repeats, warmup=warmup,
                            peak_n=peak_n, progress=progress)
    finally:
        torch.set_num_threads(before)


def _bench_xlstm(*, batch: int, seq_len: int, n_features: int, embedding_dim: int, num_blocks: int,
                 num_heads: int, repeats: int, warmup: int, peak_n: int,
                 progress: ProgressFn | None) -> dict[str, Any]:
    """Forward + backward of one batch through the direction model (xlstm ``vanilla`` path:
    all-mLSTM, one sLSTM block, all-sLSTM) and through ``nn.LSTM`` of about the mLSTM model's
    parameter count; dropout 0, train mode, same input. Interleaved repeats, medians.

    Also the machine's matmul peak and each case's FLOPs (FlopCounterMode), so
    ``utilisation = flops / time / peak``. If ``models.fast_mlstm`` exists, evo's CPU training
    path (``models.train`` runs its forward passes through it) runs on the all-mLSTM and the
    one-sLSTM models' own parameters and is compared with the vanilla path (ratio, and the largest
    differences of outputs and gradients).
    """
    import torch

    from models.config import ModelConfig
    from models.network import DirectionModel

    torch.manual_seed(0)
    x = torch.randn(batch, seq_len, n_features)
    cfgs = {
        "xlstm vanilla, all mLSTM": (),
        "xlstm vanilla, sLSTM at block 1": (1,) if num_blocks > 1 else (0,),
        "xlstm vanilla, all sLSTM": tuple(range(num_blocks)),
    }
    models_: dict[str, Any] = {}
    for name, slstm_at in cfgs.items():
        torch.manual_seed(0)
        models_[name] = DirectionModel(ModelConfig(n_features, embedding_dim, num_blocks, num_heads, slstm_at,
                                                   0.0, seq_len)).train()
    target = _n_params(models_["xlstm vanilla, all mLSTM"])
    hidden = min(range(8, 4 * embedding_dim + 1, 8),
                 key=lambda h: abs(_n_params(_lstm_net(n_features, h, num_blocks)) - target))
    torch.manual_seed(0)
    models_[f"nn.LSTM {num_blocks} layers x {hidden}"] = _lstm_net(n_features, hidden, num_blocks).train()
    fast_of = {FAST_CASES[0]: "xlstm vanilla, all mLSTM", FAST_CASES[1]: "xlstm vanilla, sLSTM at block 1"}
    fasts = {name: _fast_path(models_[ref], x) for name, ref in fast_of.items()}
    for name, fast in fasts.items():
        if fast is not None:
            models_[name] = fast["model"]
    if progress:
        progress(f"xlstm: {len(models_)} cases, {warmup}+{repeats} interleaved rounds")
    times = interleaved({name: functools.partial(_fwd_bwd, m, x) for name, m in models_.items()},
                        repeats=repeats, warmup=warmup)
    peak = matmul_peak(peak_n)
    cases = {}
    for name, m in models_.items():
        # The fast path does the vanilla model's work (its own count includes the zeros of its
        # block-diagonal products): rate it on the vanilla count.
        flops = model_flops(models_[fast_of[name]] if name in fast_of else m, x)
        if name.startswith("nn.LSTM"):
            flops += _lstm_cell_flops(m.lstm, batch, seq_len)
        s = summarize(times[name])
        cases[name] = {**s, "params": _n_params(m), "gflop": round(flops / 1e9, 3),
                       "gflops": round(flops / (s["median_ms"] / 1e3) / 1e9, 2),
                       "peak_share": flops / (s["median_ms"] / 1e3) / (peak["peak_gflops"] * 1e9)}
    vanilla = cases["xlstm vanilla, all mLSTM"]["median_ms"]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "batch": batch, "seq_len": seq_len,
                           "n_features": n_features,
                           "embedding_dim": embedding_dim, "num_blocks": num_blocks, "num_heads": num_heads,
                           "matmul": peak, "cases": cases, "repeats": repeats}
    fast = fasts[FAST_CASES[0]]
    if fast is not None:
        mixed = fasts[FAST_CASES[1]]
        out["fast"] = {"speedup": vanilla / cases[FAST_CASES[0]]["median_ms"],
                       "speedup_mixed": cases["xlstm vanilla, sLSTM at block 1"]["median_ms"]
                       / cases[FAST_CASES[1]]["median_ms"],
                       "max_abs_out_diff": max(fast["out_diff"], mixed["out_diff"]),
                       "max_abs_grad_diff": max(fast["grad_diff"], mixed["grad_diff"])}
        out["training_path_speedup"] = out["fast"]["speedup"]
    else:
        # evo trains through DirectionModel, i.e. exactly xlstm's vanilla path.
        out["training_path_speedup"] = 1.0
    return out


FAST_CASES = ("evo training path (models.fast_mlstm), all mLSTM", "evo training path, sLSTM at block 1")


def _fast_path(vanilla_model, x) -> dict[str, Any] | None:
    """evo's CPU training path (``models.fast_mlstm``) sharing ``vanilla_model``'s parameters, and
    its largest output and gradient differences from the vanilla path; None when
    ``models.fast_mlstm`` is absent."""
    try:
        from models.fast_mlstm import compare_with_vanilla, fast_model
    except ImportError:
        return None
    model = fast_model(vanilla_model)
    out_diff, grad_diff = compare_with_vanilla(vanilla_model, model, x)
    return {"model": model, "out_diff": out_diff, "grad_diff": grad_diff}


# ------------------------------------------------------------------------------------------------
# 4. the vectorbt backtest against backtesting.py


def expected_trades(signal: np.ndarray) -> list[tuple[int, int | None]]:
    """(entry bar, exit bar or None if still open) of each long position that a long/flat
    ``signal`` opens: decided at bar t's close, filled at bar t+1's open (``backtest_signals``'
    rule). Bars are row numbers of the signal's frame."""
    sig = np.asarray(signal)
    held = np.zeros(len(sig), dtype=np.int8)
    held[1:] = sig[:-1]
    trades, entry = [], None
    for i, h in enumerate(held):
        if h == 1 and entry is None:
            entry = i
        elif h != 1 and entry is not None:
            trades.append((entry, i))
            entry = None
    if entry is not None:
        trades.append((entry, None))
    return trades


def backtesting_py_run(ohlcv, signal: np.ndarray, costs, *, cash: float = 1e12) -> dict[str, Any]:
    """The same long/flat signal through backtesting.py, aligned with ``backtest_signals``.

    - Execution: backtesting.py fills an order placed in ``next()`` at bar t at bar t+1's open,
      like evo; its first ``next()`` is at bar 1, so one copy of the first bar is put in front
      (1 second earlier) to let the decision of the real bar 0 be made too.
    - Costs: fees and slippage per side both become a commission of ``fees + slippage`` of the
      traded value at the open, charged at entry and at exit (vectorbt multiplies slippage and
      fees: the two differ by ``fees * slippage`` = 2.5e-7 per side at 5 bps each).
    - Sizing: all-in: ``buy(size=1 - 1e-9)`` of equity, whole units; ``cash`` is large so the
      rounding to whole units is negligible. An open position is marked to the last close with no
      exit cost (``finalize_trades=False``), as vectorbt does.

    Returns the final equity as a multiple of the starting cash and the trades as
    ``(entry bar, exit bar or None)`` on the caller's bar numbering.
    """
    import pandas as pd
    from backtesting import Backtest, Strategy

    sig = np.asarray(signal)
    if (sig < 0).any():
        raise ValueError("backtesting_py_run compares long/flat signals only")
    frame = ohlcv[["open", "high", "low", "close"]].rename(columns=str.capitalize)
    first = frame.iloc[:1].copy()
    first.index = first.index - pd.Timedelta(seconds=1)
    frame = pd.concat([first, frame])
    padded = np.concatenate([[0], sig]).astype(np.int8)
    rate = costs.fees + costs.slippage

    class FollowSignal(Strategy):
        def init(self):
            pass

        def next(self):
            want = padded[len(self.data) - 1]
            if want == 1 and not self.position:
                self.buy(size=1 - 1e-9)
            elif want != 1 and self.position:
                self.position.close()

    import warnings

    import backtesting.backtesting as bt_module

    no_bar = [(bt_module, "_tqdm", lambda seq, **_: seq)]  # its progress bar would draw on stderr
    with warnings.catch_warnings(), _patched(no_bar):
        warnings.simplefilter("ignore")
        bt = Backtest(frame, FollowSignal, cash=cash, commission=lambda size, price: abs(size) * price * rate,
                      trade_on_close=False, exclusive_orders=False, finalize_trades=False)
        stats = bt.run()
    broker_trades = stats["_trades"]
    trades = [(int(e) - 1, int(x) - 1) for e, x in zip(broker_trades["EntryBar"], broker_trades["ExitBar"])]
    strategy = stats["_strategy"]
    open_trades = [(int(t.entry_bar) - 1, None) for t in strategy._broker.trades]
    return {"final_equity": float(stats["Equity Final [$]"]) / cash, "trades": trades + open_trades}


def bench_backtest(ohlcv, signal: np.ndarray, *, costs, periods_per_year: float, repeats: int = 5,
                   warmup: int = 1) -> dict[str, Any]:
    """``backtest_signals`` (vectorbt, warm) vs :func:`backtesting_py_run` on the same bars and
    signal: median wall times (interleaved), their ratio, trade lists and final equities."""
    from backtest import backtest_signals

    try:
        import backtesting  # noqa: F401
    except ImportError:
        return {"skipped": "backtesting.py is not installed (pip install backtesting into the venv)"}
    vbt_run = functools.partial(backtest_signals, ohlcv, signal, costs=costs, periods_per_year=periods_per_year)
    bp_run = functools.partial(backtesting_py_run, ohlcv, signal, costs)
    times = interleaved({"vectorbt": vbt_run, "backtesting.py": bp_run}, repeats=repeats, warmup=warmup)
    res, bp = vbt_run(), bp_run()
    want = expected_trades(signal)
    vbt_equity = 1.0 + res.total_return
    v, b = summarize(times["vectorbt"]), summarize(times["backtesting.py"])
    return {
        "bars": len(ohlcv), "signal_long_bars": int((np.asarray(signal) == 1).sum()),
        "vectorbt": v, "backtesting_py": b, "speedup": b["median_ms"] / v["median_ms"],
        "vectorbt_trades": int(res.trades), "backtesting_py_trades": len(bp["trades"]),
        "same_trades": bp["trades"] == want and len(want) == res.trades,
        "vectorbt_final_equity": vbt_equity, "backtesting_py_final_equity": bp["final_equity"],
        "equity_diff": abs(bp["final_equity"] - vbt_equity) / vbt_equity,
    }


def walk_forward_backtests(ds, budget) -> list[dict[str, Any]]:
    """The ``backtest_signals`` calls evo makes to score one genome of ``budget`` on ``ds``
    (``evo.evaluation.evaluate``): the risk tuning's ``risk_trials`` rounds over the validation segments, the
    validation segments once more (the tuned parameters' returns), then the whole test span (the
    folds' test ranges, contiguous) in one call; each span is the segment's bars plus the bar its
    last decision fills at, each traded from flat. The signals stand in for the genome's consensus:
    a fast/slow moving-average cross (long/flat) whose fast window changes with the trial, as the
    tuned threshold changes the consensus signal. Used where the overhead item did not run, so no
    real genome's calls were captured."""
    from backtest import CostModel
    from evo.evaluation.evaluate import fold_layout

    folds = fold_layout(ds, budget)
    ev = budget.evaluate
    costs = CostModel(ev.fees_bps, ev.slippage_bps)

    def call(start: int, stop: int, fast: int) -> dict[str, Any]:
        span = ds.bars.iloc[start: stop + 1]
        return {"ohlcv": span, "signal": _ma_cross(span, fast=fast, slow=30), "costs": costs,
                "periods_per_year": ds.periods_per_year}

    calls = [call(*f.val, 4 + trial % 12) for trial in range(max(ev.risk_trials, 1)) for f in folds]
    calls += [call(*f.val, 10) for f in folds]
    calls.append(call(folds[0].test[0], folds[-1].test[1], 10))
    return calls


def bench_walk_forward_backtest(calls: list[dict[str, Any]], *, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """One genome's whole walk-forward scoring (``calls``: the ``backtest_signals`` calls of
    :func:`walk_forward_backtests` or captured from a real ``evaluate_genome``) three ways,
    interleaved: ``backtest_signals`` as evo runs it (vectorbt's from-orders kernels), the same calls
    through ``Portfolio.from_signals`` (the path evo used before, and still uses with stops), and
    backtesting.py (:func:`backtesting_py_run`). Only the long/flat calls with evo's default rules
    (all of them unless the budget allows shorts or sets a breaker) are run, the others counted in
    ``skipped_calls``. Medians of the summed time per round; every call's trades and final equity
    compared across the engines."""
    from backtest import RiskRules, backtest_signals
    from backtest.portfolio import _backtest, _check_ohlcv, _check_signal

    try:
        import backtesting  # noqa: F401
    except ImportError:
        return {"skipped": "backtesting.py is not installed (pip install backtesting into the venv)"}
    every = calls
    calls = [c for c in every if c.get("risk", RiskRules()) == RiskRules() and (np.asarray(c["signal"]) >= 0).all()]
    if not calls:
        return {"skipped": "no long/flat call with the default risk rules to compare"}
    checked = [(*_check_ohlcv(c["ohlcv"]), _check_signal(c["signal"], c["ohlcv"])) for c in calls]

    def evo_path():
        return [backtest_signals(c["ohlcv"], c["signal"], costs=c["costs"], periods_per_year=c["periods_per_year"])
                for c in calls]

    def from_signals():
        return [_backtest(c["ohlcv"], o, cl, t, c["costs"], c["periods_per_year"], RiskRules(), engine="signals")
                for c, (o, cl, t) in zip(calls, checked)]

    def backtesting_py():
        return [backtesting_py_run(c["ohlcv"], c["signal"], c["costs"]) for c in calls]

    times = interleaved({"vectorbt": evo_path, "from_signals": from_signals, "backtesting.py": backtesting_py},
                        repeats=repeats, warmup=warmup)
    fast, ref = evo_path(), from_signals()
    same_engines = all(a.trades == b.trades and np.allclose(a.returns, b.returns, rtol=1e-9, atol=1e-12)
                       for a, b in zip(fast, ref))
    same_trades, equity_diff = True, 0.0
    for c, res, bp in zip(calls, fast, backtesting_py()):
        want = expected_trades(c["signal"])
        same_trades &= bp["trades"] == want and len(want) == res.trades
        equity_diff = max(equity_diff, abs(bp["final_equity"] - (1.0 + res.total_return)) / (1.0 + res.total_return))
    v, f, b = summarize(times["vectorbt"]), summarize(times["from_signals"]), summarize(times["backtesting.py"])
    return {
        "calls": len(calls), "skipped_calls": len(every) - len(calls), "bars": int(sum(len(c["ohlcv"]) for c in calls)),
        "test_span_bars": len(calls[-1]["ohlcv"]), "trades": int(sum(r.trades for r in fast)),
        "vectorbt": v, "from_signals": f, "backtesting_py": b,
        "speedup": b["median_ms"] / v["median_ms"], "speedup_vs_from_signals": f["median_ms"] / v["median_ms"],
        "per_call_ms": v["median_ms"] / len(calls), "from_signals_per_call_ms": f["median_ms"] / len(calls),
        "same_engines": same_engines, "same_trades": same_trades, "equity_diff": equity_diff,
    }


# ------------------------------------------------------------------------------------------------
# 5. start-up


def _python(code: str, *, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[float, str]:
    """Wall time of a fresh ``python -c code`` and its stdout; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


_PREDICT_IMPORTS = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import torch, xlstm
    t1 = time.perf_counter()
    from evo.cli import build_parser
    build_parser()
    # what `evo predict` imports on its way: the command, the bundle (+ safetensors, the stream),
    # the data reader, and lazily in Bundle.load/decide: models, features, backtest.consensus
    import evo.commands.predict, evo.deploy.bundle, evo.data, evo.pipeline.stream, safetensors.torch
    import models, features, backtest.consensus
    t2 = time.perf_counter()
    bad = sorted(m for m in ('deap', 'optuna', 'nevergrad', 'vectorbt') if m in sys.modules)
    print(json.dumps({"torch_xlstm_s": t1 - t0, "beyond_s": t2 - t1, "forbidden": bad}))
""")


def bench_startup(*, repeats: int = 5) -> dict[str, Any]:
    """Fresh-process wall times: ``python -m evo --help`` (median of ``repeats``), a bare
    ``python -c pass`` for reference, and the import time of ``evo predict``'s modules beyond
    ``import torch, xlstm`` (timed inside the process, median), with any of deap, optuna,
    nevergrad or vectorbt found in ``sys.modules`` after those imports."""
    help_s, bare_s, beyond, base, forbidden = [], [], [], [], set()
    for _ in range(repeats):  # interleaved
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "evo", "--help"], capture_output=True, cwd=ROOT, timeout=120)
        help_s.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"python -m evo --help failed: {proc.stderr[-500:]!r}")
        bare_s.append(_python("pass")[0])
        out = json.loads(_python(_PREDICT_IMPORTS)[1])
        beyond.append(out["beyond_s"])
        base.append(out["torch_xlstm_s"])
        forbidden.update(out["forbidden"])
    return {"help": summarize(help_s), "python_bare": summarize(bare_s),
            "predict_imports_beyond_torch_xlstm": summarize(beyond), "torch_xlstm_import": summarize(base),
            "predict_forbidden_modules": sorted(forbidden)}


# ------------------------------------------------------------------------------------------------
# 6. caches


def bench_feature_cache(bars, *, repeats: int = 3) -> dict[str, Any]:
    """``features.load_or_compute`` into an empty cache directory (compute + write) vs from a
    warm one (read + verify), interleaved, medians."""
    import features

    with tempfile.TemporaryDirectory(prefix="evo-bench-cache-") as tmp:
        warm_dir = Path(tmp) / "warm"
        features.load_or_compute(bars, warm_dir)
        counter = iter(range(10**6))

        def cold():
            features.load_or_compute(bars, Path(tmp) / f"cold{next(counter)}")

        times = interleaved({"cold": cold, "warm": lambda: features.load_or_compute(bars, warm_dir)},
                            repeats=repeats, warmup=0)
        size = next(warm_dir.glob("*.npz")).stat().st_size
    c, w = summarize(times["cold"]), summarize(times["warm"])
    return {"bars": len(bars), "cold": c, "warm": w, "speedup": c["median_ms"] / w["median_ms"],
            "file_mib": round(size / 2**20, 2)}


_FIRST_BACKTEST = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np, pandas as pd
    from backtest import CostModel, backtest_signals
    d = np.load(DATA)
    bars = pd.DataFrame({c: d[c] for c in ("open", "high", "low", "close", "volume")},
                        index=pd.DatetimeIndex(d["index_ns"].astype("datetime64[ns]")))
    costs = CostModel(float(d["fees_bps"]), float(d["slippage_bps"]))
    t_import = time.perf_counter()
    import vectorbt
    t1 = time.perf_counter()
    if MODE == "production":
        # backtest_signals as evo calls it: vectorbt's from-orders kernels (all cache=True)
        r = backtest_signals(bars, d["signal"], costs=costs, periods_per_year=float(d["ppy"]))
    else:
        # the same trades through Portfolio.from_signals (evo's path with stops): its simulator
        # is @njit without cache=True, so every process compiles it again
        from backtest import RiskRules
        from backtest.portfolio import _backtest, _check_ohlcv, _check_signal
        r = _backtest(bars, *_check_ohlcv(bars), _check_signal(d["signal"], bars), costs, float(d["ppy"]),
                      RiskRules(), engine="signals")
    equity = 1.0 + r.total_return
    t2 = time.perf_counter()
    print(json.dumps({"setup_s": t_import - t0, "import_vectorbt_s": t1 - t_import, "first_backtest_s": t2 - t1,
                      "equity": equity}))
""")


def bench_numba_cache(ohlcv, signal: np.ndarray, *, costs, periods_per_year: float,
                      repeats: int = 2) -> dict[str, Any]:
    """The first backtest of a fresh process, vectorbt already imported (timed apart), so the
    call compiles or loads its numba functions, with ``NUMBA_CACHE_DIR`` pointing at an empty
    directory (cold) vs at the directory the cold run filled (warm); each repeat uses a new empty
    directory, cold and warm alternate. Also the whole process's wall time.

    Two paths: ``production`` is ``backtest_signals`` as evo calls it (no stops: vectorbt's
    from-orders kernels, all cached); ``from_signals`` trades the same signal through
    ``Portfolio.from_signals`` (the path with stops, and evo's only one before), whose simulator
    numba cannot cache, so a warm process still compiles it. Both final equities are reported.
    """
    out: dict[str, Any] = {"bars": len(ohlcv)}
    with tempfile.TemporaryDirectory(prefix="evo-bench-numba-") as tmp:
        data = Path(tmp) / "span.npz"
        np.savez(data, index_ns=ohlcv.index.as_unit("ns").asi8, signal=np.asarray(signal, dtype=np.int8),
                 fees_bps=costs.fees_bps, slippage_bps=costs.slippage_bps, ppy=periods_per_year,
                 **{c: ohlcv[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")})
        for mode in ("production", "from_signals"):
            code = _FIRST_BACKTEST.replace("DATA", repr(str(data))).replace("MODE", repr(mode))
            cold, warm = defaultdict(list), defaultdict(list)
            equity = None
            for r in range(repeats):
                cache = Path(tmp) / f"numba-{mode}-{r}"
                cache.mkdir()
                for runs in (cold, warm):
                    wall, text = _python(code, env={"NUMBA_CACHE_DIR": str(cache)})
                    got = json.loads(text)
                    runs["first_backtest"].append(got["first_backtest_s"])
                    runs["import"].append(got["import_vectorbt_s"])
                    runs["process"].append(wall)
                    equity = got["equity"]
            c, w = summarize(cold["first_backtest"]), summarize(warm["first_backtest"])
            cp, wp = summarize(cold["process"]), summarize(warm["process"])
            out[mode] = {"cold_first_backtest": c, "warm_first_backtest": w,
                         "speedup": c["median_ms"] / w["median_ms"], "cold_process": cp, "warm_process": wp,
                         "process_speedup": cp["median_ms"] / wp["median_ms"], "final_equity": equity,
                         "import_vectorbt": summarize(cold["import"] + warm["import"])}
    return out


# ------------------------------------------------------------------------------------------------
# 7. memory


_CPU_SPACE = """
    embedding_dim = [16, 24, 32, 48]
    num_blocks = [1, 3]
    num_heads = [1, 2, 4]
    slstm_share = 0.3
    dropout = [0.0, 0.4]
    seq_len = [16, 24, 32]
    horizon = [1, 3, 5, 10]
    threshold = [0.36, 0.65]
    consensus = ["both", "either", "weighted"]
    max_features_a = 16
    max_features_b = 10
"""
_SMOKE_SPACE = """
    embedding_dim = [8, 16, 24]
    num_blocks = [1, 2]
    num_heads = [1, 2, 4]
    slstm_share = 0.5
    dropout = [0.0, 0.3]
    seq_len = [8, 12, 16]
    horizon = [1, 3, 5]
    threshold = [0.36, 0.6]
    consensus = ["both", "either", "weighted"]
    max_features_a = 8
    max_features_b = 6
"""


def memory_budgets(quick: bool = False) -> dict[str, dict[str, Any]]:
    """The two budgets of :func:`bench_memory`: ``short`` (the ``cpu`` preset's search space with
    less training: 2 epochs on at most 1000 windows, 3 folds, 10 risk trials) and ``tiny`` (the
    ``smoke`` space, 1 epoch on 128 windows, 2 folds, 2 risk trials). ``quick`` shrinks both."""
    short = dict(space=_CPU_SPACE, name="cpu", epochs=2, windows=1000, folds=3, risk=10)
    tiny = dict(space=_SMOKE_SPACE, name="smoke", epochs=1, windows=128, folds=2, risk=2)
    if quick:
        short = dict(tiny, windows=64)
        tiny = dict(tiny, windows=64)
    return {"short": short, "tiny": tiny}


def _budget_toml(b: dict[str, Any], *, population: int, generations: int) -> str:
    head = textwrap.dedent(f"""\
        description = "bench: {b['epochs']} epochs on <= {b['windows']} windows"
        device = "cpu"
        [search]
    """)
    tail = textwrap.dedent(f"""\
        [train]
        max_epochs = {b['epochs']}
        patience = {b['epochs']}
        batch_size = 64
        max_train_windows = {b['windows']}
        lr_trials = 1
        lr_trial_epochs = 1
        [evaluate]
        folds = {b['folds']}
        test_fraction = 0.3
        val_fraction = 0.15
        min_trades = 10
        risk_trials = {b['risk']}
        [ga]
        population = {population}
        generations = {generations}
    """)
    return head + textwrap.dedent(b["space"]).strip() + "\n" + tail


_GROWTH = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from evo.config import load_budget
    from evo.data import load_bars
    from evo.evaluation.evaluate import prepare_run_data
    from evo.search.ga import Search
    from evo.search.tasks import EvalContext
    from evo.search.store import RunStore

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    budget_path, data, out, generations = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), int(sys.argv[4])
    budget = load_budget(budget_path)
    bars, label = load_bars(data)
    ds, holdout = prepare_run_data(bars, label, budget, cache_dir=out / "cache")
    store = RunStore.create(out / "run", {"budget": budget.to_dict(), "data": data})
    points = [{"generation": None, "rss_mib": rss_mib(),
               "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "t": time.time()}]

    def progress(event):
        if event["kind"] == "checkpoint":
            points.append({"generation": event["generation"], "evaluated": event["evaluated"],
                           "rss_mib": rss_mib(),
                           "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                           "t": time.time()})

    Search(EvalContext(ds, budget, 0), store, progress=progress).run(generations)
    print(json.dumps(points))
""")


def _run_measured(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, float, str]:
    """Run a subprocess to the end; (wall seconds, peak RSS MiB of it and its children, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=cwd, env={**os.environ, **env})
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({proc.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout


def bench_memory(*, data: str | None = None, quick: bool = False, population: int = 4,
                 growth_generations: int = 4, growth_population: int = 2,
                 timeout: float = 3600) -> dict[str, Any]:
    """Peak RSS of ``python -m evo run`` (a fresh process, empty feature cache) on ``data`` (a CSV
    path; None = the demo data) with the ``short`` budget of :func:`memory_budgets`: generation 0
    of ``population`` genomes, then the holdout trade and the front; read from ``os.wait4``'s
    rusage. Then the RSS after each of ``growth_generations + 1`` generations of a ``tiny``
    search (``evo.search.ga.Search`` with a progress callback, in a fresh process)."""
    budgets = memory_budgets(quick)
    with tempfile.TemporaryDirectory(prefix="evo-bench-mem-") as tmp:
        tmp = Path(tmp)
        (tmp / "short.toml").write_text(_budget_toml(budgets["short"], population=population, generations=0))
        (tmp / "tiny.toml").write_text(_budget_toml(budgets["tiny"], population=growth_population,
                                                    generations=growth_generations))
        env = {"EVO_CACHE_DIR": str(tmp / "cache")}
        data_args = ["--data", data] if data else []
        wall, peak, _ = _run_measured([sys.executable, "-m", "evo", "run", "--budget", str(tmp / "short.toml"),
                                       *data_args, "--generations", "0", "--out", str(tmp / "run")],
                                      env=env, cwd=ROOT, timeout=timeout)
        gwall, gpeak, out = _run_measured([sys.executable, "-c", _GROWTH, str(tmp / "tiny.toml"), data or "",
                                           str(tmp / "growth"), str(growth_generations)],
                                          env=env, cwd=ROOT, timeout=timeout)
    points = json.loads(out.strip().splitlines()[-1])
    gens = [p for p in points if p["generation"] is not None]
    growth = gens[-1]["rss_mib"] - gens[0]["rss_mib"] if len(gens) > 1 else 0.0
    return {
        "data": Path(data).name if data else "demo (NVDA daily)",
        "search": {"population": population, "generations": 1, "wall_s": round(wall, 1),
                   "peak_rss_mib": round(peak, 1),
                   "budget": {k: v for k, v in budgets["short"].items() if k != "space"},
                   "space": budgets["short"]["name"]},
        "growth": {"population": growth_population, "generations": len(gens), "wall_s": round(gwall, 1),
                   "peak_rss_mib": round(gpeak, 1), "space": budgets["tiny"]["name"],
                   "budget": {k: v for k, v in budgets["tiny"].items() if k != "space"},
                   "rss_after_generation_mib": [round(p["rss_mib"], 1) for p in gens],
                   "rss_before_search_mib": round(points[0]["rss_mib"], 1),
                   "growth_first_to_last_mib": round(growth, 1),
                   "growth_per_generation_mib": round(growth / max(1, len(gens) - 1), 2)},
    }


# ------------------------------------------------------------------------------------------------
# 8. GPU


def bench_gpu() -> dict[str, Any]:
    """Only the fact whether CUDA is there: GPU figures are taken on a machine that has one."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "not measured (no GPU lent)"}
    return {"skipped": f"CUDA device {torch.cuda.get_device_name(0)} present; GPU benchmarks are not part "
                       "of this CPU suite yet"}


# ------------------------------------------------------------------------------------------------
# issue 16. batched training throughput


def _synthetic_split(n: int, seq_len: int, n_features: int, seed: int):
    """``n`` random windows (N, S, F) float32 with labels and returns that depend on them a little
    (so training does something): a stand-in for a fold's scaled windows."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, seq_len, n_features)).astype(np.float32)
    r = 0.01 * X[:, -1, 0] + 0.005 * rng.standard_normal(n)
    return X, np.digitize(r, [-0.004, 0.004]).astype(np.int64), r


def throughput_models(n_genomes: int = 6, seed: int = 0) -> list[dict[str, Any]]:
    """Both models of ``n_genomes`` random genomes of the ``cpu`` preset (``evo.genome.random_genome``
    with ``numpy.random.default_rng(seed)``; feature pools of 40 names each, only their number
    matters): each model's config as the genome evaluation builds it, its batch size and clip."""
    from evo.evaluation.evaluate import model_config
    from evo.genome import FeaturePools, random_genome
    from experiments import load_budget

    budget = load_budget("cpu")
    pools = FeaturePools(a=tuple(f"a{i}" for i in range(40)), b=tuple(f"b{i}" for i in range(40)))
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n_genomes):
        genome = random_genome(budget.search, pools, rng)
        for name, genes in (("a", genome.model_a), ("b", genome.model_b)):
            batch, clip = genes.training(budget.train.batch_size, budget.train.grad_clip)
            out.append({"genome": g, "model": name, "cfg": model_config(genes, genome.seq_len, "cpu"),
                        "batch_size": batch, "grad_clip": clip})
    return out


def _shape_text(cfg, batch: int) -> str:
    base = getattr(cfg, "base", cfg)
    kinds = "".join("s" if i in base.slstm_at else "m" for i in range(base.num_blocks))
    tfs = f" x{len(cfg.timeframes)} timeframes" if hasattr(cfg, "timeframes") else ""
    return (f"E{base.embedding_dim} {kinds} H{base.num_heads} S{base.seq_len} F{base.n_features} "
            f"proj {base.proj_factor:g} batch {batch} dropout {base.dropout:.2f}{tfs}")


def _training_flops(cfg, batch: int, train_windows: list[int], val_windows: int, epochs: int) -> int:
    """Matrix-product FLOPs of training the members (FlopCounterMode on xlstm's own model, the
    vanilla path: the work of the model, as item 3 rates the fast path): per epoch, forward +
    backward over each member's training windows and a forward pass over its validation windows."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from models.multi import build_model

    torch.manual_seed(0)
    model = build_model(cfg).train()
    x = torch.randn(batch, cfg.seq_len, cfg.n_features)
    fb = model_flops(model, x)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    fwd = counter.get_total_flops()
    return int(epochs * sum(n * fb / batch + val_windows * fwd / batch for n in train_windows))


def bench_throughput(*, n_genomes: int = 6, seed: int = 0, windows: int = 384, val_windows: int = 96,
                     epochs: int = 2, repeats: int = 2, warmup: int = 1, peak_n: int = 2048,
                     schedule_epochs: int | None = 4, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Batched vs one-at-a-time training of a genome's models (issue 16), one torch thread.

    For each model of ``n_genomes`` random ``cpu`` genomes (:func:`throughput_models`): the
    K = folds x (lr_trials + 1) models a genome evaluation trains of that shape (``cpu``: 3 x 3 = 9),
    each on its own synthetic data (fold f: ``windows x (folds + f) / (2 folds - 1)`` training
    windows, anchored folds grow; ``val_windows`` validation windows) with its own learning rate,
    ``epochs`` epochs each (patience as long: every member runs them all), trained
    ``models.batched.train_models`` (batched) and ``models.train.train_model`` one after the other
    (single), interleaved rounds; medians of wall and thread CPU time. Also the FLOPs of that
    training (:func:`_training_flops`) over the batched wall time, as a share of
    :func:`matmul_peak` at one thread.

    With ``schedule_epochs``, also the schedule the genome evaluation runs (the lr study on fold 0,
    ``lr_trials`` trials of ``lr_trial_epochs`` epochs, then every fold with the chosen lr for
    ``schedule_epochs`` epochs): ``models.tuning.tune_and_train`` (batched) vs ``tune_learning_rate``
    then ``train_model`` per fold (single), same data, interleaved."""
    import torch

    from evo.search.hardware import time_interleaved
    from experiments import load_budget
    from models.batched import train_models
    from models.config import TrainConfig
    from models.train import train_model

    budget = load_budget("cpu")
    folds, lr_trials = budget.evaluate.folds, budget.train.lr_trials
    lrs = [1e-3, 3e-4, 2e-3, 5e-4, 1.5e-3][:lr_trials + 1]
    sizes = [int(windows * (folds + f) / (2 * folds - 1)) for f in range(folds)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peak = matmul_peak(peak_n)
        rows = []
        for i, m in enumerate(throughput_models(n_genomes, seed)):
            cfg, batch = m["cfg"], m["batch_size"]
            tcfgs, trains, vals = [], [], []
            for f, n in enumerate(sizes):
                for j, lr in enumerate(lrs):
                    tcfgs.append(TrainConfig(lr=lr, max_epochs=epochs, patience=epochs, batch_size=batch,
                                             grad_clip=m["grad_clip"], seed=0))
                    trains.append(_synthetic_split(n, cfg.seq_len, cfg.n_features, 100 * i + 10 * f + j))
                    vals.append(_synthetic_split(val_windows, cfg.seq_len, cfg.n_features, 100 * i + 10 * f + 5))
            if progress:
                progress(f"throughput: genome {m['genome']} model {m['model'].upper()} ({_shape_text(cfg, batch)}), "
                         f"{len(tcfgs)} models, {warmup}+{repeats} interleaved rounds")
            batched, single = time_interleaved(
                [lambda: train_models(cfg, tcfgs, trains, vals),
                 lambda: [train_model(cfg, t, tr, va) for t, tr, va in zip(tcfgs, trains, vals)]],
                repeats=repeats, warmup=warmup)
            flops = _training_flops(cfg, batch, [n for n in sizes for _ in lrs], val_windows, epochs)
            b_s, s_s = statistics.median(batched.wall_ms) / 1e3, statistics.median(single.wall_ms) / 1e3
            b_cpu, s_cpu = statistics.median(batched.cpu_ms) / 1e3, statistics.median(single.cpu_ms) / 1e3
            sched = {}
            if schedule_epochs:
                sched = _bench_schedule(cfg, replace(tcfgs[0], lr=1e-3, max_epochs=schedule_epochs,
                                                     patience=schedule_epochs),
                                        trains[::len(lrs)], vals[::len(lrs)], lr_trials,
                                        min(budget.train.lr_trial_epochs, schedule_epochs), repeats, warmup)
            rows.append({**sched, "genome": m["genome"], "model": m["model"], "shape": _shape_text(cfg, batch),
                         "batched_s": round(b_s, 3), "single_s": round(s_s, 3), "ratio": s_s / b_s,
                         "batched_cpu_s": round(b_cpu, 3), "single_cpu_s": round(s_cpu, 3), "cpu_ratio": s_cpu / b_cpu,
                         "gflop": round(flops / 1e9, 2),
                         "peak_share": flops / b_s / (peak["peak_gflops"] * 1e9),
                         "single_peak_share": flops / s_s / (peak["peak_gflops"] * 1e9)})
    finally:
        torch.set_num_threads(before)
    genomes = []
    for g in sorted({r["genome"] for r in rows}):
        rs = [r for r in rows if r["genome"] == g]
        genomes.append({"genome": g, "ratio": sum(r["single_s"] for r in rs) / sum(r["batched_s"] for r in rs),
                        "cpu_ratio": sum(r["single_cpu_s"] for r in rs) / sum(r["batched_cpu_s"] for r in rs)})
    total_flops = sum(r["gflop"] for r in rows) * 1e9
    batched_s = sum(r["batched_s"] for r in rows)
    schedule = {}
    if schedule_epochs:
        schedule = {"schedule_epochs": schedule_epochs,
                    "schedule_trial_epochs": min(budget.train.lr_trial_epochs, schedule_epochs),
                    "schedule_ratio": sum(r["schedule_single_s"] for r in rows) / sum(r["schedule_batched_s"]
                                                                                       for r in rows)}
        for g in genomes:
            rs = [r for r in rows if r["genome"] == g["genome"]]
            g["schedule_ratio"] = (sum(r["schedule_single_s"] for r in rs) / sum(r["schedule_batched_s"] for r in rs))
    return {**schedule, "threads": 1, "genomes": n_genomes, "seed": seed, "folds": folds, "lr_trials": lr_trials,
            "members": len(sizes) * len(lrs), "train_windows": sizes, "val_windows": val_windows, "epochs": epochs,
            "repeats": repeats, "matmul": peak, "models": rows, "per_genome": genomes,
            "ratio": sum(r["single_s"] for r in rows) / batched_s,
            "cpu_ratio": sum(r["single_cpu_s"] for r in rows) / sum(r["batched_cpu_s"] for r in rows),
            "peak_share": total_flops / batched_s / (peak["peak_gflops"] * 1e9),
            "single_peak_share": total_flops / sum(r["single_s"] for r in rows) / (peak["peak_gflops"] * 1e9)}


def _bench_schedule(cfg, tcfg, trains, vals, n_trials: int, trial_epochs: int, repeats: int,
                    warmup: int) -> dict[str, Any]:
    """The genome evaluation's schedule for one model (see :func:`bench_throughput`), batched by
    ``tune_and_train`` vs one model at a time; medians in seconds."""
    from evo.search.hardware import time_interleaved
    from models.train import train_model
    from models.tuning import tune_and_train, tune_learning_rate

    def single():
        lr, _ = tune_learning_rate(cfg, replace(tcfg, max_epochs=trial_epochs), trains[0], vals[0],
                                   n_trials=n_trials, seed=0)
        return [train_model(cfg, replace(tcfg, lr=lr), tr, va) for tr, va in zip(trains, vals)]

    batched, one = time_interleaved(
        [lambda: tune_and_train(cfg, tcfg, trains, vals, n_trials=n_trials, trial_epochs=trial_epochs, seed=0),
         single], repeats=repeats, warmup=warmup)
    b_s, s_s = statistics.median(batched.wall_ms) / 1e3, statistics.median(one.wall_ms) / 1e3
    return {"schedule_batched_s": round(b_s, 3), "schedule_single_s": round(s_s, 3), "schedule_ratio": s_s / b_s}


_GPH: dict[str, Any] = {}   # a worker process's dataset and budget (bench_genomes_per_hour)


def _gph_init(budget_name: str, bars_rows: int | None) -> None:
    import torch

    from evo.data import load_bars
    from evo.evaluation.dataset import prepare_run_data
    from experiments import load_budget

    torch.set_num_threads(1)
    bars, label = load_bars(None)
    if bars_rows:
        bars = bars.iloc[-bars_rows:]
    budget = load_budget(budget_name)
    _GPH.update(budget=budget, ds=prepare_run_data(bars, label, budget, cache_dir=None)[0])


def _gph_evaluate(genome_dict: dict[str, Any]) -> tuple[float, str | None]:
    """Evaluate one genome in this process (seconds, error or None)."""
    from evo.errors import GenomeError
    from evo.evaluation.evaluate import evaluate_genome
    from evo.genome import Genome

    t0 = time.perf_counter()
    try:
        evaluate_genome(Genome.from_dict(genome_dict), _GPH["ds"], _GPH["budget"], seed=0)
        err = None
    except GenomeError as exc:
        err = str(exc)
    return time.perf_counter() - t0, err


def bench_genomes_per_hour(*, n_genomes: int = 6, seed: int = 0, budget_name: str = "cpu",
                           bars_rows: int | None = None, workers: tuple[int, ...] = (1, 2),
                           single: bool = True, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Genomes judged per hour, end to end (issue 16 item 3): ``evaluate_genome`` on the embedded
    data at the ``budget_name`` preset, ``n_genomes`` random genomes of its space
    (``numpy.random.default_rng(seed)``), one torch thread. Each genome is evaluated with its
    folds and learning-rate trials trained batched and one model at a time (``EVO_BATCHED=0``),
    the two back to back, the order alternating from genome to genome (same machine load); genomes
    per hour = 3600 x genomes / their summed seconds. Then the same genomes, batched, on a pool of
    ``w`` worker processes for each ``w`` in ``workers`` (each one thread, started and warmed by
    one untimed evaluation first, as a running search keeps them): genomes per hour of the pool's
    wall time. ``single=False``: batched only (sizing a preset: seconds per genome)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from evo.genome import random_genome
    from models.batched import ENV_SWITCH

    before_env, before_threads = os.environ.get(ENV_SWITCH), torch.get_num_threads()
    _gph_init(budget_name, bars_rows)
    ds, budget = _GPH["ds"], _GPH["budget"]
    rng = np.random.default_rng(seed)
    genomes = [random_genome(budget.search, ds.pools, rng).to_dict() for _ in range(n_genomes + 1)]
    warm, genomes = genomes[0], genomes[1:]
    rows = []
    try:
        _gph_evaluate(warm)   # first-use costs (vectorbt's compile, autograd, Optuna) paid untimed
        for i, gd in enumerate(genomes):
            order = (("1", "0") if i % 2 == 0 else ("0", "1")) if single else ("1",)
            row: dict[str, Any] = {"genome": i}
            for flag in order:
                os.environ[ENV_SWITCH] = flag
                secs, err = _gph_evaluate(gd)
                row["batched_s" if flag == "1" else "single_s"] = round(secs, 2)
                if err:
                    row["error"] = err
            blocks = [gd["model_a"], gd["model_b"]]
            row["shape"] = " | ".join(f"E{m['embedding_dim']} x{m['num_blocks']} sLSTM at {m['slstm_at']}"
                                      for m in blocks) + f", {gd['seq_len']} bars"
            if single:
                row["ratio"] = row["single_s"] / row["batched_s"]
            rows.append(row)
            if progress:
                progress(f"genomes per hour: genome {i}: batched {row['batched_s']} s, one at a time "
                         f"{row.get('single_s', '-')} s")
    finally:
        if before_env is None:
            os.environ.pop(ENV_SWITCH, None)
        else:
            os.environ[ENV_SWITCH] = before_env
        torch.set_num_threads(before_threads)
    batched_s = sum(r["batched_s"] for r in rows)
    single_s = sum(r["single_s"] for r in rows) if single else float("nan")
    pools = {}
    for w in workers:
        with ProcessPoolExecutor(max_workers=w, mp_context=mp.get_context("spawn"), initializer=_gph_init,
                                 initargs=(budget_name, bars_rows)) as pool:
            list(pool.map(_gph_evaluate, [warm] * w))   # every worker started and warmed, untimed
            t0 = time.perf_counter()
            list(pool.map(_gph_evaluate, genomes))
            wall = time.perf_counter() - t0
        pools[str(w)] = {"wall_s": round(wall, 2), "genomes_per_hour": 3600 * len(genomes) / wall}
        if progress:
            progress(f"genomes per hour: {w} worker(s): {len(genomes)} genomes in {wall:.0f} s")
    return {"budget": budget_name, "data": ds.label, "bars": ds.n_bars,
            "genomes": n_genomes, "seed": seed, "threads": 1, "cpus": os.cpu_count(), "rows": rows,
            "batched_s": round(batched_s, 2), "single_s": round(single_s, 2) if single else None,
            "batched_per_hour": 3600 * len(rows) / batched_s, "mean_batched_s": batched_s / len(rows),
            **({"single_per_hour": 3600 * len(rows) / single_s, "ratio": single_s / batched_s} if single else {}),
            "workers": pools,
            **({"workers_ratio": pools[str(max(workers))]["genomes_per_hour"] / pools[str(min(workers))]["genomes_per_hour"]}
               if len(pools) > 1 else {})}


MLSTM_CELL_SHAPES = ((64, 2, 16, 32), (64, 2, 24, 32), (64, 4, 32, 16), (64, 1, 32, 64), (64, 2, 32, 64),
                     (128, 4, 24, 32))  # (batch, heads, steps, head width) of cpu-preset mLSTM cells


def bench_mlstm_kernels(*, shapes=MLSTM_CELL_SHAPES, repeats: int = 9, warmup: int = 1) -> dict[str, Any]:
    """The mLSTM cell, forward + backward, one thread: ``models.fast_mlstm._cell`` (evo's, all steps:
    what every block but the last runs) vs NX-AI ``mlstm_kernels``' pure-PyTorch backends
    (``parallel--native_autograd``/``native_custbw``, ``chunkwise--native_autograd``/``native_custbw``
    with chunk 8) on the same q, k, v and gates, interleaved; medians in ms and the largest output
    difference from evo's cell (float32)."""
    import math

    import torch

    from evo.search.hardware import time_interleaved
    from models.fast_mlstm import _cell

    try:
        from mlstm_kernels.torch import get_mlstm_kernel
    except ImportError:
        return {"skipped": "mlstm_kernels is not installed"}
    kernels = {"parallel native_autograd": ("parallel--native_autograd", {}),
               "parallel native_custbw": ("parallel--native_custbw", {}),
               "chunkwise native_autograd (chunk 8)": ("chunkwise--native_autograd", {"chunk_size": 8}),
               "chunkwise native_custbw (chunk 8)": ("chunkwise--native_custbw", {"chunk_size": 8})}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for B, NH, S, DH in shapes:
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(B, NH, S, DH, generator=g, requires_grad=True) for _ in range(3))
            i, f = (torch.randn(B, NH, S, generator=g, requires_grad=True) for _ in range(2))
            P = B * NH

            def evo_cell(q=q, k=k, v=v, i=i, f=f, B=B, NH=NH, S=S, DH=DH, P=P):
                v1 = torch.cat([v, v.new_ones(B, NH, S, 1)], dim=-1)  # evo's layer makes this in its product
                return _cell(q.reshape(P, S, DH), (k / math.sqrt(DH)).reshape(P, S, DH), v1.reshape(P, S, DH + 1),
                             i.reshape(P, S), f.reshape(P, S), False).view(B, NH, S, DH)

            fns = {"evo (models.fast_mlstm)": evo_cell}
            for name, (key, kw) in kernels.items():
                fns[name] = (lambda fn=get_mlstm_kernel(key), kw=kw, q=q, k=k, v=v, i=i, f=f: fn(q, k, v, i, f, **kw))
            with torch.no_grad():
                ref = evo_cell()
                diffs = {name: float((fn() - ref).abs().max()) for name, fn in fns.items()}

            def fwd_bwd(fn):
                return lambda: fn().sum().backward()

            times = time_interleaved([fwd_bwd(fn) for fn in fns.values()], repeats=repeats, warmup=warmup)
            med = {name: statistics.median(t.wall_ms) for name, t in zip(fns, times)}
            best = min((n for n in med if n != "evo (models.fast_mlstm)"), key=med.get)
            out.append({"shape": [B, NH, S, DH], "ms": {n: round(v, 3) for n, v in med.items()},
                        "max_abs_diff": diffs, "best_kernel": best,
                        "evo_speedup_vs_best_kernel": med[best] / med["evo (models.fast_mlstm)"]})
    finally:
        torch.set_num_threads(before)
    import importlib.metadata

    total = {n: sum(r["ms"][n] for r in out) for n in out[0]["ms"]}
    return {"version": importlib.metadata.version("mlstm_kernels"), "shapes": out, "total_ms": total,
            "repeats": repeats,
            "evo_speedup_vs_best_kernel": min(v for n, v in total.items() if not n.startswith("evo"))
            / total["evo (models.fast_mlstm)"]}


# ------------------------------------------------------------------------------------------------
# the suite


def _read_bars(path: Path):
    from evo.data import read_csv

    return read_csv(path)


def run_suite(*, quick: bool = False, only: tuple[str, ...] = ITEMS, data_dir: Path | str = DEFAULT_DATA_DIR,
              progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run the selected items (``ITEMS``) and return the report: machine facts, the load average
    before and after each item, and each item's result (an item that raises is recorded with
    its error; the suite goes on). ``data_dir`` holds the 1-minute file (``MINUTE_FILE``)."""
    data_dir = Path(data_dir)
    say = progress or (lambda msg: None)
    report: dict[str, Any] = {"quick": quick, "machine": machine_facts(), "load_start": load_average(),
                              "items": {}, "load": {}}
    shared: dict[str, Any] = {}

    def item(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in only:
            return
        say(f"{name} ...")
        before, t0 = load_average(), time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it never stops the suite
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        report["items"][name] = result
        report["load"][name] = {"before": before, "after": load_average()}
        say(f"{name} done in {result['wall_s']} s")

    def overhead():
        import torch

        from evo.data import load_bars
        from evo.evaluation.dataset import prepare_run_data

        bars, label = load_bars(None)
        budget = overhead_budget(quick)
        t0 = time.perf_counter()
        ds, _ = prepare_run_data(bars, label, budget, cache_dir=None)
        features_s = time.perf_counter() - t0
        genome = overhead_genome(ds, budget)
        default, runs = torch.get_num_threads(), {}
        warmup_s = _warm_up(ds)
        # Untimed: one evaluation on the quick budget, so first-use costs (autograd, Optuna,
        # nevergrad, vectorbt's accessors) are paid before the timed ones, as in a running search.
        from evo.evaluation.evaluate import evaluate_genome

        evaluate_genome(genome, ds, overhead_budget(quick=True))
        try:
            for threads in sorted({default, 1}, reverse=True):
                torch.set_num_threads(threads)
                res = bench_overhead(ds, budget, genome, warm_up=False)
                shared.setdefault("last_backtest", res.pop("last_backtest"))
                shared.setdefault("genome_backtests", res.pop("genome_backtests"))
                runs[str(threads)] = res
            torch.set_num_threads(1)  # as a search runs its genomes (one thread per worker)
            typical = bench_overhead(ds, budget, typical_genome(ds, budget), warm_up=False)
            typical.pop("last_backtest"), typical.pop("genome_backtests")
        finally:
            torch.set_num_threads(default)
        first = runs[str(default)]
        step = bench_optimizer_step(genome)
        steps = first["calls"].get("optimizer step", 0)
        saving_ms = statistics.mean(m["adamw_default"] - m["adamw_fused"] + m["clip_default"] - m["clip_foreach"]
                                    for m in step.values())
        return {"runs": runs, "typical": typical, "optimizer_step": step, "steps": steps, "fused_saving_ms": saving_ms,
                "default_threads": default, "data": label, "bars": ds.n_bars,
                "budget": budget.name, "genome": first["genome"], "warmup_s": round(warmup_s, 3),
                "features_once_s": round(features_s, 3), "features_share_of_genome": features_s / first["total_s"]}

    def genome_backtests() -> tuple[list[dict[str, Any]], str]:
        if "genome_backtests" not in shared:
            shared["genome_backtests"], shared["backtests_source"] = _fallback_walk_forward(quick)
        return shared["genome_backtests"], shared.get("backtests_source", "captured")

    def last_backtest() -> dict[str, Any]:
        return shared.get("last_backtest") or genome_backtests()[0][-1]

    def backtest_item():
        calls, source = genome_backtests()
        res = bench_walk_forward_backtest(calls, repeats=3 if quick else 7)
        if "skipped" in res:
            return res
        res["source"] = source
        lb = last_backtest()
        res["test_span"] = bench_backtest(lb["ohlcv"], lb["signal"], costs=lb["costs"],
                                          periods_per_year=lb["periods_per_year"], repeats=3 if quick else 7)
        minute = data_dir / MINUTE_FILE
        if not quick and minute.exists():
            from backtest import CostModel, periods_per_year

            bars = _read_bars(minute)
            span = bars.iloc[-int(0.3 * 0.8 * len(bars)):]  # the cpu budget's test span: 30 % of the 80 % searched
            res["minute"] = bench_backtest(span, _ma_cross(span), costs=CostModel(5.0, 5.0),
                                           periods_per_year=periods_per_year(bars.index), repeats=5)
        return res

    def xlstm_item():
        import torch

        default = torch.get_num_threads()
        runs = {}
        for threads in sorted({default, 1}, reverse=True):
            if quick:
                runs[str(threads)] = bench_xlstm(batch=8, seq_len=16, embedding_dim=16, num_blocks=2, num_heads=2,
                                                 repeats=2, peak_n=256, threads=threads, progress=say)
            else:
                runs[str(threads)] = bench_xlstm(repeats=7, threads=threads, progress=say)
        return {"default_threads": default, "runs": runs}

    def caches():
        minute = data_dir / MINUTE_FILE
        from evo.data import load_bars

        bars = _read_bars(minute) if (minute.exists() and not quick) else load_bars(None)[0]
        lb = last_backtest()
        return {"features": bench_feature_cache(bars, repeats=2 if quick else 3),
                "numba": bench_numba_cache(lb["ohlcv"], lb["signal"], costs=lb["costs"],
                                           periods_per_year=lb["periods_per_year"], repeats=1 if quick else 2)}

    def memory():
        minute = data_dir / MINUTE_FILE
        if quick:
            return bench_memory(quick=True, population=2, growth_generations=1, growth_population=2)
        if not minute.exists():
            return {"skipped": f"{minute} is not there"}
        return bench_memory(data=str(minute))

    item("overhead", overhead)
    item("multifidelity", bench_multifidelity_item)
    item("xlstm", xlstm_item)
    item("backtest", backtest_item)
    item("startup", lambda: bench_startup(repeats=2 if quick else 7))
    item("caches", caches)
    item("memory", memory)
    item("gpu", bench_gpu)
    item("throughput", lambda: throughput_item(quick, say))
    report["load_end"] = load_average()
    return report


def throughput_item(quick: bool, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Issue 16: :func:`bench_throughput` (3 genomes, no schedule; quick: 2 genomes, tiny data),
    :func:`bench_mlstm_kernels` (the cell against NX-AI's mlstm_kernels) and
    :func:`bench_genomes_per_hour` (end to end; quick: 2 smoke genomes on 1,500 bars, one worker)."""
    if quick:
        res = bench_throughput(n_genomes=2, windows=64, val_windows=32, epochs=1, repeats=1, warmup=0, peak_n=256,
                               schedule_epochs=2, progress=progress)
        res["mlstm_kernels"] = bench_mlstm_kernels(shapes=((8, 2, 16, 16),), repeats=1, warmup=0)
        res["end_to_end"] = bench_genomes_per_hour(n_genomes=2, budget_name="smoke", bars_rows=1500, workers=(1,),
                                                   progress=progress)
    else:
        # the end-to-end figure is the target; the training-only detail on 3 genomes keeps the item ~15 min
        res = bench_throughput(n_genomes=3, schedule_epochs=None, progress=progress)
        res["mlstm_kernels"] = bench_mlstm_kernels()
        res["end_to_end"] = bench_genomes_per_hour(progress=progress)
    return res


def bench_multifidelity_item() -> dict[str, Any]:
    """Item 2 from the last run of ``python -m experiments.search_quality --part multifidelity``
    (``docs/experiments/multifidelity.json``): two searches of several minutes each, too long to
    repeat on every bench run."""
    path = ROOT / "docs" / "experiments" / "multifidelity.json"
    if not path.exists():
        return {"skipped": f"{path} is not there: run python -m experiments.search_quality --part multifidelity"}
    from experiments.search_quality import bench_multifidelity

    exp = json.loads(path.read_text())
    mf = bench_multifidelity(quick=False)
    return {**mf, "side_wall_s": mf["wall_s"], "source": "docs/experiments/multifidelity.json",
            "when": exp.get("when"), "machine": exp.get("machine")}


def _ma_cross(bars, fast: int = 10, slow: int = 30) -> np.ndarray:
    """A deterministic long/flat int8 signal: long while the fast moving average of the close is
    above the slow one; the last bar flat (its decision would fill after the span)."""
    close = bars["close"]
    signal = (close.rolling(fast).mean() > close.rolling(slow).mean()).to_numpy().astype(np.int8)
    signal[-1] = 0
    return signal


def _fallback_walk_forward(quick: bool) -> tuple[list[dict[str, Any]], str]:
    """Without the overhead item: :func:`walk_forward_backtests` for the overhead budget on the demo
    data (no genome is trained), and a description of where the calls come from."""
    from evo.data import load_bars
    from evo.evaluation.dataset import prepare_run_data

    bars, label = load_bars(None)
    budget = overhead_budget(quick)
    ds, _ = prepare_run_data(bars, label, budget, cache_dir=None)
    return walk_forward_backtests(ds, budget), (
        f"budget `{budget.name}`'s folds on {label}, moving-average-cross signals standing in for a genome's")


# ------------------------------------------------------------------------------------------------
# the table


