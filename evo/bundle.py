"""The trading-PC bundle: one zip file, JSON + safetensors, no pickle, checksummed.

Spec (version 1)
----------------
- The bundle MUST be a zip archive holding exactly these entries, and no others:
  ``manifest.json``, ``manifest.sha256``, ``model_a.safetensors``, ``model_b.safetensors``.
- ``manifest.sha256`` MUST hold the hex SHA-256 of ``manifest.json``'s bytes.
- ``manifest.json`` MUST be UTF-8 JSON with ``format = "evo-bundle"``, ``version = 1``,
  ``catalog_version`` (the feature catalog it was trained with), ``genome``, ``models.{a,b}``
  (the model config, feature names, fitted scaler statistics and label dead zone), ``consensus``,
  ``seq_len``, ``horizon``, ``min_bars`` (bars of history one decision needs), ``trained_on``
  (data source, hash and the bar range), ``metrics`` (each figure labelled with what it is:
  ``walk_forward_oos``), ``versions`` and ``entries`` (entry name -> hex SHA-256).
- Weights MUST be safetensors (float32, CPU). Loading runs no code: no pickle anywhere.
- A loader MUST refuse a bundle whose checksums do not match, whose entry names are not exactly
  the list above (no paths, no ``..``), or whose ``catalog_version`` differs from its own.

Loading needs torch, xlstm, numpy, pandas and the feature libraries only; it never imports deap,
optuna, nevergrad or vectorbt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evo.errors import BundleError

FORMAT = "evo-bundle"
VERSION = 1
ENTRIES = ("manifest.json", "manifest.sha256", "model_a.safetensors", "model_b.safetensors")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("evo", "torch", "xlstm", "ta-lib", "ta", "numpy", "pandas"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def write_bundle(path: Path, manifest: dict[str, Any], tensors_a: dict, tensors_b: dict) -> None:
    """Write a bundle atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save

    blobs = {"model_a.safetensors": save(tensors_a), "model_b.safetensors": save(tensors_b)}
    manifest = {**manifest, "format": FORMAT, "version": VERSION,
                "entries": {name: _sha256(b) for name, b in blobs.items()}}
    manifest_bytes = json.dumps(manifest, indent=1, allow_nan=False).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest_bytes)
        zf.writestr("manifest.sha256", _sha256(manifest_bytes))
        for name, blob in blobs.items():
            zf.writestr(name, blob)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read and verify a bundle; return its manifest and raw weight blobs."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            for name in names:
                if name not in ENTRIES or "/" in name or "\\" in name or ".." in name:
                    raise BundleError(f"{path}: unexpected entry {name!r}; refusing the bundle")
            missing = [n for n in ENTRIES if n not in names]
            if missing:
                raise BundleError(f"{path}: missing entries {missing}")
            blobs = {n: zf.read(n) for n in ENTRIES}  # zipfile checks each entry's CRC-32 here
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable bundle ({exc})") from None
    except zipfile.error as exc:  # pragma: no cover - other zip errors
        raise BundleError(f"{path}: corrupted ({exc})") from None
    if _sha256(blobs["manifest.json"]) != blobs["manifest.sha256"].decode("ascii", "replace").strip():
        raise BundleError(f"{path}: manifest.json does not match its checksum (corrupted or edited)")
    try:
        manifest = json.loads(blobs["manifest.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: manifest.json is not JSON ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(f"{path}: not an evo bundle of version {VERSION}")
    for name, digest in manifest.get("entries", {}).items():
        if name not in blobs or _sha256(blobs[name]) != digest:
            raise BundleError(f"{path}: {name} does not match its checksum (corrupted or tampered with)")
    import features

    if manifest.get("catalog_version") != features.CATALOG_VERSION:
        raise BundleError(
            f"{path}: made with feature catalog {manifest.get('catalog_version')!r}, this evo has "
            f"{features.CATALOG_VERSION!r}; export it again with this version"
        )
    return manifest, {n: blobs[n] for n in ("model_a.safetensors", "model_b.safetensors")}


@dataclass(frozen=True)
class Decision:
    """One decision: made at the close of bar ``time``, to be traded at the next bar's open."""

    time: str
    signal: str     # "long" | "flat" | "short"
    p_a: float      # model A's probability that the price rises over the horizon
    p_b: float      # model B's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SIGNAL_NAMES = {1: "long", 0: "flat", -1: "short"}


class Bundle:
    """A loaded bundle: two models, their scalers and the consensus rule."""

    def __init__(self, manifest: dict[str, Any], models: dict[str, Any], scalers: dict[str, Any]):
        self.manifest, self.models, self.scalers = manifest, models, scalers

    @classmethod
    def load(cls, path: Path) -> Bundle:
        from safetensors.torch import load as load_tensors

        from models import ModelConfig, Scaler, load_exported

        manifest, blobs = read_bundle(path)
        models, scalers = {}, {}
        for name in ("a", "b"):
            spec = manifest["models"][name]
            cfg = ModelConfig(**{**spec["config"], "slstm_at": tuple(spec["config"]["slstm_at"]),
                                 "backend": "vanilla"})
            try:
                models[name] = load_exported(cfg, load_tensors(blobs[f"model_{name}.safetensors"]))
            except Exception as exc:  # noqa: BLE001 - any mismatch means the bundle is unusable
                raise BundleError(f"{path}: model {name.upper()} weights do not fit its config ({exc})") from None
            scalers[name] = Scaler.from_dict(spec["scaler"])
        return cls(manifest, models, scalers)

    @property
    def min_bars(self) -> int:
        return int(self.manifest["min_bars"])

    def decide(self, bars, last: int = 1) -> list[Decision]:
        """Decisions for the last ``last`` bars of ``bars`` (canonical frame), oldest first.

        Features are computed from ``bars`` alone; the value at bar t uses bars <= t, so each
        decision equals the one the same bars would give in a live run.
        """
        from backtest.consensus import consensus_signal
        from features import compute_features
        from models import make_windows, predict_proba

        m = self.manifest
        seq_len = int(m["seq_len"])
        if len(bars) < self.min_bars + last - 1:
            raise BundleError(f"needs at least {self.min_bars + last - 1} bars for {last} decision(s), "
                              f"got {len(bars)}")
        feats = compute_features(bars)
        ends = np.arange(len(bars) - last, len(bars))
        probs = {}
        for name in ("a", "b"):
            cols = m["models"][name]["features"]
            X = self.scalers[name].transform(feats[cols].to_numpy(dtype=np.float64))
            probs[name] = predict_proba(self.models[name], make_windows(X, ends, seq_len))
        c = m["consensus"]
        signal = consensus_signal(probs["a"], probs["b"], rule=c["rule"], threshold=float(c["threshold"]),
                                  allow_short=bool(c.get("allow_short", False)))
        return [Decision(time=bars.index[t].isoformat(), signal=SIGNAL_NAMES[int(s)],
                         p_a=float(pa[2]), p_b=float(pb[2]))
                for t, s, pa, pb in zip(ends, signal, probs["a"], probs["b"])]


__all__ = ["Bundle", "Decision", "ENTRIES", "library_versions", "read_bundle", "write_bundle"]
