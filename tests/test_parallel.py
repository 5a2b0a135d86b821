"""Parallel evaluation gives the in-process records and front, and survives failing genomes and
dying workers. Real torch/xlstm/vectorbt in real worker processes (2 local ones, then a 2-worker
Dask LocalCluster) on the last 1500 NVDA daily bars with a tiny budget.

Each worker process pays its start-up once (imports, numba compilation): 10-40 s on 2 busy cores.
"""

from __future__ import annotations

import os

import pytest

from evo.config import budget_from_dict
from evo.errors import ConfigError
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import study_storage_url
from evo.genome import Genome, ModelGenes
from evo.search.ga import Search
from evo.search.objectives import pareto_front
from evo.search.parallel import CRASH_ENV, DaskMap, ProcessPoolMap, make_map
from evo.search.records import Record
from evo.search.store import RunStore
from evo.search.tasks import EvalContext, EvalTask
from tests.test_evaluate import TINY  # 2 folds, 2 epochs, one-block 8-wide models

pytestmark = pytest.mark.slow

SEED = 3


def genome(threshold: float = 0.36, features_b: tuple[str, ...] = ("rsi_14", "macd_hist_12_26_9")) -> Genome:
    return Genome(
        model_a=ModelGenes(("cdl_engulfing", "body_range", "gap"), 8, 1, 2, (), 0.0),
        model_b=ModelGenes(features_b, 8, 1, 2, (), 0.0),
        seq_len=8, horizon=2, consensus="both", threshold=threshold,
    )


# A worker handed this genome exits at once, as one killed by the OS would (evo.search.parallel's hook).
CRASHING = genome(threshold=0.4321)
# This one raises inside evaluate_genome: an ordinary, recorded genome failure.
BROKEN = genome(features_b=("no_such_feature",))
# A good genome no search of this module evaluates (each genome's Optuna study lives in the
# pool's studies.db, and a second evaluation there would continue that study).
FRESH = genome(threshold=0.3876)


def comparable(r: Record) -> tuple:
    """Everything in a record but the wall time it took."""
    result = None if r.result is None else {k: v for k, v in r.result.items() if k != "seconds"}
    return r.key, r.genome, r.generation, r.error, result


@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny", TINY)


@pytest.fixture(scope="module")
def ds(nvda, budget):
    return prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)


def run_search(ds, budget, store, map_fn) -> dict[str, Record]:
    Search(EvalContext(ds, budget, SEED), store, map_fn=map_fn).run(budget.ga.generations)
    return RunStore.open(store.path).records()


@pytest.fixture(scope="module")
def reference(ds, budget, tmp_path_factory) -> dict[str, Record]:
    """A whole tiny search (generation 0 and 1) evaluated in this process, its learning-rate
    studies in the run's studies.db as `evo run` keeps them."""
    store = RunStore.create(tmp_path_factory.mktemp("ref") / "run", {})
    ctx = EvalContext(ds, budget, SEED, "cpu", study_storage_url(store.path))
    with make_map(ctx, workers=1, scheduler=None) as map_fn:
        return run_search(ds, budget, store, map_fn)


@pytest.fixture(scope="module")
def pool(ds, budget, tmp_path_factory):
    """Two local worker processes for the whole module, sharing one studies.db (started with the
    crash hook armed)."""
    os.environ[CRASH_ENV] = CRASHING.key()
    storage = study_storage_url(tmp_path_factory.mktemp("pool"))
    try:
        with make_map(EvalContext(ds, budget, SEED, "cpu", storage), workers=2, scheduler=None) as p:
            assert isinstance(p, ProcessPoolMap) and p.workers == 2
            yield p
    finally:
        os.environ.pop(CRASH_ENV, None)


def test_two_workers_give_the_in_process_records_and_front(ds, budget, pool, reference, tmp_path):
    # (pool first: its workers start up while the reference search runs in this process)
    records = run_search(ds, budget, RunStore.create(tmp_path / "run", {}), pool)
    assert len(pool.startup_seconds) == 2
    assert len(reference) == 4 and all(r.ok for r in reference.values())
    assert {k: comparable(r) for k, r in records.items()} == {k: comparable(r) for k, r in reference.items()}
    front, ref_front = pareto_front(records.values()), pareto_front(reference.values())
    assert ref_front
    assert [(r.key, r.result["sharpe"]) for r in front] == [(r.key, r.result["sharpe"]) for r in ref_front]


def test_a_failing_genome_and_a_dying_worker_are_recorded_and_the_pool_recovers(pool):
    records = {r.key: r for r in pool([EvalTask(CRASHING, 0), EvalTask(BROKEN, 0), EvalTask(FRESH, 0)])}
    assert set(records) == {CRASHING.key(), BROKEN.key(), FRESH.key()}
    crashed = records[CRASHING.key()]
    assert not crashed.ok and crashed.error.startswith("WorkerError: ") and "exit code 1" in crashed.error
    assert crashed.genome == CRASHING.to_dict()
    broken = records[BROKEN.key()]
    assert not broken.ok and "no_such_feature" in broken.error and not broken.error.startswith("WorkerError")
    assert records[FRESH.key()].ok
    # A replacement took the dead worker's place, and the pool keeps working with two workers.
    pool.wait_ready()
    assert len(pool.startup_seconds) == 3
    again = {r.key: r for r in pool([EvalTask(FRESH, 1), EvalTask(BROKEN, 1)])}
    assert set(again) == {FRESH.key(), BROKEN.key()}
    assert again[FRESH.key()].ok and again[FRESH.key()].generation == 1 and not again[BROKEN.key()].ok


def test_a_dask_cluster_gives_the_in_process_records_and_survives_a_dying_worker(ds, budget, reference,
                                                                                monkeypatch, tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask

    monkeypatch.setenv(CRASH_ENV, CRASHING.key())   # the nanny passes it on to its worker processes
    # Without retries: Dask would otherwise try the crashing genome on 3 workers before giving up.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        ctx = EvalContext(ds, budget, SEED, "cpu", study_storage_url(tmp_path))
        with make_map(ctx, workers=1, scheduler=cluster.scheduler_address) as map_fn:
            assert isinstance(map_fn, DaskMap) and map_fn.workers == 2
            first = {k: r for k, r in reference.items() if r.generation == 0}
            tasks = [EvalTask(Genome.from_dict(r.genome), r.generation) for r in first.values()]
            records = {r.key: r for r in map_fn([EvalTask(CRASHING, 0)] + tasks + [EvalTask(BROKEN, 0)])}
    crashed = records.pop(CRASHING.key())
    assert not crashed.ok and crashed.error.startswith("WorkerError: KilledWorker")
    broken = records.pop(BROKEN.key())
    assert not broken.ok and "no_such_feature" in broken.error
    # (its studies stayed in memory: a SQLite file is not sent to Dask workers; same results)
    assert {k: comparable(r) for k, r in records.items()} == {k: comparable(r) for k, r in first.items()}


def test_bad_settings_are_config_errors(ds, budget):
    with pytest.raises(ConfigError, match="workers"):
        make_map(EvalContext(ds, budget, 0, "cpu"), workers=0, scheduler=None)
    with pytest.raises(ConfigError, match="exclude each other"):
        make_map(EvalContext(ds, budget, 0, "cpu"), workers=2, scheduler="tcp://127.0.0.1:8786")
    pytest.importorskip("distributed")
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskMap("tcp://127.0.0.1:9", EvalContext(ds, budget, 0, "cpu"), connect_timeout_s=1)
