"""The paper ledger of ``evo live``: one SQLite file, append-only, one transaction per bar.

Tables (times are ISO strings of the bar's timestamp as the feed gives it, tz-naive UTC):

- ``meta(key, value)``: what the ledger belongs to, written once: ``bundle`` (path), ``bundle_sha256``,
  ``member``, ``source`` (the followed file or ``yf:TICKER``), ``closed`` (the closed-bar rule),
  ``risk`` (JSON, the costs and rules the paper account applies), ``created``, ``version``.
- ``bars(seq, time, open, high, low, close, volume, role)``: every bar the runner accepted, as first
  seen, in time order; ``role`` is ``history`` (primed at the first start, no decision) or ``live``.
- ``decisions(seq, time, signal, target, p_a, p_b, settled, flags, decided_at)``: one per live bar:
  the consensus ``signal`` (long/flat/short), the ``target`` position (-1/0/1) wanted during the next
  bar (flat once the breaker fired), both models' p(up), and ``flags`` (comma separated: ``gap``,
  ``revised``, ``late``, ``breaker``, ``unsettled``).
- ``fills(id, seq, time, reason, units, price, fees)``: simulated orders, filled in bar ``time``.
- ``equity(seq, time, position, units, cash, equity, drawdown, breaker, state)``: the account at each
  live bar's close; ``state`` is the paper account as JSON (what a restart resumes from).
- ``events(id, key, kind, time, detail, logged_at)``: what the feed did wrong and what the runner did
  about it (``gap``, ``duplicate``, ``out_of_order``, ``revised``, ``bad_bar``, ``unreadable``,
  ``stale``, ``feed_down``, ``breaker``, ``start``); ``key`` is unique, so an event seen again
  (the next poll, a restart) is logged once.

Every table refuses UPDATE and DELETE (triggers). A bar, its fills, its equity, its decision and
its events are written in one transaction: a process killed at any moment leaves either all of
them or none, and a restart resumes after the last bar written.
"""

from __future__ import annotations

import json
import sqlite3
import time as _time
from pathlib import Path
from typing import Any

from evo.errors import StoreError

__all__ = ["LEDGER_VERSION", "Ledger"]

LEDGER_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (seq INTEGER PRIMARY KEY, time TEXT NOT NULL UNIQUE, open REAL NOT NULL,
    high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, role TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (seq INTEGER PRIMARY KEY REFERENCES bars(seq), time TEXT NOT NULL UNIQUE,
    signal TEXT NOT NULL, target INTEGER NOT NULL, p_a REAL NOT NULL, p_b REAL NOT NULL, settled INTEGER NOT NULL,
    flags TEXT NOT NULL, decided_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL REFERENCES bars(seq),
    time TEXT NOT NULL, reason TEXT NOT NULL, units REAL NOT NULL, price REAL NOT NULL, fees REAL NOT NULL);
CREATE TABLE IF NOT EXISTS equity (seq INTEGER PRIMARY KEY REFERENCES bars(seq), time TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL, units REAL NOT NULL, cash REAL NOT NULL, equity REAL NOT NULL, drawdown REAL NOT NULL,
    breaker INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, time TEXT,
    detail TEXT NOT NULL, logged_at TEXT NOT NULL);
"""
TABLES = ("meta", "bars", "decisions", "fills", "equity", "events")
META_CHECKED = ("bundle_sha256", "source", "closed")


def _now() -> str:
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())


class Ledger:
    """An open ledger file. Use :meth:`open`; close with :meth:`close` (or as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        self.path, self.conn, self.meta = path, conn, meta

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any] | None = None) -> Ledger:
        """Open ``path``, creating it with ``meta`` when it does not exist. An existing ledger
        must have been written for the same bundle (SHA-256), source and closed-bar rule as
        ``meta`` says (:class:`StoreError` otherwise). ``meta=None`` opens an existing ledger to
        read it."""
        path = Path(path)
        if meta is None and not path.is_file():
            raise StoreError(f"{path}: no such ledger")
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA synchronous = FULL")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a ledger ({exc})") from None
        if tables and not set(TABLES) <= tables:
            conn.close()
            raise StoreError(f"{path}: an SQLite file, but not an evo live ledger (tables {sorted(tables)})")
        if not tables:
            if meta is None:
                conn.close()
                raise StoreError(f"{path}: an empty file, not a ledger")
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for stmt in SCHEMA.strip().split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                for table in TABLES:
                    for op in ("UPDATE", "DELETE"):
                        conn.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                                     "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END")
                full = {**{k: str(v) for k, v in meta.items()}, "version": str(LEDGER_VERSION), "created": _now()}
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(full.items()))
        stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if stored.get("version") != str(LEDGER_VERSION):
            conn.close()
            raise StoreError(f"{path}: ledger version {stored.get('version')!r}, this evo writes {LEDGER_VERSION}")
        if meta is not None:
            differ = [f"{k} {stored.get(k)!r} (now {meta[k]!r})" for k in META_CHECKED
                      if k in meta and stored.get(k) != str(meta[k])]
            if differ:
                conn.close()
                raise StoreError(f"{path}: this ledger was written with another {', '.join(differ)}; resume it with "
                                 "the same --bundle, feed and --closed rule, or start a new --ledger")
        return cls(path, conn, stored)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def append_bar(self, bar: dict[str, Any], *, decision: dict[str, Any] | None = None,
                   fills: list[dict[str, Any]] = (), equity: dict[str, Any] | None = None,
                   events: list[dict[str, Any]] = ()) -> int:
        """Write one accepted bar with its decision, fills, equity and events in one transaction;
        return its ``seq``. ``bar``: time (ISO), open, high, low, close, volume, role."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            cur = self.conn.execute(
                "INSERT INTO bars (time, open, high, low, close, volume, role) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bar["time"], *(float(bar[c]) for c in ("open", "high", "low", "close", "volume")), bar["role"]))
            seq = int(cur.lastrowid)
            for f in fills:
                self.conn.execute("INSERT INTO fills (seq, time, reason, units, price, fees) VALUES (?, ?, ?, ?, ?, ?)",
                                  (seq, bar["time"], f["reason"], f["units"], f["price"], f["fees"]))
            if equity is not None:
                self.conn.execute(
                    "INSERT INTO equity (seq, time, position, units, cash, equity, drawdown, breaker, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, bar["time"], equity["position"], equity["units"], equity["cash"], equity["equity"],
                     equity["drawdown"], int(equity["breaker"]), json.dumps(equity["state"], allow_nan=False)))
            if decision is not None:
                self.conn.execute(
                    "INSERT INTO decisions (seq, time, signal, target, p_a, p_b, settled, flags, decided_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, bar["time"], decision["signal"], decision["target"], decision["p_a"], decision["p_b"],
                     int(decision["settled"]), ",".join(decision["flags"]), _now()))
            for e in events:
                self._insert_event(e)
        return seq

    def append_history(self, bars: list[dict[str, Any]]) -> None:
        """Write the bars primed at the first start (role ``history``, no decision) in one transaction."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT INTO bars (time, open, high, low, close, volume, role) VALUES (?, ?, ?, ?, ?, ?, 'history')",
                [(b["time"], *(float(b[c]) for c in ("open", "high", "low", "close", "volume"))) for b in bars])

    def log_event(self, kind: str, time: str | None, detail: dict[str, Any], key: str) -> bool:
        """Log one event in its own transaction; False when an event with ``key`` is already there."""
        with self.conn:
            return self._insert_event({"kind": kind, "time": time, "detail": detail, "key": key})

    def _insert_event(self, e: dict[str, Any]) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO events (key, kind, time, detail, logged_at) VALUES (?, ?, ?, ?, ?)",
            (e["key"], e["kind"], e.get("time"), json.dumps(e["detail"], default=str), _now()))
        return cur.rowcount > 0

    # -- reading -------------------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` in insertion order, as dicts."""
        if table not in TABLES:
            raise StoreError(f"no table {table!r} in a ledger")
        cur = self.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def frame(self, table: str):
        """``table`` as a pandas DataFrame (``time`` parsed where there is one)."""
        import pandas as pd

        rows = self.rows(table)
        df = pd.DataFrame(rows)
        if "time" in df.columns and len(df):
            df["time"] = pd.to_datetime(df["time"])
        return df

    def last_bars(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` accepted bars, oldest first."""
        cur = self.conn.execute("SELECT time, open, high, low, close, volume, role FROM bars ORDER BY seq DESC LIMIT ?",
                                (int(n),))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in reversed(cur.fetchall())]

    def bar_values(self) -> dict[str, tuple[float, ...]]:
        """Every accepted bar's OHLCV by time (to tell a revised or duplicated row from a new one)."""
        return {t: tuple(v) for t, *v in self.conn.execute("SELECT time, open, high, low, close, volume FROM bars")}

    def last_account(self) -> tuple[dict[str, Any] | None, int]:
        """The paper account's state after the last live bar (None before the first) and the target
        position its last decision asked for (0 when none)."""
        row = self.conn.execute("SELECT state FROM equity ORDER BY seq DESC LIMIT 1").fetchone()
        dec = self.conn.execute("SELECT target FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
        return (json.loads(row[0]) if row else None), (int(dec[0]) if dec else 0)

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise StoreError(f"no table {table!r} in a ledger")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
