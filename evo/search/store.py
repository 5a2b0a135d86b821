"""The run directory: an append-only journal replayed on resume, plus checkpoints.

Layout of ``RUN_DIR``::

    run.json          what was asked: budget, data source and hash, seed, generations, versions
    journal.jsonl     one JSON line per evaluation (result or error), fsync'ed as it lands: a
                      genome's first one, an extra seed of a survivor, or a low-fidelity screen
    checkpoint.json   after every generation: population keys, generation, RNG state

Every whole-file write goes to a temporary file in the same directory and is renamed over the
target, so a crash leaves either the old or the new file, never half of one. A torn last line of
the journal (power cut mid-write) is ignored on replay.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from evo.errors import StoreError
from evo.fileio import write_json_atomic
from evo.search.records import Record, merge_records

log = logging.getLogger(__name__)

FORMAT = 1


class RunStore:
    """A run directory. Create it with :meth:`create` (after the input has been validated, so
    bad input leaves nothing behind) or open an existing one with :meth:`open`."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.json"

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> RunStore:
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path}: already exists and is not empty; use --resume {path} or another --out")
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, **meta}
        write_json_atomic(path / "run.json", meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path: Path, *, writable: bool = False) -> RunStore:
        """Open a run directory. Readers (``front``, ``report``) leave the files alone, so a
        run still being written is never disturbed; a writer (``--resume``) first drops a torn
        last journal line so its records start on a line of their own."""
        path = Path(path)
        run_json = path / "run.json"
        if not run_json.exists():
            raise StoreError(f"{path}: not an evo run directory (no run.json)")
        try:
            meta = json.loads(run_json.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{run_json}: unreadable ({exc})") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{path}: run format {meta.get('format')!r}, this evo reads {FORMAT}")
        store = cls(path, meta)
        if writable:
            store._cut_torn_tail()
        return store

    def _cut_torn_tail(self) -> None:
        """Drop a torn last line (a write cut by a crash) so that new records start on a line
        of their own."""
        if not self.journal_path.exists():
            return
        with open(self.journal_path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping a torn last line of %d bytes (interrupted write)",
                        self.journal_path, len(data) - keep)
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())

    # -- journal -------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Persist one evaluated genome now (flushed and fsync'ed)."""
        line = record.to_json() + "\n"
        with open(self.journal_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def iter_records(self) -> Iterator[Record]:
        if not self.journal_path.exists():
            return
        lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    log.warning("%s: ignoring a torn last line (interrupted write)", self.journal_path)
                    continue
                raise StoreError(f"{self.journal_path}: line {i + 1} is not JSON") from None
            yield Record(key=d["key"], genome=d["genome"], generation=int(d["generation"]),
                         result=d.get("result"), error=d.get("error"), fidelity=d.get("fidelity", "full"),
                         seed_index=d.get("seed_index"))

    def records(self) -> dict[str, Record]:
        """Every genome evaluated at full fidelity, by key: its last first-evaluation record with
        the extra seeds of survivors folded in by the search's rule
        (:func:`evo.search.records.merge_records`). Low-fidelity screens are left out
        (``iter_records`` has every line)."""
        return merge_records(self.iter_records())

    # -- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        write_json_atomic(self.checkpoint_path, checkpoint)

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        try:
            return json.loads(self.checkpoint_path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.checkpoint_path}: unreadable ({exc})") from None

    def update_meta(self, **changes: Any) -> None:
        self.meta = {**self.meta, **changes}
        write_json_atomic(self.path / "run.json", self.meta)
