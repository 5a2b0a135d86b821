"""Consensus/risk tuning per test fold: each fold's parameters come from validation rows that end a
purge gap before it, so no test fold is traded with values chosen on its own (or later) bars."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backtest import CostModel, backtest_signals
from evo.config import budget_from_dict
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import WalkForward, evaluate_genome, fold_layout, purge_gap, score_walk_forward
from evo.evaluation.risk import RiskParams, Segment, trade_folds
from tests.test_evaluate import TINY, genome, perturb_after
from tests.test_honesty import synthetic_bars

THREE_FOLDS = {**TINY, "evaluate": {"folds": 3, "min_trades": 1, "risk_trials": 6}}


def _no_skill(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) probabilities that know nothing about the bars: softmax of AR(1) logits (phi 0.9),
    so they drift like a model's output and trade in runs."""
    z = np.zeros((n, 3))
    for t in range(1, n):
        z[t] = 0.9 * z[t - 1] + rng.normal(0.0, 0.3, 3)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _synthetic_walk_forward(ds, budget, seed: int = 0) -> WalkForward:
    """Both models' no-skill probabilities on every fold's validation and test bars of ``ds``."""
    rng = np.random.default_rng(seed)
    folds = fold_layout(ds, budget)
    ends = np.concatenate([np.arange(*f.test) for f in folds])
    p_a, p_b = _no_skill(len(ends), rng), _no_skill(len(ends), rng)
    val = [Segment(f.val[0], f.val[1], _no_skill(f.n_val, rng), _no_skill(f.n_val, rng)) for f in folds]
    y = np.full(len(ends), -1)
    return WalkForward(folds=folds, ends=ends, p_a=p_a, p_b=p_b, y_a=y, y_b=y, lr_a=1e-3, lr_b=1e-3,
                       val_segments=val)


def _params(fold: dict) -> dict:
    return {k: v for k, v in fold.items() if k not in ("test", "tuned_on")}


def test_each_test_fold_is_tuned_only_on_validation_rows_before_it(nvda):
    """The spans passed to the tuner (recorded in ``risk_folds``) end a purge gap before their fold."""
    budget = budget_from_dict("tiny", THREE_FOLDS)
    ds = prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)
    result = evaluate_genome(genome(), ds, budget, seed=5)
    folds, gap = fold_layout(ds, budget), purge_gap(budget)
    assert [tuple(f["test"]) for f in result.risk_folds] == [f.test for f in folds]
    for fold, tuned in zip(folds, result.risk_folds):
        assert tuned["tuned_on"], "every fold of this layout has a validation segment before it"
        for start, stop in tuned["tuned_on"]:
            assert start < stop and stop + gap <= fold.test[0]   # rows < test start - gap
    # the anchored layout: fold k is tuned on the validation segments of folds 0..k
    assert [len(f["tuned_on"]) for f in result.risk_folds] == [1, 2, 3]
    # fold 1's validation segment overlaps test fold 0, so fold 0 must not have seen it
    assert folds[1].val[0] < folds[0].test[1]
    assert result.risk_folds[0]["tuned_on"] == [list(folds[0].val)]
    # what the genome records (holdout, bundle) is the last fold's: tuned on every segment
    assert result.risk_folds[-1]["tuned_on"] == [list(f.val) for f in folds]
    assert result.risk == _params(result.risk_folds[-1])


@pytest.mark.parametrize("tune_stops", [False, True])
def test_later_bars_change_neither_earlier_folds_parameters_nor_their_trades(tune_stops):
    """No-skill probabilities on a random walk: perturbing the bars from test fold k on leaves the
    parameters and returns of folds 0..k-1 (and fold k's parameters) as they were. Under the old
    joint tuning fold 0's parameters move with test fold 0's bars: it saw them."""
    budget = budget_from_dict("tiny", {**THREE_FOLDS, "evaluate": {**THREE_FOLDS["evaluate"], "risk_trials": 12,
                                                                   "tune_stops": tune_stops}})
    bars = synthetic_bars(1500, 0.0, seed=4)
    ds = prepare_dataset(bars, "noise", budget)
    wf = _synthetic_walk_forward(ds, budget)
    base = score_walk_forward(genome(), ds, budget, wf, seed=0)
    joint = score_walk_forward(genome(), ds, budget, wf, seed=0, _joint=True)
    start = wf.folds[0].test[0]
    for k in range(len(wf.folds)):
        ds2 = prepare_dataset(perturb_after(bars, wf.folds[k].test[0] - 1, seed=k), "noise-perturbed", budget)
        after = score_walk_forward(genome(), ds2, budget, wf, seed=0)
        assert after.risk_folds[: k + 1] == base.risk_folds[: k + 1]
        cut = wf.folds[k].test[0] - start            # returns of bars before test fold k
        np.testing.assert_array_equal(after.returns[:cut], base.returns[:cut])
        if k == 0:
            # the perturbation reaches the tuning: the last fold, tuned on every segment, moves ...
            assert after.risk_folds[-1] != base.risk_folds[-1]
            # ... and so does every fold under the old rule, fold 0 included
            leaked = score_walk_forward(genome(), ds2, budget, wf, seed=0, _joint=True)
            assert _params(leaked.risk_folds[0]) != _params(joint.risk_folds[0])
    # the old rule traded every fold with the last fold's parameters: the same as the recorded ones
    assert joint.risk == base.risk and all(_params(f) == base.risk for f in joint.risk_folds)


def test_folds_with_their_own_sizes_are_chained_from_flat(nvda):
    """Different sizes per fold: each fold is its own account from flat, chained at the boundary bar;
    equal rules: one account, exactly one backtest of the whole signal."""
    budget = budget_from_dict("tiny", THREE_FOLDS)
    ev, ppy = budget.evaluate, 252.0
    bars = nvda.iloc[-700:]
    tests = [(400, 500), (500, 600), (600, 699)]
    rng = np.random.default_rng(1)
    signals = [np.repeat(rng.integers(0, 2, (b - a) // 10 + 1), 10)[: b - a].astype(np.int8) for a, b in tests]
    same = [RiskParams(threshold=0.4, size=0.5)] * 3
    whole = backtest_signals(bars.iloc[400:700], np.concatenate([*signals, [0]]).astype(np.int8),
                             costs=CostModel(ev.fees_bps, ev.slippage_bps), periods_per_year=ppy,
                             risk=same[0].rules(None))
    one = trade_folds(bars, tests, signals, same, ev, ppy)
    np.testing.assert_array_equal(one.returns, whole.returns)
    own = [replace(same[0], size=s) for s in (0.5, 0.25, 1.0)]
    chained = trade_folds(bars, tests, signals, own, ev, ppy)
    assert len(chained.returns) == 300
    first = backtest_signals(bars.iloc[400:501], np.concatenate([signals[0], [0]]).astype(np.int8),
                             costs=CostModel(ev.fees_bps, ev.slippage_bps), periods_per_year=ppy,
                             risk=own[0].rules(None))
    np.testing.assert_array_equal(chained.returns[:101], first.returns)   # fold 0 alone, its own size
    np.testing.assert_allclose(chained.returns[:100], one.returns[:100])
    assert not np.allclose(chained.returns[101:200], one.returns[101:200])  # fold 1 at a quarter
