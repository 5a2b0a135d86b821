"""A direction model as an ONNX graph, for the trading PC's onnxruntime (no torch, no xlstm there).

The graph is the full-window computation the backtest judged, nothing else::

    x (B, seq_len, F) float32 -> logits (B, 3) float32 (down, flat, up), ret (B,) float32

``B`` is a dynamic axis; ``seq_len`` and ``F`` are fixed (the bundle's window and the model's input
width; for a multi-timeframe model the packed width ``k*F``, :mod:`models.multi`). Probabilities are
the softmax of ``logits`` taken in float64 by the runtime, as :func:`models.predict_proba` does, so
the two engines differ only by the graph's float32 rounding.

Exported with torch's TorchScript exporter (``torch.onnx.export(dynamo=False)``, opset
:data:`models.layout.ONNX_OPSET`) at a fixed ``seq_len``: every genome family the search produces
(all mLSTM, with sLSTM blocks, mixed, multi-timeframe with concat or attention fusion) is one graph.
:func:`to_onnx` rebuilds the model from its weights and, on that copy only (instance attributes,
xlstm's classes untouched), replaces two xlstm functions by the same functions written for the
exporter (equal within float32 rounding; the export checks each graph against the torch path):

- ``MultiHeadLayerNorm`` (the mLSTM cell's output norm, the sLSTM layer's group norm) passes a
  tensor-derived head count to ``group_norm``, which the exporter needs as a constant: here a
  per-head ``layer_norm`` with the head count from the config.
- the vanilla sLSTM cell's Python loop over time steps: the tracer does unroll it (``seq_len``
  copies of the step), but such graphs load slowly in onnxruntime; :func:`_slstm_steps` is the
  same recurrence scripted, exported as one ONNX ``Loop``.
"""

from __future__ import annotations

import io
import types
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from xlstm.blocks.mlstm.cell import mLSTMCell
from xlstm.blocks.slstm.cell import sLSTMCell_vanilla
from xlstm.blocks.slstm.layer import sLSTMLayer

from models.layout import ONNX_INPUT as INPUT
from models.layout import ONNX_OPSET as OPSET
from models.layout import ONNX_OUTPUTS as OUTPUTS

__all__ = ["INPUT", "OPSET", "OUTPUTS", "to_onnx"]


def _head_norm(num_heads: int):
    """xlstm's ``MultiHeadLayerNorm.forward`` (group norm over each head of (B, NH, S, DH), then a
    per-channel weight and bias) with ``num_heads`` a Python int: a ``layer_norm`` per head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dh = self.ndim // num_heads
        y = F.layer_norm(x.transpose(1, 2), (dh,), eps=self.eps)   # (B, S, NH, DH), as xlstm lays it out
        if self.weight_proxy is not None:
            y = y * self.weight_proxy.view(num_heads, dh)
        if self.bias is not None:
            y = y + self.bias.view(num_heads, dh)
        return y.transpose(1, 2)

    return forward


def _slstm_steps(x: Tensor, r: Tensor, b: Tensor, nh: int, dh: int, ng: int, hs: int) -> Tensor:
    """xlstm's vanilla ``slstm_forward`` with the ``"slstm"`` pointwise function, from a zero state:
    ``x`` (S, B, ng * hs) the gate pre-activations (gates outermost), ``r`` (1, nh, dh, ng * dh) the
    recurrent kernel, ``b`` (ng * hs,) the bias; returns the hidden states (S, B, hs).

    xlstm picks the stabiliser ``m_t = i_t`` while the normaliser state ``n`` is all zero and
    ``max(i_t, m_{t-1} + log sigmoid(f_t))`` otherwise. From a zero state that is the first step only:
    it sets ``n = 1``, and after it ``n_t >= min(n_{t-1}, 1) > 0`` (one of the two gates is exactly 1).
    So step 0 is written out and the rest is one loop (an ONNX ``Loop``, not ``seq_len`` copies)."""
    iraw, fraw, zraw, oraw = (x[0] + b).reshape(-1, ng, hs).unbind(1)   # y = 0: no recurrent term
    m = iraw
    igate = torch.exp(iraw - m).clamp(max=1.0)
    c = igate * torch.tanh(zraw)
    n = igate
    y = torch.sigmoid(oraw) * c / n
    ys = [y]
    for t in range(1, x.size(0)):
        ry = torch.matmul(y.reshape(-1, nh, 1, dh), r).reshape(-1, nh, ng, dh).transpose(1, 2).reshape(-1, ng * hs)
        g = (x[t] + ry + b).reshape(-1, ng, hs)
        iraw, fraw, zraw, oraw = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
        logfplusm = m + F.logsigmoid(fraw)
        mnew = torch.max(iraw, logfplusm)
        igate = torch.exp(iraw - mnew).clamp(max=1.0)
        fgate = torch.exp(logfplusm - mnew).clamp(max=1.0)
        c = fgate * c + igate * torch.tanh(zraw)
        n = fgate * n + igate
        y = torch.sigmoid(oraw) * c / n
        m = mnew
        ys.append(y)
    return torch.stack(ys)


_SCRIPTED: dict[str, torch.jit.ScriptFunction] = {}


def _slstm_cell_forward(self, input: Tensor, state=None, lengths=None):
    """``sLSTMCell_vanilla.forward`` through :func:`_slstm_steps`, scripted so that the exporter
    writes its time loop as one ONNX ``Loop``: unrolled by the tracer, a window of 32 bars and two
    sLSTM blocks made a graph of ~3500 nodes that onnxruntime took seconds to load (its set-up
    grows faster than linearly with the node count); as a loop, ~600 nodes and a tenth of a second."""
    cfg = self.config
    if state is not None or cfg.function != "slstm":
        raise ValueError("the exported sLSTM cell runs the 'slstm' function from a zero state only")
    if "steps" not in _SCRIPTED:
        _SCRIPTED["steps"] = torch.jit.script(_slstm_steps)
    nh, dh, ng, hs = cfg.num_heads, cfg.head_dim, cfg.num_gates, cfg.hidden_size
    x = self._permute_input(input)                                      # (S, B, ng * hs)
    r = self._recurrent_kernel.transpose(1, 2).reshape(1, nh, dh, ng * dh)
    return self._permute_output(_SCRIPTED["steps"](x, r, self._bias, nh, dh, ng, hs)), None


def _traceable(model: nn.Module) -> nn.Module:
    """``model`` with its multi-head norms and sLSTM cells traceable (instance attributes: the
    classes are untouched)."""
    for m in model.modules():
        if isinstance(m, mLSTMCell):
            m.outnorm.forward = types.MethodType(_head_norm(m.config.num_heads), m.outnorm)
        elif isinstance(m, sLSTMLayer):
            m.group_norm.forward = types.MethodType(_head_norm(m.config.num_heads), m.group_norm)
        elif isinstance(m, sLSTMCell_vanilla):
            m.forward = types.MethodType(_slstm_cell_forward, m)
    return model


def to_onnx(cfg, tensors: dict[str, torch.Tensor]) -> bytes:
    """The ONNX graph (serialized ``ModelProto``, weights inside) of the model ``cfg`` (a
    :class:`models.ModelConfig` or :class:`models.MultiConfig`) with exported ``tensors``
    (:func:`models.state_dict_for_export`), rebuilt on the CPU with the portable ``vanilla`` sLSTM."""
    from models.multi import load_model

    model = _traceable(load_model(cfg, tensors))
    example = torch.zeros(2, cfg.seq_len, cfg.n_features)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")   # TracerWarnings: xlstm's shape asserts are constants at a fixed seq_len
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=list(OUTPUTS), do_constant_folding=True,
                          dynamic_axes={INPUT: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}})
    return buf.getvalue()
