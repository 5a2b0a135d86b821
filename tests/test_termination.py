"""evo.search.termination: the progress fraction that stops a search and draws its bar."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from evo.search.termination import AnyOf, MaxGenerations, TimeLimit


def state(generation: int, partial: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(generation=generation, partial=partial)


def test_max_generations_counts_the_initial_generation_and_the_one_in_flight():
    t = MaxGenerations(3)   # generations 0, 1, 2, 3
    assert t.progress(state(-1)) == 0.0 and not t.done(state(-1))
    assert t.progress(state(-1, 0.5)) == pytest.approx(0.125)
    assert t.progress(state(1, 0.5)) == pytest.approx(2.5 / 4)
    assert not t.done(state(2, 0.99))
    assert t.progress(state(3)) == 1.0 and t.done(state(3))
    assert t.done(state(7))            # a resumed run already past the end


def test_time_limit_starts_at_its_first_call_and_says_when_it_fired():
    now = [100.0]
    t = TimeLimit(60, clock=lambda: now[0])
    assert t.progress(state(-1)) == 0.0 and not t.reached
    now[0] = 130.0
    assert t.progress(state(0)) == pytest.approx(0.5) and not t.done(state(0))
    now[0] = 161.0
    assert t.done(state(1)) and t.reached


def test_any_of_stops_at_the_first_and_reports_the_furthest():
    now = [0.0]
    limit = TimeLimit(10, clock=lambda: now[0])
    t = AnyOf(MaxGenerations(9), limit)
    assert t.progress(state(1)) == pytest.approx(0.2) and not t.done(state(1))
    now[0] = 8.0
    assert t.progress(state(1)) == pytest.approx(0.8)
    now[0] = 10.0
    assert t.done(state(2)) and limit.reached
