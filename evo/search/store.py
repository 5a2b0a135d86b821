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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from evo.errors import StoreError

log = logging.getLogger(__name__)

FORMAT = 1


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` via temp-file-then-rename (atomic on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Record:
    """One evaluated genome: its result, or the error that stopped it."""

    key: str
    genome: dict[str, Any]
    generation: int
    result: dict[str, Any] | None
    error: str | None = None
    fidelity: str = "full"          # "low": a successive-halving screen, never in the front
    seed_index: int | None = None   # None: the genome's first evaluation; i: one extra training seed i

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_json(self) -> str:
        d = {"key": self.key, "genome": self.genome, "generation": self.generation,
             "result": self.result, "error": self.error}
        if self.fidelity != "full":
            d["fidelity"] = self.fidelity
        if self.seed_index is not None:
            d["seed_index"] = self.seed_index
        return json.dumps(d, allow_nan=False)


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
        the extra seeds of survivors folded in (:func:`evo.front.merge_records`). Low-fidelity
        screens are left out (``iter_records`` has every line)."""
        from evo.front import merge_records

        min_trades = ((self.meta.get("budget") or {}).get("evaluate") or {}).get("min_trades")
        return merge_records(self.iter_records(), min_trades)

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
