"""A genome's evaluation trains its folds and learning-rate trials batched (issue 16) and gets what
training them one at a time (``EVO_BATCHED=0``) gets: the same learning rates, the same
out-of-sample and validation probabilities, the same front of a small search.

Real torch, xlstm, Optuna and vectorbt on real bars; float64, so the comparison is about the
algorithm (same data order, seeds, learning rates) and not about the host's float32 kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from evo.config import budget_from_dict
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import walk_forward_predictions
from evo.genome import Genome, ModelGenes
from evo.search.ga import Search
from evo.search.objectives import pareto_front
from evo.search.store import RunStore
from evo.search.tasks import EvalContext
from models.batched import ENV_SWITCH

TINY = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 2], "num_heads": [2], "seq_len": [8],
               "horizon": [2], "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 3,
               "timeframes": [1, 5, 15], "fusion": ["concat", "attention"], "regime": ["none", "features", "gate"]},
    "train": {"max_epochs": 3, "patience": 2, "max_train_windows": 300, "lr_trials": 2, "lr_trial_epochs": 2},
    "evaluate": {"folds": 3, "min_trades": 1, "risk_trials": 2},
    "ga": {"population": 3, "generations": 2},
}

A = ("cdl_engulfing", "body_range", "gap", "close_pos")
B = ("rsi_14", "macd_hist_12_26_9", "bb_pctb_20_2")
GENOMES = {
    "mlstm": (ModelGenes(A, 8, 2, 2, (), 0.1), ModelGenes(B, 8, 1, 2, (), 0.0)),
    "slstm": (ModelGenes(A, 8, 1, 2, (0,), 0.0), ModelGenes(B, 8, 1, 2, (0,), 0.1)),
    "mixed": (ModelGenes(A, 8, 2, 2, (1,), 0.1), ModelGenes(B, 8, 2, 2, (0,), 0.0)),
    "multi-timeframe": (ModelGenes(("body_range", "gap", "close_pos"), 8, 1, 2, (0,), 0.0, timeframes=(1, 5, 15),
                                   fusion="attention", regime="features"),
                        ModelGenes(("logret_5", "bb_pctb_20_2", "realvol_20"), 8, 1, 2, (), 0.0, timeframes=(1, 5))),
    "regime-gated": (ModelGenes(A, 8, 1, 2, (), 0.0),
                     ModelGenes(B, 8, 1, 2, (), 0.0, regime="gate")),
}


@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny-batched", TINY)


@pytest.fixture(scope="module")
def datasets(nvda, indexfut, budget):
    return {"nvda": prepare_dataset(nvda.iloc[-1200:].copy(), "nvda", budget),
            "indexfut": prepare_dataset(indexfut.iloc[:4000].copy(), "indexfut", budget)}


def _both_ways(monkeypatch, fn):
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(ENV_SWITCH, flag)
        out[flag] = fn()
    return out["1"], out["0"]


@pytest.mark.parametrize("kind", list(GENOMES))
def test_batched_walk_forward_equals_one_model_at_a_time(kind, datasets, budget, float64, monkeypatch):
    a, b = GENOMES[kind]
    g = Genome(model_a=a, model_b=b, seq_len=8, horizon=2, consensus="either", threshold=0.36)
    ds = datasets["indexfut" if kind == "multi-timeframe" else "nvda"]
    batched, alone = _both_ways(monkeypatch, lambda: walk_forward_predictions(g, ds, budget, seed=3))
    assert (batched.lr_a, batched.lr_b) == (alone.lr_a, alone.lr_b)
    assert len(batched.folds) == 3
    for got, want in ((batched.p_a, alone.p_a), (batched.p_b, alone.p_b)):
        assert got.shape == want.shape and np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    for sb, sa in zip(batched.val_segments, alone.val_segments):
        np.testing.assert_allclose(sb.p_a, sa.p_a, rtol=0, atol=1e-9)
        np.testing.assert_allclose(sb.p_b, sa.p_b, rtol=0, atol=1e-9)
        if sa.regime is not None:
            np.testing.assert_array_equal(sb.regime, sa.regime)
    np.testing.assert_array_equal(batched.y_a, alone.y_a)
    # the models did learn something different per fold (not one model copied K times)
    n0 = batched.folds[0].test[1] - batched.folds[0].test[0]
    assert not np.allclose(batched.p_a[:n0].mean(0), batched.p_a[-n0:].mean(0), atol=1e-6)


def test_a_small_search_reaches_the_same_front_batched_or_not(datasets, budget, float64, monkeypatch, tmp_path):
    """Two generations of NSGA-II with the same seed: every genome scores the same, the front is the same."""
    ds = datasets["nvda"]

    def search(tag: str):
        store = RunStore.create(tmp_path / tag, {})
        s = Search(EvalContext(ds, budget, 7), store)
        s.step()
        s.step()
        return RunStore.open(tmp_path / tag).records()

    monkeypatch.setenv(ENV_SWITCH, "1")
    batched = search("batched")
    monkeypatch.setenv(ENV_SWITCH, "0")
    alone = search("alone")
    assert batched.keys() == alone.keys() and len(batched) >= budget.ga.population + 1
    for key, rec in alone.items():
        got = batched[key]
        assert got.ok == rec.ok
        if rec.ok:
            for field in ("sharpe", "max_drawdown", "lr_a", "lr_b"):
                assert got.result[field] == pytest.approx(rec.result[field], abs=1e-9), (key, field)
    front = sorted(r.key for r in pareto_front(batched.values()))
    assert front and front == sorted(r.key for r in pareto_front(alone.values()))
