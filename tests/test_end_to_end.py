"""The whole path in separate processes, on a CSV evo has never seen: run -> front -> export -> predict.

A tiny budget (written by the test) keeps this to a couple of minutes on 2 CPU cores. Everything
is real: features, xLSTM training, Optuna, vectorbt, DEAP.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TINY_BUDGET = """
description = "test budget: the smallest real search"
device = "cpu"
[search]
embedding_dim = [8, 16]
num_blocks = [1, 1]
num_heads = [1, 2]
slstm_share = 0.5
dropout = [0.0, 0.2]
seq_len = [8, 12]
horizon = [1, 3]
threshold = [0.34, 0.45]
consensus = ["both", "either", "weighted"]
max_features_a = 5
max_features_b = 4
[train]
max_epochs = 2
patience = 1
batch_size = 64
max_train_windows = 400
lr_trials = 1
lr_trial_epochs = 1
[evaluate]
folds = 2
test_fraction = 0.3
val_fraction = 0.15
min_trades = 1
[ga]
population = 4
generations = 1
"""

pytestmark = pytest.mark.slow


def evo(*args: str, cwd: Path, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EVO_CACHE_DIR": str(cwd / "cache"), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "evo", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"evo {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def all_finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(all_finite(v) for v in obj)
    return True


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data) -> Path:
    """ORCL daily bars 2003-2014 as a generic CSV with a lower-case `timestamp` column: a file
    the project has never seen, in a layout different from the embedded one."""
    root = tmp_path_factory.mktemp("e2e")
    raw = pd.read_csv(shared_data / "ORCL_1d_1995_2014.csv")
    raw = raw[raw["Date"] >= "2008-01-01"].drop(columns=["Adj Close"])
    raw.columns = ["timestamp", "open", "high", "low", "close", "volume"]
    raw.to_csv(root / "orcl.csv", index=False)
    (root / "tiny.toml").write_text(TINY_BUDGET)
    return root


@pytest.fixture(scope="module")
def finished_run(workdir) -> Path:
    evo("run", "--generations", "1", "--budget", "tiny.toml", "--data", "orcl.csv", "--out", "run", "--seed", "3",
        cwd=workdir)
    return workdir / "run"


def test_run_front_export_predict_in_separate_processes(workdir, finished_run):
    front = json.loads(evo("front", str(finished_run), "--json", cwd=workdir).stdout)
    assert all_finite(front)
    assert front["sample"].startswith("walk-forward out-of-sample")
    assert front["trials"] >= 4 and (front["pbo"] is None or 0.0 <= front["pbo"] <= 1.0)
    members = front["members"]
    assert members, "a search of 8 genomes with min_trades=1 should put something on the front"
    for m in members:
        assert {"id", "sharpe", "max_drawdown", "trades", "genome", "dsr"} <= set(m)
        assert 0.0 <= m["max_drawdown"] <= 1.0 and 0.0 <= m["dsr"] <= 1.0 and m["trades"] >= 1
        for model in ("model_a", "model_b"):
            genes = m["genome"][model]
            assert {"features", "embedding_dim", "num_blocks", "num_heads", "slstm_at", "dropout"} <= set(genes)
            assert genes["features"] and genes["embedding_dim"] % genes["num_heads"] == 0
        assert {"seq_len", "horizon"} <= set(m["genome"])
    # the table form works too
    assert "Pareto front" in evo("front", str(finished_run), cwd=workdir).stdout

    member = members[0]["id"]
    evo("export", str(finished_run), "--member", member[:8], "--out", "bundle.evo", cwd=workdir)
    assert (workdir / "bundle.evo").exists()

    # orcl.csv ends in 2014: live use would refuse its stale last bar; replaying it takes --allow-stale
    stale = evo("predict", "--bundle", "bundle.evo", "--data", "orcl.csv", cwd=workdir, check=False)
    assert stale.returncode == 2 and "--allow-stale" in stale.stderr and stale.stdout == ""
    out = evo("predict", "--bundle", "bundle.evo", "--data", "orcl.csv", "--json", "--allow-stale", cwd=workdir).stdout
    decision = json.loads(out)
    assert set(decision) == {"time", "signal", "p_a", "p_b", "settled"} and decision["settled"] is True
    assert decision["signal"] in ("long", "flat", "short") and all_finite(decision)
    assert decision["time"].startswith("2014-12-31")
    assert 0.0 <= decision["p_a"] <= 1.0 and 0.0 <= decision["p_b"] <= 1.0

    many = json.loads(evo("predict", "--bundle", "bundle.evo", "--data", "orcl.csv", "--json", "--bars", "5",
                          "--allow-stale", cwd=workdir).stdout)
    assert len(many) == 5 and many[-1]["time"] == decision["time"] and many[-1]["signal"] == decision["signal"]
    # batched inference of 5 windows vs 1: the same computation up to float32 summation order
    assert many[-1]["p_a"] == pytest.approx(decision["p_a"], abs=1e-6)
    assert many[-1]["p_b"] == pytest.approx(decision["p_b"], abs=1e-6)


def test_predict_imports_no_search_library(workdir, finished_run):
    front = json.loads(evo("front", str(finished_run), "--json", cwd=workdir).stdout)
    bundle = workdir / "bundle-imports.evo"
    evo("export", str(finished_run), "--member", front["members"][0]["id"], "--out", str(bundle), cwd=workdir)
    code = ("import sys; from evo.cli import main; "
            "rc = main(['predict', '--bundle', %r, '--data', 'orcl.csv', '--allow-stale']); "
            "bad = sorted(m for m in ('deap', 'optuna', 'nevergrad', 'vectorbt') if m in sys.modules); "
            "print('LOADED', bad); sys.exit(rc)") % str(bundle)
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_resume_after_a_crash_reaches_the_same_front(workdir, finished_run):
    """Stop after generation 0, tear the journal's last line as a power cut would, resume."""
    evo("run", "--generations", "0", "--budget", "tiny.toml", "--data", "orcl.csv", "--out", "run2", "--seed", "3",
        cwd=workdir)
    journal = workdir / "run2" / "journal.jsonl"
    with open(journal, "a") as fh:
        fh.write('{"key": "deadbeef", "genome": {"mod')
    evo("run", "--resume", "run2", "--generations", "1", cwd=workdir)
    a = json.loads(evo("front", str(finished_run), "--json", cwd=workdir).stdout)
    b = json.loads(evo("front", "run2", "--json", cwd=workdir).stdout)
    assert [m["id"] for m in a["members"]] == [m["id"] for m in b["members"]]
    assert [m["sharpe"] for m in a["members"]] == [m["sharpe"] for m in b["members"]]
    assert a["trials"] == b["trials"]


@pytest.mark.parametrize("content, message", [
    ("Date,Open,High,Low,Close,Volume\n2020-01-01,1,2,0.5,1,10\n", "too few"),
    ("Date,Open,High,Close,Volume\n2020-01-01,1,2,1,10\n", "missing column"),
    ("", "empty"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_no_run_dir(workdir, content, message):
    path = workdir / "bad.csv"
    path.write_text(content)
    proc = evo("run", "--budget", "tiny.toml", "--data", "bad.csv", "--out", "badrun", cwd=workdir, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("evo: error:") and message in lines[0] and "bad.csv" in lines[0]
    assert not (workdir / "badrun").exists()


def test_gpu_budget_without_cuda_exits_with_a_message(workdir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = evo("run", "--budget", "gpu", "--out", "gpurun", cwd=workdir, check=False)
    assert proc.returncode == 2 and "CUDA" in proc.stderr
    assert not (workdir / "gpurun").exists()


def test_kill_9_mid_generation_then_resume_reaches_the_same_front(workdir, finished_run):
    """A real SIGKILL while generation 1 is being evaluated; --resume finishes the run."""
    import signal
    import time

    env = {**os.environ, "EVO_CACHE_DIR": str(workdir / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evo", "run", "--generations", "1", "--budget", "tiny.toml",
                             "--data", "orcl.csv", "--out", "run3", "--seed", "3"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = workdir / "run3" / "journal.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:   # gen 0 done, gen 1 under way
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    evo("run", "--resume", "run3", cwd=workdir)
    a = json.loads(evo("front", str(finished_run), "--json", cwd=workdir).stdout)
    b = json.loads(evo("front", "run3", "--json", cwd=workdir).stdout)
    assert [(m["id"], m["sharpe"], m["holdout_sharpe"]) for m in a["members"]] == \
        [(m["id"], m["sharpe"], m["holdout_sharpe"]) for m in b["members"]]
    assert a["trials"] == b["trials"]
