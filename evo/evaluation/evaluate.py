"""Genome -> fitness: the pure glue between features, models and the backtest.

For each walk-forward fold (chronological, purged by the label horizon; see
:func:`backtest.walk_forward_folds`) both models are trained on the fold's training rows, stopped
early on its validation segment (which lies before the test period), and predict the fold's test
bars. The test folds are contiguous, so their predictions form one out-of-sample span; the
consensus of the two models' probabilities becomes one signal over it (built fold by fold), traded
by vectorbt with fees and slippage, the signal at a bar's close filling at the next bar's open. The objectives are
the annualised Sharpe ratio and max drawdown of that span: **walk-forward out-of-sample**.

The consensus/risk parameters that turn probabilities into that signal are tuned per test fold,
on the validation segments that end a purge gap before the fold starts (:mod:`evo.evaluation.risk`),
so each fold is traded with parameters chosen on earlier bars only.

The learning rate of each model is picked per genome by an Optuna study on fold 0's validation
segment only (never a test fold). A model's folds (and its learning-rate trials) train together as
one stacked model (:func:`fit_folds`, :mod:`models.batched`), each fold on its own data.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from evo.config import Budget
from evo.errors import GenomeError
from evo.evaluation.dataset import (  # noqa: F401 - re-exported: the evaluation's public names
    Dataset,
    Holdout,
    HoldoutSealed,
    head,
    holdout_bars,
    prepare_dataset,
    prepare_run_data,
)
from evo.evaluation.results import EvalResult, _seeds_summary, combine_instruments  # noqa: F401
from evo.genome import FeaturePools, Genome, ModelGenes, model_config

log = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ModelRun:
    """One trained model of a fold, and everything needed to run it again."""

    genes: ModelGenes
    scaler: Any
    model: Any
    dead_zone: float
    regime: Any = None    # evo.pipeline.regime.RegimeThresholds fitted on the training rows (regime gene not "none")


def dataset_frames(ds: Dataset) -> dict:
    """Every timeframe's rows of ``ds`` (:class:`evo.pipeline.inputs.Frame`), ``x1`` being its feature matrix."""
    from evo.pipeline.inputs import Frame

    ident = np.arange(ds.n_bars, dtype=np.int64)
    return {1: Frame(1, ds.features, ident, ident), **ds.frames}


def model_inputs(genes: ModelGenes, g: Genome, ds: Dataset, train: tuple[int, int], val: tuple[int, int] | None,
                 budget: Budget):
    """What one model of the pair trains on over decision bars ``train`` (the most recent
    ``max_train_windows`` of them), early-stopped on ``val`` (None: no validation split):
    :class:`evo.pipeline.inputs.TrainingInputs`, scaler and dead zone fitted on those training rows only."""
    from evo.pipeline.inputs import training_inputs

    ends_train = np.arange(max(train[0], train[1] - budget.train.max_train_windows), train[1])
    return training_inputs(genes, ds.bars, dataset_frames(ds), ends_train,
                           None if val is None else np.arange(*val), g.seq_len, g.horizon)


def train_config(genes: ModelGenes, budget: Budget, *, lr: float | None, seed: int, device: str,
                 epochs: int | None = None):
    """The :class:`models.TrainConfig` of one model of the pair (``lr=None``: AdamW's usual default)."""
    from models import TrainConfig
    from models.config import DEFAULT_LR

    tb = budget.train
    batch_size, grad_clip = genes.training(tb.batch_size, tb.grad_clip)
    return TrainConfig(lr=lr or DEFAULT_LR, max_epochs=epochs or tb.max_epochs, patience=epochs or tb.patience,
                       batch_size=batch_size, weight_decay=tb.weight_decay, grad_clip=grad_clip,
                       return_loss_weight=tb.return_loss_weight, seed=seed, device=device, amp=tb.amp)


def fit_model(genes: ModelGenes, g: Genome, ds: Dataset, train: tuple[int, int], val: tuple[int, int] | None,
              budget: Budget, *, lr: float | None, seed: int, device: str, study: tuple[str, str] | None = None,
              epochs: int | None = None):
    """Train one model of the pair on decision bars ``train``; return ``(run, lr, train_result)``.

    The scaler and the label dead zone are fitted on the training rows only (the most recent
    ``max_train_windows`` of them). Early stopping watches ``val``. With ``lr=None`` an Optuna
    study picks the learning rate on ``val``; ``study = (storage URL, name)`` keeps it (an older
    study of that name, from an interrupted evaluation, is replaced so a resumed run decides as an
    uninterrupted one). With ``epochs`` set, ``val`` is ignored and the model trains exactly that
    many epochs, keeping the epoch with the lowest training loss (export's ``--refit-all``).
    A genome's walk-forward folds train together instead (:func:`fit_folds`), with the same result.
    """
    from models import train_model
    from models.config import DEFAULT_LR

    tb = budget.train
    inputs = model_inputs(genes, g, ds, train, None if epochs is not None else val, budget)
    tr, va = inputs.train, inputs.val
    cfg = model_config(genes, g.seq_len, device)
    base = train_config(genes, budget, lr=lr, seed=seed, device=device, epochs=epochs)
    if lr is None and tb.lr_trials == 0:
        lr = DEFAULT_LR  # no study (successive-halving screens): AdamW's usual default, Optuna's first trial
    if lr is None:
        from models.tuning import tune_learning_rate

        storage, name = _fresh_study(*study) if study else (None, None)
        lr, _ = tune_learning_rate(cfg, replace(base, max_epochs=tb.lr_trial_epochs), tr, va,
                                   n_trials=tb.lr_trials, seed=seed, storage=storage, study_name=name)
        base = replace(base, lr=lr)
    result = train_model(cfg, base, tr, va)
    run = ModelRun(genes=genes, scaler=inputs.scaler, model=result.model, dead_zone=inputs.dead_zone,
                   regime=inputs.regime)
    return run, float(lr), result


def fit_folds(genes: ModelGenes, g: Genome, ds: Dataset, folds: list, budget: Budget, *, seed: int, device: str,
              study: tuple[str, str] | None = None) -> tuple[list[ModelRun], float]:
    """One model of the pair on every walk-forward fold: the learning-rate study on fold 0's
    validation segment, then each fold's model with that rate, early-stopped on its own
    validation segment; returns ``(runs, lr)``, one :class:`ModelRun` per fold.

    The same as :func:`fit_model` with ``lr=None`` on fold 0 and with its rate on the others,
    trained as one stacked model by :func:`models.tuning.tune_and_train` (issue 16; ``EVO_BATCHED=0``
    trains them one at a time). Each fold's inputs (scaler, dead zone, regime thresholds) are
    fitted on its own training rows only, so a fold's model still sees nothing after its
    validation segment.
    """
    from models.tuning import tune_and_train

    tb = budget.train
    inputs = [model_inputs(genes, g, ds, f.train, f.val, budget) for f in folds]
    cfg = model_config(genes, g.seq_len, device)
    base = train_config(genes, budget, lr=None, seed=seed, device=device)
    storage, name = _fresh_study(*study) if study and tb.lr_trials else (None, None)
    lr, results = tune_and_train(cfg, base, [i.train for i in inputs], [i.val for i in inputs],
                                 n_trials=tb.lr_trials, trial_epochs=tb.lr_trial_epochs, seed=seed,
                                 storage=storage, study_name=name)
    runs = [ModelRun(genes=genes, scaler=i.scaler, model=r.model, dead_zone=i.dead_zone, regime=i.regime)
            for i, r in zip(inputs, results)]
    return runs, float(lr)


def train_pair_model(genes: ModelGenes, g: Genome, ds: Dataset, train: tuple[int, int],
                     val: tuple[int, int], budget: Budget, *, lr: float | None, seed: int,
                     device: str, study: tuple[str, str] | None = None) -> tuple[ModelRun, float]:
    """:func:`fit_model` early-stopped on ``val``; returns the run and the learning rate used."""
    run, lr, _ = fit_model(genes, g, ds, train, val, budget, lr=lr, seed=seed, device=device, study=study)
    return run, lr


def study_storage_url(run_dir) -> str:
    """The run's Optuna studies: one SQLite file that ``optuna-dashboard`` opens."""
    from pathlib import Path

    return f"sqlite:///{Path(run_dir).resolve() / 'studies.db'}"


def _fresh_study(url: str, name: str):
    import optuna

    # Several worker processes may write at once: wait for SQLite's lock instead of failing.
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    return storage, name


def predict_segment(run: ModelRun, ds: Dataset, ends: np.ndarray, seq_len: int,
                    horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 3) of ``run`` at decision bars ``ends``, and the true labels where the
    label's horizon lies inside the data (-1 elsewhere)."""
    from evo.pipeline.inputs import genes_windows
    from models import forward_returns, make_labels, predict_proba

    X = genes_windows(run.genes, ds.bars, dataset_frames(ds), run.regime, run.scaler, ends, seq_len)
    probs = predict_proba(run.model, X)
    close = ds.bars["close"].to_numpy()
    has_label = ends + horizon < len(close)
    y = np.full(len(ends), -1, dtype=np.int64)
    if has_label.any():
        y[has_label] = make_labels(forward_returns(close, ends[has_label], horizon), run.dead_zone)
    return probs, y


@dataclass(frozen=True)
class WalkForward:
    """Both models' predictions: out of sample over the concatenated test folds, and on each
    fold's validation segment (for tuning the consensus and risk parameters)."""

    folds: list
    ends: np.ndarray          # test decision bars, (N,) int
    p_a: np.ndarray           # (N, 3) float64, class order down/flat/up
    p_b: np.ndarray
    y_a: np.ndarray           # (N,) true labels under each fold's dead zone, -1 where unknown
    y_b: np.ndarray
    lr_a: float
    lr_b: float
    val_segments: list        # one evo.evaluation.risk.Segment per fold: its validation bars
    train_segment: Any = None  # fold 0's training bars, in-sample (only for Kelly sizing)
    regime: np.ndarray | None = None   # volatility regime at each test bar (only when the genome gates)


def gate_regime(g: Genome, runs: dict[str, ModelRun], ds: Dataset, ends: np.ndarray) -> np.ndarray | None:
    """Volatility regime (0 low, 1 mid, 2 high) at decision bars ``ends`` under the thresholds the
    gating model fitted on its training rows; None when the genome does not gate (evo.evaluation.risk.gates)."""
    from evo.evaluation.risk import gates

    if not gates(g):
        return None
    from evo.pipeline.regime import regime_inputs, vol_regime

    run = runs["a"] if g.model_a.regime == "gate" else runs["b"]
    return vol_regime(regime_inputs(ds.bars)[np.asarray(ends, dtype=np.int64)], run.regime)


def fold_layout(ds: Dataset, budget: Budget) -> list:
    """The walk-forward folds of ``ds`` (the same for every genome of the budget's space)."""
    from backtest import walk_forward_folds

    ev = budget.evaluate
    folds = walk_forward_folds(ds.n_bars, n_folds=ev.folds, horizon=max(budget.search.horizon),
                               first_bar=ds.first_bar, test_fraction=ev.test_fraction,
                               val_fraction=ev.val_fraction, embargo=ev.embargo)
    if ev.walk_forward == "rolling":
        folds = [replace(f, train=(max(f.train[0], f.train[1] - ev.rolling_bars), f.train[1])) for f in folds]
    return folds


def walk_forward_predictions(g: Genome, ds: Dataset, budget: Budget, *, seed: int = 0, device: str = "cpu",
                             progress: ProgressFn | None = None, study_storage: str | None = None) -> WalkForward:
    """Train both models on each fold's training rows and predict its validation and test bars.

    Fold k's predictions depend only on bars before its test segment (training, validation,
    scaler, dead zone) and on the windows ending at each test bar: bars after a test bar never
    reach its prediction.
    """
    import torch

    from evo.evaluation.risk import Segment

    folds = fold_layout(ds, budget)
    lrs: dict[str, float] = {}
    fitted: dict[str, list[ModelRun]] = {}
    for name, genes in (("a", g.model_a), ("b", g.model_b)):
        if progress:
            progress(f"model {name.upper()}, {len(folds)} folds")
        try:
            study = (study_storage, f"{g.key()}-{name}-seed{seed}") if study_storage else None
            fitted[name], lrs[name] = fit_folds(genes, g, ds, folds, budget, seed=seed, device=device, study=study)
        except torch.cuda.OutOfMemoryError as exc:
            raise GenomeError(f"out of memory: {exc}") from None
    probs: dict[str, list] = {"a": [], "b": []}
    labels: dict[str, list] = {"a": [], "b": []}
    val_probs: dict[str, list] = {"a": [], "b": []}
    train_probs: dict[str, Any] = {}
    regimes: dict[str, list] = {"val": [], "test": [], "train": []}
    kelly = budget.evaluate.sizing == "kelly"
    for k, fold in enumerate(folds):
        runs = {name: fitted[name][k] for name in fitted}
        for name, run in runs.items():
            p, y = predict_segment(run, ds, np.arange(*fold.test), g.seq_len, g.horizon)
            probs[name].append(p)
            labels[name].append(y)
            val_probs[name].append(predict_segment(run, ds, np.arange(*fold.val), g.seq_len, g.horizon)[0])
            if kelly and k == 0:
                start = max(fold.train[0], fold.train[1] - budget.train.max_train_windows)
                train_probs[name] = (start, predict_segment(run, ds, np.arange(start, fold.train[1]),
                                                            g.seq_len, g.horizon)[0])
        regimes["val"].append(gate_regime(g, runs, ds, np.arange(*fold.val)))
        regimes["test"].append(gate_regime(g, runs, ds, np.arange(*fold.test)))
        if kelly and k == 0:
            regimes["train"].append(gate_regime(g, runs, ds, np.arange(train_probs["a"][0], fold.train[1])))
    gated = regimes["test"][0] is not None
    wf = WalkForward(
        folds=folds, ends=np.concatenate([np.arange(*f.test) for f in folds]),
        p_a=np.concatenate(probs["a"]), p_b=np.concatenate(probs["b"]),
        y_a=np.concatenate(labels["a"]), y_b=np.concatenate(labels["b"]),
        lr_a=float(lrs["a"]), lr_b=float(lrs["b"]),
        val_segments=[Segment(f.val[0], f.val[1], pa, pb, r)
                      for f, pa, pb, r in zip(folds, val_probs["a"], val_probs["b"], regimes["val"])],
        train_segment=(Segment(train_probs["a"][0], folds[0].train[1], train_probs["a"][1], train_probs["b"][1],
                               regimes["train"][0]) if kelly else None),
        regime=np.concatenate(regimes["test"]) if gated else None,
    )
    if not (np.isfinite(wf.p_a).all() and np.isfinite(wf.p_b).all()):
        raise GenomeError("a model produced non-finite probabilities")
    return wf


def purge_gap(budget: Budget) -> int:
    """Bars between a fold's segments (:func:`fold_layout`): the longest label horizon + embargo."""
    return max(budget.search.horizon) + budget.evaluate.embargo


def sized(risk, g: Genome, ds: Dataset, budget: Budget, wf: WalkForward):
    """``risk`` with its position size: the budget's fixed fraction, or the Kelly fraction of the
    trades ``risk`` makes on fold 0's training rows (in-sample; they precede every test fold)."""
    from backtest import CostModel, backtest_signals
    from evo.evaluation.risk import RiskParams, kelly_fraction, signal_for

    ev = budget.evaluate
    if ev.sizing == "kelly" and wf.train_segment is not None:
        in_sample = RiskParams(**{**risk.to_dict(), "size": 1.0})
        seg = wf.train_segment
        span = ds.bars.iloc[seg.start: seg.stop + 1]
        signal = np.concatenate([signal_for(seg.p_a, seg.p_b, g, in_sample, ev.allow_short, seg.regime),
                                 np.zeros(1, np.int8)])
        bt = backtest_signals(span, signal[: len(span)], costs=CostModel(ev.fees_bps, ev.slippage_bps),
                              periods_per_year=ds.periods_per_year, risk=in_sample.rules(None))
        return replace(risk, size=kelly_fraction(bt.trade_returns, ev.kelly_cap))
    return replace(risk, size=ev.size)


def risk_for(g: Genome, ds: Dataset, budget: Budget, wf: WalkForward, *, seed: int) -> tuple[list, Any]:
    """The consensus/risk parameters of each test fold, tuned on the validation segments that end a
    purge gap before it (:mod:`evo.evaluation.risk`), and the genome's recorded parameters, tuned on
    every validation segment (the last fold's); each sized by :func:`sized`.
    Returns ``(fold_risks, risk)``: a list of :class:`evo.evaluation.risk.FoldRisk` and a ``RiskParams``."""
    from evo.evaluation.risk import FoldRisk, tune_fold_risks, tune_risk

    ev = budget.evaluate
    tests = [f.test for f in wf.folds]
    folds = tune_fold_risks(g, ds.bars, wf.val_segments, tests, purge_gap(budget), budget.search, ev,
                            ds.periods_per_year, seed=seed)
    every = tuple((seg.start, seg.stop) for seg in wf.val_segments)
    last = folds[-1].risk if folds[-1].tuned_on == every else \
        tune_risk(g, ds.bars, wf.val_segments, budget.search, ev, ds.periods_per_year, seed=seed)
    sizes: dict = {}

    def size(risk):
        key = tuple(sorted(risk.to_dict().items()))
        if key not in sizes:
            sizes[key] = sized(risk, g, ds, budget, wf)
        return sizes[key]

    return [FoldRisk(f.test, size(f.risk), f.tuned_on) for f in folds], size(last)


def evaluate_genome(g: Genome, ds: Dataset, budget: Budget, *, seed: int = 0, device: str = "cpu",
                    progress: ProgressFn | None = None, study_storage: str | None = None) -> EvalResult:
    """Train and backtest ``g`` walk-forward. Raises GenomeError when the genome cannot be
    evaluated (the caller records it and the run goes on).

    Fitness is noisy (one seed's Sharpe can swing by more than the genome's distance to
    buy-and-hold), so with ``budget.train.seeds = k`` the genome is trained with k seeds
    (``seed + 1000 i``) and the objectives are the seeds' means (``sharpe_mean``,
    ``max_drawdown_mean``); every genome of a run uses the same seeds (common random numbers), so
    genomes differ by their genes, not by their luck. ``sharpe_sd`` is the spread. Every other
    figure, ``returns`` included, is seed index 0's: the model the holdout trades and export ships
    (:mod:`evo.evaluation.results`).
    """
    t0 = time.perf_counter()
    runs = [_evaluate_once(g, ds, budget, seed=seed + 1000 * i, device=device, progress=progress,
                           study_storage=study_storage) for i in range(budget.train.seeds)]
    if len(runs) == 1:
        return replace(runs[0], seconds=round(time.perf_counter() - t0, 3))
    return _seeds_summary(runs, seconds=round(time.perf_counter() - t0, 3))


def shared_pools(datasets: list[Dataset]) -> FeaturePools:
    """The features every instrument can give (volume features only if all have volume), and the
    timeframes every instrument supports."""
    first = datasets[0].pools
    return FeaturePools(a=tuple(f for f in first.a if all(f in d.pools.a for d in datasets)),
                        b=tuple(f for f in first.b if all(f in d.pools.b for d in datasets)),
                        timeframes=tuple(m for m in first.timeframes if all(m in d.pools.timeframes
                                                                            for d in datasets)))


def evaluate_instruments(g: Genome, datasets: Dataset | list[Dataset], budget: Budget, **kwargs) -> EvalResult:
    """:func:`evaluate_genome` on each instrument, combined by :func:`combine_instruments`
    (one instrument: exactly ``evaluate_genome``)."""
    if isinstance(datasets, Dataset):
        return evaluate_genome(g, datasets, budget, **kwargs)
    parts = [evaluate_genome(g, ds, budget, **kwargs) for ds in datasets]
    return parts[0] if len(parts) == 1 else combine_instruments(parts, [ds.label for ds in datasets], budget)


def _evaluate_once(g: Genome, ds: Dataset, budget: Budget, *, seed: int, device: str,
                   progress: ProgressFn | None, study_storage: str | None) -> EvalResult:
    t0 = time.perf_counter()
    wf = walk_forward_predictions(g, ds, budget, seed=seed, device=device, progress=progress,
                                  study_storage=study_storage)
    if progress:
        progress("tuning consensus and risk parameters on validation")
    result = score_walk_forward(g, ds, budget, wf, seed=seed)
    return replace(result, seconds=round(time.perf_counter() - t0, 3))


def score_walk_forward(g: Genome, ds: Dataset, budget: Budget, wf: WalkForward, *, seed: int,
                       _joint: bool = False) -> EvalResult:
    """Tune the consensus/risk parameters (:func:`risk_for`) and trade the test folds, each with
    its own parameters: the out-of-sample signal is built fold by fold and traded by
    :func:`evo.evaluation.risk.trade_folds`. ``val_sharpe`` is the recorded parameters' Sharpe on
    the validation segments they were tuned on (all of them).

    ``_joint=True`` is the old, leaking rule (every fold traded with the parameters tuned on all
    validation segments, earlier test folds' bars included), kept only so that
    ``experiments/risk_tuning.py`` can measure what it was worth."""
    from backtest import sharpe_ratio
    from evo.evaluation.risk import FoldRisk, segment_returns, signal_for, trade_folds

    ev = budget.evaluate
    fold_risks, risk = risk_for(g, ds, budget, wf, seed=seed)
    if _joint:
        every = tuple((seg.start, seg.stop) for seg in wf.val_segments)
        fold_risks = [FoldRisk(f.test, risk, every) for f in fold_risks]
    val_returns, _ = segment_returns(ds.bars, wf.val_segments, g, risk, ev, ds.periods_per_year)
    tests = [f.test for f in wf.folds]
    edges = np.cumsum([0] + [b - a for a, b in tests])
    signals = [signal_for(wf.p_a[i:j], wf.p_b[i:j], g, f.risk, ev.allow_short,
                          None if wf.regime is None else wf.regime[i:j])
               for i, j, f in zip(edges[:-1], edges[1:], fold_risks)]
    bt = trade_folds(ds.bars, tests, signals, [f.risk for f in fold_risks], ev, ds.periods_per_year)
    # Bars start..stop inclusive: the signal at the last test bar would fill at bar `stop`.
    span = ds.bars.iloc[tests[0][0]: tests[-1][1] + 1]
    values = [bt.sharpe, bt.max_drawdown, bt.total_return]
    if not all(math.isfinite(v) for v in values):
        raise GenomeError(f"backtest produced non-finite figures {values}")
    return EvalResult(
        sharpe=float(bt.sharpe), max_drawdown=float(bt.max_drawdown), total_return=float(bt.total_return),
        trades=int(bt.trades), exposure=float(bt.exposure), traded=bool(bt.traded),
        enough_trades=int(bt.trades) >= ev.min_trades,
        accuracy_a=_accuracy(wf.p_a, wf.y_a), accuracy_b=_accuracy(wf.p_b, wf.y_b),
        f1_a=_macro_f1(wf.p_a, wf.y_a), f1_b=_macro_f1(wf.p_b, wf.y_b),
        lr_a=wf.lr_a, lr_b=wf.lr_b,
        test_start=span.index[0].isoformat(), test_end=span.index[-1].isoformat(),
        test_bars=int(len(span)), seconds=0.0,
        returns=[float(x) for x in np.asarray(bt.returns, dtype=np.float64)],
        sortino=float(bt.sortino), calmar=float(bt.calmar), win_rate=float(bt.win_rate),
        profit_factor=float(bt.profit_factor), turnover=float(bt.turnover),
        risk=risk.to_dict(), val_sharpe=float(sharpe_ratio(val_returns, ds.periods_per_year)),
        seed_sharpes=[float(bt.sharpe)], sharpe_mean=float(bt.sharpe), max_drawdown_mean=float(bt.max_drawdown),
        risk_folds=[f.to_dict() for f in fold_risks],
    )


def holdout_segments(ds: Dataset, cut: int, budget: Budget) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train, val) decision bars for the holdout fit: everything before the holdout, the last
    ``val_fraction`` of it for early stopping, purge gaps of the longest horizon (+ embargo)."""
    ev = budget.evaluate
    gap = max(budget.search.horizon) + ev.embargo
    last = cut - gap
    val_len = max(16, int((last - ds.first_bar) * ev.val_fraction))
    val = (last - val_len, last)
    train = (ds.first_bar, val[0] - gap)
    if ev.walk_forward == "rolling":
        train = (max(train[0], train[1] - ev.rolling_bars), train[1])
    return train, val


def refit_threshold(risk, runs: dict[str, ModelRun], ds: Dataset, val: tuple[int, int], g: Genome,
                    allow_short: bool):
    """``risk`` (:class:`evo.evaluation.risk.RiskParams`) with a quantile threshold refitted at its
    level on the predictions of ``runs`` (models ``"a"`` and ``"b"``) over decision bars ``val``,
    which must end before the bars it trades (the holdout's, the bundle's); an absolute threshold
    as it is."""
    if risk.quantile is None:
        return risk
    from evo.evaluation.risk import Segment, fit_threshold

    ends = np.arange(*val)
    seg = Segment(val[0], val[1], *(predict_segment(runs[n], ds, ends, g.seq_len, g.horizon)[0] for n in ("a", "b")))
    return fit_threshold(risk, [seg], g, allow_short)


def evaluate_holdout(g: Genome, result: dict[str, Any], holdout: Holdout, budget: Budget, *, seed: int = 0,
                     device: str = "cpu") -> dict[str, Any]:
    """Train ``g``'s models on everything before the holdout (with the learning rates and risk
    parameters the search found) and trade the untouched holdout bars once."""
    from backtest import CostModel, backtest_signals
    from evo.evaluation.risk import RiskParams, genome_risk, signal_for

    full = holdout.dataset
    ev = budget.evaluate
    train, val = holdout_segments(full, holdout.cut, budget)
    ends = np.arange(holdout.cut, full.n_bars - 1)
    probs, runs = {}, {}
    for name, genes, lr in (("a", g.model_a, result["lr_a"]), ("b", g.model_b, result["lr_b"])):
        runs[name], _ = train_pair_model(genes, g, full, train, val, budget, lr=lr, seed=seed, device=device)
        probs[name] = predict_segment(runs[name], full, ends, g.seq_len, g.horizon)[0]
    risk = RiskParams.from_dict(result["risk"]) if result.get("risk") else genome_risk(g, budget.search)
    risk = refit_threshold(risk, runs, full, val, g, ev.allow_short)   # fitted before the holdout
    regime = gate_regime(g, runs, full, ends)
    signal = np.concatenate([signal_for(probs["a"], probs["b"], g, risk, ev.allow_short, regime),
                             np.zeros(1, np.int8)])
    span = full.bars.iloc[holdout.cut:]
    costs = CostModel(fees_bps=ev.fees_bps, slippage_bps=ev.slippage_bps)
    bt = backtest_signals(span, signal, costs=costs, periods_per_year=full.periods_per_year,
                          risk=risk.rules(ev.breaker_or_none))
    return {"sharpe": float(bt.sharpe), "max_drawdown": float(bt.max_drawdown),
            "total_return": float(bt.total_return), "trades": int(bt.trades), "threshold": float(risk.threshold),
            "start": span.index[0].isoformat(), "end": span.index[-1].isoformat(),
            "returns": [float(x) for x in bt.returns]}


def evaluate_holdouts(g: Genome, result: dict[str, Any], holdouts: list[Holdout], budget: Budget, *,
                      seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """:func:`evaluate_holdout` on each instrument (with that instrument's learning rates and risk
    parameters), combined like :func:`combine_instruments`."""
    if len(holdouts) == 1:
        return evaluate_holdout(g, result, holdouts[0], budget, seed=seed, device=device)
    parts = []
    for h, inst in zip(holdouts, result["instruments"]):
        own = {**result, "lr_a": inst["lr_a"], "lr_b": inst["lr_b"], "risk": inst["risk"]}
        parts.append({**evaluate_holdout(g, own, h, budget, seed=seed, device=device), "label": inst["label"]})
    lam = budget.evaluate.dispersion_penalty
    sh = np.array([p["sharpe"] for p in parts])
    dd = np.array([p["max_drawdown"] for p in parts])
    return {"sharpe": float(sh.mean() - lam * sh.std()), "max_drawdown": float(min(1.0, dd.mean() + lam * dd.std())),
            "total_return": float(np.mean([p["total_return"] for p in parts])),
            "trades": int(sum(p["trades"] for p in parts)), "start": parts[0]["start"], "end": parts[0]["end"],
            "returns": [x for p in parts for x in p["returns"]],
            "instruments": [{k: v for k, v in p.items() if k != "returns"} for p in parts]}


def buy_and_hold(bars: pd.DataFrame, budget: Budget, periods_per_year: float) -> dict[str, Any]:
    """Buy at the first bar's open after the first decision, hold to the end, same costs."""
    from backtest import CostModel, backtest_signals

    ev = budget.evaluate
    bt = backtest_signals(bars, np.ones(len(bars), dtype=np.int8), costs=CostModel(ev.fees_bps, ev.slippage_bps),
                          periods_per_year=periods_per_year)
    return {"sharpe": float(bt.sharpe), "max_drawdown": float(bt.max_drawdown),
            "total_return": float(bt.total_return), "start": bars.index[0].isoformat(),
            "end": bars.index[-1].isoformat()}


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    ok = y >= 0
    return float((p[ok].argmax(axis=1) == y[ok]).mean()) if ok.any() else 0.0


def _macro_f1(p: np.ndarray, y: np.ndarray) -> float:
    """Macro-averaged F1 over the three classes (a class never predicted nor present is skipped)."""
    ok = y >= 0
    pred, true = p[ok].argmax(axis=1), y[ok]
    scores = []
    for c in range(3):
        tp = int(((pred == c) & (true == c)).sum())
        fp = int(((pred == c) & (true != c)).sum())
        fn = int(((pred != c) & (true == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0
