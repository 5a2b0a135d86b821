"""Genome evaluation on real data: no look-ahead end to end, failures recorded, fitness sane."""

from __future__ import annotations

import numpy as np
import pytest

from evo.config import budget_from_dict
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import evaluate_genome, walk_forward_predictions
from evo.genome import Genome, ModelGenes
from evo.search.ga import Search
from evo.search.objectives import pareto_front
from evo.search.store import RunStore
from evo.search.tasks import EvalContext

TINY = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8],
               "horizon": [2], "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 3},
    "train": {"max_epochs": 2, "patience": 1, "max_train_windows": 300, "lr_trials": 1, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "min_trades": 1},
    "ga": {"population": 2, "generations": 1},
}


@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny", TINY)


@pytest.fixture(scope="module")
def bars(nvda):
    return nvda.iloc[-1500:].copy()


def genome(slstm: bool = False) -> Genome:
    return Genome(
        model_a=ModelGenes(("cdl_engulfing", "body_range", "gap", "close_pos"), 8, 1, 2, (0,) if slstm else (), 0.0),
        model_b=ModelGenes(("rsi_14", "macd_hist_12_26_9", "bb_pctb_20_2"), 8, 1, 2, (), 0.0),
        seq_len=8, horizon=2, consensus="weighted", threshold=0.36,
    )


def perturb_after(bars, t: int, seed: int = 0):
    """Scale every bar after row t by its own random factor (OHLC stay consistent), and shuffle
    volume: the future becomes a different, still valid market."""
    out = bars.copy()
    rng = np.random.default_rng(seed)
    factor = np.exp(np.cumsum(rng.normal(0, 0.03, len(out) - t - 1)))
    for col in ("open", "high", "low", "close"):
        out.iloc[t + 1:, out.columns.get_loc(col)] *= factor
    out.iloc[t + 1:, out.columns.get_loc("volume")] = rng.permutation(out["volume"].to_numpy()[t + 1:])
    return out


def test_changing_the_future_does_not_change_earlier_out_of_sample_predictions(bars, budget):
    g = genome(slstm=True)
    ds = prepare_dataset(bars, "nvda", budget)
    wf = walk_forward_predictions(g, ds, budget, seed=1)
    fold0 = wf.folds[0]
    cut = fold0.test[1] - 1                       # last bar of the first test fold
    ds2 = prepare_dataset(perturb_after(bars, cut), "nvda-perturbed", budget)
    wf2 = walk_forward_predictions(g, ds2, budget, seed=1)
    n0 = fold0.test[1] - fold0.test[0]
    np.testing.assert_array_equal(wf.p_a[:n0], wf2.p_a[:n0])
    np.testing.assert_array_equal(wf.p_b[:n0], wf2.p_b[:n0])
    assert wf.lr_a == wf2.lr_a and wf.lr_b == wf2.lr_b   # the lr study saw fold 0's validation only
    # and the perturbation did reach the later fold
    assert not np.array_equal(wf.p_a[n0:], wf2.p_a[n0:])


def test_evaluation_is_deterministic_and_out_of_sample(bars, budget):
    ds = prepare_dataset(bars, "nvda", budget)
    r1 = evaluate_genome(genome(), ds, budget, seed=5)
    r2 = evaluate_genome(genome(), ds, budget, seed=5)
    assert r1.to_dict() | {"seconds": 0} == r2.to_dict() | {"seconds": 0}
    assert np.isfinite([r1.sharpe, r1.max_drawdown, r1.total_return]).all()
    assert 0.0 <= r1.max_drawdown <= 1.0
    assert r1.test_bars == len(r1.returns)
    # the out-of-sample span is the last ~30 % of the data, after every training row of fold 0
    assert r1.test_start > bars.index[int(len(bars) * 0.6)].isoformat()
    assert r1.test_end == bars.index[-1].isoformat()


def test_a_failing_genome_is_recorded_and_the_run_goes_on(bars, budget, tmp_path):
    ds = prepare_dataset(bars, "nvda", budget)
    store = RunStore.create(tmp_path / "run", {"budget": budget.to_dict()})
    search = Search(EvalContext(ds, budget, 0), store)
    good = genome()
    bad = Genome(model_a=good.model_a,
                 model_b=ModelGenes(("no_such_feature",), 8, 1, 2, (), 0.0),
                 seq_len=8, horizon=2, consensus="both", threshold=0.4)
    search.evaluate([bad, good], generation=0)
    records = RunStore.open(tmp_path / "run").records()
    assert not records[bad.key()].ok and "no_such_feature" in records[bad.key()].error
    assert records[good.key()].ok
    assert all(r.key != bad.key() for r in pareto_front(records.values()))


def test_search_steps_generation_by_generation_and_checkpoints(bars, budget, tmp_path):
    ds = prepare_dataset(bars, "nvda", budget)
    store = RunStore.create(tmp_path / "run", {})
    search = Search(EvalContext(ds, budget, 0), store)
    search.step()
    ckpt = store.load_checkpoint()
    assert ckpt["generation"] == 0 and len(ckpt["population"]) == budget.ga.population
    search.step()
    assert store.load_checkpoint()["generation"] == 1
    # every genome evaluated once, each in the journal
    assert len(store.records()) == len(search.records) >= budget.ga.population + 1


def test_training_genes_reach_the_training_loop(bars, budget):
    """A model's batch-size and clip genes replace the budget's values: equal to the budget's, the same
    model; different, a different one. The up-projection gene changes the network itself."""
    from dataclasses import replace

    from evo.evaluation.evaluate import fit_model, fold_layout, predict_segment

    ds = prepare_dataset(bars, "nvda", budget)
    fold = fold_layout(ds, budget)[0]
    g = genome()
    ends = np.arange(*fold.test)[:50]

    def probs(genes):
        run, _, _ = fit_model(genes, g, ds, fold.train, fold.val, budget, lr=1e-3, seed=3, device="cpu")
        return predict_segment(run, ds, ends, g.seq_len, g.horizon)[0]

    base = probs(g.model_b)
    tb = budget.train
    np.testing.assert_array_equal(base, probs(replace(g.model_b, batch_size=tb.batch_size, grad_clip=tb.grad_clip)))
    assert not np.allclose(base, probs(replace(g.model_b, batch_size=16)))
    assert not np.allclose(base, probs(replace(g.model_b, grad_clip=1e-3)))
    run, _, _ = fit_model(replace(g.model_b, proj_factor=1.0), g, ds, fold.train, fold.val, budget, lr=1e-3, seed=3,
                          device="cpu")
    assert run.model.config.proj_factor == 1.0
