"""The trading-PC bundle: one zip file, JSON + safetensors + ONNX, no pickle, checksummed.

Spec (version 4; versions 2 and 3 still load: version 3 is version 4 without the optional ONNX
graphs, version 2 is version 3 without the optional ``timeframes``, ``regime``, ``clock`` and gate
keys below)
----------------------------------------------------------------------------------------------
- A bundle MUST be a zip archive holding exactly these four entries, each once:
  ``manifest.json``, ``manifest.sha256``, ``model_a.safetensors``, ``model_b.safetensors``; and
  MAY hold ``model_a.onnx`` and ``model_b.onnx`` (both or neither: the ONNX graphs, version 4). A
  reader MUST refuse any other name (a path, ``..``, an absolute name), a duplicate name and an
  entry larger than 1 GiB.
- ``manifest.sha256`` MUST hold the hex SHA-256 of ``manifest.json``'s bytes, and
  ``manifest.entries`` the hex SHA-256 of each safetensors and ONNX entry: a digest for every entry.
  They catch corruption and edits, not a forger (there is no signature).
- ``model_{a,b}.safetensors`` MUST hold float32 tensors named as
  :func:`models.state_dict_for_export` names them (sLSTM kernels in xlstm's backend-neutral
  layout, ``manifest.export_layout``). Loading runs no code: no pickle anywhere.
- ``model_{a,b}.onnx`` (optional) MUST be ONNX models (``ModelProto``, weights inside), reading
  ``x`` (batch, seq_len, input width) float32 and giving ``logits`` (batch, 3) and ``ret`` (batch,)
  float32 (:mod:`models.onnx`); ``manifest.graphs`` then says how they were made and checked:
  ``format = "onnx"``, ``opset``, ``input``, ``outputs``, ``exporter``, ``quantize`` (null, or
  ``"int8"``: dynamically quantised weights), ``check`` (the span, decisions, ``max_prob_diff``
  and ``differ``: how the graphs compared with the torch path over the holdout at export) and,
  for quantised graphs, ``golden`` (``p_a``, ``p_b``, ``signal``, ``tolerance``: what the graphs
  gave on the golden bars). Loading a graph runs no Python code either.
- ``manifest.json`` MUST be UTF-8 JSON without NaN/inf, holding: ``format = "evo-bundle"``,
  ``version = 4``, ``catalog_version``, ``export_layout``, ``member``, ``genome``; ``seq_len``
  and ``horizon`` (bars); ``min_bars`` (bars of history the first decision needs: warm-up plus
  window); ``tail_bars`` (bars a live stream keeps, see :mod:`evo.pipeline.stream`) and ``tail`` (how that
  was chosen and checked); ``models.{a,b}``: ``config`` (a :class:`models.ModelConfig`; its
  ``backend`` is ignored, the reader builds the portable ``"vanilla"`` one), ``features`` (the
  column order), ``feature_specs`` (name, kind, source, warmup_bars, needs_volume as
  :func:`features.catalog` gives them), ``scaler`` (float32 ``mean`` and ``scale``),
  ``dead_zone`` (log return), ``lr`` and ``fit`` (epochs); ``consensus`` (rule, threshold,
  allow_short; ``gate_low``/``gate_high``/``gate_model`` when the threshold depends on the volatility
  regime) and ``risk`` (costs in bps per side, allow_short, the fill rule, and ``stops``: the stop
  rule, :data:`backtest.STOP_RULE`); ``training``
  (mode and segments); ``trained_on`` (data source, hash, bar range, seed, device); ``metrics``
  (each block named for what it is: ``walk_forward_oos``, and ``holdout`` when the run has one);
  ``golden`` (bars, and the probabilities the exported torch models gave on them); ``versions`` (evo,
  torch, xlstm, ta-lib, ta, numpy, pandas, safetensors, onnx, onnxruntime, python); ``entries``.
- Multi-timeframe and regime models (optional keys): ``models.{a,b}.timeframes`` (multipliers of
  the base bar, ascending, 1 first; missing = ``[1]``), ``models.{a,b}.regime`` (``mode``:
  ``none``/``features``/``gate``, ``thresholds``: :class:`evo.pipeline.regime.RegimeThresholds`), and
  ``clock`` (:class:`features.timeframes.BarClock`: base interval, open/close labels, week
  length) whenever a model reads more than ``x1``. A model with several timeframes stores a
  ``models.multi.MultiConfig`` as its ``config`` (``base``, ``timeframes``, ``fusion``) and a
  scaler over the packed columns (:mod:`evo.pipeline.inputs`).
- A reader MUST refuse a bundle whose checksums do not match, whose version it does not read,
  whose ``catalog_version`` or any feature spec differs from its own catalog, or whose
  ``export_layout`` it does not know. ``verify()`` recomputes ``golden`` with the engine in use:
  torch within 1e-6, float graphs within 1e-5 (:data:`evo.deploy.engines.ONNX_TOLERANCE`),
  quantised graphs against ``graphs.golden``.

Decisions: a decision at bar ``t`` uses bars ``<= t`` (features, then the window of the last
``seq_len`` rows), is made at ``t``'s close and is traded at the open of ``t+1``.

Engines (:mod:`evo.deploy.engines`): ``onnx`` runs the graphs with onnxruntime and needs neither
torch nor xlstm (numpy, pandas, the feature libraries and onnxruntime: ``requirements-runtime.txt``);
``torch`` rebuilds the models from the safetensors weights. By default a bundle with graphs runs on
onnx, one without (versions 2, 3) on torch. Loading never imports deap, optuna, nevergrad or
vectorbt, and imports torch only for the torch engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evo.deploy.engines import GRAPH_ENTRIES, ONNX_TOLERANCE, Engine, OnnxEngine, TorchEngine, choose_engine
from evo.errors import BundleError, DataError, GenomeError
from evo.fileio import atomic_path

log = logging.getLogger(__name__)

FORMAT = "evo-bundle"
VERSION = 4
READABLE_VERSIONS = (2, 3, 4)   # 3: no ONNX graphs (torch engine only); 2: nor timeframes, regimes or gate
ENTRIES = ("manifest.json", "manifest.sha256", "model_a.safetensors", "model_b.safetensors")
GRAPHS = tuple(GRAPH_ENTRIES.values())   # optional: both or neither
MAX_ENTRY_BYTES = 1 << 30
GOLDEN_TOLERANCE = 1e-6   # probabilities: verify() refuses a larger difference
MODELS = ("a", "b")
SIGNAL_NAMES = {1: "long", 0: "flat", -1: "short"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the packages a bundle's numbers depend on (``"unknown"`` if not installed)."""
    import importlib.metadata as md
    import platform

    out = {}
    for dist in ("evo", "torch", "xlstm", "ta-lib", "ta", "numpy", "pandas", "safetensors", "onnx", "onnxruntime"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "unknown"
    out["python"] = platform.python_version()
    return out


def write_bundle(path: Path, manifest: dict[str, Any], tensors_a: dict, tensors_b: dict,
                 graphs: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Write a bundle atomically (temp file in the same folder, fsync, then rename).

    ``tensors_{a,b}``: name -> torch tensor (or the safetensors bytes already serialised);
    ``graphs``: ``{"a": onnx bytes, "b": onnx bytes}`` or None (a bundle without graphs, as
    versions 2 and 3 were; ``manifest["graphs"]`` must then be absent). Adds ``format``,
    ``version`` and ``entries`` to ``manifest``; returns the manifest written.
    """
    def weights(tensors) -> bytes:
        if isinstance(tensors, bytes):
            return tensors
        from safetensors.torch import save

        return save(tensors)

    if (graphs is None) != ("graphs" not in manifest) or (graphs is not None and set(graphs) != set(MODELS)):
        raise BundleError(f"{path}: graphs for both models and the manifest's 'graphs' block go together")
    blobs = {"model_a.safetensors": weights(tensors_a), "model_b.safetensors": weights(tensors_b)}
    if graphs is not None:
        blobs.update({GRAPH_ENTRIES[name]: graphs[name] for name in MODELS})
    manifest = {**manifest, "format": FORMAT, "version": VERSION,
                "entries": {name: _sha256(b) for name, b in blobs.items()}}
    try:
        manifest_bytes = json.dumps(manifest, indent=1, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise BundleError(f"{path}: the manifest holds a NaN or infinite number ({exc})") from None
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", manifest_bytes)
            zf.writestr("manifest.sha256", _sha256(manifest_bytes))
            for name, blob in blobs.items():
                zf.writestr(name, blob)
    return manifest


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, RuntimeError,
               NotImplementedError, ValueError)


def _read_entries(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                if info.filename not in ENTRIES + GRAPHS:
                    raise BundleError(f"{path}: unexpected entry {info.filename!r}; refusing the bundle")
                if info.file_size > MAX_ENTRY_BYTES:
                    raise BundleError(f"{path}: entry {info.filename!r} is {info.file_size} bytes, over the limit")
            twice = [n for n, k in Counter(i.filename for i in infos).items() if k > 1]
            if twice:
                raise BundleError(f"{path}: entry {twice[0]!r} appears more than once; refusing the bundle")
            names = {i.filename for i in infos}
            missing = [n for n in ENTRIES if n not in names]
            if missing:
                raise BundleError(f"{path}: missing entries {missing}")
            graphs = [n for n in GRAPHS if n in names]
            if graphs and len(graphs) != len(GRAPHS):
                raise BundleError(f"{path}: holds {graphs[0]} without {[n for n in GRAPHS if n not in graphs][0]}")
            return {n: zf.read(n) for n in ENTRIES + tuple(graphs)}  # zipfile checks each entry's CRC-32 here
    except BundleError:
        raise
    except _ZIP_ERRORS as exc:
        raise BundleError(f"{path}: not a readable bundle, corrupted ({exc})") from None


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise BundleError(f"{path}: manifest.json {what}")


def _check_manifest(manifest: Any, path: Path) -> None:
    """Structure and compatibility of a manifest whose checksum already matched."""
    import features
    from models.layout import EXPORT_LAYOUT

    _need(isinstance(manifest, dict), path, "is not a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("version") not in READABLE_VERSIONS:
        raise BundleError(f"{path}: not an evo bundle of version {' or '.join(map(str, READABLE_VERSIONS))} "
                          f"(format {manifest.get('format')!r}, version {manifest.get('version')!r}); "
                          "export it again with this evo")
    if manifest.get("catalog_version") != features.CATALOG_VERSION:
        raise BundleError(
            f"{path}: made with feature catalog {manifest.get('catalog_version')!r}, this evo has "
            f"{features.CATALOG_VERSION!r}; export it again with this version"
        )
    if manifest.get("export_layout") != EXPORT_LAYOUT:
        raise BundleError(f"{path}: weight layout {manifest.get('export_layout')!r} is not this evo's "
                          f"{EXPORT_LAYOUT!r}; export it again with this version")
    for key in ("genome", "seq_len", "horizon", "min_bars", "tail_bars", "consensus", "models", "golden",
                "entries", "versions"):
        _need(key in manifest, path, f"lacks {key!r}")
    for key in ("seq_len", "horizon", "min_bars", "tail_bars"):
        _need(isinstance(manifest[key], int) and manifest[key] >= 1, path, f"{key} must be an integer >= 1")
    _need(manifest["tail_bars"] >= manifest["min_bars"] >= manifest["seq_len"], path,
          "needs tail_bars >= min_bars >= seq_len")
    from backtest.consensus import CONSENSUS_RULES

    c = manifest["consensus"]
    _need(isinstance(c, dict) and c.get("rule") in CONSENSUS_RULES
          and isinstance(c.get("threshold"), (int, float)) and 0 < c["threshold"] < 1
          and isinstance(c.get("weight", 0.5), (int, float)) and 0 <= c.get("weight", 0.5) <= 1, path,
          f"consensus must have a rule ({', '.join(CONSENSUS_RULES)}), a threshold in (0, 1) and a weight in [0, 1]")
    _need(isinstance(manifest["models"], dict) and set(manifest["models"]) == set(MODELS), path,
          "models must hold exactly 'a' and 'b'")
    for name in MODELS:
        spec = manifest["models"][name]
        for key in ("config", "features", "feature_specs", "scaler"):
            _need(isinstance(spec, dict) and key in spec, path, f"model {name.upper()} lacks {key!r}")
        names = spec["features"]
        _need(isinstance(names, list) and names and [s.get("name") for s in spec["feature_specs"]] == names,
              path, f"model {name.upper()}: feature_specs do not list its features in order")
        for stored in spec["feature_specs"]:
            try:
                current = asdict(features.feature_spec(stored["name"]))
            except KeyError:
                raise BundleError(f"{path}: feature {stored['name']!r} is not in this evo's catalog") from None
            if stored != current:
                raise BundleError(f"{path}: feature {stored['name']!r} was {stored}, this evo's catalog has "
                                  f"{current}; export it again with this version")
        scaler = spec["scaler"]
        width = input_width(spec)
        _need(isinstance(scaler, dict) and len(scaler.get("mean", ())) == len(scaler.get("scale", ())) == width,
              path, f"model {name.upper()}: the scaler does not have one mean and scale per feature")
        if len(spec.get("timeframes", [1])) > 1:
            _need(isinstance(manifest.get("clock"), dict), path, "lacks the 'clock' its timeframes need")
    for key in ("bars", "p_a", "p_b", "signal"):
        _need(isinstance(manifest["golden"], dict) and key in manifest["golden"], path, f"golden lacks {key!r}")
    entries = manifest["entries"]
    weights = {"model_a.safetensors", "model_b.safetensors"}
    _need(isinstance(entries, dict) and set(entries) in (weights, weights | set(GRAPHS)), path,
          "entries must list the digests of model_a.safetensors and model_b.safetensors (and of both "
          "ONNX graphs, if any)")
    if set(GRAPHS) <= set(entries):
        g = manifest.get("graphs")
        _need(manifest["version"] >= 4 and isinstance(g, dict) and g.get("format") == "onnx", path,
              "lists ONNX graphs without a version-4 'graphs' block")
        _need(g.get("quantize") in (None, "int8"), path, "graphs.quantize must be null or 'int8'")
        if g.get("quantize"):
            _need(isinstance(g.get("golden"), dict) and {"p_a", "p_b", "signal"} <= set(g["golden"]), path,
                  "quantised graphs need graphs.golden (p_a, p_b, signal)")
    else:
        _need("graphs" not in manifest, path, "has a 'graphs' block but no ONNX entries")


def input_width(spec: dict[str, Any]) -> int:
    """Columns a stored model reads: (features + 2 regime columns if any) x timeframes."""
    regime = spec.get("regime") or {}
    per_frame = len(spec["features"]) + (2 if regime.get("mode") == "features" else 0)
    return per_frame * len(spec.get("timeframes", [1]))


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read and check a bundle; return its manifest and its safetensors and ONNX entries by entry
    name (``model_a.safetensors``, ..., ``model_b.onnx`` when it has graphs).

    Raises :class:`BundleError` for every way a bundle can be unusable (spec above).
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle")
    blobs = _read_entries(path)
    if _sha256(blobs["manifest.json"]) != blobs["manifest.sha256"].decode("ascii", "replace").strip():
        raise BundleError(f"{path}: manifest.json does not match its checksum (corrupted or edited)")
    try:
        manifest = json.loads(blobs["manifest.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: manifest.json is not JSON ({exc})") from None
    if isinstance(manifest, dict) and isinstance(manifest.get("entries"), dict):
        for name, digest in manifest["entries"].items():
            if name not in blobs or _sha256(blobs[name]) != digest:
                raise BundleError(f"{path}: {name} does not match its checksum (corrupted or tampered with)")
    _check_manifest(manifest, path)
    stored = {name: data for name, data in blobs.items() if not name.startswith("manifest.")}
    if set(stored) != set(manifest["entries"]):
        extra = sorted(set(stored) - set(manifest["entries"]))
        raise BundleError(f"{path}: entries {extra} have no checksum in the manifest; refusing the bundle")
    return manifest, stored


@dataclass(frozen=True)
class Decision:
    """One decision: made at the close of bar ``time`` (ISO, UTC), traded at the next bar's open."""

    time: str
    signal: str     # "long" | "flat" | "short"
    p_a: float      # model A's probability that the price rises by more than its dead zone over the horizon
    p_b: float      # model B's
    settled: bool = True   # False: fewer than ``tail_bars`` bars of history before it (indicators not settled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Probabilities:
    """Both models' class probabilities at decision bars ``ends`` and the consensus signal.

    ``p_a``, ``p_b``: (N, 3) float64, classes down/flat/up; ``signal``: (N,) int8 in {-1, 0, 1}.
    """

    ends: np.ndarray
    p_a: np.ndarray
    p_b: np.ndarray
    signal: np.ndarray


@dataclass(frozen=True)
class ModelInputs:
    """What both models read at decision bars ``ends``: ``windows`` {"a", "b"} -> (N, seq_len, F)
    float32 scaled windows; ``thresholds``: the consensus threshold (a float, or (N,) per bar under
    a regime gate); ``regime``: (N,) volatility regimes of the gate, or None."""

    ends: np.ndarray
    windows: dict[str, np.ndarray]
    thresholds: Any
    regime: np.ndarray | None


def golden_frame(golden: dict[str, Any]):
    """The bars stored in a manifest's ``golden`` block as a canonical bar frame."""
    import pandas as pd

    bars = golden["bars"]
    index = pd.DatetimeIndex(pd.to_datetime(bars["time"]), name="time").astype("datetime64[ns]")
    return pd.DataFrame(np.asarray(bars["ohlcv"], dtype=np.float64), index=index,
                        columns=["open", "high", "low", "close", "volume"])


class Bundle:
    """A loaded bundle: two models behind an engine (:mod:`evo.deploy.engines`: onnxruntime on the
    ONNX graphs, or torch), their scalers, the consensus rule, and a live stream.

    Two ways to decide:

    - :meth:`decide` on a frame of bars: the features over the whole frame, then the window of
      each requested decision bar (what ``evo predict`` does).
    - :meth:`step`, once per closed bar: the bundle keeps the last ``tail_bars`` bars and decides
      on them; equal to :meth:`decide` on the full history within ~1e-9 of the features
      (:mod:`evo.pipeline.stream`), exactly while the stream has not dropped a bar yet.

    Both run the models on the full window of each decision bar (never a recurrent state carried
    from bar to bar): the computation the backtest judged.

    ``models``: an engine, or ``{"a": module, "b": module}`` of torch modules (the torch engine).
    """

    def __init__(self, manifest: dict[str, Any], models: dict[str, Any] | Engine, scalers: dict[str, Any]):
        from evo.pipeline.stream import BarTail

        self.manifest, self.scalers = manifest, scalers
        self.engine: Engine = TorchEngine(models) if isinstance(models, dict) else models
        self._tail = BarTail(int(manifest["tail_bars"]))

    @property
    def models(self) -> dict[str, Any] | None:
        """The torch modules of the torch engine (None on the onnx engine)."""
        return getattr(self.engine, "models", None)

    @property
    def has_graphs(self) -> bool:
        """True when the bundle carries ONNX graphs (version 4)."""
        return isinstance(self.manifest.get("graphs"), dict)

    @classmethod
    def load(cls, path: Path, *, verify: bool = False, engine: str = "auto", threads: int = 1) -> Bundle:
        """Read, check and open a bundle on the CPU with ``engine`` (``"auto"``: onnx when the bundle
        has ONNX graphs and onnxruntime is installed, else torch; ``"onnx"``; ``"torch"``, which
        rebuilds the models with the sLSTM backend ``"vanilla"``, whatever the backend they were
        trained with). ``threads``: onnxruntime's intra-op threads (the torch engine keeps torch's
        own setting). ``verify=True`` also runs :meth:`verify`."""
        from models.data import Scaler

        manifest, blobs = read_bundle(path)
        widths = {name: input_width(manifest["models"][name]) for name in MODELS}
        scalers = {}
        for name in MODELS:
            try:
                scalers[name] = Scaler.from_dict(manifest["models"][name]["scaler"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"{path}: model {name.upper()}'s scaler is unusable ({exc})") from None
        try:
            kind = choose_engine(engine, isinstance(manifest.get("graphs"), dict))
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
        if kind == "onnx":
            runner: Engine = OnnxEngine.from_bundle(manifest, widths, blobs, path, threads=threads)
        else:
            runner = TorchEngine.from_bundle(manifest, widths, blobs, path)
        _warn_on_versions(manifest.get("versions", {}), path, kind)
        bundle = cls(manifest, runner, scalers)
        if verify:
            bundle.verify()
        return bundle

    # -- properties ----------------------------------------------------------------------------

    @property
    def min_bars(self) -> int:
        """Bars of history the first decision needs (longest warm-up + window)."""
        return int(self.manifest["min_bars"])

    @property
    def tail_bars(self) -> int:
        """Bars the live stream keeps (:mod:`evo.pipeline.stream`)."""
        return int(self.manifest["tail_bars"])

    @property
    def seq_len(self) -> int:
        return int(self.manifest["seq_len"])

    @property
    def volume_features(self) -> tuple[str, ...]:
        """The features of either model that read the volume (``needs_volume``), model A's first."""
        names = [s["name"] for n in MODELS for s in self.manifest["models"][n]["feature_specs"]
                 if s.get("needs_volume")]
        return tuple(dict.fromkeys(names))

    def check_volume(self, bars, source: str = "") -> None:
        """Raise :class:`DataError` when the bundle reads volume features and ``bars`` (a canonical
        frame) carry no volume (missing, all zero: FX/CFD feeds): those features would be
        computed from zeros and the decision would mean nothing. ``source`` prefixes the message."""
        from features import has_usable_volume

        if self.volume_features and not has_usable_volume(bars):
            raise self._no_volume(source)

    def _no_volume(self, source: str) -> DataError:
        return DataError(f"{source + ': ' if source else ''}the volume is missing or zero on every bar, but the "
                         f"bundle's models read volume features ({', '.join(self.volume_features)}); it cannot "
                         "decide on these bars: give bars with volume, or export a member without volume features")

    def bar_clock(self):
        """The :class:`features.timeframes.BarClock` of the bars the bundle was trained on: the
        manifest's ``clock``, else the one of its golden bars."""
        from features.timeframes import BarClock, infer_clock

        if isinstance(self.manifest.get("clock"), dict):
            return BarClock.from_dict(self.manifest["clock"])
        return infer_clock(golden_frame(self.manifest["golden"]).index)

    @property
    def risk(self) -> dict[str, Any]:
        """What the bot must apply around each signal: ``size`` (fraction of equity per position),
        ``stop_loss``/``take_profit`` (fractions of the entry's fill price, checked from the entry bar
        on as ``stops`` states, None = none), ``breaker`` (stop
        trading after this drawdown; 0 = off), costs in bps per side, the fill rule."""
        return dict(self.manifest.get("risk", {}))

    # -- batch decisions -----------------------------------------------------------------------

    def probabilities(self, bars, last: int = 1) -> Probabilities:
        """Probabilities and signals for the last ``last`` bars of ``bars`` (canonical frame).

        Features are computed from ``bars`` alone; the value at bar t uses bars <= t, so each
        decision equals the one the same bars give in a live run.
        """
        return self.run(self.inputs(bars, last))

    def inputs(self, bars, last: int = 1) -> ModelInputs:
        """What the models read for the last ``last`` bars of ``bars``: the scaled windows of each
        model and the regime gate's thresholds (any engine can run them: :meth:`run`)."""
        from features import compute_features
        from models.data import make_windows

        if last < 1:
            raise DataError(f"asked for {last} decisions; ask for at least 1")
        need = self.min_bars + last - 1
        if len(bars) < need:
            raise DataError(f"needs at least {need} bars for {last} decision(s) (warm-up and window), "
                            f"got {len(bars)}")
        self.check_volume(bars)
        m = self.manifest
        feats = compute_features(bars)
        ends = np.arange(len(bars) - last, len(bars))
        windows = {}
        for name in MODELS:
            spec = m["models"][name]
            if len(spec.get("timeframes", [1])) == 1 and (spec.get("regime") or {}).get("mode", "none") != "features":
                values = feats[spec["features"]].to_numpy(dtype=np.float64)
                X = self.scalers[name].transform(values[len(bars) - last - self.seq_len + 1:])
                windows[name] = make_windows(X, ends - ends[0] + self.seq_len - 1, self.seq_len)
            else:
                windows[name] = self._packed_windows(spec, name, bars, feats, ends)
        c = m["consensus"]
        thresholds = float(c["threshold"])
        regime = None
        if c.get("gate_low") or c.get("gate_high"):
            from evo.pipeline.regime import RegimeThresholds, regime_inputs, vol_regime

            thr = RegimeThresholds.from_dict(m["models"][c["gate_model"]]["regime"]["thresholds"])
            regime = vol_regime(regime_inputs(bars)[ends], thr)
            offsets = np.array([float(c.get("gate_low", 0.0)), 0.0, float(c.get("gate_high", 0.0))])
            thresholds = np.clip(float(c["threshold"]) + offsets[regime], 0.01, 0.99)
        return ModelInputs(ends=ends, windows=windows, thresholds=thresholds, regime=regime)

    def run(self, inputs: ModelInputs, engine: Engine | None = None) -> Probabilities:
        """Both models on ``inputs`` with ``engine`` (default: the bundle's), then the consensus."""
        engine = engine or self.engine
        probs = {name: engine.proba(name, inputs.windows[name]) for name in MODELS}
        signal = self._consensus(probs, self.manifest["consensus"], inputs.thresholds, inputs.regime)
        return Probabilities(ends=inputs.ends, p_a=probs["a"], p_b=probs["b"], signal=np.asarray(signal))

    @staticmethod
    def _consensus(probs: dict[str, np.ndarray], c: dict[str, Any], thresholds, regime) -> np.ndarray:
        """The consensus signal; with a regime gate, each regime's rows under its own threshold."""
        from backtest.consensus import consensus_signal

        def at(threshold: float) -> np.ndarray:
            return np.asarray(consensus_signal(probs["a"], probs["b"], rule=c["rule"], threshold=float(threshold),
                                               weight=float(c.get("weight", 0.5)),
                                               allow_short=bool(c.get("allow_short", False))))

        if regime is None:
            return at(thresholds)
        signal = at(float(c["threshold"]))
        for r in (0, 2):
            rows = regime == r
            if rows.any():
                signal = np.where(rows, at(thresholds[rows][0]), signal).astype(signal.dtype)
        return signal

    def _packed_windows(self, spec: dict[str, Any], name: str, bars, feats, ends: np.ndarray) -> np.ndarray:
        """Windows of a multi-timeframe or regime-input model, rebuilt from ``bars`` alone the way
        the search built them (:mod:`evo.pipeline.inputs`)."""
        from evo.pipeline.inputs import build_frames, input_windows, model_rows
        from features.timeframes import BarClock

        tfs = tuple(int(x) for x in spec.get("timeframes", [1]))
        clock = BarClock.from_dict(self.manifest["clock"]) if len(tfs) > 1 else None
        frames = build_frames(bars, feats, clock, tfs)
        cols = None
        regime = spec.get("regime") or {}
        if regime.get("mode") == "features":
            from evo.pipeline.regime import RegimeThresholds, regime_features, regime_inputs

            cols = regime_features(regime_inputs(bars), RegimeThresholds.from_dict(regime["thresholds"]))
        try:
            return input_windows(model_rows(spec["features"], tfs, frames, cols), self.scalers[name], frames, tfs,
                                 ends, self.seq_len)
        except GenomeError as exc:
            raise DataError(f"too few bars for the model's slowest timeframe ({exc})") from None

    def decide(self, bars, last: int = 1) -> list[Decision]:
        """Decisions for the last ``last`` bars of ``bars`` (canonical frame), oldest first.

        Each is made at its bar's close and traded at the next bar's open. A decision with fewer
        than ``tail_bars`` bars up to and including its bar is marked ``settled=False``: its
        recursive indicators still carry their seed, so a longer history may decide otherwise.
        Raises :class:`DataError` when ``bars`` holds fewer than ``min_bars + last - 1`` bars, or
        no volume while the models read volume features (:meth:`check_volume`).
        """
        p = self.probabilities(bars, last)
        return [Decision(time=bars.index[t].isoformat(), signal=SIGNAL_NAMES[int(s)], p_a=float(pa[2]),
                         p_b=float(pb[2]), settled=bool(t + 1 >= self.tail_bars))
                for t, s, pa, pb in zip(p.ends, p.signal, p.p_a, p.p_b)]

    def verify(self) -> float:
        """Recompute the golden probabilities stored at export from the stored bars with the engine
        in use; return the largest difference. Raises :class:`BundleError` when it exceeds the
        engine's tolerance (torch 1e-6; float ONNX graphs 1e-5; quantised graphs: their own golden
        block, ``graphs.golden``) or a signal differs: this runtime does not reproduce the models that
        were judged."""
        g = self.manifest["golden"]
        want, tol = g, float(g.get("tolerance", GOLDEN_TOLERANCE))
        if self.engine.name == "onnx":
            graphs = self.manifest.get("graphs") or {}
            want = graphs.get("golden") or g
            tol = float(want.get("tolerance", max(tol, ONNX_TOLERANCE)))
        try:
            bars = golden_frame(g)
            want_a, want_b = np.asarray(want["p_a"], dtype=np.float64), np.asarray(want["p_b"], dtype=np.float64)
            got = self.probabilities(bars, last=len(want_a))
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise BundleError(f"golden block unusable ({exc})") from None
        diff = float(max(np.abs(got.p_a - want_a).max(), np.abs(got.p_b - want_b).max()))
        if not diff <= tol:
            raise BundleError(f"this machine does not reproduce the exported models ({self.engine.name} engine): "
                              f"probabilities differ by {diff:.2e} (> {tol:g}) on the golden bars; versions "
                              f"{library_versions()} vs the bundle's {self.manifest.get('versions')}")
        if [int(s) for s in got.signal] != [int(s) for s in want["signal"]]:
            raise BundleError(f"this machine does not reproduce the exported signals on the golden bars "
                              f"({self.engine.name} engine)")
        return diff

    # -- live stream ---------------------------------------------------------------------------

    @property
    def bars_seen(self) -> int:
        """Bars fed to the stream (:meth:`prime` and :meth:`step`) since the last :meth:`reset`."""
        return self._tail.seen

    @property
    def settled(self) -> bool:
        """True once the stream has seen ``tail_bars`` bars: its decisions no longer depend on
        where it started (within the tail's tolerance). Before that they equal :meth:`decide`
        on the bars it has seen, exactly, but a longer history may give slightly different ones."""
        return self._tail.seen >= self.tail_bars

    def reset(self) -> None:
        """Forget the stream's bars."""
        self._tail.clear()

    def prime(self, bars) -> None:
        """Feed a canonical frame of past closed bars (e.g. the last ``tail_bars`` from a file or
        a broker) without deciding on them; only the last ``tail_bars`` are kept."""
        self._tail.extend(bars)

    def step(self, bar) -> Decision | None:
        """Take one closed bar and return the decision made at its close (trade at the next
        bar's open), or ``None`` while the stream holds fewer than ``min_bars`` bars.

        ``bar``: a mapping or ``pandas.Series`` with ``time, open, high, low, close, volume``
        (:func:`evo.pipeline.stream.parse_bar`). Bars must come in time order, each once; a bad bar raises
        :class:`DataError` and leaves the stream as it was, and so does a bar that would make the
        stream decide with volume features on a tail without any volume (:meth:`check_volume`).
        The decision's ``settled`` is :attr:`settled` after this bar.
        """
        from evo.pipeline.stream import parse_bar

        time, values = parse_bar(bar)
        if self.volume_features and len(self._tail) + 1 >= self.min_bars and not values[4] > 0:
            kept = self._tail.volumes()[1:] if len(self._tail) == self._tail.capacity else self._tail.volumes()
            if not (kept > 0).any():
                raise self._no_volume(f"bar at {time}")
        self._tail.append(time, values)
        if len(self._tail) < self.min_bars:
            return None
        return self.decide(self._tail.frame(), last=1)[0]


def _warn_on_versions(saved: dict[str, Any], path: Path, engine: str) -> None:
    here = library_versions()
    runtime = ("onnxruntime",) if engine == "onnx" else ("torch", "xlstm")
    differ = [f"{k} {saved[k]} -> {here[k]}" for k in (*runtime, "ta-lib", "ta")
              if k in saved and saved[k] != here.get(k)]
    if differ:
        log.warning("%s: made with other library versions (%s); Bundle.verify() checks that the numbers "
                    "still match", path, ", ".join(differ))


__all__ = [
    "ENTRIES",
    "FORMAT",
    "GOLDEN_TOLERANCE",
    "GRAPHS",
    "VERSION",
    "Bundle",
    "Decision",
    "ModelInputs",
    "Probabilities",
    "golden_frame",
    "library_versions",
    "read_bundle",
    "write_bundle",
]
