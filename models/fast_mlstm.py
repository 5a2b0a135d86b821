"""A faster CPU forward for all-mLSTM direction models, on xlstm's own parameters.

NOT wired into training: ``python -m evo bench`` measures it against xlstm's ``vanilla`` path
(issue 9, item 3) and ``tests/test_bench.py`` checks that it agrees with it. :func:`fast_model`
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.network import DirectionModel

__all__ = ["FastDirectionModel", "compare_with_vanilla", "fast_model"]


def _layer_norm(norm, x: Tensor) -> Tensor:
    """xlstm's ``LayerNorm`` (weight stored as an offset from 1, optional bias)."""
    return F.layer_norm(x, (norm.ndim,), norm.weight_proxy, norm.bias, norm.eps)


def _causal_conv(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """xlstm's ``CausalConv1d`` (depthwise, kernel K, left padding K-1) on x (B, S, C)."""
    weight = conv.weight[:, 0, :]  # (C, K)
    K, S = weight.shape[1], x.shape[1]
    xp = F.pad(x, (0, 0, K - 1, 0))
    y = torch.mul(xp[:, 0:S], weight[:, 0]) if conv.bias is None else torch.addcmul(conv.bias, xp[:, 0:S], weight[:, 0])
    for k in range(1, K):
        y = torch.addcmul(y, xp[:, k:k + S], weight[:, k])
    return y


def _per_head(weight: Tensor, num_heads: int) -> Tensor:
    """``LinearHeadwiseExpand.weight`` (blocks, out, in) as one dense (out, in) matrix per mLSTM
    head: (num_heads, DH, DH), block-diagonal inside each head."""
    per = weight.shape[0] // num_heads
    return torch.stack([torch.block_diag(*weight[h * per:(h + 1) * per].unbind(0)) for h in range(num_heads)])


# Largest spread (in log units) of the gate terms inside one window that the factorised cell
# accepts; wider windows take the exact S x S path (see _cell).
_FACTOR_RANGE = 40.0


def _cell(q: Tensor, k: Tensor, v: Tensor, ig: Tensor, fg: Tensor, last_only: bool) -> Tensor:
    """xlstm's ``parallel_stabilized_simple`` for every (head, batch) pair.

    q, k, v: (P, S, DH) with P = heads x batch; ig, fg: (P, S) input and forget gate
    pre-activations. Returns h (P, S', DH), S' = 1 (the last step) if ``last_only`` else S.

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
    k = k / math.sqrt(DH)
    if float((top - run_max).max().detach()) <= _FACTOR_RANGE:
        b = torch.exp(u - top)  # <= 1
        a = torch.exp(top - run_max)  # <= exp(_FACTOR_RANGE)
        max_log_d = log_f_cum + run_max
        kb = k * b.unsqueeze(-1)
        if last_only:
            q_last = q[:, -1:]
            c = q_last @ kb.transpose(-2, -1)  # (P, 1, S): every key is causal for the last row
            a, max_log_d = a[:, -1:], max_log_d[:, -1:]
            row_sum = (q_last * kb.sum(dim=1, keepdim=True)).sum(dim=-1)
        else:
            causal = torch.ones(S, S, dtype=q.dtype, device=q.device).tril()
            c = (q @ kb.transpose(-2, -1)) * causal  # (P, S, S), row scale a still to apply
            row_sum = (q * torch.cumsum(kb, dim=1)).sum(dim=-1)  # sum_{j<=i} q_i . kb_j
        normalizer = torch.maximum((a * row_sum).abs(), torch.exp(-max_log_d))
        return (c @ v) * (a / (normalizer + 1e-6)).unsqueeze(-1)
    # exact form, as xlstm computes it
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
    (W_gv W_v) x_mlstm``, extra output columns of the same two products.
    """
    cell = layer.mlstm_cell
    inner, NH = layer.config._inner_embedding_dim, cell.config.num_heads
    DH = inner // NH
    B, S, _ = x.shape
    N = B * S
    w_up = layer.proj_up.weight
    w_mlstm_up, w_z = w_up.split(inner)
    x_mlstm = F.linear(x, w_mlstm_up)
    z = F.linear(x[:, -1:] if last_only else x, w_z)
    if layer.proj_up.bias is not None:
        b_mlstm, b_z = layer.proj_up.bias.split(inner)
        x_mlstm, z = x_mlstm + b_mlstm, z + b_z
    x_conv = F.silu(_causal_conv(layer.conv1d.conv, x_mlstm))

    wq, wk, wv = (_per_head(p.weight, NH) for p in (layer.q_proj, layer.k_proj, layer.v_proj))  # (NH, DH, DH)
    wg = torch.cat([cell.igate.weight, cell.fgate.weight])  # (2NH, 3*inner): [q | k | v] inputs
    wg_q, wg_k, wg_v = (wg[:, i * inner:(i + 1) * inner].reshape(2 * NH, NH, DH).transpose(0, 1)
                        for i in range(3))  # (NH, 2NH, DH) each: the part of head h
    w_conv = torch.cat([wq, wk, wg_q @ wq + wg_k @ wk], dim=1)  # (NH, 2DH + 2NH, DH)
    w_mlstm = torch.cat([wv, wg_v @ wv], dim=1)  # (NH, DH + 2NH, DH)

    def head_major(t: Tensor) -> Tensor:  # (B, S, inner) -> (NH, B*S, DH)
        return t.reshape(N, NH, DH).transpose(0, 1).contiguous()

    q, k, g_conv = torch.bmm(head_major(x_conv), w_conv.transpose(1, 2)).split([DH, DH, 2 * NH], dim=-1)
    v, g_mlstm = torch.bmm(head_major(x_mlstm), w_mlstm.transpose(1, 2)).split([DH, 2 * NH], dim=-1)
    if layer.q_proj.bias is not None:  # not with evo's configs (bias=False)
        raise ValueError("the fast path does not cover biased q/k/v projections")
    gates = g_conv.sum(0) + g_mlstm.sum(0) + torch.cat([cell.igate.bias, cell.fgate.bias])
    gates = gates.t().reshape(2 * NH, B, S)  # (2NH, B, S)
    P = NH * B
    q, k, v = q.reshape(P, S, DH), k.reshape(P, S, DH), v.reshape(P, S, DH)
    h = _cell(q, k, v, gates[:NH].reshape(P, S), gates[NH:].reshape(P, S), last_only)  # (P, S', DH)

    norm = cell.outnorm
    Sq = h.shape[1]
    h = F.layer_norm(h, (DH,), eps=norm.eps).view(NH, B, Sq, DH)
    h = h.permute(1, 2, 0, 3).reshape(B, Sq, inner) * norm.weight_proxy
    if norm.bias is not None:
        h = h + norm.bias
    x_skip = x_conv[:, -1:] if last_only else x_conv
    h = (h + layer.learnable_skip * x_skip) * F.silu(z)
    return layer.dropout(layer.proj_down(h))


class FastDirectionModel(nn.Module):
    """The forward of an all-mLSTM :class:`DirectionModel` through the fast path (module
    docstring); ``forward(x)`` takes and returns what ``DirectionModel.forward`` does."""

    def __init__(self, model: DirectionModel) -> None:
        super().__init__()
        if model.config.has_slstm:
            raise ValueError("the fast path covers all-mLSTM models only (config.slstm_at must be empty)")
        if model.stack.blocks[0].ffn is not None:
            raise ValueError("the fast path covers mLSTM blocks without a feed-forward layer")
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        h = m.input_proj(x)
        blocks = m.stack.blocks
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            out = _mlstm_layer(block.xlstm, _layer_norm(block.xlstm_norm, h), last_only=last)
            h = (h[:, -1:] if last else h) + out
        h = _layer_norm(m.stack.post_blocks_norm, h[:, -1])
        h = m.dropout(h)
        return m.head_cls(h), m.head_ret(h).squeeze(-1)


def fast_model(model: DirectionModel) -> FastDirectionModel:
    """The fast path on ``model``'s own parameters (no copy)."""
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
