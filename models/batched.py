"""Train K models of one architecture as one stacked model (issue 16).

A genome's evaluation trains many models of the *same* architecture on different data: each of its
two models once per walk-forward fold, per training seed and per learning-rate trial. Each is small
(embedding 16-48, 1-3 blocks, windows 16-32), so alone it spends much of its time in per-operation
overhead. :func:`train_models` trains K of them at once: every member's parameters are one row of a
``(K, N)`` matrix and one forward/backward pass runs all members, the member axis leading every
tensor:

- **mLSTM blocks**: the math of :mod:`models.fast_mlstm` (last block on the decision bar only,
  block-diagonal projections as dense per-head products, hand-written causal convolution, the
  factorised cell), with ``torch.bmm`` over members x heads and the cell over members x heads x
  windows;
- **sLSTM blocks**: xlstm's ``vanilla`` sLSTM (causal conv, head-wise gate projections, the
  exponential-gated recurrence, group norm, gated feed-forward), re-written with a member axis: one
  ``bmm`` per time step for all members' recurrent products instead of one per member;
- **multi-timeframe models** (:mod:`models.multi`): the K x T encoders run as K*T members of one
  stack, then the fusion (``concat`` or ``attention``) and the heads per member;
- **one optimiser step for all**: AdamW over the ``(K, N)`` matrix with each member's own learning
  rate and step count, its gradient clipped by its own norm.

Each member keeps what it would have alone (:func:`models.train.train_model`): its own data, its own
shuffled batches (its seed's generator), its own class weights and return scale, its own dropout
masks (drawn from its own generator in the order and memory layout the single model draws them, so
with the same seed they are the same masks), its own ``ReduceLROnPlateau`` schedule and early
stopping. A member whose epoch has fewer batches skips the remaining steps: it is left out of the
forward pass and of AdamW (no weight decay, no moment update, no step count). A member that stops
(patience, ``max_epochs``, pruning by ``on_epoch``) leaves the stack: its parameters stop changing
and stop costing arithmetic, and it returns its best epoch's weights.

Same numbers: every member's weights, losses and predictions equal ``train_model``'s for its config,
data and seed up to floating-point rounding (the products are summed in another order; the
difference is ~1e-13 in float64; see ``tests/test_batched.py``). On CUDA the dropout masks differ
from ``train_model``'s (its fused CUDA dropout draws them another way), as they do between any two
CUDA paths.

``EVO_BATCHED=0`` in the environment trains the members one at a time through
:func:`models.train.train_model` instead (same results up to rounding, same API).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evo.errors import ConfigError, GenomeError
from models.config import ModelConfig, TrainConfig
from models.fast_mlstm import _cell, fast_path_enabled
from models.multi import MultiConfig, build_model
from models.network import N_CLASSES, load_into, state_dict_for_export
from models.train import EVAL_BATCH, LR_DECAY, Split, TrainResult, _check_split, _class_weights, train_model

__all__ = ["ENV_SWITCH", "batched_enabled", "train_models"]

log = logging.getLogger(__name__)

ENV_SWITCH = "EVO_BATCHED"  # "0" trains the members one at a time through train_model

# AdamW's defaults, as train_model's torch.optim.AdamW uses them
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
LN_EPS = 1e-5  # xlstm's LayerNorm / MultiHeadLayerNorm eps
# A training step runs its forward and backward passes on a group of members at a time, so many that
# the widest per-step tensor (members x windows x steps x width) holds about this many elements
# (1.6 MB in float32, an L2 cache's worth) and a group's activations stay in cache from its forward
# to its backward pass. Measured on 2-core EPYC, 1 thread, 9 members of cpu-preset shapes: groups of 3
# were 20-30 % faster than all 9 at once and 10-45 % faster than one at a time.
_CHUNK_ELEMENTS = 400_000
# mLSTM blocks run this many (members x windows x steps x cell width) elements at a time (1.6 MB in
# float32, an L2 cache's worth): measured 25-30 % faster than all members at once for E 16-32, S 24-32.
_CHUNK_ELEMENTS = 400_000

OnEpoch = Callable[[int, dict[int, float]], Iterable[int] | None]  # (epoch, {member: val_loss}) -> members to stop


def batched_enabled() -> bool:
    """False when ``EVO_BATCHED`` is ``0``, ``false``, ``no`` or ``off``; True otherwise."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def train_models(
    cfg: ModelConfig | MultiConfig,
    tcfgs: Sequence[TrainConfig],
    trains: Sequence[Split],
    vals: Sequence[Split],
    *,
    on_epoch: OnEpoch | None = None,
    return_errors: bool = False,
) -> list[TrainResult | GenomeError]:
    """Train K models of architecture ``cfg``, member ``k`` on ``trains[k]`` with ``tcfgs[k]``,
    early-stopped on ``vals[k]``; return one :class:`~models.train.TrainResult` per member, in order.

    Member ``k``'s result is what ``train_model(cfg, tcfgs[k], trains[k], vals[k])`` returns, up
    to floating-point rounding (module docstring): same seed, same batches, same dropout masks. The
    members may differ in everything but the architecture and the device: learning rate, seed,
    epochs, patience, batch size, weight decay, clipping, the loss weight, and the number of
    training and validation windows. ``tcfgs`` must agree on ``device`` and ``amp``.

    ``on_epoch(epoch, {k: val_loss})`` is called after each epoch with the validation losses of the
    members that ran it (every member still training; epoch 0 of all, then epoch 1 ...) and returns
    the members to stop now (``pruned`` in their results), as ``train_model``'s ``on_epoch`` does
    for one model. It sees all members' losses of an epoch at once, so it can compare them (a
    learning-rate race, :func:`models.tuning.tune_and_train`). One at a time (``EVO_BATCHED=0``) it is
    called once per member and epoch, with that member's loss alone.

    A member whose loss turns NaN/inf raises ``GenomeError`` (as ``train_model`` does), or with
    ``return_errors`` becomes that ``GenomeError`` in the returned list while the others go on.
    ``EVO_BATCHED=0`` (or a single member) trains them one at a time with ``train_model``.
    """
    K = len(tcfgs)
    if K == 0 or len(trains) != K or len(vals) != K:
        raise ValueError(f"train_models needs as many train configs, training and validation splits "
                         f"(>= 1), got {K}, {len(trains)}, {len(vals)}")
    if len({(t.device, t.amp) for t in tcfgs}) != 1:
        raise ConfigError("train_models: the members must share TrainConfig.device and amp")
    if K == 1 or not batched_enabled():
        return _one_at_a_time(cfg, tcfgs, trains, vals, on_epoch, return_errors)
    checked = [(_check_split("train", tr, cfg), _check_split("val", va, cfg)) for tr, va in zip(trains, vals)]
    device = torch.device(tcfgs[0].device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("TrainConfig.device is 'cuda' but CUDA is not available; use device='cpu'")
    rng_devices = []
    if device.type == "cuda":
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=rng_devices):
        return _Trainer(cfg, list(tcfgs), checked, device, on_epoch, return_errors).run()


def _one_at_a_time(cfg, tcfgs, trains, vals, on_epoch, return_errors) -> list[TrainResult | GenomeError]:
    out: list[TrainResult | GenomeError] = []
    for k, (tcfg, tr, va) in enumerate(zip(tcfgs, trains, vals)):
        cb = None if on_epoch is None else (lambda epoch, loss, k=k: k in set(on_epoch(epoch, {k: loss}) or ()))
        try:
            out.append(train_model(cfg, tcfg, tr, va, on_epoch=cb))
        except GenomeError as exc:
            if not return_errors:
                raise
            out.append(exc)
    return out


# ------------------------------------------------------------------------------------------------
# the stacked forward: every tensor (V, ...) with V members; parameters P[name]: (V, *shape)


def _linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear`` per member: x (V, ..., In), w (V, Out, In), b (V, Out) -> (V, ..., Out)."""
    V, lead = x.shape[0], x.shape[1:-1]
    x2 = x.reshape(V, -1, x.shape[-1])
    y = torch.bmm(x2, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), x2, w.transpose(1, 2))
    return y.view(V, *lead, w.shape[1])


def _bcast(w: Tensor, x: Tensor) -> Tensor:
    """Per-member vector w (V, D) shaped to broadcast against x (V, ..., D)."""
    return w.view(w.shape[0], *([1] * (x.dim() - 2)), w.shape[-1])


def _ln(x: Tensor, w: Tensor) -> Tensor:
    """xlstm's ``LayerNorm`` (weight stored as an offset from 1, no bias) with per-member weights."""
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS) * _bcast(1.0 + w, x)


class _CausalConv(torch.autograd.Function):
    """:class:`models.fast_mlstm._CausalConv` with a member axis: x (V, B, S, C), weight (V, C, K),
    bias (V, C) or None; ``y_t = b + sum_k w[:, k] x_{t-(K-1)+k}``, hand-written backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        S, K = x.shape[2], weight.shape[2]
        w = weight.unsqueeze(1).unsqueeze(1)  # (V, 1, 1, C, K)
        y = torch.mul(x, w[..., K - 1]) if bias is None else torch.addcmul(bias[:, None, None], x, w[..., K - 1])
        for lag in range(1, min(K, S)):
            y[:, :, lag:].addcmul_(x[:, :, :S - lag], w[..., K - 1 - lag])
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        S, K = x.shape[2], weight.shape[2]
        w = weight.unsqueeze(1).unsqueeze(1)
        gx = torch.mul(g, w[..., K - 1])
        gw = torch.zeros_like(weight)
        if ctx.needs_input_grad[1]:
            gw[..., K - 1] = (g * x).sum((1, 2))
        for lag in range(1, min(K, S)):
            gx[:, :, :S - lag].addcmul_(g[:, :, lag:], w[..., K - 1 - lag])
            if ctx.needs_input_grad[1]:
                gw[..., K - 1 - lag] = (g[:, :, lag:] * x[:, :, :S - lag]).sum((1, 2))
        gb = g.sum((1, 2)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _per_head(weight: Tensor, num_heads: int) -> Tensor:
    """``LinearHeadwiseExpand.weight`` (V, blocks, out, in) as (V, NH, DH, DH) block-diagonal
    per-head matrices (fast_mlstm's ``_per_head`` with a member axis)."""
    V, blocks, out, inp = weight.shape
    per = blocks // num_heads
    eye = torch.eye(per, dtype=weight.dtype, device=weight.device)
    dense = weight.view(V, num_heads, per, out, 1, inp) * eye.view(1, 1, per, 1, per, 1)
    return dense.reshape(V, num_heads, per * out, per * inp)


def _head_major(t: Tensor, NH: int) -> Tensor:
    """(V, B, S, NH*DH) -> (V*NH, B*S, DH), contiguous."""
    V, B, S, C = t.shape
    return t.reshape(V, B * S, NH, C // NH).transpose(1, 2).reshape(V * NH, B * S, C // NH)


class _Masks:
    """Dropout masks of one training step: ``draws[v]`` maps a site to member v's mask in the shape
    its single model's dropout sees (or is None without dropout)."""

    def __init__(self, draws: list[dict[str, Tensor]] | None, batch: int) -> None:
        self.draws, self.batch = draws, batch

    def part(self, start: int, stop: int) -> _Masks:
        """The masks of members ``start .. stop-1``."""
        return self if self.draws is None else _Masks(self.draws[start:stop], self.batch)

    def apply(self, site: str, x: Tensor, to_layout: Callable[[Tensor], Tensor] = lambda m: m) -> Tensor:
        """x (V, B, ...) times each member's mask for ``site``, rearranged by ``to_layout`` into
        x's per-member layout (B first) and padded to x's batch."""
        if self.draws is None:
            return x
        masks = []
        for d in self.draws:
            m = to_layout(d[site])
            if m.shape[0] < x.shape[1]:
                m = torch.cat([m, m.new_zeros(x.shape[1] - m.shape[0], *m.shape[1:])])
            masks.append(m)
        return x * torch.stack(masks)


def _mlstm_layer(P: dict, pre: str, x: Tensor, NH: int, last_only: bool, masks: _Masks, site: str) -> Tensor:
    """fast_mlstm's ``_mlstm_layer`` on x (V, B, S, E) with per-member weights; (V, B, 1, E) if
    ``last_only``."""
    V, B, S, _ = x.shape
    w_up = P[pre + "proj_up.weight"]
    inner = w_up.shape[1] // 2
    DH = inner // NH
    N = B * S
    if last_only:
        x_mlstm = _linear(x, w_up[:, :inner])
        z = _linear(x[:, :, -1:], w_up[:, inner:])
    else:
        x_mlstm, z = _linear(x, w_up).split(inner, dim=-1)
    x_conv = F.silu(_CausalConv.apply(x_mlstm, P[pre + "conv1d.conv.weight"][:, :, 0], P[pre + "conv1d.conv.bias"]))

    wq, wk, wv = (_per_head(P[pre + n], NH) for n in ("q_proj.weight", "k_proj.weight", "v_proj.weight"))
    wg = torch.cat([P[pre + "mlstm_cell.igate.weight"], P[pre + "mlstm_cell.fgate.weight"]], dim=1)  # (V, 2NH, 3in)
    wg_q, wg_k, wg_v = (wg[:, :, i * inner:(i + 1) * inner].reshape(V, 2 * NH, NH, DH).transpose(1, 2)
                        for i in range(3))  # (V, NH, 2NH, DH)
    w_conv = torch.cat([wq, wk / math.sqrt(DH), wg_q @ wq + wg_k @ wk], dim=2)  # (V, NH, 2DH + 2NH, DH)
    w_mlstm = torch.cat([wv, wv.new_zeros(V, NH, 1, DH), wg_v @ wv], dim=2)  # (V, NH, DH + 1 + 2NH, DH)
    ones = torch.zeros(DH + 1 + 2 * NH, dtype=x.dtype, device=x.device)
    ones[DH] = 1.0
    q, k, g_conv = torch.bmm(_head_major(x_conv, NH), w_conv.reshape(V * NH, -1, DH).transpose(1, 2)).split(
        [DH, DH, 2 * NH], dim=-1)
    v1, g_mlstm = torch.baddbmm(ones, _head_major(x_mlstm, NH), w_mlstm.reshape(V * NH, -1, DH).transpose(1, 2)
                                ).split([DH + 1, 2 * NH], dim=-1)
    bias = torch.cat([P[pre + "mlstm_cell.igate.bias"], P[pre + "mlstm_cell.fgate.bias"]], dim=1)  # (V, 2NH)
    gates = g_conv.view(V, NH, N, 2 * NH).sum(1) + g_mlstm.view(V, NH, N, 2 * NH).sum(1) + bias.unsqueeze(1)
    gates = gates.transpose(1, 2).reshape(V, 2 * NH, B, S)
    Pn = V * NH * B
    h = _cell(q.reshape(Pn, S, DH), k.reshape(Pn, S, DH), v1.reshape(Pn, S, DH + 1),
              gates[:, :NH].reshape(Pn, S), gates[:, NH:].reshape(Pn, S), last_only)  # (Pn, S', DH)
    Sq = h.shape[1]
    h = F.layer_norm(h, (DH,), eps=LN_EPS).view(V, NH, B, Sq, DH).permute(0, 2, 3, 1, 4).reshape(V, B, Sq, inner)
    h = h * _bcast(1.0 + P[pre + "mlstm_cell.outnorm.weight"], h)
    x_skip = x_conv[:, :, -1:] if last_only else x_conv
    h = torch.addcmul(h, _bcast(P[pre + "learnable_skip"], h), x_skip) * F.silu(z)
    out = _linear(h, P[pre + "proj_down.weight"])
    return masks.apply(site, out, lambda m: m[:, -Sq:])


class _Recurrence(torch.autograd.Function):
    """xlstm's vanilla sLSTM recurrence (``slstm_forward`` with its ``slstm`` pointwise function)
    for all members and heads at once, with a hand-written backward (autograd through the loop
    records ~20 nodes a time step; this runs ~14 ops forward and ~25 backward per step).

    wx: (S, P, B, 4DH) gate pre-activations from the input (bias included), gates ordered i, f, z, o
    within each of the P = members x heads; r_t: (P, DH, 4DH), the recurrent kernel transposed.
    Returns y (S, P, B, DH). Per step, from a zero state::

        raw = wx_t + y_{t-1} r_t;  lf = m + logsigmoid(f);  m' = max(i, lf)  (m' = i at t = 0)
        c' = exp(lf - m') c + exp(i - m') tanh(z);  n' = exp(lf - m') n + exp(i - m');  y = sigmoid(o) c' / n'

    xlstm clamps both exponentials at 1 with ``torch.minimum``; they never exceed it (m' is the
    larger exponent), and where one equals 1 its gradient through ``i - m'`` (or ``lf - m'``) is zero
    either way, so the clamp changes nothing but a tie ``i == lf`` (where torch splits the max's
    gradient in halves and this gives it to ``lf``).
    """

    @staticmethod
    def forward(ctx, wx: Tensor, r_t: Tensor) -> Tensor:
        with torch.autocast(wx.device.type, enabled=False):  # the recurrence in its inputs' dtype (as backward)
            return _Recurrence._forward(ctx, wx, r_t)

    @staticmethod
    def _forward(ctx, wx: Tensor, r_t: Tensor) -> Tensor:
        S, P, B, D4 = wx.shape
        DH = D4 // 4
        ys = wx.new_empty(S, P, B, DH)
        saved = {k: wx.new_empty(S, P, B, DH) for k in ("c", "n", "ig", "fg", "tz", "og", "sf")}
        i_wins = torch.empty(S, P, B, DH, dtype=torch.bool, device=wx.device)
        for t in range(S):
            raw = wx[t] if t == 0 else torch.baddbmm(wx[t], ys[t - 1], r_t)
            i, f, z, o = raw.view(P, B, 4, DH).unbind(2)
            tz = torch.tanh(z, out=saved["tz"][t])
            og = torch.sigmoid(o, out=saved["og"][t])
            if t == 0:
                m = i
                c = saved["c"][t].copy_(tz)
                n = saved["n"][t].fill_(1.0)
            else:
                lf = F.logsigmoid(f).add_(m)
                m = torch.maximum(i, lf)
                torch.gt(i, lf, out=i_wins[t])
                ig = torch.exp(i - m, out=saved["ig"][t])
                fg = torch.exp(lf.sub_(m), out=saved["fg"][t])
                torch.sigmoid(-f, out=saved["sf"][t])
                c = torch.addcmul(tz * ig, fg, c, out=saved["c"][t])
                n = torch.addcmul(ig, fg, n, out=saved["n"][t])
            torch.div(og * c, n, out=ys[t])
        ctx.save_for_backward(ys, r_t, i_wins, *saved.values())
        return ys

    @staticmethod
    def backward(ctx, gy: Tensor):
        ys, r_t, i_wins, c, n, ig, fg, tz, og, sf = ctx.saved_tensors
        S, P, B, DH = ys.shape
        dwx = gy.new_empty(S, P, B, 4, DH)
        dc = dn = dm = dy_rec = None
        for t in reversed(range(S)):
            dy = gy[t] if dy_rec is None else gy[t] + dy_rec
            d_i, d_f, d_z, d_o = dwx[t].unbind(2)
            inv_n = torch.reciprocal(n[t])
            dyn = dy * inv_n
            torch.mul(dyn * c[t], og[t] * (1 - og[t]), out=d_o)
            dct = dyn * og[t]
            dnt = -dyn * ys[t]
            if dc is not None:
                dct += dc
                dnt += dn
            if t == 0:  # c = tanh(z), n = 1, m = i: no forget gate, and i reaches y through m only
                torch.mul(dct, 1 - tz[t] * tz[t], out=d_z)
                d_f.zero_()
                if dm is None:
                    d_i.zero_()
                else:
                    d_i.copy_(dm)
            else:
                torch.mul(dct * ig[t], 1 - tz[t] * tz[t], out=d_z)
                a = torch.addcmul(dnt, dct, tz[t]).mul_(ig[t])  # d(ig) * ig
                b = torch.addcmul(dct * c[t - 1], dnt, n[t - 1]).mul_(fg[t])  # d(fg) * fg
                dm_t = -(a + b) if dm is None else dm - a - b
                torch.add(a, torch.where(i_wins[t], dm_t, 0.0), out=d_i)
                d_lf = b.add_(torch.where(i_wins[t], 0.0, dm_t))
                torch.mul(d_lf, sf[t], out=d_f)
                dm, dc, dn = d_lf, dct * fg[t], dnt * fg[t]
                dy_rec = torch.bmm(dwx[t].view(P, B, 4 * DH), r_t.transpose(1, 2))
        dwx = dwx.view(S, P, B, 4 * DH)
        # sum over t >= 1 of y_{t-1}^T dwx_t, as one product over (S-1) x B rows
        g_r = None
        if ctx.needs_input_grad[1] and S > 1:
            y_prev = ys[:-1].permute(1, 3, 0, 2).reshape(P, DH, (S - 1) * B)
            g_r = torch.bmm(y_prev, dwx[1:].permute(1, 0, 2, 3).reshape(P, (S - 1) * B, 4 * DH))
        elif ctx.needs_input_grad[1]:
            g_r = torch.zeros_like(r_t)
        return dwx, g_r


def _slstm_layer(P: dict, pre: str, x: Tensor, NH: int, last_only: bool, masks: _Masks, site: str) -> Tensor:
    """xlstm's ``sLSTMLayer`` (vanilla cell) on x (V, B, S, E) with per-member weights; the group
    norm only on the last step if ``last_only``: (V, B, S', E)."""
    V, B, S, E = x.shape
    DH = E // NH
    VN = V * NH
    x_conv = F.silu(_CausalConv.apply(x, P[pre + "conv1d.conv.weight"][:, :, 0], P[pre + "conv1d.conv.bias"]))
    # gate pre-activations in xlstm's order [fgate(conv), igate(conv), zgate(x), ogate(x)], per head
    w_fi = torch.cat([P[pre + "fgate.weight"], P[pre + "igate.weight"]], dim=2).reshape(VN, 2 * DH, DH)
    w_zo = torch.cat([P[pre + "zgate.weight"], P[pre + "ogate.weight"]], dim=2).reshape(VN, 2 * DH, DH)
    wx = torch.cat([torch.bmm(_head_major(x_conv, NH), w_fi.transpose(1, 2)),
                    torch.bmm(_head_major(x, NH), w_zo.transpose(1, 2))], dim=-1)  # (VN, B*S, 4DH)
    bias = P[pre + "slstm_cell._bias_"].view(V, 4, NH, DH).transpose(1, 2).reshape(VN, 1, 4 * DH)
    wx = (wx + bias).view(VN, B, S, 4 * DH).permute(2, 0, 1, 3).contiguous()  # (S, VN, B, 4DH)
    # vanilla layout (NH, 4DH, DH): per head, R^T (DH, 4DH) maps y_{t-1} to the four gates
    r_t = P[pre + "slstm_cell._recurrent_kernel_"].reshape(VN, 4 * DH, DH).transpose(1, 2)
    ys = _Recurrence.apply(wx, r_t)  # (S, VN, B, DH)
    h = ys.view(S, V, NH, B, DH).permute(1, 3, 0, 2, 4)  # (V, B, S, NH, DH)
    if last_only:
        h = h[:, :, -1:]
    Sq = h.shape[2]
    # the single layer's mask is (B, NH, S, DH), memory laid out (S, B, NH, DH)
    h = masks.apply(site, h, lambda mk: mk.permute(0, 2, 1, 3)[:, -Sq:])
    h = F.layer_norm(h, (DH,), eps=LN_EPS).reshape(V, B, Sq, E)
    return h * _bcast(1.0 + P[pre + "group_norm.weight"], h)


def _trunk(P: dict, pre: str, x: Tensor, spec: _Spec, masks: _Masks, tag: str) -> Tensor:
    """``Linear(F->E) -> xLSTMBlockStack -> last step`` on x (V, B, S, F): (V, B, E)."""
    cfg = spec.base
    h = _linear(x, P[pre + "input_proj.weight"], P[pre + "input_proj.bias"])
    for i in range(cfg.num_blocks):
        last = i == cfg.num_blocks - 1
        b = f"{pre}stack.blocks.{i}."
        site = f"{tag}b{i}"
        if i in cfg.slstm_at:
            y = _slstm_layer(P, b + "xlstm.", _ln(h, P[b + "xlstm_norm.weight"]), cfg.num_heads, last, masks, site)
            h = (h[:, :, -1:] if last else h) + y
            up = _linear(_ln(h, P[b + "ffn_norm.weight"]), P[b + "ffn.proj_up.weight"])
            gate, up = up.split(up.shape[-1] // 2, dim=-1)
            h = h + _linear(F.gelu(gate) * up, P[b + "ffn.proj_down.weight"])
        else:
            y = _mlstm_layer(P, b + "xlstm.", _ln(h, P[b + "xlstm_norm.weight"]), cfg.num_heads, last, masks, site)
            h = (h[:, :, -1:] if last else h) + y
    return _ln(h[:, :, -1], P[pre + "stack.post_blocks_norm.weight"])


@dataclass(frozen=True)
class _Spec:
    """The architecture: a plain model (``timeframes`` 1) or a multi-timeframe one."""

    base: ModelConfig
    timeframes: int = 1
    fusion: str = ""

    @classmethod
    def of(cls, cfg: ModelConfig | MultiConfig) -> _Spec:
        if isinstance(cfg, MultiConfig):
            return cls(cfg.base, cfg.n_timeframes, cfg.fusion)
        return cls(cfg)


def _forward(spec: _Spec, P: dict, x: Tensor, masks: _Masks) -> tuple[Tensor, Tensor]:
    """logits (V, B, 3) and return (V, B) of V members on their windows x (V, B, S, F)."""
    V, B, S, _ = x.shape
    if spec.timeframes == 1:
        h = _trunk(P, "", x, spec, masks, "")
    else:
        T, E = spec.timeframes, spec.base.embedding_dim
        enc = {}
        for name in P:
            if name.startswith("encoders.0."):
                suffix = name[len("encoders.0."):]
                enc[suffix] = torch.stack([P[f"encoders.{j}.{suffix}"] for j in range(T)], dim=1).flatten(0, 1)
        xs = x.view(V, B, S, T, -1).permute(0, 3, 1, 2, 4).reshape(V * T, B, S, -1)
        # encoder j of member v is virtual member v*T + j, its masks named "e{j}..." in member v's draws
        enc_masks = _Masks(None if masks.draws is None else
                           [{k[len(f"e{j}"):]: m for k, m in d.items() if k.startswith(f"e{j}b")}
                            for d in masks.draws for j in range(T)], masks.batch)
        states = _trunk(enc, "", xs, spec, enc_masks, "").view(V, T, B, E)
        if spec.fusion == "concat":
            h = _linear(states.permute(0, 2, 1, 3).reshape(V, B, T * E), P["fuse.weight"], P["fuse.bias"])
        else:
            h = _attention(P, states.permute(0, 2, 1, 3), spec.base.num_heads, masks) + states[:, 0]
    h = masks.apply("head", h)
    return _linear(h, P["head_cls.weight"], P["head_cls.bias"]), _linear(h, P["head_ret.weight"],
                                                                          P["head_ret.bias"]).squeeze(-1)


def _attention(P: dict, tokens: Tensor, nh: int, masks: _Masks) -> Tensor:
    """``nn.MultiheadAttention(tokens[:, :, :1], tokens, tokens)`` per member (batch_first), as
    ``F.multi_head_attention_forward`` computes it without weights (scaled dot product, its math
    kernel with dropout on the attention weights): tokens (V, B, T, E) -> (V, B, E)."""
    V, B, T, E = tokens.shape
    hd = E // nh
    w_q, w_k, w_v = P["fuse.in_proj_weight"].split(E, dim=1)
    b_q, b_k, b_v = P["fuse.in_proj_bias"].split(E, dim=1)
    q = _linear(tokens[:, :, :1], w_q, b_q).view(V, B, 1, nh, hd).transpose(2, 3)  # (V, B, nh, 1, hd)
    k = _linear(tokens, w_k, b_k).view(V, B, T, nh, hd).transpose(2, 3)           # (V, B, nh, T, hd)
    v = _linear(tokens, w_v, b_v).view(V, B, T, nh, hd).transpose(2, 3)
    scale = math.sqrt(1.0 / math.sqrt(hd))
    attn = torch.softmax((q * scale) @ (k * scale).transpose(-2, -1), dim=-1)  # (V, B, nh, 1, T)
    attn = masks.apply("attn", attn)
    out = (attn @ v).transpose(2, 3).reshape(V, B, 1, E)
    return _linear(out, P["fuse.out_proj.weight"], P["fuse.out_proj.bias"])[:, :, 0]


def _group_size(spec: _Spec, batch: int) -> int:
    """Members per forward/backward pass: as many as keep the widest per-step tensor of the blocks
    (mLSTM: the cell width, sLSTM: the embedding) at ``_CHUNK_ELEMENTS`` (at least one)."""
    cfg = spec.base
    width = max(cfg.embedding_dim if i in cfg.slstm_at else cfg.inner_dim for i in range(cfg.num_blocks))
    return max(1, _CHUNK_ELEMENTS // (batch * cfg.seq_len * width * spec.timeframes))


def _dropout_sites(spec: _Spec, full_last: bool) -> list[tuple[str, Callable[[int], tuple], tuple | None]]:
    """The dropout calls of one training forward pass of a single model, in the order it makes
    them: ``(site, shape of the tensor it drops, given the batch B; permutation of the memory
    layout or None)``. ``full_last``: the single model runs xlstm's own forward (multi-timeframe
    models, no fast path), whose last mLSTM block drops all S steps, not just the last."""
    cfg = spec.base
    S, E, NH = cfg.seq_len, cfg.embedding_dim, cfg.num_heads
    trunk = []
    for i in range(cfg.num_blocks):
        if i in cfg.slstm_at:  # xlstm's (B, NH, S, DH) view of an (S, B, NH, DH) tensor
            trunk.append((f"b{i}", lambda B: (S, B, NH, E // NH), (1, 2, 0, 3)))
        else:
            s = 1 if (i == cfg.num_blocks - 1 and not full_last) else S
            trunk.append((f"b{i}", lambda B, s=s: (B, s, E), None))
    if spec.timeframes == 1:
        sites = trunk
    else:
        sites = [(f"e{j}{name}", shape, perm) for j in range(spec.timeframes) for name, shape, perm in trunk]
        if spec.fusion == "attention":
            sites.append(("attn", lambda B: (B, cfg.num_heads, 1, spec.timeframes), None))
    return sites + [("head", lambda B: (B, E), None)]


# ------------------------------------------------------------------------------------------------
# the training loop


@dataclass
class _Member:
    """One model's own state: what train_model keeps in local variables."""

    index: int
    tcfg: TrainConfig
    model: nn.Module
    dropout_gen: torch.Generator
    shuffle: torch.Generator
    train_rows: tuple[int, int]       # [start, stop) in the concatenated training tensors
    val_rows: tuple[int, int]
    return_scale: float
    class_w: Tensor
    lr_holder: torch.optim.Optimizer  # carries the member's learning rate for its ReduceLROnPlateau
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    steps: int = 0                    # AdamW steps taken
    best_val: float = math.inf
    best_epoch: int = -1
    best: Tensor | None = None
    bad_epochs: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)
    pruned: bool = False
    error: GenomeError | None = None

    @property
    def n_train(self) -> int:
        return self.train_rows[1] - self.train_rows[0]

    @property
    def lr(self) -> float:
        return float(self.lr_holder.param_groups[0]["lr"])


class _Trainer:
    def __init__(self, cfg, tcfgs: list[TrainConfig], splits, device: torch.device, on_epoch, return_errors) -> None:
        self.cfg, self.device, self.on_epoch, self.return_errors = cfg, device, on_epoch, return_errors
        self.spec = _Spec.of(cfg)
        base = self.spec.base
        # sLSTM weights in the vanilla layout whatever the backend (converted back at the end)
        self.backend = base.backend
        vcfg = cfg if base.backend == "vanilla" else _with_backend(cfg, "vanilla")
        use_amp = device.type == "cuda" and tcfgs[0].amp
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
        dtype = torch.get_default_dtype()
        self.dtype = dtype

        xs, ys, rs, xv, yv, rv = [], [], [], [], [], []
        self.members: list[_Member] = []
        flats = []
        n_tr = n_va = 0
        for k, (tcfg, ((Xtr, ytr, rtr), (Xva, yva, rva))) in enumerate(zip(tcfgs, splits)):
            return_scale = float(np.std(rtr))
            if not (math.isfinite(return_scale) and return_scale > 0):
                return_scale = 1.0
            xs.append(torch.from_numpy(Xtr))
            ys.append(torch.from_numpy(ytr))
            rs.append(torch.from_numpy(rtr / return_scale))
            xv.append(torch.from_numpy(Xva))
            yv.append(torch.from_numpy(yva))
            rv.append(torch.from_numpy(rva / return_scale))
            # train_model's init: seed, build (weight init draws from torch's global RNG), then the
            # dropout masks continue that RNG: the member's own generator starts where init left it.
            torch.manual_seed(tcfg.seed)
            model = build_model(vcfg)
            gen = torch.Generator(device=device)
            if device.type == "cpu":
                gen.set_state(torch.get_rng_state())
            else:
                gen.manual_seed(tcfg.seed)
            model = model.to(device)
            flats.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
            holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=tcfg.lr)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(holder, mode="min", factor=LR_DECAY,
                                                               patience=max(1, tcfg.patience // 2))
            self.members.append(_Member(
                index=k, tcfg=tcfg, model=model, dropout_gen=gen, shuffle=torch.Generator().manual_seed(tcfg.seed),
                train_rows=(n_tr, n_tr + len(Xtr)), val_rows=(n_va, n_va + len(Xva)), return_scale=return_scale,
                class_w=torch.from_numpy(_class_weights(ytr)).to(device, dtype), lr_holder=holder, scheduler=sched))
            n_tr += len(Xtr)
            n_va += len(Xva)
        self.Xtr = torch.cat(xs).to(device, dtype)
        self.ytr = torch.cat(ys).to(device)
        self.rtr = torch.cat(rs).to(device, dtype)
        self.Xva = torch.cat(xv).to(device, dtype)
        self.yva = torch.cat(yv).to(device)
        self.rva = torch.cat(rv).to(device, dtype)

        template = self.members[0].model
        self.names = [n for n, _ in template.named_parameters()]
        self.shapes = [tuple(p.shape) for p in template.parameters()]
        self.sizes = [p.numel() for p in template.parameters()]
        decay = torch.cat([torch.full((p.numel(),), p.dim() >= 2, dtype=torch.bool) for p in template.parameters()])
        self.decay = decay.to(device)
        self.full_last = [isinstance(cfg, MultiConfig) or device.type != "cpu"
                          or not (t.fast_path and fast_path_enabled()) for t in tcfgs]
        self.sites = {fl: _dropout_sites(self.spec, fl) for fl in set(self.full_last)}
        self.p_drop = base.dropout
        self.group = _group_size(self.spec, max(t.batch_size for t in tcfgs))
        # live state: row i of these is member self.live[i]
        self.live: list[_Member] = list(self.members)
        self.flat = torch.stack(flats).requires_grad_()
        self.exp_avg = torch.zeros_like(self.flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(self.flat, requires_grad=False)

    # -- parameters

    def _params(self, w: Tensor) -> dict[str, Tensor]:
        V = w.shape[0]
        pieces = w.split(self.sizes, dim=1)
        return {n: piece.view(V, *shape) for n, piece, shape in zip(self.names, pieces, self.shapes)}

    def _draw(self, member: _Member, batch: int) -> dict[str, Tensor]:
        """Member's dropout masks for one step of ``batch`` windows, drawn as its single model does."""
        p, out = self.p_drop, {}
        for site, shape, perm in self.sites[self.full_last[member.index]]:
            t = torch.empty(shape(batch), dtype=self.dtype, device=self.device)
            if perm is not None:
                t = t.permute(*perm)
            out[site] = t.bernoulli_(1 - p, generator=member.dropout_gen).div_(1 - p)
        return out

    # -- the loop

    def run(self) -> list[TrainResult | GenomeError]:
        epoch = 0
        while self.live:
            self._train_epoch(epoch)
            self._validate_and_decide(epoch)
            epoch += 1
        return [self._result(m) for m in self.members]

    def _train_epoch(self, epoch: int) -> None:
        live = self.live
        bs = max(m.tcfg.batch_size for m in live)
        n_steps = [math.ceil(m.n_train / m.tcfg.batch_size) for m in live]
        S = max(n_steps)
        # (S, L, bs) rows of the concatenated training set, and how many of them are real
        index = torch.zeros(S, len(live), bs, dtype=torch.long)
        count = torch.zeros(S, len(live), dtype=torch.long)
        for i, m in enumerate(live):
            order = torch.randperm(m.n_train, generator=m.shuffle) + m.train_rows[0]
            b = m.tcfg.batch_size
            padded = torch.cat([order, order.new_zeros(n_steps[i] * b - m.n_train)]).view(n_steps[i], b)
            index[:n_steps[i], i, :b] = padded
            count[:n_steps[i], i] = b
            count[n_steps[i] - 1, i] = m.n_train - (n_steps[i] - 1) * b
        train_sum = [0.0] * len(live)
        counts = count.tolist()
        for s in range(S):
            act = [i for i in range(len(live)) if counts[s][i] > 0 and live[i].error is None]
            if not act:
                continue
            nb = [counts[s][i] for i in act]
            B = max(nb)
            rows = index[s, act, :B].to(self.device)
            valid = torch.arange(B).unsqueeze(0) < torch.tensor(nb).unsqueeze(1)
            losses = self._step(act, rows, valid.to(self.device), nb, epoch)
            for i, loss, n in zip(act, losses, nb):
                train_sum[i] += loss * n
        for i, m in enumerate(live):
            m.history.append((train_sum[i] / m.n_train, math.nan))

    def _step(self, act: list[int], rows: Tensor, valid: Tensor, nb: list[int], epoch: int) -> list[float]:
        """One optimiser step of the live members ``act`` (indices into self.live) on their batches:
        forward and backward a group of ``self.group`` members at a time (gradients gather in w's
        rows), then one AdamW step for all."""
        every = len(act) == len(self.live)
        w = self.flat if every else self.flat.detach()[act].requires_grad_()
        A, B = rows.shape
        members = [self.live[i] for i in act]
        values: list[float] = []
        ok: list[int] = []
        for start in range(0, A, self.group):
            stop = min(A, start + self.group)
            idx = rows[start:stop].reshape(-1)
            X = self.Xtr[idx].view(stop - start, B, *self.Xtr.shape[1:])
            group = members[start:stop]
            masks = _Masks([self._draw(m, n) for m, n in zip(group, nb[start:stop])] if self.p_drop > 0 else None, B)
            with self.amp():
                logits, ret = _forward(self.spec, self._params(w[start:stop]), X, masks)
            loss = self._loss(logits, ret, self.ytr[idx].view(-1, B), self.rtr[idx].view(-1, B), valid[start:stop],
                              torch.stack([m.class_w for m in group]),
                              torch.tensor([m.tcfg.return_loss_weight for m in group], dtype=self.dtype,
                                           device=self.device),
                              torch.tensor(nb[start:stop], dtype=self.dtype, device=self.device))
            part = loss.detach().tolist()
            good = [j for j, v in enumerate(part) if math.isfinite(v)]
            for j, v in enumerate(part):
                if not math.isfinite(v):
                    self._fail(group[j], GenomeError(
                        f"NaN loss in epoch {epoch} (lr={group[j].tcfg.lr:g}): the model diverged"))
            if good:
                (loss[good].sum() if len(good) < len(part) else loss.sum()).backward()
            values += part
            ok += [start + j for j in good]
        if ok:
            self._adamw(w, act, ok, members)
        if every:
            self.flat.grad = None
        return values

    def _loss(self, logits, ret, y, r, valid, class_w, rw, nb) -> Tensor:
        """Each member's train_model loss on its batch: (A,)."""
        A, B = y.shape
        ce = F.cross_entropy(logits.reshape(A * B, N_CLASSES).to(class_w.dtype), y.reshape(-1),
                             reduction="none").view(A, B)
        wy = class_w.gather(1, y) * valid
        huber = F.huber_loss(ret.to(r.dtype), r, reduction="none", delta=1.0) * valid
        return (ce * wy).sum(1) / wy.sum(1) + huber.sum(1) * rw / nb

    @torch.no_grad()
    def _adamw(self, w: Tensor, act: list[int], ok: list[int], members: list[_Member]) -> None:
        """train_model's step for each member in ``ok`` (rows of w): its gradient clipped to its own
        ``grad_clip`` norm, then AdamW with its own learning rate, decay and step count (torch's
        fused AdamW arithmetic)."""
        g = w.grad
        if len(ok) < len(act):
            g = g[ok]
        mem = [members[j] for j in ok]
        rows = [act[j] for j in ok]
        full = len(rows) == len(self.live)
        for m in mem:
            m.steps += 1
        dev, dt = self.device, self.dtype

        def col(values) -> Tensor:
            return torch.tensor(values, dtype=torch.float64).to(dev, dt).unsqueeze(1)

        norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)
        clip = col([m.tcfg.grad_clip for m in mem])
        g = g * torch.clamp(clip / (norm + 1e-6), max=1.0)
        lr = [m.lr for m in mem]
        decay = torch.where(self.decay, col([1 - a * m.tcfg.weight_decay for a, m in zip(lr, mem)]), 1.0)
        step_size = col([a / (1 - BETA1 ** m.steps) for a, m in zip(lr, mem)])
        bc2_sqrt = col([math.sqrt(1 - BETA2 ** m.steps) for m in mem])
        if full:
            p, m1, m2 = self.flat, self.exp_avg, self.exp_avg_sq
        else:
            p, m1, m2 = self.flat[rows], self.exp_avg[rows], self.exp_avg_sq[rows]
        p.mul_(decay)
        m1.lerp_(g, 1 - BETA1)
        m2.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        p.sub_(step_size * m1 / (m2.sqrt() / bc2_sqrt + ADAM_EPS))
        if not full:
            idx = torch.tensor(rows, device=dev)
            self.flat.index_copy_(0, idx, p)
            self.exp_avg.index_copy_(0, idx, m1)
            self.exp_avg_sq.index_copy_(0, idx, m2)

    @torch.no_grad()
    def _val_losses(self) -> list[float]:
        """train_model's validation loss of every live member (eval mode, no dropout): a group of
        members at a time, their windows in chunks."""
        live = self.live
        n_val = [m.val_rows[1] - m.val_rows[0] for m in live]
        ce = [0.0] * len(live)
        ws = [0.0] * len(live)
        reg = [0.0] * len(live)
        w_all = self.flat.detach()
        for g0 in range(0, len(live), self.group):
            members = list(range(g0, min(len(live), g0 + self.group)))
            chunk = max(64, EVAL_BATCH // len(members))
            for start in range(0, max(n_val[i] for i in members), chunk):
                act = [i for i in members if n_val[i] > start]
                nb = [min(chunk, n_val[i] - start) for i in act]
                A, B = len(act), max(nb)
                rows = torch.zeros(A, B, dtype=torch.long)
                for j, i in enumerate(act):
                    rows[j, :nb[j]] = torch.arange(start, start + nb[j]) + live[i].val_rows[0]
                rows = rows.view(-1).to(self.device)
                valid = (torch.arange(B).unsqueeze(0) < torch.tensor(nb).unsqueeze(1)).to(self.device)
                w = w_all[act[0]:act[-1] + 1] if act == list(range(act[0], act[-1] + 1)) else w_all[act]
                with self.amp():
                    logits, ret = _forward(self.spec, self._params(w), self.Xva[rows].view(A, B, *self.Xva.shape[1:]),
                                           _Masks(None, B))
                y, r = self.yva[rows].view(A, B), self.rva[rows].view(A, B)
                class_w = torch.stack([live[i].class_w for i in act])
                c = F.cross_entropy(logits.reshape(A * B, N_CLASSES).to(class_w.dtype), y.reshape(-1),
                                    reduction="none").view(A, B)
                wy = class_w.gather(1, y) * valid
                h = F.huber_loss(ret.to(r.dtype), r, reduction="none", delta=1.0) * valid
                rw = torch.tensor([live[i].tcfg.return_loss_weight for i in act], dtype=self.dtype,
                                  device=self.device)
                sums = zip((c * wy).sum(1).tolist(), wy.sum(1).tolist(), (h.sum(1) * rw).tolist())
                for i, (a, b, d) in zip(act, sums):
                    ce[i], ws[i], reg[i] = ce[i] + a, ws[i] + b, reg[i] + d
        return [ce[i] / ws[i] + reg[i] / n_val[i] for i in range(len(live))]

    def _validate_and_decide(self, epoch: int) -> None:
        if not self.live:
            return
        losses = self._val_losses()
        done: dict[int, float] = {}  # row -> val loss of the members that finished the epoch
        for row, (m, val_loss) in enumerate(zip(self.live, losses)):
            if m.error is not None:
                continue
            if not math.isfinite(val_loss):
                self._fail(m, GenomeError(f"NaN validation loss in epoch {epoch} (lr={m.tcfg.lr:g}): "
                                          "the model diverged"))
                continue
            m.history[-1] = (m.history[-1][0], val_loss)
            m.scheduler.step(val_loss)
            if val_loss < m.best_val:
                m.best_val, m.best_epoch, m.bad_epochs = val_loss, epoch, 0
                m.best = self.flat[row].detach().clone()
            else:
                m.bad_epochs += 1
            log.debug("member %d epoch %d train %.4f val %.4f", m.index, epoch, m.history[-1][0], val_loss)
            done[row] = val_loss
        stop = set()
        if self.on_epoch is not None and done:
            stop = set(self.on_epoch(epoch, {self.live[row].index: v for row, v in done.items()}) or ())
        keep = []
        for row in done:
            m = self.live[row]
            if m.index in stop:
                m.pruned = True
            elif m.bad_epochs < m.tcfg.patience and epoch + 1 < m.tcfg.max_epochs:
                keep.append(row)
        self._keep(keep)

    def _fail(self, m: _Member, error: GenomeError) -> None:
        if not self.return_errors:
            raise error
        m.error = error

    def _keep(self, rows: list[int]) -> None:
        """Drop the members that stopped: they leave the stacked tensors (and the arithmetic)."""
        rows = [i for i in rows if self.live[i].error is None]
        if len(rows) == len(self.live):
            return
        self.live = [self.live[i] for i in rows]
        with torch.no_grad():
            self.flat = self.flat.detach()[rows].requires_grad_()
            self.exp_avg = self.exp_avg[rows]
            self.exp_avg_sq = self.exp_avg_sq[rows]

    def _result(self, m: _Member) -> TrainResult | GenomeError:
        if m.error is not None:
            return m.error
        model = m.model
        with torch.no_grad():
            for p, piece in zip(model.parameters(), m.best.split(self.sizes)):
                p.copy_(piece.view(p.shape))
        if self.backend != "vanilla":
            model = load_into(build_model(self.cfg), state_dict_for_export(model)).to(self.device)
        model.eval()
        return TrainResult(model=model, best_val_loss=m.best_val, best_epoch=m.best_epoch,
                           epochs_run=len(m.history), history=m.history, return_scale=m.return_scale,
                           pruned=m.pruned)


def _with_backend(cfg: ModelConfig | MultiConfig, backend: str):
    if isinstance(cfg, MultiConfig):
        return replace(cfg, base=replace(cfg.base, backend=backend))
    return replace(cfg, backend=backend)
