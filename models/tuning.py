"""Learning-rate search with Optuna: the only module of ``models`` that imports optuna.

``import models`` stays free of optuna (``evo predict`` never loads it); import this module
explicitly: ``from models.tuning import tune_learning_rate``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import optuna

from evo.errors import GenomeError
from models.batched import batched_enabled, train_models
from models.config import DEFAULT_LR, ModelConfig, TrainConfig
from models.train import Split, TrainResult, train_model

__all__ = ["LR_HIGH", "LR_LOW", "tune_and_train", "tune_learning_rate"]

LR_LOW, LR_HIGH = 1e-5, 1e-2  # log-uniform search range of the AdamW learning rate
# Trials that start before any has finished decide exactly as one after the other: the MedianPruner
# prunes nothing before this many trials finished (its n_startup_trials), and TPE draws at random
# (from its seeded generator, in the order asked) before 10 did.
CONCURRENT_TRIALS = 5


def _study(seed: int, storage, study_name: str | None) -> optuna.Study:
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=1, n_startup_trials=CONCURRENT_TRIALS),
        storage=storage,
        study_name=study_name,
        load_if_exists=study_name is not None,
    )
    if not study.trials:
        # The first trial is AdamW's usual default, so a budget of one or two trials is not a
        # blind draw from five decades of learning rates; TPE explores from the second on.
        study.enqueue_trial({"lr": DEFAULT_LR})
    return study


def tune_learning_rate(
    cfg: ModelConfig,
    tcfg: TrainConfig,
    train: Split,
    val: Split,
    *,
    n_trials: int,
    seed: int,
    storage: str | None = None,
    study_name: str | None = None,
) -> tuple[float, optuna.Study]:
    """Search the learning rate on the validation split only; returns ``(best_lr, study)``.

    TPE sampler seeded with ``seed``; lr log-uniform in [1e-5, 1e-2]; each trial runs
    :func:`models.train_model` with ``tcfg`` but that lr and minimises its best validation loss.
    Every epoch's validation loss is reported to the trial, and a ``MedianPruner`` stops trials
    that trail the median of earlier ones at the same epoch. A trial whose loss diverges
    (``GenomeError``) is recorded as failed and the search goes on. ``storage``/``study_name``
    make the study persistent and resumable (an existing study of that name gets ``n_trials``
    more trials). Test windows never enter: only ``train`` and ``val`` are passed.

    Optuna's per-trial INFO logging is silenced while this runs and restored afterwards.
    """
    if n_trials < 1:
        raise ValueError(f"tune_learning_rate: n_trials must be >= 1, got {n_trials}")

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", LR_LOW, LR_HIGH, log=True)

        def on_epoch(epoch: int, val_loss: float) -> bool:
            trial.report(val_loss, epoch)
            return trial.should_prune()

        result = train_model(cfg, dataclasses.replace(tcfg, lr=lr), train, val, on_epoch=on_epoch)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        if result.pruned:
            raise optuna.TrialPruned()
        return result.best_val_loss

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _study(seed, storage, study_name)
        study.optimize(objective, n_trials=n_trials, catch=(GenomeError,))
    finally:
        optuna.logging.set_verbosity(verbosity)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise GenomeError(f"no learning-rate trial finished ({len(study.trials)} failed or pruned)")
    return float(study.best_params["lr"]), study


def tune_and_train(
    cfg: ModelConfig,
    tcfg: TrainConfig,
    trains: Sequence[Split],
    vals: Sequence[Split],
    *,
    n_trials: int,
    trial_epochs: int,
    seed: int,
    storage: str | None = None,
    study_name: str | None = None,
) -> tuple[float, list[TrainResult]]:
    """The learning-rate study on fold 0 and every fold's final model, batched; returns
    ``(lr, [result of fold 0, fold 1, ...])``. Same result, study included, as::

        lr, _ = tune_learning_rate(cfg, replace(tcfg, max_epochs=trial_epochs), trains[0], vals[0],
                                   n_trials=n_trials, seed=seed, storage=storage, study_name=study_name)
        results = [train_model(cfg, replace(tcfg, lr=lr), tr, va) for tr, va in zip(trains, vals)]

    (``n_trials=0``: no study, ``lr = tcfg.lr``). Up to rounding: see :mod:`models.batched`.

    How: a trial's ``trial_epochs`` epochs are the first epochs of the final run on fold 0 with its
    learning rate (same seed, data and schedule), and up to ``CONCURRENT_TRIALS`` trials asked at
    once are drawn and judged as if one after the other. So for a model with sLSTM blocks one
    :func:`models.batched.train_models` call starts every fold with every trial's learning rate
    (folds x trials members); after ``trial_epochs`` epochs the fold-0 members' losses complete the
    trials, the study picks the learning rate, and only its members train on. All-mLSTM models gain
    little from more members (they run a few at a time anyway, see ``models.batched``) and would pay
    for the speculative runs (measured 0.7-1.2x with them): their trials race on fold 0 alone, the
    winner goes on as fold 0's model, then the other folds train batched. Otherwise (more trials, a
    study that already has trials, ``trial_epochs > tcfg.max_epochs``, ``EVO_BATCHED=0``) the study
    runs as :func:`tune_learning_rate` and the folds' final models train batched with its rate.
    Raises ``GenomeError`` when no trial finishes or a final model diverges.
    """
    if n_trials == 0:
        lr = tcfg.lr
    elif (not batched_enabled() or n_trials > CONCURRENT_TRIALS or trial_epochs > tcfg.max_epochs
          or _has_trials(storage, study_name)):
        lr, _ = tune_learning_rate(cfg, dataclasses.replace(tcfg, max_epochs=trial_epochs), trains[0], vals[0],
                                   n_trials=n_trials, seed=seed, storage=storage, study_name=study_name)
    elif getattr(cfg, "base", cfg).has_slstm:
        return _race(cfg, tcfg, trains, vals, n_trials, trial_epochs, seed, storage, study_name)
    else:  # no speculation: the trials race on fold 0 alone, its winner goes on as fold 0's model
        lr, first = _race(cfg, tcfg, trains[:1], vals[:1], n_trials, trial_epochs, seed, storage, study_name)
        final = dataclasses.replace(tcfg, lr=lr)
        return lr, first + train_models(cfg, [final] * (len(trains) - 1), trains[1:], vals[1:])
    final = dataclasses.replace(tcfg, lr=lr)
    return lr, train_models(cfg, [final] * len(trains), trains, vals)


def _has_trials(storage, study_name) -> bool:
    if study_name is None:
        return False
    try:
        return bool(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        return False


def _race(cfg, tcfg, trains, vals, n_trials, trial_epochs, seed, storage, study_name):
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _study(seed, storage, study_name)
        trials = [study.ask() for _ in range(n_trials)]
        lrs = [t.suggest_float("lr", LR_LOW, LR_HIGH, log=True) for t in trials]
        T = len(trials)
        # member f * T + j: fold f with trial j's learning rate; fold 0's are the trials themselves
        tcfgs = [dataclasses.replace(tcfg, lr=lr) for _ in trains for lr in lrs]
        seen: list[list[float]] = [[] for _ in range(T)]  # fold-0 validation losses per trial
        state: dict[int, str] = {}  # trial -> "complete" | "fail" | "pruned" once decided
        winner: list[int] = []

        def judge(j: int, running: bool) -> None:
            """Trial j's run has ended (or reached trial_epochs): tell the study."""
            losses = seen[j][:trial_epochs]
            stopped_by_patience = _patience_stop(losses, tcfg.patience)
            if running or stopped_by_patience or len(losses) == trial_epochs:
                best = min(range(len(losses)), key=losses.__getitem__)
                trials[j].set_user_attr("best_epoch", best)
                trials[j].set_user_attr("epochs_run", len(losses))
                study.tell(trials[j], losses[best])
                state[j] = "complete"
            else:  # left the stack without finishing: its loss turned NaN (train_model raises)
                study.tell(trials[j], state=optuna.trial.TrialState.FAIL)
                state[j] = "fail"

        def on_epoch(epoch: int, losses: dict[int, float]):
            stop = []
            if winner:
                return stop
            for j in range(T):
                if j in state:
                    continue
                if j not in losses:
                    judge(j, running=False)
                    continue
                seen[j].append(losses[j])
                trials[j].report(losses[j], epoch)
                if trials[j].should_prune():
                    study.tell(trials[j], state=optuna.trial.TrialState.PRUNED)
                    state[j] = "pruned"
                elif epoch + 1 == trial_epochs:
                    judge(j, running=True)
            if len(state) == T:
                if not any(v == "complete" for v in state.values()):
                    raise GenomeError(f"no learning-rate trial finished ({T} failed or pruned)")
                winner.append(lrs.index(float(study.best_params["lr"])))
                stop = [k for k in range(len(tcfgs)) if k % T != winner[0]]
            else:  # members of trials that were decided without finishing stop with them
                stop = [k for k in range(len(tcfgs)) if state.get(k % T) in ("fail", "pruned")]
            return stop

        results = train_models(cfg, tcfgs, [tr for tr in trains for _ in lrs], [va for va in vals for _ in lrs],
                               on_epoch=on_epoch, return_errors=True)
        if not winner:  # every member left before trial_epochs: judge what is left from the results
            for j in range(T):
                if j not in state:
                    if isinstance(results[j], GenomeError):
                        study.tell(trials[j], state=optuna.trial.TrialState.FAIL)
                        state[j] = "fail"
                    else:
                        judge(j, running=True)
            if not any(v == "complete" for v in state.values()):
                raise GenomeError(f"no learning-rate trial finished ({T} failed or pruned)")
            winner.append(lrs.index(float(study.best_params["lr"])))
    finally:
        optuna.logging.set_verbosity(verbosity)
    finals = results[winner[0]::T]
    for r in finals:
        if isinstance(r, GenomeError):
            raise r
    return lrs[winner[0]], finals


def _patience_stop(losses: list[float], patience: int) -> bool:
    """Whether train_model's early stopping ends a run after these validation losses."""
    best, bad = math.inf, 0
    for loss in losses:
        best, bad = (loss, 0) if loss < best else (best, bad + 1)
    return bad >= patience
