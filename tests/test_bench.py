"""Smoke tests of the benchmark functions (``experiments.bench.measure``) at tiny sizes.

They check that each measurement runs, returns the figures the report needs and leaves the
process as it found it; they never assert anything about a timing (benchmarks report numbers,
they do not fail builds). One test compares backtesting.py with vectorbt trade by trade on real
bars, which is a correctness check, not a timing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import experiments.bench.measure as B
from backtest import CostModel, backtest_signals, periods_per_year


def test_interleaved_runs_every_function_in_turn():
    order = []
    times = B.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2, warmup=1)
    assert order == ["a", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    s = B.summarize(times["a"])
    assert s["n"] == 2 and s["min_ms"] <= s["median_ms"] <= s["max_ms"]


def test_matmul_peak_and_model_flops():
    peak = B.matmul_peak(64, repeats=2)
    assert peak["peak_gflops"] > 0 and peak["threads"] == torch.get_num_threads()
    model = torch.nn.Linear(8, 4)

    class Two(torch.nn.Module):  # the (logits, ret) interface the bench expects
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x):
            y = self.lin(x)
            return y, y[:, 0]

    # forward 2*N*8*4; backward the same again for the weight gradient (x needs none)
    assert B.model_flops(Two(), torch.randn(5, 8)) == 2 * 2 * 5 * 8 * 4


def test_bench_xlstm_tiny_reports_every_case():
    out = B.bench_xlstm(batch=2, seq_len=8, n_features=3, embedding_dim=16, num_blocks=2, num_heads=2,
                        repeats=1, warmup=0, peak_n=64)
    names = list(out["cases"])
    assert names[:3] == ["xlstm vanilla, all mLSTM", "xlstm vanilla, sLSTM at block 1", "xlstm vanilla, all sLSTM"]
    assert any(n.startswith("nn.LSTM") for n in names)
    for case in out["cases"].values():
        assert case["median_ms"] > 0 and case["gflop"] >= 0 and case["params"] > 0
    assert out["training_path_speedup"] > 0
    if "fast" in out:  # models.fast_mlstm present: it must agree with the vanilla path
        assert out["fast"]["max_abs_out_diff"] <= 1e-5 and out["fast"]["max_abs_grad_diff"] <= 1e-5


def test_expected_trades_follow_the_next_open_rule():
    signal = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=np.int8)
    # decided at t's close, held from t+1: long bars 1-2, 5, 7-
    assert B.expected_trades(signal) == [(1, 3), (5, 6), (7, None)]


@pytest.mark.skipif(importlib.util.find_spec("backtesting") is None, reason="backtesting.py is not installed")
def test_backtesting_py_makes_the_same_trades_as_vectorbt(nvda):
    bars = nvda.iloc[-400:]
    signal = B._ma_cross(bars)
    costs = CostModel(5.0, 5.0)
    res = backtest_signals(bars, signal, costs=costs, periods_per_year=periods_per_year(nvda.index))
    bp = B.backtesting_py_run(bars, signal, costs)
    assert bp["trades"] == B.expected_trades(signal)
    assert len(bp["trades"]) == res.trades > 3
    assert bp["final_equity"] == pytest.approx(1.0 + res.total_return, rel=1e-4)
    out = B.bench_backtest(bars, signal, costs=costs, periods_per_year=252.0, repeats=1, warmup=0)
    assert out["same_trades"] and out["equity_diff"] < 1e-4 and out["speedup"] > 0


def test_bench_feature_cache_cold_and_warm(nvda):
    out = B.bench_feature_cache(nvda.iloc[:600], repeats=1)
    assert out["bars"] == 600 and out["cold"]["median_ms"] > 0 and out["warm"]["median_ms"] > 0
    assert out["file_mib"] > 0


def test_bench_overhead_restores_what_it_wraps(nvda):
    from evo.evaluation.dataset import prepare_run_data
    from models.network import DirectionModel

    forward, backward, step = DirectionModel.forward, torch.Tensor.backward, torch.optim.AdamW.step
    budget = B.overhead_budget(quick=True)
    ds, _ = prepare_run_data(nvda, "nvda", budget, cache_dir=None)
    out = B.bench_overhead(ds, budget, B.overhead_genome(ds, budget), warm_up=False)
    assert DirectionModel.forward is forward and torch.Tensor.backward is backward
    assert torch.optim.AdamW.step is step
    assert 0.0 < out["outside_fwd_bwd"] < 1.0
    assert out["sections_s"]["forward"] > 0 and out["sections_s"]["backward"] > 0
    assert sum(out["sections_s"].values()) == pytest.approx(out["total_s"], rel=0.02, abs=0.05)
    lb = out["last_backtest"]
    assert len(lb["signal"]) == len(lb["ohlcv"]) and lb["signal"][-1] == 0
    calls = out["genome_backtests"]  # risk tuning, validation returns, then the test span
    assert len(calls) > budget.evaluate.folds and calls[-1]["ohlcv"] is lb["ohlcv"]


@pytest.mark.skipif(importlib.util.find_spec("backtesting") is None, reason="backtesting.py is not installed")
def test_walk_forward_backtest_bench_runs_evos_calls_through_three_engines(nvda):
    from evo.evaluation.dataset import prepare_run_data
    from evo.evaluation.evaluate import fold_layout

    budget = B.overhead_budget(quick=True)
    ds, _ = prepare_run_data(nvda.iloc[-1500:], "nvda", budget, cache_dir=None)
    calls = B.walk_forward_backtests(ds, budget)
    folds = fold_layout(ds, budget)
    ev = budget.evaluate
    assert len(calls) == (ev.risk_trials + 1) * ev.folds + 1
    test = calls[-1]["ohlcv"]
    assert test.index[0] == ds.bars.index[folds[0].test[0]] and test.index[-1] == ds.bars.index[folds[-1].test[1]]
    for c in calls:
        assert len(c["signal"]) == len(c["ohlcv"]) and c["signal"][-1] == 0
    out = B.bench_walk_forward_backtest(calls, repeats=1, warmup=0)
    assert out["calls"] == len(calls) and out["skipped_calls"] == 0 and out["trades"] > 0
    assert out["same_engines"] and out["same_trades"] and out["equity_diff"] < 1e-4
    assert out["speedup"] > 0 and out["speedup_vs_from_signals"] > 0


def test_bench_command_writes_the_report(tmp_path):
    from evo.cli import main

    out = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--only", "startup,multifidelity,gpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 5 | `python -m evo --help` wall time |" in text
    assert "| 2 | genomes judged per hour, successive halving / full fidelity |" in text and "Load average" in text
    assert "deap" not in text.split("search libraries loaded:")[1].split("|")[0]


def test_bench_command_rejects_unknown_items(capsys):
    from evo.cli import main

    assert main(["bench", "--only", "warp-drive"]) == 2
    assert "unknown item" in capsys.readouterr().err


def test_bench_throughput_tiny_reports_every_shape():
    """Issue 16's item on one genome at tiny sizes: both models, K = 3 folds x 3 lr runs each, and the
    mLSTM cell against mlstm_kernels on one small shape (its outputs must agree with evo's cell)."""
    out = B.bench_throughput(n_genomes=1, windows=32, val_windows=16, epochs=1, repeats=1, warmup=0, peak_n=64,
                             schedule_epochs=2)
    assert out["members"] == 9 and len(out["models"]) == 2 and len(out["per_genome"]) == 1
    for m in out["models"]:
        assert m["batched_s"] > 0 and m["single_s"] > 0 and m["gflop"] > 0 and m["peak_share"] > 0
    assert out["ratio"] > 0 and out["cpu_ratio"] > 0 and out["schedule_ratio"] > 0
    k = B.bench_mlstm_kernels(shapes=((2, 1, 8, 4),), repeats=1, warmup=0)
    if "skipped" not in k:
        assert max(k["shapes"][0]["max_abs_diff"].values()) <= 1e-4
        assert k["evo_speedup_vs_best_kernel"] > 0


def test_command_and_library_agree_on_the_items():
    from evo.commands import bench as cmd

    assert cmd.ITEMS == B.ITEMS


@pytest.mark.parametrize("factor_range", [40.0, -1.0], ids=["factorised", "exact"])
@pytest.mark.parametrize("shape", [(4, 16, 5, 16, 2, 2), (3, 12, 4, 24, 3, 1), (2, 10, 3, 32, 1, 4)])
def test_fast_mlstm_matches_xlstm_vanilla(monkeypatch, shape, factor_range):
    """The fast path of models.fast_mlstm equals xlstm's vanilla forward and gradients (both of
    its cell forms), on the vanilla model's own parameters moved away from their init."""
    import models.fast_mlstm as fm
    from models.config import ModelConfig
    from models.network import DirectionModel

    monkeypatch.setattr(fm, "_FACTOR_RANGE", factor_range)
    B, S, F, E, L, H = shape
    torch.manual_seed(1)
    model = DirectionModel(ModelConfig(F, E, L, H, (), 0.0, S)).train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out_diff, grad_diff = fm.compare_with_vanilla(model, fm.fast_model(model), torch.randn(B, S, F))
    assert out_diff <= 1e-5 and grad_diff <= 1e-5


