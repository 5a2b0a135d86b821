"""The on-disk feature cache: one ``.npz`` per (bars, catalog version, mode), written atomically.

File layout (``numpy.savez``, loaded with ``allow_pickle=False``, so loading runs no code):

- ``values``: float64 ``(n_bars, n_features)``, the feature matrix.
- ``columns``: unicode ``(n_features,)``, the catalog names in order.
- ``index_ns``: int64 ``(n_bars,)``, the bar times as nanoseconds since the epoch.
- ``key``: unicode scalar, the cache key the file was written under (also its name).
- ``checksum``: unicode scalar, SHA-256 hex of ``values``' bytes.

A file is used only when all five are there and agree with the bars and the catalog; anything
else (truncated zip, bit flip, foreign file, other catalog) is logged, recomputed and replaced.
Writes go to a temporary file in the same directory, then ``os.replace`` onto the final name.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from evo.errors import DataError
from evo.fileio import atomic_path
from features.catalog import CATALOG_VERSION, OHLCV_COLUMNS, catalog, compute_features

log = logging.getLogger(__name__)

__all__ = ["cache_key", "cache_path", "data_hash", "load_or_compute"]


def data_hash(ohlcv: pd.DataFrame) -> str:
    """SHA-256 hex (64 chars) of the bars: the times (int64 ns) and the five float64 columns.

    Independent of the index's stored resolution (``datetime64[us]`` and ``[ns]`` of the same
    times hash alike) and of extra columns. Raises :class:`evo.errors.DataError` when the index is
    not a ``DatetimeIndex`` or a column is missing.
    """
    if not isinstance(ohlcv.index, pd.DatetimeIndex):
        raise DataError(f"bars need a DatetimeIndex, got {type(ohlcv.index).__name__}")
    missing = [c for c in OHLCV_COLUMNS if c not in ohlcv.columns]
    if missing:
        raise DataError(f"bars lack column(s) {', '.join(missing)}; expected {', '.join(OHLCV_COLUMNS)}")
    h = hashlib.sha256()
    h.update(f"bars:{len(ohlcv)}:".encode())
    h.update(_index_ns(ohlcv.index).tobytes())
    h.update(np.ascontiguousarray(ohlcv[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def cache_key(ohlcv: pd.DataFrame, *, raw: bool = False) -> str:
    """SHA-256 hex of the data hash, :data:`CATALOG_VERSION`, the mode, the catalog's names and
    the TA-Lib/ta versions (a library upgrade may change values without a catalog bump)."""
    h = hashlib.sha256()
    h.update(data_hash(ohlcv).encode())
    h.update(f"\0catalog={CATALOG_VERSION}\0raw={int(raw)}\0".encode())
    h.update("\0".join(s.name for s in catalog()).encode())
    h.update(f"\0talib={_version('ta-lib')}\0ta={_version('ta')}".encode())
    return h.hexdigest()


def cache_path(ohlcv: pd.DataFrame, cache_dir: Path, *, raw: bool = False) -> Path:
    """Where :func:`load_or_compute` keeps the features of ``ohlcv`` under ``cache_dir``."""
    return Path(cache_dir) / f"features-{cache_key(ohlcv, raw=raw)}.npz"


def load_or_compute(ohlcv: pd.DataFrame, cache_dir: Path | None, *, raw: bool = False) -> pd.DataFrame:
    """:func:`features.compute_features` of ``ohlcv``, read from ``cache_dir`` when cached there.

    ``cache_dir=None`` just computes. Otherwise a valid cache file is loaded (the frame equals a
    fresh computation: same index object, columns and float64 values); a missing or bad one is
    computed and written atomically. A cache directory that cannot be written is logged and the
    computed frame returned.
    """
    if cache_dir is None:
        return compute_features(ohlcv, raw=raw)
    key = cache_key(ohlcv, raw=raw)
    path = Path(cache_dir) / f"features-{key}.npz"
    names = [s.name for s in catalog()]
    if path.exists():
        started = time.perf_counter()
        values = _read(path, key, names, _index_ns(ohlcv.index))
        if values is not None:
            log.debug("loaded features from %s in %.3f s", path, time.perf_counter() - started)
            return pd.DataFrame(values, index=ohlcv.index, columns=names, copy=False)
    frame = compute_features(ohlcv, raw=raw)
    try:
        _write(path, key, frame)
    except OSError as exc:
        log.warning("could not write feature cache %s: %s", path, exc)
    return frame


def _index_ns(index: pd.DatetimeIndex) -> np.ndarray:
    return np.ascontiguousarray(index.as_unit("ns").asi8, dtype=np.int64)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _checksum(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _read(path: Path, key: str, names: list[str], index_ns: np.ndarray) -> np.ndarray | None:
    """The cached matrix, or None (logged) when the file is unreadable or does not match."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored_key = str(npz["key"])
            columns = npz["columns"]
            stored_index = npz["index_ns"]
            values = npz["values"]
            checksum = str(npz["checksum"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable feature cache %s (%s: %s); recomputing", path, type(exc).__name__, exc)
        return None
    problem = None
    if stored_key != key:
        problem = "key differs"
    elif columns.tolist() != names:
        problem = "columns differ from the catalog"
    elif values.dtype != np.float64 or values.shape != (len(index_ns), len(names)):
        problem = f"values have dtype {values.dtype} and shape {values.shape}"
    elif not np.array_equal(stored_index, index_ns):
        problem = "bar times differ"
    elif _checksum(values) != checksum:
        problem = "checksum mismatch"
    if problem:
        log.warning("ignoring feature cache %s: %s; recomputing", path, problem)
        return None
    return values


def _write(path: Path, key: str, frame: pd.DataFrame) -> None:
    values = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            values=values,
            columns=np.array(list(frame.columns), dtype=np.str_),
            index_ns=_index_ns(frame.index),
            key=np.array(key),
            checksum=np.array(_checksum(values)),
        )
