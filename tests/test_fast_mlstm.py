"""models.fast_mlstm: the CPU training path agrees with xlstm's own forward and backward.

Real torch and xlstm; tiny models. Every comparison runs both paths on the very same parameter
tensors (the fast model owns none), moved away from their init so no gate sits at a symmetric
starting point.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import models.fast_mlstm as fm
from models import (
    DirectionModel,
    ModelConfig,
    TrainConfig,
    fit_dead_zone,
    fit_scaler,
    forward_returns,
    make_labels,
    make_windows,
    predict_proba,
    train_model,
)
from models.multi import MultiConfig, build_model

TOL = 1e-5       # float32 comparisons (training, prediction)
TOL_F64 = 1e-9   # the path comparison in float64: summation order in the host's vectorised kernels
                 # (AVX2, AVX-512, AMX) moves float32 gradients by up to ~2e-5, float64 ones by ~1e-14


def _scaled_diffs(model: DirectionModel, x: torch.Tensor) -> tuple[float, float]:
    """Largest output difference and largest gradient difference between vanilla and fast paths
    for the loss ``mean(logits^2) + mean(ret^2)``, each gradient's difference divided by
    ``max(1, max |g|)`` of that parameter: 1e-5 is absolute for gradients up to 1 and relative
    above (float32 carries ~7 digits: at |g| ~ 10, xlstm's own vanilla gradients differ from a
    float64 run by ~1e-5, and so would any reordering of its sums)."""
    outs, grads = [], []
    for fwd in (model, fm.fast_model(model)):
        model.zero_grad(set_to_none=True)
        logits, ret = fwd(x)
        (logits.square().mean() + ret.square().mean()).backward()
        outs.append(torch.cat([logits.detach().flatten(), ret.detach().flatten()]))
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    model.zero_grad(set_to_none=True)
    assert grads[0].keys() == grads[1].keys()
    grad_diff = max(float((grads[0][n] - grads[1][n]).abs().max() / max(1.0, float(grads[0][n].abs().max())))
                    for n in grads[0])
    return float((outs[0] - outs[1]).abs().max()), grad_diff


def _perturbed(cfg: ModelConfig, seed: int = 1) -> DirectionModel:
    torch.manual_seed(seed)
    model = DirectionModel(cfg).train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


# (batch, window, features, embedding, blocks, heads, sLSTM blocks)
CONFIGS = [
    (32, 16, 5, 16, 1, 1, ()),
    (1, 8, 3, 8, 2, 4, ()),
    (32, 64, 4, 64, 4, 4, ()),
    (1, 24, 6, 24, 3, 2, ()),
    (32, 12, 4, 32, 2, 2, (0,)),
    (1, 16, 3, 16, 3, 2, (1,)),
    (32, 8, 3, 8, 4, 4, (0, 2)),
    (32, 10, 3, 16, 2, 1, (1,)),
    (32, 8, 3, 16, 1, 2, (0,)),
]


@pytest.mark.parametrize("factor_range", [40.0, -1.0], ids=["factorised", "exact"])
@pytest.mark.parametrize("shape", CONFIGS, ids=lambda s: "B{}-S{}-F{}-E{}-L{}-H{}-s{}".format(*s))
def test_outputs_and_gradients_match_xlstm_vanilla(monkeypatch, shape, factor_range):
    """Both paths in float64, so the bound does not depend on the host's float32 kernels (a 1e-5
    float32 bound failed at 1.8e-5 on an AVX-512/AMX Xeon): the paths agree to ~1e-14."""
    monkeypatch.setattr(fm, "_FACTOR_RANGE", factor_range)
    B, S, F, E, L, H, slstm_at = shape
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = _perturbed(ModelConfig(F, E, L, H, slstm_at, 0.0, S)).double()
        torch.manual_seed(2)
        out_diff, grad_diff = _scaled_diffs(model, torch.randn(B, S, F))
    finally:
        torch.set_default_dtype(default)
    assert out_diff <= TOL_F64 and grad_diff <= TOL_F64, (out_diff, grad_diff)


def test_shorter_windows_than_the_conv_kernel_and_eval_mode():
    """S=2 < the conv kernel (4) and S < seq_len both take the same path as vanilla; eval mode
    with dropout > 0 is exact too (dropout is the identity there)."""
    model = _perturbed(ModelConfig(3, 16, 2, 2, (), 0.3, 16)).eval()
    fast = fm.fast_model(model)
    for S in (2, 5):
        x = torch.randn(4, S, 3)
        with torch.no_grad():
            a, b = model(x), fast(x)
        assert max(float((u - w).abs().max()) for u, w in zip(a, b)) <= TOL


def test_a_mismatch_is_detected():
    """The comparison can fail: one changed weight read only by the fast path's wrapper model."""
    cfg = ModelConfig(3, 16, 2, 2, (), 0.0, 8)
    model, other = _perturbed(cfg, 1), _perturbed(cfg, 2)
    x = torch.randn(4, 8, 3)
    out_diff, grad_diff = fm.compare_with_vanilla(model, fm.fast_model(other), x)
    assert out_diff > 1e-3


def test_fast_forward_picks_the_path(monkeypatch):
    cfg = ModelConfig(3, 16, 2, 2, (1,), 0.0, 8)
    model = DirectionModel(cfg)
    assert isinstance(fm.fast_forward(model), fm.FastDirectionModel)
    assert fm.fast_forward(model).model is model
    assert fm.fast_forward(model, enabled=False) is model
    multi = build_model(MultiConfig(cfg, (1, 5)))
    assert fm.fast_forward(multi) is multi
    monkeypatch.setenv(fm.ENV_SWITCH, "0")
    assert fm.fast_forward(model) is model
    with pytest.raises(TypeError):
        fm.fast_model(multi)


# ---------------------------------------------------------------- training on real bars


@pytest.fixture(scope="module")
def nvda_splits(nvda):
    """Windows of three causal features of real NVDA bars (log return, log(high/low),
    log(close/open)); scaler and dead zone fitted on the 300 training windows only."""
    seq_len = 12
    bars = nvda.iloc[:700]
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    feats = np.column_stack([np.concatenate([[0.0], np.diff(np.log(c))]), np.log(h / lo), np.log(c / o)])
    ends = np.arange(seq_len, len(c) - 1)
    r = forward_returns(c, ends, 1)
    n_train = 300
    y = make_labels(r, fit_dead_zone(r[:n_train]))
    scaler = fit_scaler(feats[: ends[n_train - 1] + 1])
    X = make_windows(scaler.transform(feats), ends, seq_len)
    return (X[:n_train], y[:n_train], r[:n_train]), (X[n_train:400], y[n_train:400], r[n_train:400])


TCFG = TrainConfig(lr=1e-3, max_epochs=2, patience=2, batch_size=64)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("slstm_at", [(), (1,)], ids=["mlstm", "mixed"])
def test_training_with_the_fast_path_gives_vanilla_weights(nvda_splits, slstm_at):
    """10 AdamW steps (2 epochs x 5 batches), dropout 0. AdamW's update is lr * m / sqrt(v), about
    lr per step for every component whatever its gradient's size, so a near-zero gradient component
    whose sign flips under a 1e-7 rounding difference moves its weight by up to 2 lr in that step.
    Accepted: every weight within lr (1e-3, one step's worth over all 10), and the whole trained
    displacement ``w - w0`` the same to 1 % in L2 (measured: 2e-6 all-mLSTM, 9e-4 mixed). A wrong
    gradient anywhere breaks the second bound by far (steps of lr in other directions)."""
    train, val = nvda_splits
    cfg = ModelConfig(3, 16, 2, 2, slstm_at, 0.0, 12)
    fast = train_model(cfg, TCFG, train, val)
    vanilla = train_model(cfg, dataclasses.replace(TCFG, fast_path=False), train, val)
    wf, wv = _weights(fast.model), _weights(vanilla.model)
    torch.manual_seed(TCFG.seed)  # train_model's init
    w0 = _weights(DirectionModel(cfg))
    assert wf.keys() == wv.keys() == w0.keys()
    assert max(float((wf[k] - wv[k]).abs().max()) for k in wf) <= TCFG.lr
    moved = sum(float((wv[k] - w0[k]).square().sum()) for k in wf) ** 0.5
    assert moved > 1e-2  # the weights did train
    assert sum(float((wf[k] - wv[k]).square().sum()) for k in wf) ** 0.5 <= 1e-2 * moved
    for (tf, vf), (tv, vv) in zip(fast.history, vanilla.history):
        assert abs(tf - tv) <= 1e-5 and abs(vf - vv) <= 1e-5
    np.testing.assert_allclose(predict_proba(fast.model, val[0]), predict_proba(vanilla.model, val[0]), atol=1e-3)


def test_fast_path_training_with_dropout_is_deterministic(nvda_splits):
    """With dropout > 0 the masks differ from vanilla's (the last block draws fewer of them), but a
    seed still fixes them: two runs give identical weights; another seed does not."""
    train, val = nvda_splits
    cfg = ModelConfig(3, 16, 2, 2, (), 0.3, 12)
    a = train_model(cfg, TCFG, train, val)
    b = train_model(cfg, TCFG, train, val)
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.history == b.history
    c = train_model(cfg, dataclasses.replace(TCFG, seed=1), train, val)
    assert not all(torch.equal(wa[k], v) for k, v in _weights(c.model).items())


def test_predict_proba_switch_agrees(nvda_splits, monkeypatch):
    """predict_proba's eval-mode fast path equals xlstm's own forward (EVO_FAST_PATH=0)."""
    _, val = nvda_splits
    model = _perturbed(ModelConfig(3, 16, 3, 2, (1,), 0.2, 12))
    p_fast = predict_proba(model, val[0])
    monkeypatch.setenv(fm.ENV_SWITCH, "0")
    p_vanilla = predict_proba(model, val[0])
    np.testing.assert_allclose(p_fast, p_vanilla, atol=1e-6)
    assert model.training  # predict_proba restores the mode
