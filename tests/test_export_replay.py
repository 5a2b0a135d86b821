"""Export ends by trading the bundle it wrote over the holdout through predict's path, and refuses
a bundle whose replay does not equal the front.

The genome, tiny budget and data of test_bundle.py (the last 1500 NVIDIA daily bars, a 20 %
holdout from bar 1200): the front's holdout figures are made by the run's own
``evaluate_holdout``, in this process, with the export's seed.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from test_bundle import TINY, genome, record

from evo.config import budget_from_dict
from evo.deploy.bundle import Bundle
from evo.deploy.export import export_member
from evo.errors import BundleError
from evo.evaluation.dataset import Holdout, prepare_dataset
from evo.evaluation.evaluate import evaluate_holdout

SEED = 1


@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny", TINY)


@pytest.fixture(scope="module")
def ds(nvda, budget):
    return prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)


@pytest.fixture(scope="module")
def front_record(ds, budget):
    """The member as the journal holds it after the run traded its holdout (evo run's
    ``_trade_holdout``: :func:`evaluate_holdout` with the run's seed)."""
    rec = record(genome())
    holdout = Holdout(ds, 1200)
    holdout.unseal()
    result = {**rec.result, "holdout": evaluate_holdout(genome(), rec.result, holdout, budget, seed=SEED)}
    return replace(rec, result=result)


def test_export_replays_the_front_holdout_through_predicts_path(front_record, ds, budget, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="evo")
    out = tmp_path / "member.evo"
    manifest = export_member(front_record, ds, budget, out, seed=SEED)
    assert out.exists() and Bundle.load(out).manifest["member"] == manifest["member"]
    assert [p.name for p in tmp_path.iterdir()] == ["member.evo"]           # nothing staged left over
    line = next(r.getMessage() for r in caplog.records if "holdout replayed" in r.getMessage())
    assert "0 differ" in line and f"trades {front_record.result['holdout']['trades']} (front" in line
    assert front_record.result["holdout"]["trades"] > 0, "a holdout without trades makes a weak comparison"


def test_export_refuses_a_bundle_whose_replay_differs_from_the_front(front_record, ds, budget, tmp_path):
    """The front's figures nudged (as a run on other bars, another seed or a changed backtest would
    leave them): the export fails with both numbers and leaves no bundle, nor touches an older one."""
    front = front_record.result["holdout"]
    nudged = replace(front_record, result={**front_record.result,
                                           "holdout": {**front, "sharpe": front["sharpe"] + 0.01}})
    out = tmp_path / "member.evo"
    with pytest.raises(BundleError) as info:
        export_member(nudged, ds, budget, out, seed=SEED)
    message = str(info.value)
    assert f"{front['sharpe'] + 0.01:.6f}" in message and "Sharpe" in message and "\n" not in message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    older = out.write_bytes(b"an older bundle") and out
    with pytest.raises(BundleError, match="trades 9 vs|Sharpe"):
        export_member(replace(front_record, result={**front_record.result, "holdout": {**front, "trades": 9_999}}),
                      ds, budget, older, seed=SEED)
    assert older.read_bytes() == b"an older bundle"


def test_a_refit_all_export_compares_decisions_only_and_says_why(front_record, ds, budget, tmp_path, caplog):
    """--refit-all trains on the holdout: the front's figures no longer describe these models."""
    caplog.set_level(logging.INFO, logger="evo")
    out = tmp_path / "refit.evo"
    front = front_record.result["holdout"]
    nudged = replace(front_record, result={**front_record.result, "holdout": {**front, "sharpe": front["sharpe"] + 1}})
    export_member(nudged, ds, budget, out, seed=SEED, refit_all=True)
    assert out.exists()
    line = next(r.getMessage() for r in caplog.records if "holdout replayed" in r.getMessage())
    assert "0 differ" in line and "--refit-all" in line and "not compared" in line


def test_a_quantile_threshold_is_fitted_on_the_exported_models_and_replays_the_front(ds, tmp_path):
    """search.threshold_mode = "quantile": the bundle's threshold is the tuned quantile of the exported
    models' own validation scores, the one the front's holdout traded; the replay equals the front."""
    budget = budget_from_dict("tiny-q", {**TINY, "search": {**TINY["search"], "threshold": [0.5, 0.95],
                                                            "threshold_mode": "quantile"}})
    rec = record(genome())
    rec = replace(rec, result={**rec.result, "risk": {**rec.result["risk"], "threshold": 0.5, "quantile": 0.75}})
    holdout = Holdout(ds, 1200)
    holdout.unseal()
    front = evaluate_holdout(genome(), rec.result, holdout, budget, seed=SEED)
    rec = replace(rec, result={**rec.result, "holdout": front})
    manifest = export_member(rec, ds, budget, tmp_path / "q.evo", seed=SEED)
    assert manifest["consensus"]["threshold"] == pytest.approx(front["threshold"], abs=1e-12)
    assert front["threshold"] != 0.5 and manifest["risk"]["quantile"] == 0.75
    assert manifest["risk"]["threshold_fitted_on"][1] < ds.bars.index[1200].isoformat()
