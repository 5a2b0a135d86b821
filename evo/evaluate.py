"""Genome -> fitness: the pure glue between features, models and the backtest.

For each walk-forward fold (chronological, purged by the label horizon; see
:func:`backtest.walk_forward_folds`) both models are trained on the fold's training rows, stopped
early on its validation segment (which lies before the test period), and predict the fold's test
bars. The test folds are contiguous, so their predictions form one out-of-sample span; the
consensus of the two models' probabilities becomes one signal over it, traded by vectorbt with
fees and slippage, the signal at a bar's close filling at the next bar's open. The objectives are
the annualised Sharpe ratio and max drawdown of that span: **walk-forward out-of-sample**.

The learning rate of each model is picked per genome by an Optuna study on fold 0's validation
segment only (never a test fold).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from evo.config import Budget
from evo.errors import DataError, GenomeError
from evo.genome import FeaturePools, Genome, ModelGenes

log = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Dataset:
    """Bars and their feature matrix, with the walk-forward layout shared by every genome.

    ``first_bar`` is the first decision bar any genome of the space can use: the catalog's
    longest warm-up plus the longest window, so every genome is judged on the same test bars.
    """

    bars: pd.DataFrame
    features: pd.DataFrame
    label: str
    data_hash: str
    pools: FeaturePools
    warmup: dict[str, int]
    first_bar: int
    periods_per_year: float

    @property
    def n_bars(self) -> int:
        return len(self.bars)


def prepare_dataset(bars: pd.DataFrame, label: str, budget: Budget, *, cache_dir=None) -> Dataset:
    """Compute (or load from cache) the feature matrix and fix the layout for ``budget``.

    Raises DataError when the data are too short for the budget's windows, horizon and folds,
    saying how many bars are needed.
    """
    import features as F
    from backtest import bars_needed, periods_per_year

    usable = set(F.usable_features(bars))
    pools = FeaturePools(
        a=tuple(n for n in F.model_a_features() if n in usable),
        b=tuple(n for n in F.model_b_features() if n in usable),
    )
    warmup = {s.name: int(s.warmup_bars) for s in F.catalog()}
    space = budget.search
    worst_warmup = max(warmup[n] for n in pools.a + pools.b)
    first_bar = worst_warmup + max(space.seq_len) - 1
    ev = budget.evaluate
    need = bars_needed(n_folds=ev.folds, horizon=max(space.horizon), first_bar=first_bar,
                       test_fraction=ev.test_fraction, val_fraction=ev.val_fraction)
    if len(bars) < need:
        raise DataError(
            f"{label}: {len(bars)} bars are too few for budget {budget.name!r} "
            f"(windows up to {max(space.seq_len)}, horizon up to {max(space.horizon)}, {ev.folds} folds, "
            f"{worst_warmup} bars of indicator warm-up): needs at least {need}"
        )
    feats = F.load_or_compute(bars, cache_dir)
    return Dataset(bars=bars, features=feats, label=label, data_hash=F.data_hash(bars)[:16], pools=pools,
                   warmup=warmup, first_bar=first_bar, periods_per_year=periods_per_year(bars.index))


@dataclass(frozen=True)
class EvalResult:
    """What one genome scored. Sharpe and drawdown are walk-forward out-of-sample figures."""

    sharpe: float                 # annualised, over the concatenated test folds, after costs
    max_drawdown: float           # positive fraction: 0.23 is a 23 % drawdown
    total_return: float           # fraction over the test span
    trades: int
    exposure: float               # fraction of test bars in the market
    traded: bool
    enough_trades: bool           # trades >= the budget's min_trades; False cannot enter the front
    accuracy_a: float             # direction accuracy (3 classes) of model A on the test folds
    accuracy_b: float
    lr_a: float
    lr_b: float
    test_start: str               # ISO time of the first / last out-of-sample bar
    test_end: str
    test_bars: int
    seconds: float
    returns: list[float] = field(repr=False)   # per-bar out-of-sample strategy returns

    def objectives(self) -> tuple[float, float]:
        """(Sharpe ↑, max drawdown ↓) for NSGA-II. A genome with too few trades keeps its own
        non-positive Sharpe and gets the worst drawdown, so it cannot dominate a trading one."""
        if not self.enough_trades:
            return (min(self.sharpe, 0.0), 1.0)
        return (self.sharpe, self.max_drawdown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        return cls(**d)


@dataclass(frozen=True)
class ModelRun:
    """One trained model of a fold, and everything needed to run it again."""

    genes: ModelGenes
    scaler: Any
    model: Any
    dead_zone: float


def model_config(genes: ModelGenes, seq_len: int, device: str):
    from models import ModelConfig, pick_backend

    return ModelConfig(n_features=len(genes.features), embedding_dim=genes.embedding_dim,
                       num_blocks=genes.num_blocks, num_heads=genes.num_heads,
                       slstm_at=tuple(genes.slstm_at), dropout=genes.dropout, seq_len=seq_len,
                       backend=pick_backend() if device == "cuda" else "vanilla")


def _segment(values: np.ndarray, close: np.ndarray, ends: np.ndarray, seq_len: int, horizon: int,
             scaler, dead_zone: float | None):
    from models import forward_returns, make_labels, make_windows

    X = make_windows(scaler.transform(values), ends, seq_len)
    r = forward_returns(close, ends, horizon)
    y = make_labels(r, dead_zone) if dead_zone is not None else None
    return X, y, r


def train_pair_model(genes: ModelGenes, g: Genome, ds: Dataset, train: tuple[int, int],
                     val: tuple[int, int], budget: Budget, *, lr: float | None, seed: int,
                     device: str) -> tuple[ModelRun, float]:
    """Train one model of the pair on decision bars ``train`` (early-stopped on ``val``).

    The scaler and the label dead zone are fitted on the training rows only. With ``lr=None``
    an Optuna study picks the learning rate on ``val``. Returns the run and the lr used.
    """
    from models import TrainConfig, fit_dead_zone, fit_scaler, forward_returns, train_model

    tb = budget.train
    values = ds.features[list(genes.features)].to_numpy(dtype=np.float64)
    close = ds.bars["close"].to_numpy()
    ends_train = np.arange(max(train[0], train[1] - tb.max_train_windows), train[1])
    ends_val = np.arange(*val)
    # Scaler: rows seen by the training windows only (all at or before the last training bar).
    scaler = fit_scaler(values[ends_train[0] - g.seq_len + 1: ends_train[-1] + 1])
    dead_zone = fit_dead_zone(forward_returns(close, ends_train, g.horizon))
    tr = _segment(values, close, ends_train, g.seq_len, g.horizon, scaler, dead_zone)
    va = _segment(values, close, ends_val, g.seq_len, g.horizon, scaler, dead_zone)
    cfg = model_config(genes, g.seq_len, device)
    base = TrainConfig(lr=lr or 1e-3, max_epochs=tb.max_epochs, patience=tb.patience,
                       batch_size=tb.batch_size, weight_decay=tb.weight_decay, grad_clip=tb.grad_clip,
                       return_loss_weight=tb.return_loss_weight, seed=seed, device=device)
    if lr is None:
        from dataclasses import replace

        from models.tuning import tune_learning_rate

        lr, _ = tune_learning_rate(cfg, replace(base, max_epochs=tb.lr_trial_epochs), tr, va,
                                   n_trials=tb.lr_trials, seed=seed)
        base = replace(base, lr=lr)
    result = train_model(cfg, base, tr, va)
    return ModelRun(genes=genes, scaler=scaler, model=result.model, dead_zone=dead_zone), float(lr)


def predict_segment(run: ModelRun, ds: Dataset, ends: np.ndarray, seq_len: int,
                    horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 3) of ``run`` at decision bars ``ends``, and the true labels where the
    label's horizon lies inside the data (-1 elsewhere)."""
    from models import forward_returns, make_labels, make_windows, predict_proba

    values = ds.features[list(run.genes.features)].to_numpy(dtype=np.float64)
    X = make_windows(run.scaler.transform(values), ends, seq_len)
    probs = predict_proba(run.model, X)
    close = ds.bars["close"].to_numpy()
    has_label = ends + horizon < len(close)
    y = np.full(len(ends), -1, dtype=np.int64)
    if has_label.any():
        y[has_label] = make_labels(forward_returns(close, ends[has_label], horizon), run.dead_zone)
    return probs, y


@dataclass(frozen=True)
class WalkForward:
    """Out-of-sample predictions of both models over the concatenated test folds."""

    folds: list
    ends: np.ndarray          # decision bars, (N,) int
    p_a: np.ndarray           # (N, 3) float64, class order down/flat/up
    p_b: np.ndarray
    y_a: np.ndarray           # (N,) true labels under each fold's dead zone, -1 where unknown
    y_b: np.ndarray
    lr_a: float
    lr_b: float


def walk_forward_predictions(g: Genome, ds: Dataset, budget: Budget, *, seed: int = 0, device: str = "cpu",
                             progress: ProgressFn | None = None) -> WalkForward:
    """Train both models on each fold's training rows and predict its test bars.

    Fold k's predictions depend only on bars before its test segment (training, validation,
    scaler, dead zone) and on the windows ending at each test bar: bars after a test bar never
    reach its prediction.
    """
    import torch

    from backtest import walk_forward_folds

    ev = budget.evaluate
    folds = walk_forward_folds(ds.n_bars, n_folds=ev.folds, horizon=max(budget.search.horizon),
                               first_bar=ds.first_bar, test_fraction=ev.test_fraction,
                               val_fraction=ev.val_fraction)
    lrs: dict[str, float | None] = {"a": None, "b": None}
    probs: dict[str, list] = {"a": [], "b": []}
    labels: dict[str, list] = {"a": [], "b": []}
    for k, fold in enumerate(folds):
        for name, genes in (("a", g.model_a), ("b", g.model_b)):
            if progress:
                progress(f"fold {k + 1}/{len(folds)} model {name.upper()}")
            try:
                run, lrs[name] = train_pair_model(genes, g, ds, fold.train, fold.val, budget,
                                                  lr=lrs[name], seed=seed, device=device)
            except torch.cuda.OutOfMemoryError as exc:
                raise GenomeError(f"out of memory: {exc}") from None
            p, y = predict_segment(run, ds, np.arange(*fold.test), g.seq_len, g.horizon)
            probs[name].append(p)
            labels[name].append(y)
    wf = WalkForward(
        folds=folds, ends=np.concatenate([np.arange(*f.test) for f in folds]),
        p_a=np.concatenate(probs["a"]), p_b=np.concatenate(probs["b"]),
        y_a=np.concatenate(labels["a"]), y_b=np.concatenate(labels["b"]),
        lr_a=float(lrs["a"]), lr_b=float(lrs["b"]),
    )
    if not (np.isfinite(wf.p_a).all() and np.isfinite(wf.p_b).all()):
        raise GenomeError("a model produced non-finite probabilities")
    return wf


def evaluate_genome(g: Genome, ds: Dataset, budget: Budget, *, seed: int = 0, device: str = "cpu",
                    progress: ProgressFn | None = None) -> EvalResult:
    """Train and backtest ``g`` walk-forward. Raises GenomeError when the genome cannot be
    evaluated (the caller records it and the run goes on)."""
    from backtest import CostModel, backtest_signals, consensus_signal

    t0 = time.perf_counter()
    ev = budget.evaluate
    wf = walk_forward_predictions(g, ds, budget, seed=seed, device=device, progress=progress)
    signal = consensus_signal(wf.p_a, wf.p_b, rule=g.consensus, threshold=g.threshold,
                              allow_short=ev.allow_short)
    start, stop = wf.folds[0].test[0], wf.folds[-1].test[1]
    # Bars start..stop inclusive: the signal at the last test bar would fill at bar `stop`.
    span = ds.bars.iloc[start: stop + 1]
    full_signal = np.concatenate([signal, np.zeros(len(span) - len(signal), dtype=signal.dtype)])
    bt = backtest_signals(span, full_signal, costs=CostModel(fees_bps=ev.fees_bps, slippage_bps=ev.slippage_bps),
                          periods_per_year=ds.periods_per_year)
    values = [bt.sharpe, bt.max_drawdown, bt.total_return]
    if not all(math.isfinite(v) for v in values):
        raise GenomeError(f"backtest produced non-finite figures {values}")
    return EvalResult(
        sharpe=float(bt.sharpe), max_drawdown=float(bt.max_drawdown), total_return=float(bt.total_return),
        trades=int(bt.trades), exposure=float(bt.exposure), traded=bool(bt.traded),
        enough_trades=int(bt.trades) >= ev.min_trades,
        accuracy_a=_accuracy(wf.p_a, wf.y_a), accuracy_b=_accuracy(wf.p_b, wf.y_b),
        lr_a=wf.lr_a, lr_b=wf.lr_b,
        test_start=span.index[0].isoformat(), test_end=span.index[-1].isoformat(),
        test_bars=int(len(span)), seconds=round(time.perf_counter() - t0, 3),
        returns=[float(x) for x in np.asarray(bt.returns, dtype=np.float64)],
    )


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    ok = y >= 0
    return float((p[ok].argmax(axis=1) == y[ok]).mean()) if ok.any() else 0.0
