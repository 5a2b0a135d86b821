"""Learning-rate search with Optuna: the only module of ``models`` that imports optuna.

``import models`` stays free of optuna (``evo predict`` never loads it); import this module
explicitly: ``from models.tuning import tune_learning_rate``.
"""

from __future__ import annotations

import dataclasses

import optuna

from evo.errors import GenomeError
from models.config import DEFAULT_LR, ModelConfig, TrainConfig
from models.train import Split, train_model

__all__ = ["LR_HIGH", "LR_LOW", "tune_learning_rate"]

LR_LOW, LR_HIGH = 1e-5, 1e-2  # log-uniform search range of the AdamW learning rate


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
        study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_warmup_steps=1),
            storage=storage,
            study_name=study_name,
            load_if_exists=study_name is not None,
        )
        if not study.trials:
            # The first trial is AdamW's usual default, so a budget of one or two trials is not a
            # blind draw from five decades of learning rates; TPE explores from the second on.
            study.enqueue_trial({"lr": DEFAULT_LR})
        study.optimize(objective, n_trials=n_trials, catch=(GenomeError,))
    finally:
        optuna.logging.set_verbosity(verbosity)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise GenomeError(f"no learning-rate trial finished ({len(study.trials)} failed or pruned)")
    return float(study.best_params["lr"]), study
