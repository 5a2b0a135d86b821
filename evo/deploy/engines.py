"""What runs a bundle's two models: onnxruntime on its ONNX graphs, or torch on its safetensors weights.

Both take the same scaled windows ``X`` (N, seq_len, F) float32 and return class probabilities
(N, 3) float64 (down, flat, up): the softmax of the model's logits, taken in float64.

- ``"onnx"`` (:class:`OnnxEngine`): the graphs ``model_{a,b}.onnx`` of a version-4 bundle
  (:mod:`models.onnx`), run by onnxruntime on one CPU thread. Imports numpy and onnxruntime only:
  the trading PC needs neither torch nor xlstm (``requirements-runtime.txt``).
- ``"torch"`` (:class:`TorchEngine`): the models rebuilt from the safetensors weights with the portable
  ``vanilla`` sLSTM, through :func:`models.predict_proba` (the path the export's replay judges).

Selection (:func:`choose_engine`): ``"torch"`` or ``"onnx"`` when asked; ``"auto"`` (the default)
takes onnx when the bundle has graphs and onnxruntime imports, else torch. Float graphs give the
torch path's probabilities within :data:`ONNX_TOLERANCE` and its decisions (the export checks it over
the holdout); int8 graphs (``evo export --quantize int8``) may change a stated share of decisions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evo.errors import BundleError

log = logging.getLogger(__name__)

ENGINES = ("auto", "onnx", "torch")
GRAPH_ENTRIES = {"a": "model_a.onnx", "b": "model_b.onnx"}
ONNX_TOLERANCE = 1e-5     # |p_onnx - p_torch| for float graphs: the export refuses more, verify() too
BATCH = 256               # windows per call, both engines


class Engine(Protocol):
    """Runs model ``"a"`` or ``"b"`` on scaled windows."""

    name: str

    def proba(self, model: str, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 3) float64 for windows ``X`` (N, seq_len, F) float32."""


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Row softmax of (N, 3) logits in float64, as :func:`models.predict_proba` takes it."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class TorchEngine:
    """The models as torch modules (CPU, eval mode), through :func:`models.predict_proba`."""

    name = "torch"

    def __init__(self, models: dict[str, Any]) -> None:
        self.models = models

    def proba(self, model: str, X: np.ndarray) -> np.ndarray:
        from models.train import predict_proba

        return predict_proba(self.models[model], X, batch_size=BATCH)

    @classmethod
    def from_bundle(cls, manifest: dict[str, Any], widths: dict[str, int], blobs: dict[str, bytes],
                    path: Path) -> TorchEngine:
        """Rebuild both models from their safetensors weights (sLSTM backend ``"vanilla"``, whatever
        the backend they were trained with); ``widths``: each model's input width. Raises
        :class:`BundleError` when torch is missing or a model cannot be rebuilt."""
        try:
            from safetensors.torch import load as load_tensors

            from models.multi import config_from_dict, load_model
        except ImportError as exc:
            raise BundleError(f"{path}: the torch engine needs torch and xlstm, which this machine lacks ({exc}); "
                              "use --engine onnx with a bundle that carries ONNX graphs") from None
        models = {}
        for name in ("a", "b"):
            spec = manifest["models"][name]
            try:
                tensors = load_tensors(blobs[f"model_{name}.safetensors"])
                cfg = config_from_dict(spec["config"])
                bad = sorted(k for k, t in tensors.items() if str(t.dtype) != "torch.float32")
                if bad:
                    raise BundleError(f"tensors {bad[:3]} are not float32")
                if cfg.n_features != widths[name] or cfg.seq_len != manifest["seq_len"]:
                    raise BundleError("the config disagrees with the features or seq_len")
                models[name] = load_model(cfg, tensors)  # always the portable "vanilla" sLSTM backend
            except Exception as exc:  # noqa: BLE001 - safetensors, config or shape mismatch: unusable
                raise BundleError(f"{path}: model {name.upper()} cannot be rebuilt ({exc})") from None
        return cls(models)


class OnnxEngine:
    """The models' ONNX graphs in onnxruntime sessions (CPU, ``threads`` intra-op threads: one by
    default, the fastest for these small graphs and the kindest to a trading PC running other
    programs)."""

    name = "onnx"

    def __init__(self, graphs: dict[str, bytes], *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BundleError(f"the onnx engine needs onnxruntime, which this machine lacks ({exc}); "
                              "pip install -r requirements-runtime.txt, or use --engine torch") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.sessions = {}
        for name, graph in graphs.items():
            try:
                self.sessions[name] = ort.InferenceSession(graph, sess_options=opts,
                                                           providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors: not a usable graph
                raise BundleError(f"model {name.upper()}: onnxruntime cannot load its graph ({exc})") from None

    def input_shape(self, model: str) -> list:
        """The graph's input shape: ``["batch", seq_len, F]``."""
        return list(self.sessions[model].get_inputs()[0].shape)

    def logits(self, model: str, X: np.ndarray) -> np.ndarray:
        """The graph's raw logits (N, 3) float32."""
        from models.layout import ONNX_INPUT, ONNX_OUTPUTS

        X = np.ascontiguousarray(X, dtype=np.float32)
        session = self.sessions[model]
        out = [session.run([ONNX_OUTPUTS[0]], {ONNX_INPUT: X[i:i + BATCH]})[0] for i in range(0, len(X), BATCH)]
        return np.concatenate(out) if out else np.empty((0, 3), dtype=np.float32)

    def proba(self, model: str, X: np.ndarray) -> np.ndarray:
        return softmax64(self.logits(model, X))

    @classmethod
    def from_bundle(cls, manifest: dict[str, Any], widths: dict[str, int], blobs: dict[str, bytes], path: Path,
                    *, threads: int = 1) -> OnnxEngine:
        """Sessions for both graphs; checks each graph reads (batch, seq_len, ``widths[model]``)."""
        try:
            engine = cls({name: blobs[entry] for name, entry in GRAPH_ENTRIES.items()}, threads=threads)
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
        for name in GRAPH_ENTRIES:
            want = [manifest["seq_len"], widths[name]]
            if engine.input_shape(name)[1:] != want:
                raise BundleError(f"{path}: model {name.upper()}'s graph reads windows of shape "
                                  f"{engine.input_shape(name)}, the manifest needs (batch, {want[0]}, {want[1]})")
        return engine


def choose_engine(requested: str, has_graphs: bool) -> str:
    """The engine to run (module docstring): ``requested`` (``"auto"``, ``"onnx"``, ``"torch"``) for a
    bundle with or without ONNX graphs. Raises :class:`BundleError` for onnx on a bundle without graphs."""
    if requested not in ENGINES:
        raise BundleError(f"unknown engine {requested!r}; choose from {', '.join(ENGINES)}")
    if requested == "onnx" and not has_graphs:
        raise BundleError("this bundle carries no ONNX graphs (written before bundle version 4); export it "
                          "again with this evo, or use --engine torch")
    if requested != "auto":
        return requested
    if has_graphs:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            log.info("onnxruntime is not installed: running the bundle with torch")
            return "torch"
        return "onnx"
    return "torch"


__all__ = ["BATCH", "ENGINES", "GRAPH_ENTRIES", "ONNX_TOLERANCE", "Engine", "OnnxEngine", "TorchEngine",
           "choose_engine", "softmax64"]
