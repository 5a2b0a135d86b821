"""models: configs, xLSTM stacks, windows, scaling, labels, training, export and lr tuning.

Real torch, xlstm and optuna; tiny models on small series so the file runs in well under a minute
on 2 cores. Real bars (nvda, indexfut) check the data side; a synthetic series with a planted
signal checks that training learns.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import models
from evo.errors import BundleError, ConfigError, GenomeError
from models import (
    DirectionModel,
    ModelConfig,
    Scaler,
    TrainConfig,
    build_stack_config,
    fit_dead_zone,
    fit_scaler,
    forward_returns,
    load_exported,
    make_labels,
    make_windows,
    predict_proba,
    state_dict_for_export,
    train_model,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny(**overrides) -> ModelConfig:
    """A 16-wide, 1-block model over 8-bar windows of 3 features (the GA's smallest genomes)."""
    base = dict(n_features=3, embedding_dim=16, num_blocks=1, num_heads=2, slstm_at=(), dropout=0.0, seq_len=8)
    return ModelConfig(**{**base, **overrides})


def bar_features(ohlcv) -> np.ndarray:
    """Three causal features of real bars (T, 3): log return, log(high/low), log(close/open)."""
    o, h, lo, c = (ohlcv[k].to_numpy() for k in ("open", "high", "low", "close"))
    ret = np.concatenate([[np.nan], np.diff(np.log(c))])
    return np.column_stack([ret, np.log(h / lo), np.log(c / o)])


def planted_series(seed: int = 0, n_bars: int = 1100, seq_len: int = 8, noise: float = 0.5):
    """A random walk whose feature 0 at bar t is the label of t (down -1, flat 0, up +1) + noise.

    Returns train (first 800 windows) and val (the rest) splits ready for train_model.
    """
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
    ends = np.arange(seq_len - 1, n_bars - 1)
    r = forward_returns(close, ends, 1)
    n_train = 800
    y = make_labels(r, fit_dead_zone(r[:n_train]))
    feats = rng.normal(0, 1, (n_bars, 3))
    feats[ends, 0] = (y - 1) + rng.normal(0, noise, len(y))
    scaler = fit_scaler(feats[: ends[n_train - 1] + 1])
    X = make_windows(scaler.transform(feats), ends, seq_len)
    return (X[:n_train], y[:n_train], r[:n_train]), (X[n_train:], y[n_train:], r[n_train:])


# ---------------------------------------------------------------- configs and the xLSTM stack


LAYOUTS = [(n, at) for n in (1, 2, 3) for k in range(n + 1) for at in itertools.combinations(range(n), k)]


@pytest.mark.parametrize(("num_blocks", "slstm_at"), LAYOUTS)
def test_every_block_layout_builds_and_backpropagates(num_blocks, slstm_at):
    torch.manual_seed(0)
    model = DirectionModel(tiny(num_blocks=num_blocks, slstm_at=slstm_at, dropout=0.1))
    kinds = [type(b).__name__ for b in model.stack.blocks]
    assert kinds == ["sLSTMBlock" if i in slstm_at else "mLSTMBlock" for i in range(num_blocks)]
    logits, ret = model(torch.randn(5, 8, 3))
    assert logits.shape == (5, 3) and ret.shape == (5,)
    (logits.square().sum() + ret.square().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert torch.isfinite(p).all(), name


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"num_heads": 3}, "divide embedding_dim"),
        ({"embedding_dim": 24, "num_heads": 3}, "mLSTM cell width"),  # 24 % 3 == 0 but 64 % 3 != 0
        ({"embedding_dim": 16, "num_heads": 16, "slstm_at": (0,)}, ">= 2"),  # NaN forget-gate init
        ({"slstm_at": (1,)}, "must index blocks"),
        ({"num_blocks": 3, "slstm_at": (2, 0)}, "sorted"),
        ({"num_blocks": 3, "slstm_at": (1, 1)}, "sorted"),
        ({"slstm_at": (-1,)}, "must index blocks"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"seq_len": 1}, "seq_len"),
        ({"n_features": 0}, "n_features"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"backend": "triton"}, "backend"),
        ({"embedding_dim": 16.0}, "embedding_dim"),
    ],
)
def test_invalid_model_configs_raise_config_error_with_a_hint(overrides, hint):
    with pytest.raises(ConfigError, match=hint):
        tiny(**overrides)


def test_valid_corner_configs():
    # all-sLSTM with 3 heads: fine, since there is no mLSTM cell whose 64-wide inner dim 3 must divide
    assert tiny(embedding_dim=24, num_heads=3, num_blocks=2, slstm_at=[0, 1]).slstm_at == (0, 1)
    assert tiny(num_heads=16).num_heads == 16  # all-mLSTM: 1-wide heads allowed
    cfg = tiny(num_blocks=3, slstm_at=(1,))
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # genes drawn with numpy come out as plain Python numbers (JSON-ready)
    np_cfg = tiny(embedding_dim=np.int64(16), slstm_at=np.array([0]), dropout=np.float32(0.25))
    assert json.loads(json.dumps(dataclasses.asdict(np_cfg)))["embedding_dim"] == 16
    assert np_cfg.slstm_at == (0,) and type(np_cfg.slstm_at[0]) is int and np_cfg.dropout == 0.25


@pytest.mark.parametrize(
    "overrides",
    [{"lr": 0.0}, {"lr": float("nan")}, {"max_epochs": 0}, {"patience": 0}, {"batch_size": 0},
     {"weight_decay": -1.0}, {"grad_clip": 0.0}, {"return_loss_weight": -0.1}, {"seed": -1},
     {"device": "tpu"}, {"device": "gpu:0"}],
)
def test_invalid_train_configs_raise(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**{"lr": 1e-3, "max_epochs": 3, "patience": 2, "batch_size": 32, **overrides})


def test_build_stack_config_makes_fresh_objects():
    cfg = tiny(num_blocks=2, slstm_at=(1,))
    a, b = build_stack_config(cfg), build_stack_config(cfg)
    assert a is not b and a.mlstm_block is not b.mlstm_block and a.slstm_block is not b.slstm_block
    a.mlstm_block.mlstm.num_heads = 99
    a.slstm_block.slstm.backend = "cuda"
    assert b.mlstm_block.mlstm.num_heads == 2 and b.slstm_block.slstm.backend == "vanilla"
    assert build_stack_config(cfg).mlstm_block.mlstm.num_heads == 2
    # all-sLSTM and all-mLSTM stacks configure only the block kind they use
    assert build_stack_config(tiny(slstm_at=(0,))).mlstm_block is None
    assert build_stack_config(tiny()).slstm_block is None
    assert models.pick_backend() == ("cuda" if torch.cuda.is_available() else "vanilla")


# ---------------------------------------------------------------- windows and causality


def test_make_windows_rows_and_future_perturbation(nvda):
    X = bar_features(nvda)[1:]
    S = 16
    ends = np.array([S - 1, 100, 2000, len(X) - 1])
    W = make_windows(X, ends, S)
    assert W.shape == (4, S, 3) and W.dtype == np.float32 and W.flags.c_contiguous
    for j, t in enumerate(ends):
        np.testing.assert_array_equal(W[j], X[t - S + 1 : t + 1].astype(np.float32))
    # rows after t (and before t-S+1) do not reach window t
    X2 = X.copy()
    X2[101:] = 1e6
    X2[:100 - S + 1] = -1e6
    np.testing.assert_array_equal(make_windows(X2, np.array([100]), S)[0], W[1])


def test_make_windows_rejects_ends_outside_the_data():
    X = np.zeros((50, 2))
    with pytest.raises(GenomeError, match="shorten the window"):
        make_windows(X, np.array([8, 9]), 10)
    with pytest.raises(GenomeError):
        make_windows(X, np.array([50]), 10)
    assert make_windows(X, np.array([9, 49]), 10).shape == (2, 10, 2)
    assert make_windows(X, np.array([], dtype=np.int64), 10).shape == (0, 10, 2)


def test_model_output_depends_only_on_its_window(nvda):
    """Truncating or changing the future (or the distant past) must not change window t's logits."""
    torch.manual_seed(0)
    S = 16
    cfg = tiny(seq_len=S, num_blocks=2, slstm_at=(1,))
    model = DirectionModel(cfg).eval()
    raw = bar_features(nvda)[1:]
    scaler = fit_scaler(raw[:2000])
    t = 1500
    ends = np.array([t])
    before = predict_proba(model, make_windows(scaler.transform(raw), ends, S))
    changed = raw.copy()
    changed[t + 1 :] *= -3.0  # the future
    changed[: t - S + 1] = np.nan  # the distant past
    after = predict_proba(model, make_windows(scaler.transform(changed), ends, S))
    np.testing.assert_array_equal(before, after)
    changed[t] += 0.05  # the decision bar itself does matter
    assert not np.array_equal(before, predict_proba(model, make_windows(scaler.transform(changed), ends, S)))


@pytest.mark.parametrize("slstm_at", [(), (1,), (0, 1)])
def test_stack_is_causal_inside_the_window(slstm_at):
    """Step k of the stack does not see steps after k: changing them leaves steps <= k unchanged."""
    torch.manual_seed(1)
    model = DirectionModel(tiny(num_blocks=2, slstm_at=slstm_at)).eval()
    x = torch.randn(4, 8, 3)
    y = x.clone()
    y[:, 5:] = torch.randn(4, 3, 3) * 10
    with torch.no_grad():
        hx, hy = model.stack(model.input_proj(x)), model.stack(model.input_proj(y))
        short = model.stack(model.input_proj(x[:, :5]))
    torch.testing.assert_close(hx[:, :5], hy[:, :5], rtol=0, atol=1e-6)
    torch.testing.assert_close(hx[:, :5], short, rtol=0, atol=1e-6)
    assert not torch.allclose(hx[:, 5:], hy[:, 5:])


@pytest.mark.parametrize("slstm_at", [(), (0,), (1,)])
def test_recurrent_steps_match_the_parallel_forward(slstm_at):
    """xlstm's step-by-step recurrence gives the same last step as the whole-window forward."""
    torch.manual_seed(2)
    model = DirectionModel(tiny(num_blocks=2, slstm_at=slstm_at, num_heads=4)).eval()
    x = torch.randn(3, 8, 3)
    with torch.no_grad():
        e = model.input_proj(x)
        full = model.stack(e)
        state = None
        for k in range(e.shape[1]):
            out, state = model.stack.step(e[:, k : k + 1], state)
    torch.testing.assert_close(out[:, 0], full[:, -1], rtol=0, atol=1e-5)


# ---------------------------------------------------------------- scaler


def test_scaler_is_fitted_on_training_rows_only(orcl):
    X = bar_features(orcl)
    n = 3000
    scaler = fit_scaler(X[:n])
    np.testing.assert_allclose(scaler.mean, np.nanmean(X[:n], axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaler.scale, np.nanstd(X[:n], axis=0), rtol=1e-5)
    X2 = X.copy()
    X2[n:] = X2[n:] * 50 + 7  # anything outside the fit range
    again = fit_scaler(X2[:n])
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.scale, scaler.scale)
    Z = scaler.transform(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    assert np.isfinite(Z).all() and np.abs(Z).max() <= 10.0
    # row 0 has a NaN return (warm-up): scaled to 0, i.e. the training mean
    assert Z[0, 0] == 0.0


def test_scaler_nan_constant_and_extreme_columns():
    rows = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])
    s = fit_scaler(rows)
    np.testing.assert_array_equal(s.mean, np.float32([2.0, 5.0, 0.0]))
    np.testing.assert_array_equal(s.scale, np.float32([1.0, 1.0, 1.0]))  # std 1; constant; all NaN
    Z = s.transform(np.array([[np.nan, 6.0, 2.0], [1e9, -np.inf, np.inf]]))
    np.testing.assert_array_equal(Z, np.float32([[0.0, 1.0, 2.0], [10.0, -10.0, 10.0]]))
    restored = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(restored.mean, s.mean)
    np.testing.assert_array_equal(restored.scale, s.scale)
    with pytest.raises(ValueError, match="feature columns"):
        s.transform(np.zeros((2, 4)))


# ---------------------------------------------------------------- returns and labels


def test_forward_returns_and_their_end(nvda):
    close = nvda["close"].to_numpy()
    ends = np.arange(0, len(close) - 5)
    r = forward_returns(close, ends, 5)
    np.testing.assert_allclose(r[10], np.log(close[15] / close[10]), rtol=0, atol=0)
    with pytest.raises(GenomeError, match="no label"):
        forward_returns(close, np.array([len(close) - 5]), 5)
    with pytest.raises(GenomeError):
        forward_returns(close, np.array([len(close) - 1]), 1)
    assert forward_returns(close, np.array([len(close) - 2]), 1).shape == (1,)


def test_dead_zone_makes_about_a_third_flat_on_nvda(nvda):
    close = nvda["close"].to_numpy()
    r = forward_returns(close, np.arange(len(close) - 1), 1)
    train = r[:2400]
    dz = fit_dead_zone(train)
    assert dz == pytest.approx(0.01390724, rel=1e-6)  # NVDA 1999-2008: a 1.39% daily move
    y = make_labels(train, dz)
    assert y.dtype == np.int64
    shares = np.bincount(y, minlength=3) / len(y)
    assert abs(shares[1] - 1 / 3) < 0.01
    assert 0.28 < shares[0] < 0.38 and 0.28 < shares[2] < 0.38


def test_dead_zone_on_one_minute_bars_is_zero_and_up_is_reasonable(indexfut):
    close = indexfut["close"].to_numpy()
    r = forward_returns(close, np.arange(len(close) - 1), 1)
    train = r[:20000]
    assert (train <= 0).mean() > 0.65  # a plain up/not-up label would be mostly "not up"
    dz = fit_dead_zone(train)
    assert dz == 0.0  # over a third of 1-minute closes are unchanged
    y = make_labels(r, dz)
    shares = np.bincount(y, minlength=3) / len(y)
    assert shares[1] == pytest.approx((r == 0).mean())  # exactly the unchanged closes are flat
    assert 0.2 < shares[2] < 0.4 and 0.2 < shares[0] < 0.4


def test_make_labels_boundaries():
    r = np.array([-0.02, -0.01, 0.0, 0.01, 0.02])
    np.testing.assert_array_equal(make_labels(r, 0.01), [0, 1, 1, 1, 2])
    np.testing.assert_array_equal(make_labels(r, 0.0), [0, 0, 1, 2, 2])
    with pytest.raises(GenomeError):
        make_labels(np.array([0.1, np.nan]), 0.01)
    with pytest.raises(ValueError):
        make_labels(r, -0.01)


# ---------------------------------------------------------------- training


FAST = TrainConfig(lr=3e-3, max_epochs=4, patience=4, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def planted():
    return planted_series()


def test_training_learns_a_planted_signal(planted):
    train, val = planted
    res = train_model(tiny(), FAST, train, val)
    p = predict_proba(res.model, val[0])
    assert p.shape == (len(val[1]), 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    accuracy = (p.argmax(axis=1) == val[1]).mean()
    assert accuracy > 0.6, accuracy  # chance is ~1/3
    assert res.history[-1][0] < res.history[0][0]  # the training loss went down
    assert res.best_val_loss == min(v for _, v in res.history)
    assert res.return_scale == pytest.approx(np.std(train[2]), rel=1e-5)
    assert not res.model.training


def test_training_is_deterministic(planted):
    train, val = planted
    cfg = tiny(num_blocks=2, slstm_at=(0,), dropout=0.2)
    tcfg = dataclasses.replace(FAST, max_epochs=2)
    torch.manual_seed(123)
    outside = torch.rand(3)
    a = train_model(cfg, tcfg, train, val)
    b = train_model(cfg, tcfg, train, val)
    np.testing.assert_array_equal(predict_proba(a.model, val[0]), predict_proba(b.model, val[0]))
    assert a.history == b.history
    # the caller's torch RNG stream is left alone
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), outside)
    c = train_model(cfg, dataclasses.replace(tcfg, seed=1), train, val)
    assert not np.array_equal(predict_proba(a.model, val[0]), predict_proba(c.model, val[0]))


def test_fused_adamw_and_foreach_clip_match_the_for_loop_versions(planted):
    """train_model's fused AdamW + foreach clip compute the default for-loop update to float32 rounding.

    Both optimisers get the same gradients every step (those of the fused copy): through the model,
    a rounding difference in the weights changes the next gradient, and Adam turns a gradient of
    1e-10 into a step of ``lr`` whatever its rounding, so separate trajectories drift apart by ~1e-5
    with either optimiser. The sLSTM block is in, for its bias with such tiny gradients.
    """
    train, _ = planted
    cfg = tiny(num_blocks=2, slstm_at=(1,), num_heads=4)
    torch.manual_seed(7)
    fused_model, loop_model = DirectionModel(cfg), DirectionModel(cfg)
    loop_model.load_state_dict(fused_model.state_dict())
    start = {k: v.clone() for k, v in fused_model.state_dict().items()}

    def optimizer(model, **kw):
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=3e-3, **kw)

    opt_fused, opt_loop = optimizer(fused_model, fused=True), optimizer(loop_model, foreach=False)
    fused_params, loop_params = list(fused_model.parameters()), list(loop_model.parameters())
    X, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    for step in range(8):
        batch = slice(32 * step, 32 * (step + 1))
        opt_fused.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(fused_model(X[batch])[0], y[batch]).backward()
        for p, q in zip(fused_params, loop_params):
            q.grad = None if p.grad is None else p.grad.clone()
        # a small max norm, so that the clip really scales the gradient
        norm_foreach = torch.nn.utils.clip_grad_norm_(fused_params, 0.05, foreach=True)
        norm_loop = torch.nn.utils.clip_grad_norm_(loop_params, 0.05, foreach=False)
        torch.testing.assert_close(norm_foreach, norm_loop, rtol=1e-6, atol=0)
        assert norm_loop > 0.05
        opt_fused.step()
        opt_loop.step()
    moved = 0.0
    for (name, a), b in zip(fused_model.state_dict().items(), loop_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
        moved = max(moved, (a - start[name]).abs().max().item())
    assert moved > 1e-2  # 8 steps of lr 3e-3: the weights did move


def test_early_stopping_restores_the_best_epoch():
    # pure noise and a high learning rate: the model overfits and validation loss rises
    train, val = planted_series(seed=3, noise=50.0)
    cfg = tiny(embedding_dim=32, num_heads=4)
    tcfg = TrainConfig(lr=1e-2, max_epochs=8, patience=2, batch_size=32, seed=0)
    res = train_model(cfg, tcfg, train, val)
    vals = [v for _, v in res.history]
    assert res.best_epoch == int(np.argmin(vals)) and res.best_val_loss == min(vals)
    assert res.best_epoch < res.epochs_run - 1, "the scenario must stop after a worse epoch"
    assert res.epochs_run == min(tcfg.max_epochs, res.best_epoch + 1 + tcfg.patience)
    # same seed, stopped right at the best epoch: the same weights, so the same probabilities
    again = train_model(cfg, dataclasses.replace(tcfg, max_epochs=res.best_epoch + 1), train, val)
    np.testing.assert_array_equal(predict_proba(res.model, val[0]), predict_proba(again.model, val[0]))


def test_on_epoch_callback_stops_training(planted):
    train, val = planted
    seen = []
    res = train_model(tiny(), FAST, train, val, on_epoch=lambda e, v: seen.append((e, v)) or e == 1)
    assert res.pruned and res.epochs_run == 2 and [e for e, _ in seen] == [0, 1]
    assert [v for _, v in seen] == [v for _, v in res.history]


def test_bad_inputs_and_divergence_raise_genome_error(planted):
    train, val = planted
    X = train[0].copy()
    X[3, 2, 1] = np.nan
    with pytest.raises(GenomeError, match="NaN"):
        train_model(tiny(), FAST, (X, train[1], train[2]), val)
    with pytest.raises(GenomeError, match="no windows"):
        train_model(tiny(), FAST, train, (val[0][:0], val[1][:0], val[2][:0]))
    with pytest.raises(ValueError, match="windows"):
        train_model(tiny(seq_len=9), FAST, train, val)
    with pytest.raises(GenomeError, match="NaN loss"):  # an absurd learning rate blows the weights up
        train_model(tiny(), dataclasses.replace(FAST, lr=1e30), train, val)


# ---------------------------------------------------------------- export


def _swap_in_cuda_cells(model: DirectionModel) -> None:
    """Replace every sLSTM cell by a "cuda"-backend cell holding the same weights.

    The CUDA kernel is not built (skip_backend_init, as xlstm offers for converting models between
    backends), so this runs on a CPU: it gives the state_dict a model trained on a GPU would have.
    """
    from xlstm.blocks.slstm.cell import sLSTMCell_cuda
    from xlstm.blocks.slstm.layer import sLSTMLayer

    for layer in [m for m in model.modules() if isinstance(m, sLSTMLayer)]:
        old = layer.slstm_cell
        cell_cfg = copy.deepcopy(old.config)
        cell_cfg.backend = "cuda"
        new = sLSTMCell_cuda(cell_cfg, skip_backend_init=True)
        new.recurrent_kernel[:] = old.recurrent_kernel[:]
        new.bias[:] = old.bias[:]
        layer.slstm_cell = new


def test_export_round_trip_through_safetensors(planted):
    train, val = planted
    cfg = tiny(num_blocks=2, slstm_at=(1,), num_heads=4)
    model = train_model(cfg, dataclasses.replace(FAST, max_epochs=1), train, val).model
    tensors = state_dict_for_export(model)
    assert all(t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu" for t in tensors.values())
    assert set(tensors) == set(model.state_dict())
    loaded = load_exported(cfg, st_load(st_save(tensors)))
    assert loaded.config == cfg and not loaded.training
    np.testing.assert_array_equal(predict_proba(model, val[0]), predict_proba(loaded, val[0]))
    broken = dict(tensors)
    broken.pop("head_ret.bias")
    with pytest.raises(BundleError, match="missing"):
        load_exported(cfg, broken)
    with pytest.raises(BundleError, match="shape"):
        load_exported(dataclasses.replace(cfg, n_features=4), tensors)


def test_cuda_backend_weights_load_into_a_vanilla_build():
    torch.manual_seed(4)
    cfg = tiny(num_blocks=2, slstm_at=(0, 1), num_heads=4)
    vanilla = DirectionModel(cfg).eval()
    with torch.no_grad():  # non-trivial recurrent weights and biases (xlstm inits R to zero)
        for p in vanilla.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    # (not copy.deepcopy: it turns xlstm's sLSTM ParameterProxy attributes into stale Parameters)
    gpu_trained = DirectionModel(cfg)
    gpu_trained.load_state_dict(vanilla.state_dict())
    _swap_in_cuda_cells(gpu_trained)
    raw_cuda, raw_vanilla = gpu_trained.state_dict(), vanilla.state_dict()
    assert list(raw_cuda) == list(raw_vanilla)  # same parameter names ...
    key = "stack.blocks.0.xlstm.slstm_cell._recurrent_kernel_"
    assert raw_cuda[key].shape != raw_vanilla[key].shape  # ... but not the same layout:
    with pytest.raises(RuntimeError, match="size mismatch"):  # a plain load_state_dict fails
        DirectionModel(cfg).load_state_dict(raw_cuda)
    bias = "stack.blocks.0.xlstm.slstm_cell._bias_"
    assert not torch.equal(raw_cuda[bias], raw_vanilla[bias])  # (same shape, gates reordered)
    exported = state_dict_for_export(gpu_trained)
    for name, t in state_dict_for_export(vanilla).items():
        assert torch.equal(exported[name], t), name
    loaded = load_exported(dataclasses.replace(cfg, backend="cuda"), exported)
    assert loaded.config.backend == "vanilla"
    x = torch.randn(6, 8, 3)
    with torch.no_grad():
        for a, b in zip(loaded(x), vanilla(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_backend_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="pick_backend"):
        DirectionModel(tiny(slstm_at=(0,), backend="cuda"))


# ---------------------------------------------------------------- tuning and imports


def test_tune_learning_rate_uses_validation_only(planted):
    import optuna

    from models.tuning import LR_HIGH, LR_LOW, tune_learning_rate

    train, val = planted
    params = list(inspect.signature(tune_learning_rate).parameters)
    assert params == ["cfg", "tcfg", "train", "val", "n_trials", "seed", "storage", "study_name"]
    tcfg = dataclasses.replace(FAST, max_epochs=2)
    small = tuple(a[:300] for a in train), tuple(a[:150] for a in val)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        lr, study = tune_learning_rate(tiny(), tcfg, *small, n_trials=3, seed=0)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored
    finally:
        optuna.logging.set_verbosity(before)
    assert LR_LOW <= lr <= LR_HIGH and (LR_LOW, LR_HIGH) == (1e-5, 1e-2)
    assert len(study.trials) == 3
    assert lr == study.best_trial.params["lr"]
    assert study.best_value == min(t.value for t in study.trials if t.value is not None)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)  # epochs were reported


def test_importing_models_loads_no_search_or_backtest_library():
    code = (
        "import sys, models\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'optuna', 'deap', 'nevergrad', 'vectorbt'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trained_model_reloads_as_vanilla_on_the_cpu(planted):
    """A model trained with the CUDA sLSTM kernel (bf16 autocast) predicts about the same on the CPU."""
    train, val = planted
    cfg = tiny(num_blocks=2, slstm_at=(0,), num_heads=4, backend="cuda")
    res = train_model(cfg, dataclasses.replace(FAST, max_epochs=1, device="cuda"), train, val)
    on_gpu = predict_proba(res.model, val[0])
    on_cpu = predict_proba(load_exported(cfg, state_dict_for_export(res.model)), val[0])
    np.testing.assert_allclose(on_cpu, on_gpu, atol=2e-2)
