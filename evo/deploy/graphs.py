"""The bundle's ONNX graphs at export: made from the exported weights, checked against the torch path.

- :func:`export_graphs`: one graph per model (:func:`models.onnx.to_onnx`), full window in, logits
  out, dynamic batch axis.
- :func:`check_graphs`: onnxruntime over the check span (the holdout: every bar the export's replay
  decides) must give the torch path's probabilities within :data:`ONNX_TOLERANCE` and its
  decisions, or the export fails (:class:`BundleError`, one line with the largest difference).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from evo.deploy.engines import ONNX_TOLERANCE, OnnxEngine
from evo.errors import BundleError

log = logging.getLogger(__name__)

CHECK_BARS = 256           # decision bars compared when the run has no holdout (the last ones)
EXPORTER = "torch.onnx.export, TorchScript tracer (dynamo=False); seq_len fixed (sLSTM loop unrolled), batch dynamic"


def export_graphs(configs: dict[str, Any], tensors: dict[str, dict]) -> dict[str, bytes]:
    """ONNX graphs ``{"a": bytes, "b": bytes}`` of the two models (configs and exported tensors)."""
    from models.onnx import to_onnx

    out = {}
    for name in ("a", "b"):
        try:
            out[name] = to_onnx(configs[name], tensors[name])
        except Exception as exc:  # noqa: BLE001 - the exporter's own errors: this model has no graph
            raise BundleError(f"model {name.upper()} cannot be exported to ONNX ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return out


def graphs_block(check: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``graphs`` block for float graphs that passed ``check``."""
    from models.layout import ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUTS

    return {"format": "onnx", "opset": ONNX_OPSET, "input": ONNX_INPUT, "outputs": list(ONNX_OUTPUTS),
            "exporter": EXPORTER, "quantize": None, "check": check}


def check_graphs(runtime, graphs: dict[str, bytes], bars, last: int,
                 span: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Compare ``graphs`` with ``runtime`` (a :class:`evo.deploy.bundle.Bundle` on the torch engine)
    on the last ``last`` decision bars of ``bars`` (``span`` names them); return the graphs to write
    and the manifest's ``graphs`` block. Raises :class:`BundleError` (module docstring) when they do
    not reproduce the torch path."""
    inputs = runtime.inputs(bars, last)
    want = runtime.run(inputs)
    got = runtime.run(inputs, OnnxEngine(graphs))
    diff = _max_diff(got, want)
    differ = int((got.signal != want.signal).sum())
    if not diff <= ONNX_TOLERANCE or differ:
        raise BundleError(f"the ONNX graphs do not reproduce the torch models over the {span} ({last} decisions): "
                          f"probabilities differ by up to {diff:.2e} (tolerance {ONNX_TOLERANCE:g}), {differ} "
                          "decision(s) differ; not writing the bundle")
    block = graphs_block({"span": span, "decisions": int(last), "max_prob_diff": diff, "differ": differ,
                          "tolerance": ONNX_TOLERANCE})
    log.info("ONNX graphs reproduce the torch models over the %s: %d decisions equal, probabilities within %.1e",
             span, last, diff)
    return graphs, block


def _max_diff(a, b) -> float:
    return float(max(np.abs(a.p_a - b.p_a).max(initial=0.0), np.abs(a.p_b - b.p_b).max(initial=0.0)))


__all__ = ["CHECK_BARS", "check_graphs", "export_graphs", "graphs_block"]
