"""Whole-file writes that never leave half a file: temp-file-then-rename, once.

Every writer in evo (run store, bundles, the yfinance cache, the feature cache, reports, the
features command, benchmark reports) writes through :func:`atomic_path`: the content goes to a
temporary file in the target's own directory (same file system, so the rename is atomic on
POSIX), is flushed and fsync'ed, and is then renamed over the target. A crash or an exception
leaves either the old file or the new one, never a torn one, and no temporary file behind.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is fsync'ed and renamed over
    ``path``, on an exception it is removed. The parent directory is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via :func:`atomic_path`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON (no NaN or infinity: ``ValueError``) via :func:`atomic_path`."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False))
