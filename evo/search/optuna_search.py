"""``--optimizer tpe``: an Optuna sampler (multivariate TPE) over the same genome space.

The genome is the point of the unit box that :class:`evo.search.ngopt.GenomeCodec` defines (one
coordinate per pool feature, per varying gene, per sLSTM position and extra timeframe); each
coordinate is one ``suggest_float(f"u{i}", 0, 1)`` of an Optuna trial, asked through
``study.ask()`` and decoded (and repaired) into a genome. Every candidate is told its two
objectives, ``(Sharpe ↑, max drawdown ↓)``, through ``study.tell``: a two-objective study, which
Optuna's TPE handles with its multi-objective extension. Candidates that decode to a genome
evaluated before are told its known result without training. A genome that failed or traded too
little is told the values :func:`evo.search.objectives.objectives` gives it.

Like NGOpt the sampler is never pickled: a resumed run builds a fresh in-memory study with the
same seed and replays the journal's results in order (:meth:`OptunaSearch.replay`), which asks
the same trials again (TPE with a fixed seed is deterministic given the same told history).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np

from evo.config import SearchSpace
from evo.genome import FeaturePools, Genome
from evo.search.ngopt import GenomeCodec
from evo.search.records import Record

LossFn = Callable[[str], tuple[float, ...]]


class OptunaSearch:
    """Optuna's multivariate TPE asking for genomes and told their (Sharpe, drawdown).

    The same interface as :class:`evo.search.ngopt.NGSearch` (``generation``, ``tell``,
    ``replay``), so the search loop treats both as one kind of ask/tell optimiser."""

    def __init__(self, space: SearchSpace, pools: FeaturePools, *, seed: int, n_startup: int = 10):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("optuna").setLevel(logging.WARNING)
        self.codec = GenomeCodec(space, pools)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=n_startup)
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        self._pending: list[tuple[Any, str]] = []

    def _ask(self) -> tuple[Any, Genome]:
        trial = self.study.ask()
        x = np.array([trial.suggest_float(f"u{i}", 0.0, 1.0) for i in range(max(1, self.codec.size))])
        return trial, self.codec.decode(x[: self.codec.size])

    def suggest(self, genomes: Iterable[Genome]) -> None:
        """Enqueue these genomes (the user's seed genomes) as the next trials."""
        for g in genomes:
            u = self.codec.encode(g) if self.codec.size else np.full(1, 0.5)
            self.study.enqueue_trial({f"u{i}": float(v) for i, v in enumerate(u)})
            trial, _ = self._ask()
            self._pending.append((trial, g.key()))

    def ask(self, n: int, seen: set[str]) -> list[Genome]:
        """Up to ``n`` distinct genomes not in ``seen`` (asking at most ``20 n`` trials; the
        duplicates are told the known result in :meth:`tell`)."""
        new: dict[str, Genome] = {}
        for _ in range(20 * n):
            if len(new) >= n:
                break
            trial, g = self._ask()
            self._pending.append((trial, g.key()))
            if g.key() not in seen:
                new.setdefault(g.key(), g)
        return list(new.values())

    def tell(self, loss: LossFn) -> None:
        """Tell every trial asked since the last tell: ``loss(key)`` is the genome's (Sharpe,
        drawdown, ...)."""
        for trial, key in self._pending:
            sharpe, drawdown = loss(key)[:2]
            self.study.tell(trial, [float(sharpe), float(drawdown)])
        self._pending = []

    def replay(self, journal: list[Record], generation: int, loss: LossFn, seeds: list[Genome], n: int) -> None:
        """Rebuild the state after ``generation`` from the journal (see the module docstring)."""
        for gen in range(generation + 1):
            seen = {r.key for r in journal if r.generation < gen}
            self.generation(gen, n, seen, seeds)
            self.tell(loss)

    def generation(self, gen: int, n: int, seen: set[str], seeds: list[Genome]) -> list[Genome]:
        """The ``n`` genomes of generation ``gen``: the seed genomes not seen yet first, then TPE's."""
        first = [g for g in seeds[:n] if g.key() not in seen] if gen == 0 else []
        self.suggest(first)
        return first + self.ask(n - len(first), seen | {g.key() for g in first})
