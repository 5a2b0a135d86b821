"""When a search stops, and how far along it is (pymoo's ``Termination``).

A termination answers one question about a :class:`evo.search.ga.Search`: what fraction of the
run is done, in [0, 1]. ``1`` stops the loop after the generation in hand, and the same fraction
drives the command's progress bar, so the bar and the stop can never disagree::

    MaxGenerations(50)                           # generations 0..50 (the initial one, then 50)
    AnyOf(MaxGenerations(50), TimeLimit(11 * 3600))   # whichever ends first

A generation in flight counts by the share of its evaluations done (``Search.partial``).
"""

from __future__ import annotations

import time
from typing import Callable, Protocol


class _Progress(Protocol):
    generation: int     # last generation finished (-1 before generation 0)
    partial: float      # share of the generation in flight already evaluated, in [0, 1)


class Termination:
    """Base: subclasses give :meth:`progress`; the loop stops once it reaches 1."""

    def progress(self, search: _Progress) -> float:
        raise NotImplementedError

    def done(self, search: _Progress) -> bool:
        return self.progress(search) >= 1.0


class MaxGenerations(Termination):
    """Stop after generation ``n`` (the initial generation 0 plus ``n`` more)."""

    def __init__(self, n: int):
        self.n = int(n)

    def progress(self, search: _Progress) -> float:
        finished = search.generation + 1
        total = self.n + 1
        if finished >= total:
            return 1.0
        return min(1.0, max(0.0, (finished + search.partial) / total))


class TimeLimit(Termination):
    """Stop at the first generation boundary after ``seconds`` of wall time (counted from the
    first call, i.e. from when the loop starts). ``reached`` tells afterwards whether it fired."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = float(seconds), clock
        self.started: float | None = None
        self.reached = False

    def progress(self, search: _Progress) -> float:
        if self.started is None:
            self.started = self.clock()
        fraction = (self.clock() - self.started) / self.seconds if self.seconds > 0 else 1.0
        self.reached = self.reached or fraction >= 1.0
        return min(1.0, max(0.0, fraction))


class AnyOf(Termination):
    """Stops when any of its terminations does; its progress is the furthest of theirs."""

    def __init__(self, *terms: Termination):
        self.terms = terms

    def progress(self, search: _Progress) -> float:
        return max(t.progress(search) for t in self.terms)
