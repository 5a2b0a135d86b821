"""The bundle's ONNX graphs at export: made from the exported weights, checked against the torch path,
optionally quantised to int8.

- :func:`export_graphs`: one graph per model (:func:`models.onnx.to_onnx`), full window in, logits
  out, dynamic batch axis.
- :func:`check_graphs`: onnxruntime over the check span (the holdout: every bar the export's replay
  decides) must give the torch path's probabilities within :data:`ONNX_TOLERANCE` and its
  decisions, or the export fails (:class:`BundleError`, one line with the largest difference).
- ``quantize="int8"``: the graphs' weight products dynamically quantised
  (``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantised at run time);
  the share of decisions over the same span that differ from the float graphs' must not exceed
  ``max_disagreement``, or the export refuses (BundleError). The manifest's ``graphs`` block keeps the
  agreement, the largest probability change and the latency of both (p50/p99 per decision, batch 1,
  on this machine).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evo.deploy.engines import ONNX_TOLERANCE, OnnxEngine
from evo.errors import BundleError

log = logging.getLogger(__name__)

CHECK_BARS = 256           # decision bars compared when the run has no holdout (the last ones)
TIMED_DECISIONS = 200      # windows timed per graph set for the int8 latency gain (batch 1, interleaved)
QUANTIZED_TOLERANCE = 1e-4  # verify(): int8 graphs against their own golden block (onnxruntime's integer kernels
                            # may round activations differently on another CPU)
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


def quantize_int8(graph: bytes) -> bytes:
    """``graph`` with its weight products (MatMul/Gemm with a constant weight) dynamically quantised
    to int8 (onnxruntime.quantization.quantize_dynamic, per tensor); the rest stays float32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        root.setLevel(logging.ERROR)   # quantize_dynamic logs a pre-processing hint on the root logger, every call
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                             extra_options={"MatMulConstBOnly": True})
        finally:
            root.setLevel(level)
        return dst.read_bytes()


def graphs_block(check: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``graphs`` block for float graphs that passed ``check``."""
    from models.layout import ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUTS

    return {"format": "onnx", "opset": ONNX_OPSET, "input": ONNX_INPUT, "outputs": list(ONNX_OUTPUTS),
            "exporter": EXPORTER, "quantize": None, "check": check}


def check_graphs(runtime, graphs: dict[str, bytes], bars, last: int, span: str, *, golden_bars=None,
                 golden_last: int = 0, quantize: str | None = None,
                 max_disagreement: float = 0.0) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Compare ``graphs`` with ``runtime`` (a :class:`evo.deploy.bundle.Bundle` on the torch engine)
    on the last ``last`` decision bars of ``bars`` (``span`` names them); return the graphs to write
    (float, or int8 with ``quantize="int8"``) and the manifest's ``graphs`` block. Raises
    :class:`BundleError` (module docstring) when they do not reproduce the torch path, or when int8
    graphs change more than ``max_disagreement`` (a fraction of the span's decisions).
    ``golden_bars``/``golden_last``: the golden block's bars, for the int8 graphs' own golden block."""
    if quantize not in (None, "int8"):
        raise BundleError(f"unknown quantisation {quantize!r}; the one offered is int8")
    inputs = runtime.inputs(bars, last)
    want = runtime.run(inputs)
    floats = OnnxEngine(graphs)
    got = runtime.run(inputs, floats)
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
    if quantize is None:
        return graphs, block

    int8 = {name: quantize_int8(g) for name, g in graphs.items()}
    q_engine = OnnxEngine(int8)
    q = runtime.run(inputs, q_engine)
    changed = int((q.signal != got.signal).sum())
    share = changed / max(last, 1)
    q_diff = _max_diff(q, got)
    if share > max_disagreement:
        raise BundleError(f"int8 graphs change {changed} of {last} decisions over the {span} ({share:.2%} > "
                          f"--max-disagreement {max_disagreement:.2%}; probabilities move by up to {q_diff:.3f}); "
                          "not writing a quantised bundle")
    timing = _latency(floats, q_engine, inputs.windows)
    golden = runtime.run(runtime.inputs(golden_bars, golden_last), q_engine)
    block.update({
        "quantize": "int8",
        "quantization": {
            "method": "onnxruntime.quantization.quantize_dynamic: MatMul/Gemm weights int8 per tensor, "
                      "activations quantised at run time",
            "span": span, "decisions": int(last), "differ": changed, "disagreement": share,
            "max_disagreement": float(max_disagreement), "max_prob_diff": q_diff,
            "bytes": {"float": sum(map(len, graphs.values())), "int8": sum(map(len, int8.values()))},
            **timing,
        },
        "golden": {"p_a": golden.p_a.tolist(), "p_b": golden.p_b.tolist(), "signal": [int(s) for s in golden.signal],
                   "tolerance": QUANTIZED_TOLERANCE},
    })
    log.info("int8 graphs: %d of %d decisions differ from the float graphs over the %s; p50 per decision %.3f ms "
             "vs %.3f ms float (x%.2f)", changed, last, span, timing["latency_ms"]["int8"]["p50"],
             timing["latency_ms"]["float"]["p50"], timing["latency_gain_p50"])
    return int8, block


def _max_diff(a, b) -> float:
    return float(max(np.abs(a.p_a - b.p_a).max(initial=0.0), np.abs(a.p_b - b.p_b).max(initial=0.0)))


def _latency(floats: OnnxEngine, int8: OnnxEngine, windows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-decision time of both models (batch 1) for each graph set, interleaved window by window
    so both meet the same machine load: p50/p99 in ms and the p50 ratio float / int8."""
    n = min(TIMED_DECISIONS, len(windows["a"]))
    times: dict[str, list[float]] = {"float": [], "int8": []}
    for i in range(-3, n):   # three untimed calls first
        for key, engine in (("float", floats), ("int8", int8)):
            t0 = time.perf_counter()
            for name in ("a", "b"):
                engine.logits(name, windows[name][max(i, 0):max(i, 0) + 1])
            if i >= 0:
                times[key].append(time.perf_counter() - t0)
    ms = {k: np.asarray(v) * 1e3 for k, v in times.items()}
    stats = {k: {"p50": round(float(np.percentile(v, 50)), 4), "p99": round(float(np.percentile(v, 99)), 4)}
             for k, v in ms.items()}
    return {"latency_ms": stats, "latency_gain_p50": round(stats["float"]["p50"] / stats["int8"]["p50"], 3),
            "timed_decisions": n}


__all__ = ["CHECK_BARS", "QUANTIZED_TOLERANCE", "check_graphs", "export_graphs", "graphs_block", "quantize_int8"]
