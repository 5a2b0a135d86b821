"""Honest evaluation end to end: the holdout stays sealed, noise shows no edge, a planted edge
survives to the holdout. Real searches (tiny budgets) on synthetic series made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evo.config import budget_from_dict
from evo.evaluation.dataset import HoldoutSealed, prepare_run_data
from evo.evaluation.evaluate import evaluate_holdout, fold_layout
from evo.genome import Genome
from evo.reporting.front import front_payload
from evo.search.ga import Search
from evo.search.objectives import pareto_front
from evo.search.store import RunStore
from evo.search.tasks import EvalContext

pytestmark = pytest.mark.slow

TINY = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8],
               "horizon": [1], "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 4,
               "slstm_share": 0.0},
    "train": {"max_epochs": 3, "patience": 2, "max_train_windows": 600, "lr_trials": 1, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "min_trades": 3, "risk_trials": 8},
    "ga": {"population": 4, "generations": 1},
}


def synthetic_bars(n: int, phi: float, seed: int) -> pd.DataFrame:
    """Daily bars whose log returns follow r_t = phi * r_{t-1} + e_t (e ~ N(0, 1.5 %)); phi = 0 is
    a random walk, phi = 0.5 a strong, learnable momentum edge. Open = previous close."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, 0.015, n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 0.004, (2, n)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    idx = pd.bdate_range("2000-01-03", periods=n, name="time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.integers(1_000, 5_000, n).astype(float)}, index=idx)


# A genome that can see yesterday's move: the kind a trader would bring with --seed-genome.
MOMENTUM = Genome.from_dict({
    "model_a": {"features": ["body_range", "close_pos"], "embedding_dim": 8, "num_blocks": 1, "num_heads": 2,
                "slstm_at": [], "dropout": 0.0},
    "model_b": {"features": ["logret_1", "rsi_7"], "embedding_dim": 8, "num_blocks": 1, "num_heads": 2,
                "slstm_at": [], "dropout": 0.0},
    "seq_len": 8, "horizon": 1, "consensus": "weighted", "threshold": 0.4,
})


def search(bars: pd.DataFrame, tmp_path, seed: int = 0, seeds=()):
    budget = budget_from_dict("tiny", TINY)
    ds, holdout = prepare_run_data(bars, "synthetic", budget)
    store = RunStore.create(tmp_path / "run", {"budget": budget.to_dict()})
    s = Search(EvalContext(ds, budget, seed), store, seed_genomes=seeds)
    s.run(budget.ga.generations)
    return budget, ds, holdout, store


def test_the_holdout_is_sealed_while_searching_and_never_in_the_search_data(tmp_path):
    bars = synthetic_bars(1500, 0.0, seed=1)
    budget, ds, holdout, store = search(bars, tmp_path)
    assert holdout.sealed
    with pytest.raises(HoldoutSealed):
        holdout.dataset
    # the search's data ends before the holdout, and its last test fold ends there too
    assert ds.bars.index[-1] < pd.Timestamp(holdout.start)
    assert len(ds.bars) == holdout.cut == len(ds.features)
    assert fold_layout(ds, budget)[-1].test[1] == ds.n_bars - 1
    record = pareto_front(store.records().values())[0] if pareto_front(store.records().values()) else \
        next(r for r in store.records().values() if r.ok)
    with pytest.raises(HoldoutSealed):
        evaluate_holdout(Genome.from_dict(record.genome), record.result, holdout, budget)
    holdout.unseal()
    result = evaluate_holdout(Genome.from_dict(record.genome), record.result, holdout, budget)
    assert result["start"] == holdout.start and np.isfinite(result["sharpe"])


def test_a_random_walk_shows_no_edge(tmp_path):
    bars = synthetic_bars(1500, 0.0, seed=2)
    _, _, _, store = search(bars, tmp_path)
    payload = front_payload(store.records(), {}, "run")
    assert payload["trials"] >= 4
    for member in payload["members"]:
        assert member["dsr"] < 0.95, member


def test_a_planted_edge_survives_to_the_holdout(tmp_path):
    bars = synthetic_bars(1500, 0.5, seed=3)
    budget, _, holdout, store = search(bars, tmp_path, seeds=[MOMENTUM])
    front = pareto_front(store.records().values())
    assert front, "with a strong momentum edge some genome must trade enough to enter the front"
    holdout.unseal()
    best = max(evaluate_holdout(Genome.from_dict(r.genome), r.result, holdout, budget)["sharpe"] for r in front)
    assert best > 0.5
    # and the figures say so: the momentum genome's walk-forward Sharpe is far from noise
    momentum = store.records()[MOMENTUM.key()].result
    assert momentum["sharpe"] > 1.0
