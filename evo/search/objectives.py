"""What the search optimises: the objectives a run may name, their DEAP fitness, the Pareto front
of a run's records, and its hypervolume against one fixed reference point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from deap import base, tools

from evo.errors import ConfigError
from evo.evaluation.results import EvalResult
from evo.genome import Genome
from evo.search.records import Record

# The objectives a run may optimise, with DEAP's weight (+1 maximise, -1 minimise) and the value
# a failed genome gets (dominated by every real result).
OBJECTIVES = {"sharpe": (1.0, -99.0), "drawdown": (-1.0, 1.0), "latency": (-1.0, 1e9)}


DEFAULT_OBJECTIVES = ("sharpe", "drawdown")


class PairFitness(base.Fitness):
    """(consensus Sharpe ↑, max drawdown ↓), both walk-forward out of sample."""

    weights = (1.0, -1.0)


_FITNESS: dict[tuple[str, ...], type] = {DEFAULT_OBJECTIVES: PairFitness}


def fitness_class(names: tuple[str, ...]) -> type:
    """A DEAP Fitness class for these objectives (``sharpe``, ``drawdown``, ``latency``)."""
    names = tuple(names)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or len(set(names)) != len(names) or not {"sharpe", "drawdown"} <= set(names):
        raise ConfigError(f"objectives {names}: use sharpe,drawdown[,latency]")
    if names not in _FITNESS:
        weights = tuple(OBJECTIVES[n][0] for n in names)
        _FITNESS[names] = type(f"Fitness_{'_'.join(names)}", (base.Fitness,), {"weights": weights})
    return _FITNESS[names]


@dataclass
class Individual:
    """What DEAP's selection operators need: a ``fitness`` attribute."""

    genome: Genome
    fitness: base.Fitness


def objectives(record: Record, names: tuple[str, ...] = DEFAULT_OBJECTIVES) -> tuple[float, ...]:
    """The record's objective values in ``names`` order. A genome with too few trades keeps its
    own non-positive Sharpe and the worst drawdown; a failed one the worst of everything."""
    if not record.ok:
        return tuple(OBJECTIVES[n][1] for n in names)
    sharpe, drawdown = EvalResult.from_dict(record.result).objectives()
    values = {"sharpe": sharpe, "drawdown": drawdown,
              "latency": float(record.result.get("latency_ms") or OBJECTIVES["latency"][1])}
    return tuple(values[n] for n in names)


def _individual(g: Genome, record: Record, names: tuple[str, ...] = DEFAULT_OBJECTIVES) -> Individual:
    fit = fitness_class(names)()
    fit.values = objectives(record, names)
    return Individual(g, fit)


def pareto_front(records: Iterable[Record], names: tuple[str, ...] = DEFAULT_OBJECTIVES) -> list[Record]:
    """Non-dominated records over every successful evaluation with enough trades, sorted by
    Sharpe (highest first). Genomes with too few trades or that failed never enter it."""
    candidates = [r for r in records if r.ok and r.result.get("enough_trades")]
    if not candidates:
        return []
    inds = [_individual(Genome.from_dict(r.genome), r, tuple(names)) for r in candidates]
    by_id = {id(ind): r for ind, r in zip(inds, candidates)}
    first = tools.sortNondominated(inds, len(inds), first_front_only=True)[0]
    front = [by_id[id(ind)] for ind in first]
    return sorted(front, key=lambda r: (-r.result["sharpe"], r.result["max_drawdown"], r.key))


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact hypervolume of points in any number of objectives, all minimised: the volume
    dominated by ``points`` and bounded by ``ref`` (``moocore.hypervolume``). Points not strictly
    better than ``ref`` in every coordinate add nothing.
    Worked value: points (1, 3), (2, 2), (3, 1) with ref (4, 4) cover 3 + 2 + 1 = 6."""
    import moocore

    ref = np.asarray(ref, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, len(ref))
    pts = pts[(pts < ref).all(axis=1)]
    return float(moocore.hypervolume(pts, ref=ref)) if len(pts) else 0.0


def hypervolume_2d(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """:func:`hypervolume` of 2-D points (kept for the report's per-generation curve)."""
    return hypervolume(points, ref)


# Fixed reference point for hypervolumes logged per generation, in (Sharpe, max drawdown):
# the area dominated between the front and (Sharpe -3, drawdown 100 %). Fixed, so generations
# (and optimisers) compare on one scale.
HV_REFERENCE = (-3.0, 1.0)


def front_hypervolume(objectives: Iterable[tuple[float, float]]) -> float:
    """Hypervolume of (Sharpe ↑, max drawdown ↓) points against :data:`HV_REFERENCE`."""
    ref_sharpe, ref_dd = HV_REFERENCE
    return hypervolume_2d([(-s, d) for s, d in objectives], (-ref_sharpe, ref_dd))
