"""What a worker runs: one evaluation task (a genome's first evaluation, a survivor's extra seed or
a low-fidelity screen), the budget it runs with, and the record it leaves, failures included."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable

from evo.config import Budget
from evo.errors import GenomeError
from evo.evaluation.dataset import Dataset
from evo.evaluation.evaluate import evaluate_instruments
from evo.genome import Genome
from evo.search.records import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalTask:
    """One evaluation: the genome's first one (``seed_index`` None, ``train.seeds`` seeds), one
    extra training seed of a survivor (``seed_index`` i: seed ``seed + 1000 i``), or a
    low-fidelity screen (``fidelity`` "low", see :func:`low_fidelity_budget`)."""

    genome: Genome
    generation: int
    fidelity: str = "full"
    seed_index: int | None = None

    def ident(self) -> tuple[str, str, int | None]:
        return (self.genome.key(), self.fidelity, self.seed_index)


def task_record(task: EvalTask, result: dict[str, Any] | None, error: str | None = None) -> Record:
    g = task.genome
    return Record(g.key(), g.to_dict(), task.generation, result, error, task.fidelity, task.seed_index)


def low_fidelity_budget(budget: Budget, eta: int | None = None) -> Budget:
    """The budget of a successive-halving screen, about ``1 / (folds * eta^2)`` of a full
    evaluation's training: one walk-forward fold (its test segment is the run's whole test span,
    its training rows those before it), epochs (and patience) and training windows divided by
    ``eta`` (default ``ga.halving_eta``), no learning-rate study (lr 1e-3), no risk tuning (the
    genome's own threshold), one training seed. A screen only ranks the generation's candidates
    against each other: its objectives are never compared with full-fidelity ones."""
    eta = int(eta or budget.ga.halving_eta)
    tb = budget.train
    epochs = max(1, tb.max_epochs // eta)
    train = replace(tb, max_epochs=epochs, patience=max(1, min(tb.patience, epochs)),
                    max_train_windows=max(16, tb.max_train_windows // eta), lr_trials=0, seeds=1)
    evaluate = replace(budget.evaluate, folds=1, risk_trials=0)
    return replace(budget, train=train, evaluate=evaluate)


def task_budget(task: EvalTask, budget: Budget) -> Budget:
    """The budget ``task`` is evaluated with."""
    if task.fidelity == "low":
        return low_fidelity_budget(budget)
    if task.seed_index is not None:   # a survivor's extra seed or a final re-scoring seed
        return replace(budget, train=replace(budget.train, seeds=1))
    return budget


@dataclass(frozen=True)
class Hardware:
    """The trading PC's limits: its calibration profile (``evo calibrate``), hard limits on the
    estimated per-decision latency and on the parameter count. A genome over a hard limit is
    recorded as failed (cause ``HardLimit``) without being trained."""

    profile: dict | None = None
    max_latency_ms: float | None = None
    max_params: int | None = None


@dataclass(frozen=True)
class EvalContext:
    """Everything but the genome an evaluation needs: the data set (or one per instrument), the
    budget, the run's seed, the torch device, where Optuna keeps its learning-rate studies and the
    trading PC's hardware limits. One object, built once by the command (or a test) and handed to
    the search, to every worker (sent once at start-up) and to each evaluation."""

    ds: Dataset | list[Dataset]
    budget: Budget
    seed: int
    device: str = "cpu"
    study_storage: str | None = None
    hardware: Hardware | None = None

    def evaluate(self, task: EvalTask, progress: Callable[[str], None] | None = None) -> Record:
        """:func:`evaluate_task` of ``task`` in this context."""
        return evaluate_task(task, self, progress=progress)


def evaluate_task(task: EvalTask, ctx: EvalContext, progress: Callable[[str], None] | None = None) -> Record:
    """Evaluate one task (with :func:`task_budget` and the seed of its seed index) and turn any
    failure into a recorded error (the run goes on). Low-fidelity screens keep no Optuna study."""
    ds, budget, seed, device = ctx.ds, ctx.budget, ctx.seed, ctx.device
    study_storage, hardware = ctx.study_storage, ctx.hardware
    g = task.genome
    if task.seed_index is not None:
        seed = seed + 1000 * task.seed_index
    if task.fidelity != "full":   # screens and the final re-scoring keep no Optuna study
        study_storage = None
    try:
        latency = None
        if hardware is not None:
            from evo.search.hardware import estimate_latency_ms, hard_limit_violation

            reason = hard_limit_violation(g, hardware.profile, hardware.max_latency_ms, hardware.max_params)
            if reason:
                return task_record(task, None, f"HardLimit: {reason}")
            if hardware.profile is not None:
                latency = float(estimate_latency_ms(g, hardware.profile))
        result = evaluate_instruments(g, ds, task_budget(task, budget), seed=seed, device=device, progress=progress,
                                      study_storage=study_storage)
        payload = result.to_dict()
        if latency is not None:
            payload["latency_ms"] = latency
        return task_record(task, payload)
    except GenomeError as exc:
        log.warning("genome %s failed: %s", g.key(), exc)
        return task_record(task, None, f"GenomeError: {exc}")
    except MemoryError as exc:
        log.warning("genome %s ran out of memory", g.key())
        return task_record(task, None, f"MemoryError: {exc}")
    except Exception as exc:  # noqa: BLE001 - a genome's failure must not end the run
        log.warning("genome %s raised %s:\n%s", g.key(), type(exc).__name__, traceback.format_exc())
        return task_record(task, None, f"{type(exc).__name__}: {exc}")
