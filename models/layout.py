"""The meaning of the weights a bundle stores, as a version string (no torch needed to read it).

Bump :data:`EXPORT_LAYOUT` when the meaning of the exported tensors changes (names, shapes, the
sLSTM kernels' layout: :mod:`models.network`); bundles store it and readers refuse another one.
"""

from __future__ import annotations

__all__ = ["EXPORT_LAYOUT", "ONNX_INPUT", "ONNX_OPSET", "ONNX_OUTPUTS"]

EXPORT_LAYOUT = "evo-direction-model/1 (slstm: xlstm external layout)"

# The ONNX graphs of a bundle (:mod:`models.onnx` writes them, :mod:`evo.deploy.engines` runs them):
# input windows (batch, seq_len, F) float32 -> logits (batch, 3) float32, ret (batch,) float32.
ONNX_OPSET = 17            # LayerNormalization is an operator from 17 on
ONNX_INPUT = "x"
ONNX_OUTPUTS = ("logits", "ret")
