"""Thresholds relative to the models' own probabilities (``search.threshold_mode = "quantile"``,
issue 17 item 4): the gene is a quantile level, the traded threshold is fitted on validation rows
that end before the bars it trades, and a pair whose ``p_up`` never reaches an absolute level
still trades."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backtest import consensus_scores, consensus_signal, quantile_threshold
from evo.config import budget_from_dict
from evo.errors import ConfigError
from evo.evaluation.dataset import prepare_dataset, prepare_run_data
from evo.evaluation.evaluate import (
    WalkForward,
    evaluate_genome,
    evaluate_holdout,
    fold_layout,
    holdout_segments,
    predict_segment,
    score_walk_forward,
)
from evo.evaluation.risk import RiskParams, Segment, fit_threshold
from tests.test_evaluate import TINY, genome
from tests.test_honesty import synthetic_bars


def _probs(rng: np.random.Generator, n: int, up_mean: float = 0.28) -> np.ndarray:
    """(n, 3) probabilities with p_up around ``up_mean`` (a 3-class model that rarely says 'up')."""
    up = np.clip(up_mean + 0.03 * np.cumsum(rng.normal(0, 0.3, n)) / np.sqrt(np.arange(1, n + 1)), 0.05, 0.34)
    down = (1 - up) * rng.uniform(0.3, 0.6, n)
    return np.column_stack([down, 1 - up - down, up])


def test_quantile_threshold_worked_value_and_scores_match_the_rules():
    pa = np.array([[0.3, 0.3, 0.4], [0.3, 0.25, 0.45], [0.2, 0.3, 0.5], [0.2, 0.25, 0.55]])
    assert quantile_threshold(pa, pa, 0.5, rule="either") == pytest.approx(0.475)
    rng = np.random.default_rng(0)
    p_a, p_b = rng.dirichlet([1, 1, 1], 500), rng.dirichlet([1, 1, 1], 500)
    for rule in ("both", "either", "weighted"):
        score = consensus_scores(p_a, p_b, rule=rule, weight=0.3)
        thr = quantile_threshold(p_a, p_b, 0.8, rule=rule, weight=0.3)
        assert (score > thr).mean() == pytest.approx(0.2, abs=0.01)
        long = consensus_signal(p_a, p_b, rule=rule, threshold=thr, weight=0.3) == 1
        assert long.any() and (score[long] > thr).all()   # a bar goes long only where its score clears it
    both = consensus_scores(p_a, p_b, rule="both", allow_short=True)
    assert both.shape == (1000,) and np.array_equal(both[500:], np.minimum(p_a[:, 0], p_b[:, 0]))
    with pytest.raises(ConfigError):
        quantile_threshold(p_a, p_b, 1.0, rule="both")


def test_the_threshold_mode_is_checked():
    with pytest.raises(ConfigError, match="threshold_mode"):
        budget_from_dict("x", {"search": {"threshold_mode": "percent"}})


QUANTILE = {**TINY, "search": {**TINY["search"], "threshold": [0.5, 0.95], "threshold_mode": "quantile"},
            "evaluate": {"folds": 3, "min_trades": 1, "risk_trials": 6}}


def _synthetic_walk_forward(ds, budget, seed: int = 0) -> WalkForward:
    rng = np.random.default_rng(seed)
    folds = fold_layout(ds, budget)
    ends = np.concatenate([np.arange(*f.test) for f in folds])
    val = [Segment(f.val[0], f.val[1], _probs(rng, f.n_val), _probs(rng, f.n_val)) for f in folds]
    y = np.full(len(ends), -1)
    return WalkForward(folds=folds, ends=ends, p_a=_probs(rng, len(ends)), p_b=_probs(rng, len(ends)),
                       y_a=y, y_b=y, lr_a=1e-3, lr_b=1e-3, val_segments=val)


def test_each_fold_threshold_is_its_quantile_of_earlier_validation_scores_only():
    """Every fold's threshold is the quantile, at its tuned level, of the consensus scores on the
    validation segments it was tuned on; changing later segments' probabilities moves no earlier fold."""
    budget = budget_from_dict("quantile", QUANTILE)
    ds = prepare_dataset(synthetic_bars(1500, 0.0, seed=4), "noise", budget)
    wf = _synthetic_walk_forward(ds, budget)
    g = genome()
    res = score_walk_forward(g, ds, budget, wf, seed=0)
    by_span = {(s.start, s.stop): s for s in wf.val_segments}
    for fold in res.risk_folds:
        q = fold["quantile"]
        assert 0.5 <= q <= 0.95
        segs = [by_span[tuple(span)] for span in fold["tuned_on"]]
        want = quantile_threshold(np.concatenate([s.p_a for s in segs]), np.concatenate([s.p_b for s in segs]), q,
                                  rule=g.consensus, weight=fold["weight"])
        assert fold["threshold"] == pytest.approx(want, abs=1e-12)
    # the probabilities after fold 0's tuning segments change: fold 0 keeps its threshold, the last moves
    rng = np.random.default_rng(99)
    later = [wf.val_segments[0]] + [replace(s, p_a=_probs(rng, s.stop - s.start, 0.2)) for s in wf.val_segments[1:]]
    moved = score_walk_forward(g, ds, budget, replace(wf, val_segments=later), seed=0)
    assert moved.risk_folds[0] == res.risk_folds[0]
    assert moved.risk_folds[-1]["threshold"] != res.risk_folds[-1]["threshold"]


def test_a_pair_that_never_reaches_an_absolute_level_trades_under_quantile_thresholds():
    """p_up stays below 0.35 everywhere: absolute thresholds in [0.36, 0.6] never open a position;
    the same probabilities under quantile thresholds do."""
    absolute = budget_from_dict("absolute", {**QUANTILE, "search": {**TINY["search"], "threshold": [0.36, 0.6]}})
    quantile = budget_from_dict("quantile", QUANTILE)
    ds = prepare_dataset(synthetic_bars(1500, 0.0, seed=4), "noise", absolute)
    wf = _synthetic_walk_forward(ds, absolute, seed=1)
    g = replace(genome(), consensus="either")
    assert score_walk_forward(replace(g, threshold=0.4), ds, absolute, wf, seed=0).trades == 0
    assert score_walk_forward(replace(g, threshold=0.8), ds, quantile, wf, seed=0).trades >= 5


def test_the_holdout_trades_a_threshold_fitted_on_its_own_models_validation_rows(nvda):
    budget = budget_from_dict("quantile", {**QUANTILE, "evaluate": {**QUANTILE["evaluate"], "holdout_fraction": 0.2}})
    ds, holdout = prepare_run_data(nvda.iloc[-1500:].copy(), "nvda", budget)
    g = replace(genome(), threshold=0.7)
    res = evaluate_genome(g, ds, budget, seed=2)
    assert res.risk["quantile"] is not None
    holdout.unseal()
    out = evaluate_holdout(g, res.to_dict(), holdout, budget, seed=2)
    # the same fit as evaluate_holdout's, by hand: its models' validation scores give the threshold
    from evo.evaluation.evaluate import train_pair_model

    full = holdout.dataset
    train, val = holdout_segments(full, holdout.cut, budget)
    runs = {n: train_pair_model(genes, g, full, train, val, budget, lr=res.to_dict()[f"lr_{n}"], seed=2,
                                device="cpu")[0] for n, genes in (("a", g.model_a), ("b", g.model_b))}
    ends = np.arange(*val)
    seg = Segment(val[0], val[1], *(predict_segment(runs[n], full, ends, g.seq_len, g.horizon)[0] for n in "ab"))
    want = fit_threshold(RiskParams.from_dict(res.risk), [seg], g, budget.evaluate.allow_short).threshold
    assert out["threshold"] == pytest.approx(want, abs=1e-12)
    assert val[1] < holdout.cut   # fitted on rows before the holdout
