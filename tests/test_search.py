"""The search engine: noisy-fitness seeds, random-search baseline, Optuna studies on disk,
hypervolume per generation, time limit. Real training on a slice of real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

from evo.config import budget_from_dict
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import evaluate_genome, study_storage_url
from evo.search.ga import Search
from evo.search.store import RunStore
from evo.search.tasks import EvalContext

pytestmark = pytest.mark.slow

TINY = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8],
               "horizon": [2], "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 3},
    "train": {"max_epochs": 2, "patience": 1, "max_train_windows": 300, "lr_trials": 2, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "min_trades": 1, "risk_trials": 4, "holdout_fraction": 0.0},
    "ga": {"population": 3, "generations": 1},
}


@pytest.fixture(scope="module")
def ds(nvda):
    return prepare_dataset(nvda.iloc[-1200:].copy(), "nvda", budget_from_dict("tiny", TINY))


def test_two_seeds_show_the_exported_seed_and_select_on_their_mean(ds):
    """With 2 training seeds the figures shown (front) and the returns DSR/PBO read are seed 0's
    alone — the seed the holdout trades and export ships — and the selection score is the mean."""
    from evo.reporting.front import front_payload, selection_bias
    from evo.search.objectives import objectives
    from evo.search.records import Record, merge_genome
    from tests.test_evaluate import genome

    two = budget_from_dict("tiny", {**TINY, "train": {**TINY["train"], "seeds": 2}})
    one = budget_from_dict("tiny", TINY)
    r2 = evaluate_genome(genome(), ds, two, seed=7)
    a = evaluate_genome(genome(), ds, one, seed=7)       # seed index 0 alone
    b = evaluate_genome(genome(), ds, one, seed=1007)    # seed index 1 alone
    assert a.sharpe != b.sharpe, "two seeds that agree would test nothing"
    same = ("sharpe", "max_drawdown", "total_return", "trades", "enough_trades", "returns", "risk", "risk_folds",
            "lr_a", "lr_b", "val_sharpe", "accuracy_a", "sortino")
    assert {k: getattr(r2, k) for k in same} == {k: getattr(a, k) for k in same}
    # the selection score: the seeds' mean, their spread
    assert r2.seeds == 2 and r2.seed_sharpes == [a.sharpe, b.sharpe]
    assert r2.sharpe_mean == pytest.approx((a.sharpe + b.sharpe) / 2)
    assert r2.max_drawdown_mean == pytest.approx((a.max_drawdown + b.max_drawdown) / 2)
    assert r2.sharpe_sd == pytest.approx(float(np.std([a.sharpe, b.sharpe], ddof=1)))
    key = genome().key()
    rec2, rec_a = Record(key, genome().to_dict(), 0, r2.to_dict()), Record(key, genome().to_dict(), 0, a.to_dict())
    assert r2.enough_trades
    assert objectives(rec2) == pytest.approx((r2.sharpe_mean, r2.max_drawdown_mean))
    # the front member and DSR/PBO: exactly those of the seed-0 evaluation
    member = front_payload({key: rec2}, {}, "run")["members"][0]
    alone = front_payload({key: rec_a}, {}, "run")["members"][0]
    for k in ("sharpe", "max_drawdown", "total_return", "trades", "dsr", "risk"):
        assert member[k] == alone[k], k
    assert member["sharpe_mean"] == pytest.approx(r2.sharpe_mean) and member["seeds"] == 2
    rival = Record("rival", genome().to_dict(), 0, b.to_dict())
    assert selection_bias([rec2, rival]) == selection_bias([rec_a, rival])
    # a survivor's extra seed moves the selection score, not the figures shown
    merged = merge_genome([rec2, Record(key, genome().to_dict(), 1, b.to_dict(), seed_index=2)]).result
    assert merged["sharpe_mean"] == pytest.approx((a.sharpe + 2 * b.sharpe) / 3) and merged["seeds"] == 3
    assert {k: merged[k] for k in same} == {k: rec2.result[k] for k in same}


def test_studies_are_kept_in_sqlite_and_hypervolume_is_logged(ds, tmp_path):
    budget = budget_from_dict("tiny", TINY)
    store = RunStore.create(tmp_path / "run", {})
    search = Search(EvalContext(ds, budget, 0, study_storage=study_storage_url(store.path)), store)
    search.run(1)
    summaries = optuna.get_all_study_summaries(storage=study_storage_url(store.path))
    keys = {r.key for r in store.records().values() if r.ok}
    assert {s.study_name.split("-")[0] for s in summaries} == keys
    assert all(s.n_trials == TINY["train"]["lr_trials"] for s in summaries)
    hv = store.load_checkpoint()["hypervolume"]
    assert set(hv) == {"0", "1"} and hv["1"] >= hv["0"] >= 0.0   # the archive's front only improves


def test_random_search_draws_fresh_genomes(ds, tmp_path):
    budget = budget_from_dict("tiny", TINY)
    store = RunStore.create(tmp_path / "run", {})
    search = Search(EvalContext(ds, budget, 0), store, optimizer="random")
    search.step()
    kids = search.offspring()
    assert len(kids) == budget.ga.population and not {g.key() for g in kids} & set(search.records)


def cli_budget(tmp_path):
    """The smallest real budget as a TOML file, and the environment for `python -m evo` runs."""
    budget = tmp_path / "tiny.toml"
    budget.write_text(
        '[search]\nembedding_dim = [8]\nnum_blocks = [1, 1]\nnum_heads = [2]\nseq_len = [8]\nhorizon = [2]\n'
        'max_features_a = 3\nmax_features_b = 3\nthreshold = [0.34, 0.45]\n'
        '[train]\nmax_epochs = 1\npatience = 1\nmax_train_windows = 200\nlr_trials = 1\nlr_trial_epochs = 1\n'
        '[evaluate]\nfolds = 2\nmin_trades = 0\nrisk_trials = 2\n[ga]\npopulation = 2\n')
    return budget, {**os.environ, "EVO_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def test_time_limit_ends_after_the_crossing_generation_with_a_front(tmp_path, shared_data):
    budget, env = cli_budget(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "evo", "run", "--budget", str(budget), "--generations", "5",
                           "--time-limit", "1s", "--out", str(tmp_path / "run"),
                           "--data", str(shared_data / "ORCL_1d_1995_2014.csv")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "time limit reached after generation 0" in proc.stderr
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["generation"] == 0
    front = json.loads(subprocess.run([sys.executable, "-m", "evo", "front", str(tmp_path / "run"), "--json"],
                                      env=env, capture_output=True, text=True, timeout=120).stdout)
    assert front["members"] and all(m["holdout_sharpe"] is not None for m in front["members"])


def test_several_instruments_aggregate_with_a_dispersion_penalty(tmp_path, shared_data):
    """Two instruments: each genome is judged on both; the objective is mean - 0.5 sd."""
    budget, env = cli_budget(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "evo", "run", "--budget", str(budget), "--generations", "0",
                           "--out", str(tmp_path / "run"), "--data", str(shared_data / "ORCL_1d_1995_2014.csv"),
                           "--data", str(shared_data / "NVDA_1d_1999_2014.csv")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    front = json.loads(subprocess.run([sys.executable, "-m", "evo", "front", str(tmp_path / "run"), "--json"],
                                      env=env, capture_output=True, text=True, timeout=120).stdout)
    assert front["members"]
    for m in front["members"]:
        per = m["instruments"]
        assert [i["label"].rsplit("/", 1)[-1] for i in per] == ["ORCL_1d_1995_2014.csv", "NVDA_1d_1999_2014.csv"]
        sh = np.array([i["sharpe"] for i in per])
        assert m["sharpe"] == pytest.approx(sh.mean() - 0.5 * sh.std())
        assert len(m["holdout_instruments"]) == 2 and m["holdout_sharpe"] is not None
    # export builds the bundle for the instrument asked for, with that instrument's own lr and risk
    member = front["members"][0]
    nvda = member["instruments"][1]
    out = tmp_path / "nvda.evo"
    proc = subprocess.run([sys.executable, "-m", "evo", "export", str(tmp_path / "run"), "--member", member["id"],
                           "--instrument", "NVDA_1d_1999_2014.csv", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    from evo.deploy.bundle import Bundle

    manifest = Bundle.load(out).manifest
    assert manifest["trained_on"]["data"].endswith("NVDA_1d_1999_2014.csv")
    assert manifest["models"]["a"]["lr"] == pytest.approx(nvda["lr_a"])
    assert manifest["risk"]["threshold"] == pytest.approx(nvda["risk"]["threshold"])
    bad = subprocess.run([sys.executable, "-m", "evo", "export", str(tmp_path / "run"), "--member", member["id"],
                          "--instrument", "MSFT.csv"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "ORCL_1d_1995_2014.csv, NVDA_1d_1999_2014.csv" in bad.stderr
