"""The trading-PC bundle: one zip file, JSON + safetensors, no pickle, checksummed.

Spec (version 3; version 2 bundles still load: they are version 3 bundles without the optional
``timeframes``, ``regime``, ``clock`` and gate keys below)
----------------------------------------------------------------------------------------------
- A bundle MUST be a zip archive holding exactly these four entries, each once, and no others:
  ``manifest.json``, ``manifest.sha256``, ``model_a.safetensors``, ``model_b.safetensors``.
  A reader MUST refuse any other name (a path, ``..``, an absolute name), a duplicate name and an
  entry larger than 1 GiB.
- ``manifest.sha256`` MUST hold the hex SHA-256 of ``manifest.json``'s bytes, and
  ``manifest.entries`` the hex SHA-256 of each safetensors entry: a digest for every entry.
  They catch corruption and edits, not a forger (there is no signature).
- ``model_{a,b}.safetensors`` MUST hold float32 tensors named as
  :func:`models.state_dict_for_export` names them (sLSTM kernels in xlstm's backend-neutral
  layout, ``manifest.export_layout``). Loading runs no code: no pickle anywhere.
- ``manifest.json`` MUST be UTF-8 JSON without NaN/inf, holding: ``format = "evo-bundle"``,
  ``version = 2``, ``catalog_version``, ``export_layout``, ``member``, ``genome``; ``seq_len``
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
  ``golden`` (bars, and the probabilities the exported models gave on them); ``versions`` (evo,
  torch, xlstm, ta-lib, ta, numpy, pandas, safetensors, python); ``entries``.
- Multi-timeframe and regime models (optional keys): ``models.{a,b}.timeframes`` (multipliers of
  the base bar, ascending, 1 first; missing = ``[1]``), ``models.{a,b}.regime`` (``mode``:
  ``none``/``features``/``gate``, ``thresholds``: :class:`evo.pipeline.regime.RegimeThresholds`), and
  ``clock`` (:class:`features.timeframes.BarClock`: base interval, open/close labels, week
  length) whenever a model reads more than ``x1``. A model with several timeframes stores a
  ``models.multi.MultiConfig`` as its ``config`` (``base``, ``timeframes``, ``fusion``) and a
  scaler over the packed columns (:mod:`evo.pipeline.inputs`).
- A reader MUST refuse a bundle whose checksums do not match, whose version differs, whose
  ``catalog_version`` or any feature spec differs from its own catalog, or whose
  ``export_layout`` it does not know. ``verify()`` recomputes ``golden`` (within 1e-6).

Decisions: a decision at bar ``t`` uses bars ``<= t`` (features, then the window of the last
``seq_len`` rows), is made at ``t``'s close and is traded at the open of ``t+1``.

Loading needs torch, xlstm, numpy, pandas, safetensors and the feature libraries only; it never
imports deap, optuna, nevergrad or vectorbt.
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

from evo.errors import BundleError, DataError, GenomeError
from evo.fileio import atomic_path

log = logging.getLogger(__name__)

FORMAT = "evo-bundle"
VERSION = 3
READABLE_VERSIONS = (2, 3)   # version 2: no timeframes, regimes or gate (read as x1, regime "none")
ENTRIES = ("manifest.json", "manifest.sha256", "model_a.safetensors", "model_b.safetensors")
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
    for dist in ("evo", "torch", "xlstm", "ta-lib", "ta", "numpy", "pandas", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "unknown"
    out["python"] = platform.python_version()
    return out


def write_bundle(path: Path, manifest: dict[str, Any], tensors_a: dict, tensors_b: dict) -> dict[str, Any]:
    """Write a bundle atomically (temp file in the same folder, fsync, then rename).

    Adds ``format``, ``version`` and ``entries`` to ``manifest``; returns the manifest written.
    """
    from safetensors.torch import save

    blobs = {"model_a.safetensors": save(tensors_a), "model_b.safetensors": save(tensors_b)}
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
                if info.filename not in ENTRIES:
                    raise BundleError(f"{path}: unexpected entry {info.filename!r}; refusing the bundle")
                if info.file_size > MAX_ENTRY_BYTES:
                    raise BundleError(f"{path}: entry {info.filename!r} is {info.file_size} bytes, over the limit")
            twice = [n for n, k in Counter(i.filename for i in infos).items() if k > 1]
            if twice:
                raise BundleError(f"{path}: entry {twice[0]!r} appears more than once; refusing the bundle")
            missing = [n for n in ENTRIES if n not in {i.filename for i in infos}]
            if missing:
                raise BundleError(f"{path}: missing entries {missing}")
            return {n: zf.read(n) for n in ENTRIES}  # zipfile checks each entry's CRC-32 here
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
    from models import EXPORT_LAYOUT

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
    _need(isinstance(entries, dict) and set(entries) == {"model_a.safetensors", "model_b.safetensors"}, path,
          "entries must list the digests of model_a.safetensors and model_b.safetensors")


def input_width(spec: dict[str, Any]) -> int:
    """Columns a stored model reads: (features + 2 regime columns if any) x timeframes."""
    regime = spec.get("regime") or {}
    per_frame = len(spec["features"]) + (2 if regime.get("mode") == "features" else 0)
    return per_frame * len(spec.get("timeframes", [1]))


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read and check a bundle; return its manifest and the raw weight blobs by model (a, b).

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
    return manifest, {name: blobs[f"model_{name}.safetensors"] for name in MODELS}


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


def golden_frame(golden: dict[str, Any]):
    """The bars stored in a manifest's ``golden`` block as a canonical bar frame."""
    import pandas as pd

    bars = golden["bars"]
    index = pd.DatetimeIndex(pd.to_datetime(bars["time"]), name="time").astype("datetime64[ns]")
    return pd.DataFrame(np.asarray(bars["ohlcv"], dtype=np.float64), index=index,
                        columns=["open", "high", "low", "close", "volume"])


class Bundle:
    """A loaded bundle: two models on the CPU, their scalers, the consensus rule, and a live stream.

    Two ways to decide:

    - :meth:`decide` on a frame of bars: the features over the whole frame, then the window of
      each requested decision bar (what ``evo predict`` does).
    - :meth:`step`, once per closed bar: the bundle keeps the last ``tail_bars`` bars and decides
      on them; equal to :meth:`decide` on the full history within ~1e-9 of the features
      (:mod:`evo.pipeline.stream`), exactly while the stream has not dropped a bar yet.
    """

    def __init__(self, manifest: dict[str, Any], models: dict[str, Any], scalers: dict[str, Any]):
        from evo.pipeline.stream import BarTail

        self.manifest, self.models, self.scalers = manifest, models, scalers
        self._tail = BarTail(int(manifest["tail_bars"]))

    @classmethod
    def load(cls, path: Path, *, verify: bool = False) -> Bundle:
        """Read, check and rebuild a bundle on the CPU (sLSTM backend ``"vanilla"``, whatever the
        backend it was trained with). ``verify=True`` also runs :meth:`verify`."""
        from safetensors.torch import load as load_tensors

        from models import Scaler
        from models.multi import config_from_dict, load_model

        manifest, blobs = read_bundle(path)
        models, scalers = {}, {}
        for name in MODELS:
            spec = manifest["models"][name]
            try:
                tensors = load_tensors(blobs[name])
                cfg = config_from_dict(spec["config"])
                bad = sorted(k for k, t in tensors.items() if str(t.dtype) != "torch.float32")
                if bad:
                    raise BundleError(f"tensors {bad[:3]} are not float32")
                if cfg.n_features != input_width(spec) or cfg.seq_len != manifest["seq_len"]:
                    raise BundleError("the config disagrees with the features or seq_len")
                models[name] = load_model(cfg, tensors)  # always the portable "vanilla" sLSTM backend
                scalers[name] = Scaler.from_dict(spec["scaler"])
            except Exception as exc:  # noqa: BLE001 - safetensors, config or shape mismatch: unusable
                raise BundleError(f"{path}: model {name.upper()} cannot be rebuilt ({exc})") from None
        _warn_on_versions(manifest.get("versions", {}), path)
        bundle = cls(manifest, models, scalers)
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
        from features import compute_features
        from models import make_windows, predict_proba

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
        probs = {}
        for name in MODELS:
            spec = m["models"][name]
            if len(spec.get("timeframes", [1])) == 1 and (spec.get("regime") or {}).get("mode", "none") != "features":
                values = feats[spec["features"]].to_numpy(dtype=np.float64)
                X = self.scalers[name].transform(values[len(bars) - last - self.seq_len + 1:])
                X = make_windows(X, ends - ends[0] + self.seq_len - 1, self.seq_len)
            else:
                X = self._packed_windows(spec, name, bars, feats, ends)
            probs[name] = predict_proba(self.models[name], X)
        c = m["consensus"]
        thresholds = float(c["threshold"])
        regime = None
        if c.get("gate_low") or c.get("gate_high"):
            from evo.pipeline.regime import RegimeThresholds, regime_inputs, vol_regime

            thr = RegimeThresholds.from_dict(m["models"][c["gate_model"]]["regime"]["thresholds"])
            regime = vol_regime(regime_inputs(bars)[ends], thr)
            offsets = np.array([float(c.get("gate_low", 0.0)), 0.0, float(c.get("gate_high", 0.0))])
            thresholds = np.clip(float(c["threshold"]) + offsets[regime], 0.01, 0.99)
        signal = self._consensus(probs, c, thresholds, regime)
        return Probabilities(ends=ends, p_a=probs["a"], p_b=probs["b"], signal=np.asarray(signal))

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
        """Recompute the golden probabilities stored at export from the stored bars; return the
        largest difference. Raises :class:`BundleError` when it exceeds 1e-6 or a signal differs:
        this runtime does not reproduce the models that were judged."""
        g = self.manifest["golden"]
        try:
            bars = golden_frame(g)
            want_a, want_b = np.asarray(g["p_a"], dtype=np.float64), np.asarray(g["p_b"], dtype=np.float64)
            got = self.probabilities(bars, last=len(want_a))
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise BundleError(f"golden block unusable ({exc})") from None
        diff = float(max(np.abs(got.p_a - want_a).max(), np.abs(got.p_b - want_b).max()))
        tol = float(g.get("tolerance", GOLDEN_TOLERANCE))
        if not diff <= tol:
            raise BundleError(f"this machine does not reproduce the exported models: probabilities differ by "
                              f"{diff:.2e} (> {tol:g}) on the golden bars; versions {library_versions()} vs "
                              f"the bundle's {self.manifest.get('versions')}")
        if [int(s) for s in got.signal] != [int(s) for s in g["signal"]]:
            raise BundleError("this machine does not reproduce the exported signals on the golden bars")
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


def _warn_on_versions(saved: dict[str, Any], path: Path) -> None:
    here = library_versions()
    differ = [f"{k} {saved[k]} -> {here[k]}" for k in ("torch", "xlstm", "ta-lib", "ta")
              if k in saved and saved[k] != here.get(k)]
    if differ:
        log.warning("%s: made with other library versions (%s); Bundle.verify() checks that the numbers "
                    "still match", path, ", ".join(differ))


__all__ = [
    "ENTRIES",
    "FORMAT",
    "GOLDEN_TOLERANCE",
    "VERSION",
    "Bundle",
    "Decision",
    "Probabilities",
    "golden_frame",
    "library_versions",
    "read_bundle",
    "write_bundle",
]
