"""Finding a member of a run by the id `evo front` shows: the one prefix rule of every command.

Ids are 16 hex characters (:meth:`evo.genome.Genome.key`); the front shows the first 8. A prefix
names a member when it is at least :data:`MIN_PREFIX` characters long and exactly one genome's id
starts with it, so ``949a`` may pick a member today, but never a member the user did not mean.
"""

from __future__ import annotations

from typing import Mapping, TypeVar

from evo.errors import StoreError

MIN_PREFIX = 4

R = TypeVar("R")


def find_member(records: Mapping[str, R], prefix: str, *, run: str = "the run") -> R:
    """The record whose id starts with ``prefix`` (case and surrounding spaces ignored).

    ``records``: ``RunStore.records()`` (id -> record). Raises :class:`evo.errors.StoreError` when
    ``prefix`` is shorter than :data:`MIN_PREFIX`, is not hexadecimal, matches no id or matches
    several (their ids are named)."""
    text = prefix.strip().lower()
    if len(text) < MIN_PREFIX:
        raise StoreError(f"{run}: member id {prefix!r} is too short: give at least {MIN_PREFIX} characters "
                         "of an id from `python -m evo front`")
    if any(c not in "0123456789abcdef" for c in text):
        raise StoreError(f"{run}: member id {prefix!r} is not an id (ids are hexadecimal: 0-9, a-f); "
                         "see `python -m evo front`")
    matches = sorted(k for k in records if k.startswith(text))
    if not matches:
        raise StoreError(f"{run}: no genome's id starts with {prefix!r}; see `python -m evo front`")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise StoreError(f"{run}: member id {prefix!r} matches {len(matches)} genomes ({shown}); "
                         "give more characters")
    return records[matches[0]]
