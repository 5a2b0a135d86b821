"""Genome operators: every product of random_genome, cx_uniform and mut_genome is valid."""

from __future__ import annotations

import numpy as np
import pytest

from evo.config import SearchSpace
from evo.errors import ConfigError
from evo.genome import FeaturePools, Genome, ModelGenes, cx_uniform, mut_genome, random_genome, repair
from experiments import load_budget

POOLS = FeaturePools(a=tuple(f"cdl_{i}" for i in range(12)), b=tuple(f"ind_{i}" for i in range(9)))


def assert_valid(g: Genome, space: SearchSpace, pools: FeaturePools = POOLS) -> None:
    for m, pool, cap in ((g.model_a, pools.a, space.max_features_a), (g.model_b, pools.b, space.max_features_b)):
        assert 1 <= len(m.features) <= cap
        assert set(m.features) <= set(pool)
        assert m.embedding_dim in space.embedding_dim
        assert m.num_heads in space.num_heads and m.embedding_dim % m.num_heads == 0
        assert space.num_blocks[0] <= m.num_blocks <= space.num_blocks[1]
        assert all(0 <= i < m.num_blocks for i in m.slstm_at)
        assert space.dropout[0] <= m.dropout <= space.dropout[1]
        assert m.proj_factor in space.proj_factor
        assert (m.batch_size in space.batch_size) if space.batch_size else m.batch_size is None
        assert (space.grad_clip[0] <= m.grad_clip <= space.grad_clip[1]) if space.grad_clip else m.grad_clip is None
    assert g.seq_len in space.seq_len and g.horizon in space.horizon
    assert g.consensus in space.consensus
    assert space.threshold[0] <= g.threshold <= space.threshold[1]


@pytest.mark.parametrize("budget", ["smoke", "cpu", "gpu"])
def test_operators_never_produce_an_invalid_genome(budget):
    space = load_budget(budget).search
    rng = np.random.default_rng(1)
    pop = [random_genome(space, POOLS, rng) for _ in range(30)]
    for g in pop:
        assert_valid(g, space)
    for _ in range(300):
        a, b = pop[rng.integers(len(pop))], pop[rng.integers(len(pop))]
        c1, c2 = cx_uniform(a, b, space, POOLS, rng)
        m = mut_genome(c1, space, POOLS, rng, indpb=0.5)
        for g in (c1, c2, m):
            assert_valid(g, space)
        pop[rng.integers(len(pop))] = m


def test_operators_do_not_write_onto_inputs_and_mutation_changes_something():
    space = load_budget("smoke").search
    rng = np.random.default_rng(2)
    a, b = random_genome(space, POOLS, rng), random_genome(space, POOLS, rng)
    da, db = a.to_dict(), b.to_dict()
    cx_uniform(a, b, space, POOLS, rng)
    child = mut_genome(a, space, POOLS, rng)
    assert a.to_dict() == da and b.to_dict() == db
    assert child.key() != a.key()


def test_crossover_keeps_shared_features_and_conserves_the_rest():
    space = load_budget("cpu").search
    rng = np.random.default_rng(3)
    a, b = random_genome(space, POOLS, rng), random_genome(space, POOLS, rng)
    c1, c2 = cx_uniform(a, b, space, POOLS, rng)
    shared = set(a.model_a.features) & set(b.model_a.features)
    assert shared <= set(c1.model_a.features) and shared <= set(c2.model_a.features)


def test_repair_fixes_heads_blocks_and_empty_features():
    space = SearchSpace(embedding_dim=(12,), num_heads=(4, 8), num_blocks=(1, 2))
    bad = {
        "model_a": {"features": ["not_in_pool"], "embedding_dim": 12, "num_blocks": 5, "num_heads": 8,
                    "slstm_at": [0, 3, 4], "dropout": 0.9},
        "model_b": {"features": list(POOLS.b), "embedding_dim": 7, "num_blocks": 0, "num_heads": 3,
                    "slstm_at": [], "dropout": -1},
        "seq_len": 1000, "horizon": 2, "consensus": "nope", "threshold": 0.99,
    }
    g = repair(bad, space, POOLS, np.random.default_rng(0))
    assert_valid(g, space)
    assert g.model_a.num_heads == 4 and g.model_a.slstm_at == (0,)


def test_genome_round_trip_and_key_ignores_feature_order():
    space = load_budget("smoke").search
    g = random_genome(space, POOLS, np.random.default_rng(4))
    assert Genome.from_dict(g.to_dict()) == g
    d = g.to_dict()
    d["model_b"]["features"] = list(reversed(d["model_b"]["features"]))
    assert Genome.from_dict(d).key() == g.key()


def test_model_genes_reject_invalid_values():
    with pytest.raises(ConfigError):
        ModelGenes((), 16, 1, 1, (), 0.1)
    with pytest.raises(ConfigError):
        ModelGenes(("a",), 16, 1, 3, (), 0.1)
    with pytest.raises(ConfigError):
        ModelGenes(("a",), 16, 2, 1, (2,), 0.1)


# --------------------------------------------------------------------------------------------
# training genes: up-projection (hidden size), batch size, gradient clip


def test_gpu_preset_opens_the_training_genes_and_every_value_is_reached():
    space = load_budget("gpu").search
    assert space.proj_factor == (1.0, 1.5, 2.0)
    assert space.batch_size == (16, 32, 64, 128, 256) and space.grad_clip == (0.5, 2.0)
    rng = np.random.default_rng(4)
    pop = [random_genome(space, POOLS, rng) for _ in range(200)]
    models = [m for g in pop for m in (g.model_a, g.model_b)]
    assert {m.proj_factor for m in models} == set(space.proj_factor)
    assert {m.batch_size for m in models} == set(space.batch_size)
    clips = np.array([m.grad_clip for m in models])
    assert clips.min() >= 0.5 and clips.max() <= 2.0 and clips.std() > 0.2
    # hidden size (the mLSTM cell) spans 64 .. 1024 across the preset's embeddings and factors
    from models import mlstm_inner_dim

    widths = {mlstm_inner_dim(e, f) for e in space.embedding_dim for f in space.proj_factor}
    assert min(widths) == 64 and max(widths) == 1024


def test_smoke_preset_keeps_the_training_genes_closed():
    space = load_budget("smoke").search
    rng = np.random.default_rng(5)
    for _ in range(20):
        g = random_genome(space, POOLS, rng)
        for m in (g.model_a, g.model_b):
            assert (m.proj_factor, m.batch_size, m.grad_clip) == (2.0, None, None)
            assert m.training(64, 1.0) == (64, 1.0)


def test_genes_at_their_default_keep_an_old_genomes_key_and_old_dicts_load():
    from pathlib import Path

    from evo.genome import load_genome_file

    seed = Path(__file__).resolve().parents[1] / "experiments" / "seeds" / "todays_bot.toml"
    (_, g), = load_genome_file(seed)
    # The key this genome had before the training genes existed (evo at commit 5490dad).
    assert g.key() == "3dd0e42f6c7e3de4"
    old = g.to_dict()
    for m in ("model_a", "model_b"):
        for gene in ("proj_factor", "batch_size", "grad_clip"):
            del old[m][gene]
    assert Genome.from_dict(old) == g
    wider = Genome.from_dict({**g.to_dict(), "model_a": {**g.to_dict()["model_a"], "batch_size": 32}})
    assert wider.key() != g.key() and wider.model_a.training(64, 1.0) == (32, 1.0)


def test_training_gene_values_are_checked():
    with pytest.raises(ConfigError, match="proj_factor"):
        ModelGenes(("a",), 16, 1, 1, (), 0.1, proj_factor=0.5)
    with pytest.raises(ConfigError, match="batch_size"):
        ModelGenes(("a",), 16, 1, 1, (), 0.1, batch_size=0)
    with pytest.raises(ConfigError, match="grad_clip"):
        ModelGenes(("a",), 16, 1, 1, (), 0.1, grad_clip=0.0)
    from evo.config import budget_from_dict

    with pytest.raises(ConfigError, match="grad_clip"):
        budget_from_dict("x", {"search": {"grad_clip": [2.0]}})
    assert budget_from_dict("x", {"search": {"batch_size": [], "grad_clip": []}}).search.batch_size == ()


MINUTE_POOLS = FeaturePools(a=POOLS.a, b=POOLS.b, timeframes=(1, 5, 15))  # data without the hour


def test_timeframe_genes_stay_valid_under_the_operators():
    """Timeframes stay sorted, unique, with x1, inside the space and the data's multipliers;
    fusion is 'concat' for one timeframe; every value is reached."""
    space = SearchSpace(timeframes=(1, 5, 15, 60), fusion=("concat", "attention"),
                        regime=("none", "features", "gate"))
    rng = np.random.default_rng(7)
    pop = [random_genome(space, MINUTE_POOLS, rng) for _ in range(20)]
    seen = {"tfs": set(), "fusion": set(), "regime": set()}
    for _ in range(300):
        a, b = pop[rng.integers(len(pop))], pop[rng.integers(len(pop))]
        c1, c2 = cx_uniform(a, b, space, MINUTE_POOLS, rng)
        pop[rng.integers(len(pop))] = mut_genome(c1, space, MINUTE_POOLS, rng, indpb=0.3)
        for g in (c1, c2, *pop):
            assert_valid(g, space, MINUTE_POOLS)
            for m in (g.model_a, g.model_b):
                assert m.timeframes[0] == 1 and list(m.timeframes) == sorted(set(m.timeframes))
                assert set(m.timeframes) <= {1, 5, 15}
                assert m.fusion in space.fusion and (len(m.timeframes) > 1 or m.fusion == "concat")
                assert m.regime in space.regime
                seen["tfs"].add(m.timeframes)
                seen["fusion"].add(m.fusion)
                seen["regime"].add(m.regime)
    assert seen["tfs"] == {(1,), (1, 5), (1, 15), (1, 5, 15)}
    assert seen["fusion"] == {"concat", "attention"} and seen["regime"] == {"none", "features", "gate"}
    d = {**pop[0].to_dict(), "model_a": {**pop[0].to_dict()["model_a"], "timeframes": [60, 5, 5]}}
    assert repair(d, space, MINUTE_POOLS, rng).model_a.timeframes == (1, 5)   # the data lack x60
    with pytest.raises(ConfigError, match="timeframes"):
        ModelGenes(("a",), 16, 1, 1, (), 0.1, timeframes=(5, 15))
    with pytest.raises(ConfigError, match="fusion"):
        ModelGenes(("a",), 16, 1, 1, (), 0.1, fusion="sum")


def test_closed_timeframe_genes_change_neither_keys_nor_draws():
    """With timeframes/fusion/regime closed the operators draw exactly as before (same genomes
    from the same seed whatever the data's timeframes) and default genes leave the key alone."""
    space = load_budget("smoke").search
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(10):
        a, b = random_genome(space, POOLS, r1), random_genome(space, MINUTE_POOLS, r2)
        assert a == b and a.model_a.timeframes == (1,) and a.model_b.regime == "none"
    d = a.to_dict()
    for m in ("model_a", "model_b"):
        for gene in ("timeframes", "fusion", "regime"):
            del d[m][gene]
    assert Genome.from_dict(d).key() == a.key()
    multi = Genome.from_dict({**a.to_dict(), "model_b": {**a.to_dict()["model_b"], "timeframes": [1, 5]}})
    assert multi.key() != a.key() and Genome.from_dict(multi.to_dict()) == multi
