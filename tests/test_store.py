"""The run store: an append-only journal that survives torn writes, atomic checkpoints."""

from __future__ import annotations

import json

import pytest

from evo.errors import StoreError
from evo.fileio import write_json_atomic
from evo.search.records import Record
from evo.search.store import RunStore


def rec(key: str, ok: bool = True) -> Record:
    return Record(key, {"k": key}, 0, {"sharpe": 1.0} if ok else None, None if ok else "GenomeError: x")


def test_journal_replays_in_order_and_last_record_wins(tmp_path):
    store = RunStore.create(tmp_path / "run", {"seed": 1})
    store.append(rec("a"))
    store.append(rec("b", ok=False))
    store.append(rec("a"))
    again = RunStore.open(tmp_path / "run")
    records = again.records()
    assert list(records) == ["a", "b"] and records["a"].ok and not records["b"].ok
    assert again.meta["seed"] == 1


def test_torn_last_line_is_ignored_but_a_torn_middle_line_is_an_error(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    store.append(rec("a"))
    with open(store.journal_path, "a") as fh:
        fh.write('{"key": "b", "geno')           # power cut mid-write
    assert list(store.records()) == ["a"]
    with open(store.journal_path, "a") as fh:
        fh.write("\n" + rec("c").to_json() + "\n")
    with pytest.raises(StoreError, match="line 2"):
        store.records()


def test_create_refuses_a_non_empty_directory_and_open_refuses_a_foreign_one(tmp_path):
    RunStore.create(tmp_path / "run", {})
    with pytest.raises(StoreError, match="--resume"):
        RunStore.create(tmp_path / "run", {})
    (tmp_path / "other").mkdir()
    with pytest.raises(StoreError, match="not an evo run"):
        RunStore.open(tmp_path / "other")


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "ckpt.json"
    write_json_atomic(path, {"generation": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})      # NaN is refused before the rename
    assert json.loads(path.read_text()) == {"generation": 1}


def test_checkpoint_round_trip(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    assert store.load_checkpoint() is None
    store.save_checkpoint({"generation": 3, "population": ["a"], "rng_state": {"x": 1}})
    assert RunStore.open(tmp_path / "run").load_checkpoint()["generation"] == 3


def test_reopening_cuts_a_torn_tail_so_new_records_land_on_their_own_line(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    store.append(rec("a"))
    with open(store.journal_path, "a") as fh:
        fh.write('{"key": "b", "geno')
    RunStore.open(tmp_path / "run")          # a reader leaves a live journal alone
    assert store.journal_path.read_text().endswith('"geno')
    reopened = RunStore.open(tmp_path / "run", writable=True)
    reopened.append(rec("c"))
    assert list(RunStore.open(tmp_path / "run").records()) == ["a", "c"]
