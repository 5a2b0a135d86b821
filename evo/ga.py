"""NSGA-II over genomes (DEAP), with an evaluation cache keyed by genome hash.

Pseudocode (one generation = one ``step``)::

    population <- mu random genomes, evaluated                       # generation 0
    repeat for each generation g = 1..G:
        parents   <- binary tournaments on (front rank, crowding distance)
        offspring <- uniform crossover (cx_prob), mutation (mut_prob), de-duplicated
        evaluate offspring not already in the journal                 # via the injected map
        population <- selNSGA2(population + offspring, mu)           # elitist
        checkpoint(g, population, rng state)

Only genomes never evaluated before are trained; every result is journaled the moment it lands,
so a killed run resumes from the last checkpoint, finds the finished genomes of the generation in
flight in the journal, and re-evaluates only what was still running. With the same seed it reaches
the same front.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
from deap import base, tools

from evo.config import Budget
from evo.errors import ConfigError, GenomeError
from evo.evaluate import Dataset, EvalResult, evaluate_instruments, shared_pools
from evo.genome import Genome, cx_uniform, mut_genome, random_genome
from evo.store import Record, RunStore

log = logging.getLogger(__name__)

OPTIMIZERS = ("nsga2", "random")


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


@dataclass(frozen=True)
class EvalTask:
    genome: Genome
    generation: int


@dataclass(frozen=True)
class Hardware:
    """The trading PC's limits: its calibration profile (``evo calibrate``), hard limits on the
    estimated per-decision latency and on the parameter count. A genome over a hard limit is
    recorded as failed (cause ``HardLimit``) without being trained."""

    profile: dict | None = None
    max_latency_ms: float | None = None
    max_params: int | None = None


def evaluate_task(task: EvalTask, ds: Dataset | list[Dataset], budget: Budget, seed: int, device: str,
                  progress: Callable[[str], None] | None = None, study_storage: str | None = None,
                  hardware: Hardware | None = None) -> Record:
    """Evaluate one genome and turn any failure into a recorded error (the run goes on)."""
    g = task.genome
    try:
        latency = None
        if hardware is not None:
            from evo.hardware import estimate_latency_ms, hard_limit_violation

            reason = hard_limit_violation(g, hardware.profile, hardware.max_latency_ms, hardware.max_params)
            if reason:
                return Record(g.key(), g.to_dict(), task.generation, None, f"HardLimit: {reason}")
            if hardware.profile is not None:
                latency = float(estimate_latency_ms(g, hardware.profile))
        result = evaluate_instruments(g, ds, budget, seed=seed, device=device, progress=progress,
                                      study_storage=study_storage)
        payload = result.to_dict()
        if latency is not None:
            payload["latency_ms"] = latency
        return Record(g.key(), g.to_dict(), task.generation, payload)
    except GenomeError as exc:
        log.warning("genome %s failed: %s", g.key(), exc)
        return Record(g.key(), g.to_dict(), task.generation, None, f"GenomeError: {exc}")
    except MemoryError as exc:
        log.warning("genome %s ran out of memory", g.key())
        return Record(g.key(), g.to_dict(), task.generation, None, f"MemoryError: {exc}")
    except Exception as exc:  # noqa: BLE001 - a genome's failure must not end the run
        log.warning("genome %s raised %s:\n%s", g.key(), type(exc).__name__, traceback.format_exc())
        return Record(g.key(), g.to_dict(), task.generation, None, f"{type(exc).__name__}: {exc}")


ProgressFn = Callable[[dict[str, Any]], None]


class Search:
    """NSGA-II search state: ask for offspring, evaluate, tell. ``step`` runs one generation,
    which lets a test drive the search a generation at a time."""

    def __init__(self, ds: Dataset, budget: Budget, store: RunStore, *, seed: int, device: str = "cpu",
                 map_fn: Callable[..., Iterable[Record]] | None = None,
                 progress: ProgressFn | None = None, seed_genomes: Iterable[Genome] = (),
                 optimizer: str = "nsga2", study_storage: str | None = None,
                 objective_names: tuple[str, ...] = DEFAULT_OBJECTIVES, hardware: Hardware | None = None):
        self.objective_names = tuple(objective_names)
        fitness_class(self.objective_names)  # validates
        if "latency" in self.objective_names and (hardware is None or hardware.profile is None):
            raise ConfigError("the latency objective needs --target PROFILE.json (made by evo calibrate)")
        self.hardware = hardware
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}")
        self.optimizer, self.study_storage = optimizer, study_storage
        self.ds, self.budget, self.store = ds, budget, store
        self.seed, self.device = seed, device
        self.space = budget.search
        self.pools = shared_pools(ds) if isinstance(ds, list) else ds.pools
        self.map_fn = map_fn
        self.seed_genomes = list(seed_genomes)
        self.progress = progress or (lambda event: None)
        self.records: dict[str, Record] = store.records()
        self.rng = np.random.default_rng(seed)
        self.population: list[Individual] = []
        self.generation = -1
        ckpt = store.load_checkpoint()
        if ckpt is not None:
            self.generation = int(ckpt["generation"])
            self.rng.bit_generator.state = ckpt["rng_state"]
            self.population = [
                _individual(Genome.from_dict(self.records[k].genome), self.records[k], self.objective_names)
                for k in ckpt["population"]
            ]
            log.info("resuming after generation %d with %d evaluated genomes", self.generation, len(self.records))

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self, genomes: list[Genome], generation: int) -> list[Individual]:
        todo = [g for g in dict((g.key(), g) for g in genomes).values() if g.key() not in self.records]
        done = len(genomes) - len(todo)
        self.progress({"kind": "generation", "generation": generation, "total": len(genomes), "done": done})
        tasks = [EvalTask(g, generation) for g in todo]
        if self.map_fn is None:
            results = (evaluate_task(t, self.ds, self.budget, self.seed, self.device,
                                     progress=lambda msg, t=t: self.progress({"kind": "detail", "message": msg}),
                                     study_storage=self.study_storage, hardware=self.hardware)
                       for t in tasks)
        else:
            results = self.map_fn(tasks)
        for record in results:
            self.store.append(record)
            self.records[record.key] = record
            done += 1
            self.progress({"kind": "genome", "generation": generation, "done": done, "total": len(genomes),
                           "record": record})
        return [_individual(g, self.records[g.key()], self.objective_names) for g in genomes]

    # -- generations ---------------------------------------------------------------------------

    def initial_population(self) -> list[Genome]:
        mu = self.budget.ga.population
        # The user's own genomes (today's bot, say) enter first, so evolution starts from them.
        genomes: dict[str, Genome] = {g.key(): g for g in self.seed_genomes[:mu]}
        for _ in range(mu * 20):
            if len(genomes) >= mu:
                break
            g = random_genome(self.space, self.pools, self.rng)
            genomes.setdefault(g.key(), g)
        return list(genomes.values())

    def _tournament(self, ranks: dict[int, int]) -> Individual:
        i, j = self.rng.integers(len(self.population), size=2)
        a, b = self.population[i], self.population[j]
        ka = (ranks[id(a)], -a.fitness.crowding_dist)
        kb = (ranks[id(b)], -b.fitness.crowding_dist)
        return a if ka <= kb else b

    def offspring(self) -> list[Genome]:
        """mu children by tournament, crossover and mutation; none equal to a genome already
        evaluated or to a sibling (mutated again up to a few times). With ``optimizer="random"``
        the children are fresh random genomes instead: random search on the same budget, the
        baseline NSGA-II must beat."""
        ga = self.budget.ga
        # Only genomes evaluated up to the last checkpoint count as "seen": after a crash in the
        # middle of a generation, the offspring drawn again from the checkpoint's RNG state must
        # be the same ones (then found in the journal) as in an uninterrupted run.
        seen = {k for k, r in self.records.items() if r.generation <= self.generation}
        if self.optimizer == "random":
            children: dict[str, Genome] = {}
            for _ in range(ga.population * 20):
                g = random_genome(self.space, self.pools, self.rng)
                if g.key() not in seen:
                    children.setdefault(g.key(), g)
                if len(children) == ga.population:
                    break
            return list(children.values())
        fronts = tools.sortNondominated(self.population, len(self.population))
        ranks = {id(ind): r for r, front in enumerate(fronts) for ind in front}
        for front in fronts:
            tools.emo.assignCrowdingDist(front)
        children: dict[str, Genome] = {}
        attempts = 0
        while len(children) < ga.population and attempts < ga.population * 20:
            attempts += 1
            p1, p2 = self._tournament(ranks).genome, self._tournament(ranks).genome
            if self.rng.random() < ga.cx_prob:
                c1, c2 = cx_uniform(p1, p2, self.space, self.pools, self.rng)
            else:
                c1, c2 = p1, p2
            for child in (c1, c2):
                if self.rng.random() < ga.mut_prob:
                    child = mut_genome(child, self.space, self.pools, self.rng)
                for _ in range(4):
                    if child.key() not in seen and child.key() not in children:
                        break
                    child = mut_genome(child, self.space, self.pools, self.rng)
                if child.key() not in seen and child.key() not in children:
                    children[child.key()] = child
                if len(children) == ga.population:
                    break
        return list(children.values())

    def select(self, individuals: list[Individual]) -> list[Individual]:
        return tools.selNSGA2(individuals, min(self.budget.ga.population, len(individuals)))

    def hypervolume(self) -> float:
        """Hypervolume of the front of everything evaluated so far (fixed reference point)."""
        from evo.front import front_hypervolume

        return front_hypervolume(objectives(r) for r in pareto_front(self.records.values()))

    def checkpoint(self) -> None:
        history = dict((self.store.load_checkpoint() or {}).get("hypervolume", {}))
        history[str(self.generation)] = self.hypervolume()
        self.store.save_checkpoint({
            "generation": self.generation,
            "population": [ind.genome.key() for ind in self.population],
            "rng_state": self.rng.bit_generator.state,
            "hypervolume": history,
        })

    def step(self) -> None:
        """Run the next generation (generation 0 is the random initial population)."""
        gen = self.generation + 1
        if gen == 0:
            self.population = self.select(self.evaluate(self.initial_population(), 0))
        else:
            kids = self.evaluate(self.offspring(), gen)
            self.population = self.select(self.population + kids)
        self.generation = gen
        self.checkpoint()
        self.progress({"kind": "checkpoint", "generation": gen, "evaluated": len(self.records),
                       "hypervolume": self.store.load_checkpoint()["hypervolume"][str(gen)]})

    def run(self, generations: int, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run until ``generations`` generations after the initial one are done."""
        while self.generation < generations and not should_stop():
            self.step()


# ------------------------------------------------------------------------------------------------
# the Pareto front of a run


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
