"""Search quality: survivors re-evaluated with more seeds, nevergrad's NGOpt as an optimiser,
successive halving inside a generation. Real training on a slice of real data (tiny budgets)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from evo.config import budget_from_dict
from evo.evaluation.dataset import prepare_dataset
from evo.search.ga import Search
from evo.search.ngopt import GenomeCodec
from evo.search.objectives import pareto_front
from evo.search.records import Record, merge_genome
from evo.search.store import RunStore
from evo.search.tasks import EvalContext, EvalTask, evaluate_task, low_fidelity_budget
from tests.test_search import TINY  # the tiny search budget shared by the search tests

pytestmark = pytest.mark.slow

ONE_EPOCH = {**TINY, "train": {**TINY["train"], "max_epochs": 1, "lr_trials": 1, "lr_trial_epochs": 1},
             "evaluate": {**TINY["evaluate"], "risk_trials": 2}}


def tiny(**ga) -> dict:
    return {**ONE_EPOCH, "ga": {**ONE_EPOCH["ga"], **ga}}


@pytest.fixture(scope="module")
def ds(nvda):
    return prepare_dataset(nvda.iloc[-1000:].copy(), "nvda", budget_from_dict("tiny", ONE_EPOCH))


def comparable(r: Record) -> tuple:
    result = None if r.result is None else {k: v for k, v in r.result.items() if k != "seconds"}
    return r.key, r.generation, r.fidelity, r.seed_index, r.error, result


# -- re-evaluation ------------------------------------------------------------------------------


def test_merging_extra_seeds_moves_the_selection_score_not_the_figures_shown():
    base = {"sharpe": 0.5, "sharpe_mean": 1.0, "max_drawdown": 0.2, "max_drawdown_mean": 0.3, "total_return": 0.1,
            "trades": 4, "enough_trades": True, "traded": True, "returns": [0.0, 0.02], "seeds": 2,
            "seed_sharpes": [0.5, 1.5], "seconds": 1.0, "lr_a": 1e-3}
    extra = {**base, "sharpe": -0.5, "sharpe_mean": -0.5, "max_drawdown": 0.5, "max_drawdown_mean": 0.5, "trades": 1,
             "enough_trades": False, "returns": [0.03, -0.01], "seeds": 1, "seed_sharpes": [-0.5], "lr_a": 5e-3}
    records = [Record("k", {}, 0, base), Record("k", {}, 1, extra, seed_index=2),
               Record("k", {}, 1, {**extra, "sharpe": 9.0}, fidelity="low")]   # a screen never merges
    m = merge_genome(records)
    assert m.result["seeds"] == 3 and m.result["seed_sharpes"] == [0.5, 1.5, -0.5]
    assert m.result["sharpe_mean"] == pytest.approx(0.5)
    assert m.result["sharpe_sd"] == pytest.approx(float(np.std([0.5, 1.5, -0.5], ddof=1)))
    assert m.result["max_drawdown_mean"] == pytest.approx((2 * 0.3 + 0.5) / 3)
    # what is shown (and exported) stays seed 0's
    shown = ("sharpe", "max_drawdown", "total_return", "trades", "enough_trades", "returns", "lr_a")
    assert {k: m.result[k] for k in shown} == {k: base[k] for k in shown}
    assert m.generation == 0 and m.seed_index is None
    # A merged record journaled again (the holdout traded) is not merged twice.
    assert merge_genome(records + [m]).result == m.result
    # A genome only screened at low fidelity has no full-fidelity record.
    assert merge_genome(records[2:]) is None
    # An older record (its sharpe was the seeds' mean, no sharpe_mean) counts its score once per seed.
    old = {k: v for k, v in base.items() if k not in ("sharpe_mean", "max_drawdown_mean", "seed_sharpes")}
    m = merge_genome([Record("k", {}, 0, old), records[1]])
    assert m.result["sharpe_mean"] == pytest.approx((0.5 + 0.5 - 0.5) / 3) and m.result["sharpe"] == 0.5


def test_survivors_gain_seeds_up_to_the_limit_and_newcomers_do_not(ds, tmp_path):
    budget = budget_from_dict("tiny", tiny(population=2, reevaluate=1))
    store = RunStore.create(tmp_path / "run", {"budget": budget.to_dict()})
    search = Search(EvalContext(ds, budget, 0), store)
    search.run(2)
    journal = list(store.iter_records())
    extra = [r for r in journal if r.seed_index is not None]
    assert extra, "a genome of generation 0 or 1 survives a later selection"
    assert all(r.seed_index == 1 and r.ok for r in extra)          # train.seeds 1 + reevaluate 1
    assert len({r.key for r in extra}) == len(extra)                # at most one extra seed each
    for r in extra:
        first = next(x for x in journal if x.key == r.key and x.seed_index is None)
        assert first.generation < r.generation                      # only genomes from an earlier generation
        merged = store.records()[r.key].result
        assert merged["seeds"] == 2 and merged["sharpe_mean"] == pytest.approx((first.result["sharpe"]
                                                                                  + r.result["sharpe"]) / 2)
        assert merged["sharpe_sd"] == pytest.approx(abs(first.result["sharpe"] - r.result["sharpe"]) / np.sqrt(2))
        assert merged["sharpe"] == first.result["sharpe"] and merged["returns"] == first.result["returns"]
    # the extra seed is seed + 1000 i with one seed: the same evaluation as that seed alone
    r = extra[0]
    again = evaluate_task(EvalTask(_genome(r), r.generation, "full", 1), EvalContext(ds, budget, 0, "cpu"))
    assert comparable(again) == comparable(r)


def _genome(r: Record):
    from evo.genome import Genome

    return Genome.from_dict(r.genome)


# -- NGOpt --------------------------------------------------------------------------------------


def test_the_codec_decodes_every_point_to_a_valid_genome_and_round_trips(ds):
    from evo.genome import random_genome

    space = budget_from_dict("cpu-like", {"search": {
        "embedding_dim": [16, 32], "num_blocks": [1, 3], "num_heads": [1, 2, 4], "seq_len": [8, 16],
        "proj_factor": [1.0, 2.0], "batch_size": [32, 64], "grad_clip": [0.5, 2.0], "timeframes": [1, 5],
        "fusion": ["concat", "attention"], "regime": ["none", "features", "gate"]}}).search
    pools = replace(ds.pools, timeframes=(1, 5))   # as on data long enough for weekly bars
    codec = GenomeCodec(space, pools)
    assert any(dim.kind == "timeframe" for dim in codec.dims)
    rng = np.random.default_rng(0)
    for _ in range(30):
        g = random_genome(space, pools, rng)
        assert codec.decode(codec.encode(g)) == g
        d = codec.decode(rng.random(codec.size))
        assert 1 <= len(d.model_a.features) <= space.max_features_a and d.seq_len in space.seq_len
    # a gene the space keeps at one value has no coordinate
    assert not any(dim.path == ("horizon",) for dim in GenomeCodec(budget_from_dict("t", TINY).search,
                                                                    ds.pools).dims)


@pytest.mark.parametrize("optimizer", ["ngopt", "tpe"])
def test_ask_tell_optimizers_are_deterministic_and_resume_to_the_same_front(ds, tmp_path, optimizer):
    budget = budget_from_dict("tiny", tiny(population=2))
    whole = RunStore.create(tmp_path / "whole", {})
    Search(EvalContext(ds, budget, 4), whole, optimizer=optimizer).run(2)
    # the same seed, stopped after generation 0 and resumed by a fresh Search (rebuilt optimiser)
    parts = RunStore.create(tmp_path / "parts", {})
    Search(EvalContext(ds, budget, 4), parts, optimizer=optimizer).run(0)
    Search(EvalContext(ds, budget, 4), RunStore.open(parts.path, writable=True), optimizer=optimizer).run(2)
    a, b = whole.records(), parts.records()
    assert len(a) >= 5 and {k: comparable(r) for k, r in a.items()} == {k: comparable(r) for k, r in b.items()}
    assert [r.key for r in pareto_front(a.values())] == [r.key for r in pareto_front(b.values())]
    # another seed proposes other genomes
    other = RunStore.create(tmp_path / "other", {})
    Search(EvalContext(ds, budget, 5), other, optimizer=optimizer).run(0)
    assert set(other.records()) != {k for k, r in a.items() if r.generation == 0}


# -- successive halving -------------------------------------------------------------------------


def test_halving_screens_population_times_eta_and_promotes_population(ds, tmp_path):
    budget = budget_from_dict("tiny", tiny(population=2, halving_eta=3))
    store = RunStore.create(tmp_path / "run", {})
    search = Search(EvalContext(ds, budget, 1), store)
    search.run(1)
    journal = list(store.iter_records())
    for gen in (0, 1):
        low = [r for r in journal if r.generation == gen and r.fidelity == "low"]
        full = [r for r in journal if r.generation == gen and r.fidelity == "full" and r.seed_index is None]
        assert len(low) == 6 and len({r.key for r in low}) == 6
        assert len(full) == 2 and {r.key for r in full} <= {r.key for r in low}
        # the promoted ones are non-dominated among the screens (2 of 6: at least the first front's best)
        assert all(r.ok for r in full)
    low_budget = low_fidelity_budget(budget)
    assert low_budget.train.max_epochs == 1 and low_budget.train.lr_trials == 0
    assert low_budget.evaluate.folds == 1 and low_budget.evaluate.risk_trials == 0
    assert low_budget.train.max_train_windows == budget.train.max_train_windows // budget.ga.halving_eta
    # a screen trades the run's whole test span on one fold, with the genome's own threshold and lr 1e-3
    low_rec = next(r for r in journal if r.fidelity == "low" and r.ok)
    screen, first_full = low_rec.result, next(r for r in journal if r.fidelity == "full" and r.ok).result
    assert (screen["test_start"], screen["test_end"]) == (first_full["test_start"], first_full["test_end"])
    assert screen["lr_a"] == screen["lr_b"] == 1e-3
    assert screen["risk"]["threshold"] == pytest.approx(low_rec.genome["threshold"])
    # only full-fidelity results reach the records, the front and the hypervolume
    merged = store.records()
    assert set(merged) == {r.key for r in journal if r.fidelity == "full"}
    assert all(r.fidelity == "full" for r in pareto_front(merged.values()))
    assert set(search.records) == set(merged)


def test_halving_with_two_workers_gives_the_in_process_records(ds, tmp_path):
    from evo.search.parallel import make_map

    budget = budget_from_dict("tiny", tiny(population=2, halving_eta=2, reevaluate=1))
    ref = RunStore.create(tmp_path / "ref", {})
    Search(EvalContext(ds, budget, 2), ref).run(1)
    par = RunStore.create(tmp_path / "par", {})
    with make_map(EvalContext(ds, budget, 2, "cpu"), workers=2, scheduler=None) as map_fn:
        Search(EvalContext(ds, budget, 2), par, map_fn=map_fn).run(1)
    key = lambda r: (r.key, r.fidelity, r.seed_index)  # noqa: E731
    got = {key(r): comparable(r) for r in par.iter_records()}
    want = {key(r): comparable(r) for r in ref.iter_records()}
    # 2 generations of 2 x 2 screens and 2 full evaluations, and the survivors' extra seeds
    assert len(want) == 2 * 4 + 2 * 2 + sum(1 for k in want if k[2] is not None)
    assert got == want


def test_front_counts_low_fidelity_screens_and_runs_ngopt_from_the_cli(tmp_path, shared_data):
    import os

    budget = tmp_path / "tiny.toml"
    budget.write_text(
        '[search]\nembedding_dim = [8]\nnum_blocks = [1, 1]\nnum_heads = [2]\nseq_len = [8]\nhorizon = [2]\n'
        'max_features_a = 3\nmax_features_b = 3\nthreshold = [0.34, 0.45]\n'
        '[train]\nmax_epochs = 1\npatience = 1\nmax_train_windows = 200\nlr_trials = 1\nlr_trial_epochs = 1\n'
        '[evaluate]\nfolds = 2\nmin_trades = 0\nrisk_trials = 2\n[ga]\npopulation = 2\nhalving_eta = 2\n')
    env = {**os.environ, "EVO_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "evo", "run", "--budget", str(budget), "--generations", "0",
                           "--optimizer", "ngopt", "--out", str(tmp_path / "run"),
                           "--data", str(shared_data / "ORCL_1d_1995_2014.csv")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["optimizer"] == "ngopt"
    front = json.loads(subprocess.run([sys.executable, "-m", "evo", "front", str(tmp_path / "run"), "--json"],
                                      env=env, capture_output=True, text=True, timeout=120).stdout)
    assert front["low_fidelity"] == 4 and front["evaluated"] <= 2
    assert all("sharpe_sd" in m and m["seeds"] == 1 for m in front["members"])


class _Stopped(Exception):
    """Raised by :func:`_stopping_map` where a crash would cut the run."""


def _stopping_map(ds, budget, seed: int, after: int):
    """A map that evaluates ``after`` tasks for real, journaled one by one, then stops the run in
    the middle of whatever it was doing (the in-process form of the kill -9 test in
    tests/test_end_to_end.py)."""
    left = [after]

    def map_fn(tasks):
        for task in tasks:
            if left[0] == 0:
                raise _Stopped
            left[0] -= 1
            yield evaluate_task(task, EvalContext(ds, budget, seed, "cpu"))

    return map_fn


@pytest.mark.parametrize("after", [7, 12])  # stops in generation 1's screens / before its survivor's extra seed
def test_stopped_mid_generation_with_halving_and_reevaluation_resumes_to_the_same_front(ds, tmp_path, after):
    budget = budget_from_dict("tiny", tiny(population=2, halving_eta=2, reevaluate=1))
    whole = RunStore.create(tmp_path / "whole", {})
    Search(EvalContext(ds, budget, 6), whole).run(2)
    cut = RunStore.create(tmp_path / "cut", {})
    with pytest.raises(_Stopped):
        Search(EvalContext(ds, budget, 6), cut, map_fn=_stopping_map(ds, budget, 6, after)).run(2)
    assert len(list(cut.iter_records())) == after
    Search(EvalContext(ds, budget, 6), RunStore.open(cut.path, writable=True)).run(2)
    a, b = list(whole.iter_records()), list(cut.iter_records())
    assert sorted(comparable(r) for r in a) == sorted(comparable(r) for r in b)   # nothing evaluated twice
    assert any(r.seed_index is not None for r in a) and any(r.fidelity == "low" for r in a)
    ra, rb = whole.records(), cut.records()
    assert [(r.key, r.result["sharpe"]) for r in pareto_front(ra.values())] == \
        [(r.key, r.result["sharpe"]) for r in pareto_front(rb.values())]


# -- the final front re-scored with fresh seeds (ga.rescore) ------------------------------------


def test_the_final_front_is_rescored_with_fresh_seeds_and_never_selected_on(ds, tmp_path):
    from evo.reporting.front import front_payload
    from evo.search.records import RESCORE_BASE, rescored

    budget = budget_from_dict("tiny", tiny(population=2, rescore=1))
    store = RunStore.create(tmp_path / "run", {})
    search = Search(EvalContext(ds, budget, 3), store)
    search.run(1)
    before = {k: comparable(r) for k, r in store.records().items()}
    again = search.rescore_front()
    front = pareto_front(store.records().values())
    assert front and set(again) == {r.key for r in front} and all(v["seeds"] == 1 for v in again.values())
    journal = list(store.iter_records())
    assert {r.seed_index for r in journal if r.fidelity == "rescore"} == {RESCORE_BASE}
    assert {k: comparable(r) for k, r in store.records().items()} == before   # never merged into the scores
    # a resumed re-scoring finds its evaluations in the journal and trains nothing again
    Search(EvalContext(ds, budget, 3), RunStore.open(store.path, writable=True)).rescore_front()
    assert len(list(store.iter_records())) == len(journal)
    payload = front_payload(store.records(), {}, "run", rescored=rescored(journal))
    assert all(m["rescored"]["seeds"] == 1 for m in payload["members"]) and payload["rescored_note"]
    assert any(m["rescored"]["sharpe"] != m["sharpe"] for m in payload["members"]) or len(front) == 1
