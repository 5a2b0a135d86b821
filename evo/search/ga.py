"""The search loop (NSGA-II, random search or nevergrad's NGOpt over the same genome), with an
evaluation journal that makes it resumable.

Pseudocode (one generation = one ``step``; ``mu`` = ga.population, ``eta`` = ga.halving_eta)::

    candidates <- mu*eta genomes never evaluated before:                 # eta = 1: just mu
                   generation 0: the seed genomes, then random ones
                   nsga2:  binary tournaments on (front rank, crowding distance) among the population,
                           uniform crossover (cx_prob), mutation (mut_prob), de-duplicated
                   random: fresh random genomes        ngopt: asked from NGOpt (evo.search.ngopt)
                   tpe: asked from Optuna's multivariate TPE (evo.search.optuna_search)
    if eta > 1:                                                        # successive halving
        screen every candidate at low fidelity (one fold, epochs and windows / eta, lr 1e-3, no
        risk tuning, one seed: evo.search.tasks.low_fidelity_budget), journaled as fidelity "low"
        candidates <- the best mu of them (non-dominated sorting + crowding on the screen's
                      objectives; seed genomes always pass)
    kids <- candidates trained at full fidelity (train.seeds seeds: seed + 1000 i, the same for
            every genome: common random numbers)
    ngopt, tpe: tell the optimiser every candidate it proposed (full result, else the screen's)
    population <- selNSGA2(population + kids, mu)                       # elitist
    re-evaluate survivors: each member that was already in the population before this step and
        has fewer than train.seeds + ga.reevaluate seeds is trained with its next seed i
        (seed + 1000 i, again common to all genomes); its objectives become the mean over all
        its seeds (evo.search.records.merge_genome) and carry into the next generation's tournaments
        and selection, where a lucky score that does not repeat loses its place
    checkpoint(g, population, rng state)

Selection happens before the re-evaluation, on the scores every member had when the step
began, so one generation's choice never depends on the order seeds land in; the extra seed then
corrects the survivors' scores for the next selection. Only full-fidelity results enter the
selection, the Pareto front and the hypervolume.

Every evaluation (a genome's first one, a survivor's extra seed, a low-fidelity screen) is
journaled the moment it lands, with its identity (key, fidelity, seed index), so a killed run
resumes from the last checkpoint, draws the same candidates again from the checkpoint's RNG state
(NGOpt is rebuilt and fed the journal's results in order), finds the finished evaluations of the
generation in flight in the journal, and re-evaluates only what was still running. With the same
seed it reaches the same front, whatever the number of workers.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np
from deap import tools

from evo.errors import ConfigError
from evo.evaluation.evaluate import shared_pools
from evo.genome import Genome, cx_uniform, mut_genome, random_genome
from evo.search.objectives import (
    DEFAULT_OBJECTIVES,
    Individual,
    _individual,
    fitness_class,
    front_hypervolume,
    objectives,
    pareto_front,
)
from evo.search.records import RESCORE_BASE, Record, merge_genome, merge_records, record_ident, rescored
from evo.search.store import RunStore
from evo.search.tasks import EvalContext, EvalTask, evaluate_task
from evo.search.termination import MaxGenerations, Termination

log = logging.getLogger(__name__)

OPTIMIZERS = ("nsga2", "random", "ngopt", "tpe")


ProgressFn = Callable[[dict[str, Any]], None]


class Search:
    """Search state: ask for candidates, evaluate, tell. ``step`` runs one generation, which lets
    a test drive the search a generation at a time.

    Attributes:
        records: every genome evaluated at full fidelity, by key, its extra seeds merged in
            (what selection, the front and the hypervolume see).
        journal: every evaluation in the order it landed (all fidelities, extra seeds).
    """

    def __init__(self, ctx: EvalContext, store: RunStore, *,
                 map_fn: Callable[..., Iterable[Record]] | None = None,
                 progress: ProgressFn | None = None, seed_genomes: Iterable[Genome] = (),
                 optimizer: str = "nsga2", objective_names: tuple[str, ...] = DEFAULT_OBJECTIVES):
        self.ctx = ctx
        ds, budget, seed, hardware = ctx.ds, ctx.budget, ctx.seed, ctx.hardware
        self.objective_names = tuple(objective_names)
        fitness_class(self.objective_names)  # validates
        if "latency" in self.objective_names and (hardware is None or hardware.profile is None):
            raise ConfigError("the latency objective needs --target PROFILE.json (made by evo calibrate)")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}")
        self.optimizer = optimizer
        self.ds, self.budget, self.store = ds, budget, store
        self.seed = seed
        self.partial = 0.0   # share of the generation in flight already evaluated (see termination)
        self.space = budget.search
        self.pools = shared_pools(ds) if isinstance(ds, list) else ds.pools
        self.map_fn = map_fn
        self.seed_genomes = list(seed_genomes)
        self.progress = progress or (lambda event: None)
        self.journal: list[Record] = list(store.iter_records())
        self._by_key: dict[str, list[Record]] = {}
        for r in self.journal:
            self._by_key.setdefault(r.key, []).append(r)
        self._done = {record_ident(r) for r in self.journal}
        self.records: dict[str, Record] = merge_records(self.journal)
        self.rng = np.random.default_rng(seed)
        self.population: list[Individual] = []
        self.generation = -1
        self.ng = None
        if optimizer == "ngopt":
            from evo.search.ngopt import NGSearch

            ga = budget.ga
            self.ng = NGSearch(self.space, self.pools, seed=seed, num_workers=ga.population * ga.halving_eta,
                               budget=ga.population * ga.halving_eta * (ga.generations + 1))
        elif optimizer == "tpe":
            from evo.search.optuna_search import OptunaSearch

            self.ng = OptunaSearch(self.space, self.pools, seed=seed, n_startup=budget.ga.population)
        ckpt = store.load_checkpoint()
        if ckpt is not None:
            self.generation = int(ckpt["generation"])
            self.rng.bit_generator.state = ckpt["rng_state"]
            # The population's scores as they were at the checkpoint (extra seeds of the
            # generation in flight are not yet theirs, as in an uninterrupted run).
            view = self._view(self.generation)
            self.population = [_individual(Genome.from_dict(view[k].genome), view[k], self.objective_names)
                               for k in ckpt["population"]]
            if self.ng is not None:
                self.ng.replay(self.journal, self.generation, self._tell_loss, self.seed_genomes,
                               self.budget.ga.population * self.budget.ga.halving_eta)
            log.info("resuming after generation %d with %d evaluated genomes", self.generation, len(self.records))

    def _view(self, generation: int) -> dict[str, Record]:
        """The merged full-fidelity records as they stood after ``generation``."""
        return merge_records(r for r in self.journal if r.generation <= generation)

    # -- evaluation ----------------------------------------------------------------------------

    def _run_tasks(self, tasks: list[EvalTask], generation: int, total: int) -> None:
        todo = [t for t in dict((t.ident(), t) for t in tasks).values() if t.ident() not in self._done]
        done = total - len(todo)
        self.progress({"kind": "generation", "generation": generation, "total": total, "done": done})
        if self.map_fn is None:
            results = (evaluate_task(t, self.ctx,
                                     progress=lambda msg, t=t: self.progress({"kind": "detail", "message": msg}))
                       for t in todo)
        else:
            results = self.map_fn(todo)
        for record in results:
            self.store.append(record)
            self.journal.append(record)
            self._by_key.setdefault(record.key, []).append(record)
            self._done.add(record_ident(record))
            merged = merge_genome(self._by_key[record.key])
            if merged is not None:
                self.records[record.key] = merged
            done += 1
            self.partial = min(done / total, 1.0) if total else 0.0
            self.progress({"kind": "genome", "generation": generation, "done": done, "total": total,
                           "record": record})

    def _low_record(self, key: str) -> Record:
        return next(r for r in reversed(self._by_key[key]) if r.fidelity == "low")

    def evaluate(self, genomes: list[Genome], generation: int, fidelity: str = "full") -> list[Individual]:
        """Evaluate the genomes not evaluated before at this fidelity; their individuals, in order
        (full fidelity: the merged records' objectives; low: the screen's)."""
        self._run_tasks([EvalTask(g, generation, fidelity) for g in genomes], generation, len(genomes))
        if fidelity == "low":
            return [_individual(g, self._low_record(g.key()), self.objective_names) for g in genomes]
        return [_individual(g, self.records[g.key()], self.objective_names) for g in genomes]

    def _tell_loss(self, key: str) -> tuple[float, ...]:
        """What NGOpt is told for a genome: its first full-fidelity result, else its screen."""
        first = next((r for r in self._by_key.get(key, ()) if r.fidelity == "full" and r.seed_index is None), None)
        return objectives(first if first is not None else self._low_record(key), self.objective_names)

    # -- generations ---------------------------------------------------------------------------

    def _seen(self) -> set[str]:
        """Genomes evaluated (at any fidelity) up to the last checkpoint. Only those count: after
        a crash in the middle of a generation, the candidates drawn again from the checkpoint's
        RNG state must be the same ones (then found in the journal) as in an uninterrupted run."""
        return {r.key for r in self.journal if r.generation <= self.generation}

    def initial_population(self, n: int | None = None) -> list[Genome]:
        """``n`` (default mu) genomes: the user's seed genomes first, then random ones."""
        n = n or self.budget.ga.population
        # The user's own genomes (today's bot, say) enter first, so evolution starts from them.
        genomes: dict[str, Genome] = {g.key(): g for g in self.seed_genomes[:n]}
        for _ in range(n * 20):
            if len(genomes) >= n:
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

    def offspring(self, n: int | None = None) -> list[Genome]:
        """``n`` (default mu) children by tournament, crossover and mutation; none equal to a
        genome already evaluated or to a sibling (mutated again up to a few times). With
        ``optimizer="random"`` the children are fresh random genomes instead: random search on
        the same budget, the baseline NSGA-II must beat."""
        ga = self.budget.ga
        n = n or ga.population
        seen = self._seen()
        if self.optimizer == "random":
            children: dict[str, Genome] = {}
            for _ in range(n * 20):
                g = random_genome(self.space, self.pools, self.rng)
                if g.key() not in seen:
                    children.setdefault(g.key(), g)
                if len(children) == n:
                    break
            return list(children.values())
        fronts = tools.sortNondominated(self.population, len(self.population))
        ranks = {id(ind): r for r, front in enumerate(fronts) for ind in front}
        for front in fronts:
            tools.emo.assignCrowdingDist(front)
        children: dict[str, Genome] = {}
        attempts = 0
        while len(children) < n and attempts < n * 20:
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
                if len(children) == n:
                    break
        return list(children.values())

    def candidates(self, generation: int, n: int) -> list[Genome]:
        """The generation's ``n`` new genomes, from the optimiser."""
        if self.ng is not None:
            return self.ng.generation(generation, n, self._seen(), self.seed_genomes)
        return self.initial_population(n) if generation == 0 else self.offspring(n)

    def screen(self, genomes: list[Genome], generation: int) -> list[Genome]:
        """Successive halving: every genome at low fidelity; the best mu (non-dominated sorting
        and crowding on the screen's objectives; seed genomes always) go on, in their order."""
        mu = self.budget.ga.population
        low = self.evaluate(genomes, generation, fidelity="low")
        seeds = {g.key() for g in self.seed_genomes}
        keep = {ind.genome.key() for ind in low if ind.genome.key() in seeds}
        rest = [ind for ind in low if ind.genome.key() not in keep]
        keep |= {ind.genome.key() for ind in tools.selNSGA2(rest, max(0, min(mu - len(keep), len(rest))))}
        return [g for g in genomes if g.key() in keep]

    def select(self, individuals: list[Individual]) -> list[Individual]:
        return tools.selNSGA2(individuals, min(self.budget.ga.population, len(individuals)))

    def reevaluate_survivors(self, before: set[str], generation: int) -> None:
        """One more training seed for each population member that was already in the population
        before this generation and has fewer than ``train.seeds + ga.reevaluate`` seeds; its
        individual then carries the mean over all its seeds."""
        limit = self.budget.train.seeds + self.budget.ga.reevaluate
        tasks = []
        for ind in self.population:
            key = ind.genome.key()
            rs = self._by_key.get(key, [])
            base = next((r for r in rs if r.fidelity == "full" and r.seed_index is None), None)
            if key not in before or base is None or not base.ok:
                continue
            extra = sum(1 for r in rs if r.seed_index is not None and r.generation < generation)
            index = int(base.result.get("seeds") or 1) + extra
            if index < limit:
                tasks.append(EvalTask(ind.genome, generation, "full", index))
        if tasks:
            self._run_tasks(tasks, generation, len(tasks))
        self.population = [_individual(ind.genome, self.records[ind.genome.key()], self.objective_names)
                           for ind in self.population]

    def rescore_front(self, seeds: int | None = None) -> dict[str, dict]:
        """Train every member of the current front again with ``seeds`` (default ``ga.rescore``)
        fresh training seeds the search never used (seed indices from
        :data:`~evo.search.records.RESCORE_BASE`), journaled as fidelity ``"rescore"``; return the
        re-scored figures by key (:func:`evo.search.records.rescored`). They never enter selection,
        the front or the trials: they show how much of each search score repeats."""
        k = self.budget.ga.rescore if seeds is None else int(seeds)
        front = pareto_front(self.records.values(), self.objective_names)
        tasks = [EvalTask(Genome.from_dict(r.genome), self.generation, "rescore", RESCORE_BASE + i)
                 for r in front for i in range(k)]
        if tasks:
            self._run_tasks(tasks, self.generation, len(tasks))
        return rescored(self.journal)

    def hypervolume(self) -> float:
        """Hypervolume of the front of everything evaluated so far at full fidelity (fixed
        reference point)."""
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
        """Run the next generation (generation 0 starts from the seed genomes and random ones)."""
        ga = self.budget.ga
        gen = self.generation + 1
        pool = self.candidates(gen, ga.population * ga.halving_eta)
        if ga.halving_eta > 1:
            pool = self.screen(pool, gen)
        kids = self.evaluate(pool, gen)
        if self.ng is not None:
            self.ng.tell(self._tell_loss)
        before = {ind.genome.key() for ind in self.population}
        self.population = self.select(self.population + kids)
        self.reevaluate_survivors(before, gen)
        self.generation = gen
        self.partial = 0.0
        self.checkpoint()
        self.progress({"kind": "checkpoint", "generation": gen, "evaluated": len(self.records),
                       "hypervolume": self.store.load_checkpoint()["hypervolume"][str(gen)]})

    def run(self, termination: Termination | int, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run generations until ``termination`` (a :class:`~evo.search.termination.Termination`,
        or a number of generations after the initial one) reports the run done, or
        ``should_stop()`` says so, checked before each generation."""
        if not isinstance(termination, Termination):
            termination = MaxGenerations(int(termination))
        while not termination.done(self) and not should_stop():
            self.step()
