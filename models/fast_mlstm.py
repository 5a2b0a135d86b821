"""A faster CPU forward for all-mLSTM direction models, on xlstm's own parameters.

The CPU training and prediction path (:func:`fast_forward`, ``EVO_FAST_PATH=0`` to compare):
``python -m evo bench`` measures it against xlstm's ``vanilla`` path and ``tests/test_fast_mlstm.py``
checks that both agree (in float64). :func:`fast_model`
wraps an existing :class:`~models.network.DirectionModel` whose blocks are all mLSTM; the wrapper
owns no parameters of its own, so both paths read (and a backward pass writes gradients into) the
very same tensors.

What it does differently, each exact up to float32 rounding:

1. **Only the decision bar leaves the last block.** The model reads the last time step only, so
   the last block computes its keys, values and gates for every step (the recurrence needs
   them) but its query row, cell output, norm, gate, down-projection and residual for the last
   step alone: the cell costs O(S) there instead of O(S^2).
2. **Block-diagonal projections as one dense product.** xlstm's q/k/v projections are
   ``LinearHeadwiseExpand`` with 4-wide blocks, run as an ``einsum`` over ``inner/4`` tiny heads;
   here q and k (same input) are one ``(inner -> 2 inner)`` product with the block-diagonal
   matrix assembled from the same weights, v another.
3. **The causal depthwise convolution as K shifted multiply-adds** instead of ``nn.Conv1d``
   (whose CPU backward dominates at these sizes).
4. **The input and forget gates as one linear layer** (their weights concatenated), and the
   mLSTM cell's gate matrix built directly from the cumulative log forget gates, without
   xlstm's ``(S+1) x (S+1)`` repeat/transpose/where.

Dropout: the wrapper calls the model's own dropout modules, but on fewer elements in the last
block, so with dropout > 0 in train mode the random masks differ from the vanilla path's; equality
holds with dropout 0 or in eval mode.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.network import DirectionModel

__all__ = [
    "ENV_SWITCH", "FastDirectionModel", "compare_with_vanilla", "fast_forward", "fast_model", "fast_path_enabled",
]

ENV_SWITCH = "EVO_FAST_PATH"  # "0" turns the fast path off everywhere (training and predict_proba)


def _layer_norm(norm, x: Tensor) -> Tensor:
    """xlstm's ``LayerNorm`` (weight stored as an offset from 1, optional bias)."""
    return F.layer_norm(x, (norm.ndim,), norm.weight_proxy, norm.bias, norm.eps)


class _CausalConv(torch.autograd.Function):
    """xlstm's ``CausalConv1d`` (depthwise, kernel K, left padding K-1) on x (B, S, C) with
    weight (C, K) and optional bias (C,): ``y_t = b + sum_k w[:, k] x_{t-(K-1)+k}``.

    A hand-written backward: autograd through ``F.pad`` + K shifted ``addcmul`` (or
    ``nn.Conv1d``) allocates and zero-fills a padded gradient per shift, which dominated the
    fast path's elementwise time; here every shift is one in-place multiply-add on a slice.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        S, K = x.shape[1], weight.shape[1]
        y = torch.mul(x, weight[:, K - 1]) if bias is None else torch.addcmul(bias, x, weight[:, K - 1])
        for lag in range(1, min(K, S)):  # tap K-1-lag reads x_{t-lag}
            y[:, lag:].addcmul_(x[:, :S - lag], weight[:, K - 1 - lag])
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        S, K = x.shape[1], weight.shape[1]
        gx = torch.mul(g, weight[:, K - 1])
        gw = torch.zeros_like(weight)
        gw[:, K - 1] = (g * x).sum((0, 1)) if ctx.needs_input_grad[1] else 0.0
        for lag in range(1, min(K, S)):
            gx[:, :S - lag].addcmul_(g[:, lag:], weight[:, K - 1 - lag])
            if ctx.needs_input_grad[1]:
                gw[:, K - 1 - lag] = (g[:, lag:] * x[:, :S - lag]).sum((0, 1))
        gb = g.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _per_head(weight: Tensor, num_heads: int) -> Tensor:
    """``LinearHeadwiseExpand.weight`` (blocks, out, in) as one dense (out, in) matrix per mLSTM
    head: (num_heads, DH, DH), block-diagonal inside each head (one broadcast multiply)."""
    blocks, out, inp = weight.shape
    per = blocks // num_heads
    eye = torch.eye(per, dtype=weight.dtype, device=weight.device)
    dense = weight.view(num_heads, per, out, 1, inp) * eye.view(1, per, 1, per, 1)
    return dense.reshape(num_heads, per * out, per * inp)


# Largest spread (in log units) of the gate terms inside one window that the factorised cell
# accepts; wider windows take the exact S x S path (see _cell).
_FACTOR_RANGE = 40.0


def _cell(q: Tensor, k: Tensor, v1: Tensor, ig: Tensor, fg: Tensor, last_only: bool) -> Tensor:
    """xlstm's ``parallel_stabilized_simple`` for every (head, batch) pair.

    q, k: (P, S, DH) with P = heads x batch, k already divided by sqrt(DH); v1: (P, S, DH + 1),
    the values with a column of ones appended (so one product gives both ``C v`` and the row
    sums of C); ig, fg: (P, S) input and forget gate pre-activations. Returns h (P, S', DH),
    S' = 1 (the last step) if ``last_only`` else S.

    xlstm builds the gate matrix ``D[i, j] = exp(F_i - F_j + ig_j - m_i)`` (F the cumulative log
    forget gate, m_i its row maximum) as an S x S tensor. It factorises: with
    ``u_j = ig_j - F_j``, ``m_i = F_i + max_{j<=i} u_j`` and a constant M,
    ``D[i, j] = exp(M - max_{j'<=i} u_j') * exp(u_j - M)``, a row scale times a column scale, so
    ``C = (q k^T) * D`` is ``a_i * (q_i . b_j k_j)``: one masked product, no S x S exponentials.
    M = max_j u_j keeps every ``exp`` <= 1 on the column side; the row side ``a_i`` stays
    below ``exp(_FACTOR_RANGE)``, otherwise (gates spread over more than that within the window)
    the exact S x S form is used. Same function, so the same gradients (also through the
    stabiliser m, which reaches the output via the normaliser ``max(|s_i|, exp(-m_i))``).
    """
    P, S, DH = k.shape
    log_f_cum = torch.cumsum(F.logsigmoid(fg), dim=-1)  # (P, S)
    u = ig - log_f_cum
    run_max = torch.cummax(u, dim=-1).values  # max_{j<=i} u_j
    top = u.max(dim=-1, keepdim=True).values.detach()
    if float((top - run_max).max().detach()) <= _FACTOR_RANGE:
        b = torch.exp(u - top)  # <= 1
        a = torch.exp(top - run_max)  # <= exp(_FACTOR_RANGE)
        max_log_d = log_f_cum + run_max
        kb = k * b.unsqueeze(-1)
        if last_only:  # every key is causal for the last row
            c = q[:, -1:] @ kb.transpose(-2, -1)  # (P, 1, S)
            a, max_log_d = a[:, -1:], max_log_d[:, -1:]
        else:
            c = torch.tril(q @ kb.transpose(-2, -1))  # (P, S, S), row scale a still to apply
        hv = c @ v1  # (P, S', DH + 1): sum_j c_ij v_j and sum_j c_ij
        normalizer = torch.maximum((a * hv[..., DH]).abs(), torch.exp(-max_log_d))
        return hv[..., :DH] * (a / (normalizer + 1e-6)).unsqueeze(-1)
    # exact form, as xlstm computes it
    v = v1[..., :DH]
    rows = log_f_cum[:, -1:] if last_only else log_f_cum
    log_d = (rows.unsqueeze(-1) - log_f_cum.unsqueeze(-2)) + ig.unsqueeze(-2)  # (P, S', S)
    if not last_only:
        causal = torch.ones(S, S, dtype=torch.bool, device=k.device).tril()
        log_d = log_d.masked_fill(~causal, -math.inf)
    max_log_d = torch.max(log_d, dim=-1, keepdim=True)[0]
    qq = q[:, -1:] if last_only else q
    c = (qq @ k.transpose(-2, -1)) * torch.exp(log_d - max_log_d)
    normalizer = torch.maximum(c.sum(dim=-1, keepdim=True).abs(), torch.exp(-max_log_d))
    return (c / (normalizer + 1e-6)) @ v


def _mlstm_layer(layer, x: Tensor, last_only: bool) -> Tensor:
    """xlstm's ``mLSTMLayer.forward`` on x (B, S, E); (B, 1, E) for the last step if ``last_only``.

    Works head-major: (heads, B*S, DH) tensors, so the per-head projections are one batched
    product and the cell's (heads x batch) pairs are views, not copies. The gates' linear layer
    is folded into the projections: ``W_g [q; k; v] = (W_gq W_q) x_conv + (W_gk W_k) x_conv +
    (W_gv W_v) x_mlstm``, extra output columns of the same two products; so is the key scale
    ``1/sqrt(DH)``, and the values' product also emits the cell's column of ones (its bias).
    """
    cell = layer.mlstm_cell
    inner, NH = layer.config._inner_embedding_dim, cell.config.num_heads
    DH = inner // NH
    B, S, _ = x.shape
    N = B * S
    if layer.q_proj.bias is not None:  # not with evo's configs (bias=False)
        raise ValueError("the fast path does not cover biased q/k/v projections")
    if last_only:
        w_mlstm_up, w_z = layer.proj_up.weight.split(inner)
        b_mlstm, b_z = (None, None) if layer.proj_up.bias is None else layer.proj_up.bias.split(inner)
        x_mlstm = F.linear(x, w_mlstm_up, b_mlstm)
        z = F.linear(x[:, -1:], w_z, b_z)
    else:
        x_mlstm, z = F.linear(x, layer.proj_up.weight, layer.proj_up.bias).split(inner, dim=-1)
    conv = layer.conv1d.conv
    x_conv = F.silu(_CausalConv.apply(x_mlstm, conv.weight[:, 0, :], conv.bias))

    wq, wk, wv = (_per_head(p.weight, NH) for p in (layer.q_proj, layer.k_proj, layer.v_proj))  # (NH, DH, DH)
    wg = torch.cat([cell.igate.weight, cell.fgate.weight])  # (2NH, 3*inner): [q | k | v] inputs
    wg_q, wg_k, wg_v = (wg[:, i * inner:(i + 1) * inner].reshape(2 * NH, NH, DH).transpose(0, 1)
                        for i in range(3))  # (NH, 2NH, DH) each: the part of head h
    w_conv = torch.cat([wq, wk / math.sqrt(DH), wg_q @ wq + wg_k @ wk], dim=1)  # (NH, 2DH + 2NH, DH)
    w_mlstm = torch.cat([wv, wv.new_zeros(NH, 1, DH), wg_v @ wv], dim=1)  # (NH, DH + 1 + 2NH, DH)
    ones = torch.zeros(DH + 1 + 2 * NH, dtype=x.dtype, device=x.device)
    ones[DH] = 1.0

    def head_major(t: Tensor) -> Tensor:  # (B, S, inner) -> (NH, B*S, DH)
        return t.reshape(N, NH, DH).transpose(0, 1).contiguous()

    q, k, g_conv = torch.bmm(head_major(x_conv), w_conv.transpose(1, 2)).split([DH, DH, 2 * NH], dim=-1)
    v1, g_mlstm = torch.baddbmm(ones, head_major(x_mlstm), w_mlstm.transpose(1, 2)).split([DH + 1, 2 * NH], dim=-1)
    gates = g_conv.sum(0) + g_mlstm.sum(0) + torch.cat([cell.igate.bias, cell.fgate.bias])
    gates = gates.t().reshape(2 * NH, B, S)  # (2NH, B, S)
    P = NH * B
    q, k, v1 = q.reshape(P, S, DH), k.reshape(P, S, DH), v1.reshape(P, S, DH + 1)
    h = _cell(q, k, v1, gates[:NH].reshape(P, S), gates[NH:].reshape(P, S), last_only)  # (P, S', DH)

    norm = cell.outnorm
    Sq = h.shape[1]
    h = F.layer_norm(h, (DH,), eps=norm.eps).view(NH, B, Sq, DH)
    h = h.permute(1, 2, 0, 3).reshape(B, Sq, inner) * norm.weight_proxy
    if norm.bias is not None:
        h = h + norm.bias
    x_skip = x_conv[:, -1:] if last_only else x_conv
    h = torch.addcmul(h, layer.learnable_skip, x_skip) * F.silu(z)
    return layer.dropout(layer.proj_down(h))


def _slstm_block(block, x: Tensor, last_only: bool) -> Tensor:
    """An sLSTM block through xlstm's own modules; with ``last_only`` the residual and the
    feed-forward layer (position-wise) run on the last step only: (B, 1, E)."""
    y = block.xlstm(block.xlstm_norm(x))
    if last_only:
        x, y = x[:, -1:], y[:, -1:]
    x = x + y
    if block.ffn is not None:
        x = x + block.ffn(block.ffn_norm(x))
    return x


class FastDirectionModel(nn.Module):
    """The forward of a :class:`DirectionModel` through the fast path (module docstring):
    mLSTM blocks through :func:`_mlstm_layer`, sLSTM blocks through xlstm's own modules;
    ``forward(x)`` takes and returns what ``DirectionModel.forward`` does."""

    def __init__(self, model: DirectionModel) -> None:
        super().__init__()
        if not isinstance(model, DirectionModel):
            raise TypeError(f"fast_model needs a DirectionModel, got {type(model).__name__}")
        for i, block in enumerate(model.stack.blocks):
            if i not in model.config.slstm_at and block.ffn is not None:
                raise ValueError("the fast path covers mLSTM blocks without a feed-forward layer")
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        cfg = m.config
        if x.ndim != 3 or x.shape[-1] != cfg.n_features or x.shape[1] > cfg.seq_len:
            raise ValueError(
                f"DirectionModel expects x of shape (B, S<={cfg.seq_len}, {cfg.n_features}), got {tuple(x.shape)}"
            )
        h = m.input_proj(x)
        blocks = m.stack.blocks
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            if i in cfg.slstm_at:
                h = _slstm_block(block, h, last)
            else:
                out = _mlstm_layer(block.xlstm, _layer_norm(block.xlstm_norm, h), last_only=last)
                h = (h[:, -1:] if last else h) + out
        h = _layer_norm(m.stack.post_blocks_norm, h[:, -1])
        h = m.dropout(h)
        return m.head_cls(h), m.head_ret(h).squeeze(-1)


def fast_model(model: DirectionModel) -> FastDirectionModel:
    """The fast path on ``model``'s own parameters (no copy)."""
    return FastDirectionModel(model)


def fast_path_enabled() -> bool:
    """False when the environment variable ``EVO_FAST_PATH`` is ``0``, ``false``, ``no`` or
    ``off`` (to compare with xlstm's own forward); True otherwise."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def fast_forward(model: nn.Module, enabled: bool = True) -> nn.Module:
    """What to call for ``model``'s forward passes: :func:`fast_model` of it for a
    :class:`DirectionModel` on the CPU when ``enabled`` and :func:`fast_path_enabled`, else
    ``model`` itself (multi-timeframe models, CUDA, or the switch off). Same parameters either way."""
    if not (enabled and fast_path_enabled() and isinstance(model, DirectionModel)):
        return model
    if any(p.device.type != "cpu" for p in model.parameters()):
        return model
    if any(i not in model.config.slstm_at and b.ffn is not None for i, b in enumerate(model.stack.blocks)):
        return model
    return FastDirectionModel(model)


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare_with_vanilla(vanilla: DirectionModel, fast: FastDirectionModel, x: Tensor) -> tuple[float, float]:
    """Largest absolute differences of the outputs (logits and return) and of every parameter's
    gradient between ``vanilla(x)`` and ``fast(x)`` for the loss ``mean(logits^2) + mean(ret^2)``
    (gradients are left cleared)."""
    outs, grads = [], []
    for model in (vanilla, fast):
        vanilla.zero_grad(set_to_none=True)
        logits, ret = model(x)
        (logits.square().mean() + ret.square().mean()).backward()
        outs.append(torch.cat([logits.detach().flatten(), ret.detach().flatten()]))
        grads.append(_grads(vanilla))
    vanilla.zero_grad(set_to_none=True)
    out_diff = float((outs[0] - outs[1]).abs().max())
    if set(grads[0]) != set(grads[1]):
        return out_diff, math.inf
    grad_diff = max(float((grads[0][n] - grads[1][n]).abs().max()) for n in grads[0])
    return out_diff, grad_diff
