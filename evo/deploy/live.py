"""``evo live``: follow a bar feed, decide on each newly closed bar, keep a paper ledger.

The runner reads its feed on every poll — a file that grows as bars arrive (any format ``--data``
reads) or yfinance — judges each row by the rules below, and hands every newly closed bar to
:meth:`evo.deploy.bundle.Bundle.step`, the paper account (:mod:`evo.deploy.paper`) and the ledger
(:mod:`evo.deploy.ledger`), one transaction per bar. Killed at any moment and restarted with the
same arguments, it resumes after the last bar in the ledger: the stream is primed with the
ledger's last ``tail_bars`` bars (the very bars it held), the account with its last state, so no
bar is missed or decided twice. It imports neither deap, optuna, nevergrad nor vectorbt.

Closed bars (``closed``)
------------------------
- ``next`` (default for files): a bar is closed when a row with a later time follows it in the
  feed; the last row is the running bar and is never decided (an MT5 export rewrites it in place).
- ``clock`` (default for yfinance): a bar is closed once its interval has passed on the clock
  (its close = its time + the bundle's interval for open-stamped bars, its time for close-stamped).

The feed's rows, one at a time in feed order (the first row of a time is that bar: first seen wins)
----------------------------------------------------------------------------------------------------
- **duplicate** (a second row with an accepted bar's time and values): ignored, logged.
- **revised** (a row with a known bar's time and other values): logged with both values; the bar
  as first seen stands, and so does a decision made on it; every later decision whose model window
  holds that bar carries the flag ``revised``.
- **out of order** (a row older than the newest bar and not one of the bars): refused, logged.
- **bad bar** (a price <= 0 or not finite, high/low not enclosing open and close): refused, logged.
- **gap** (slots of the bundle's grid missing before a bar: business days for daily bars traded
  Monday to Friday, else intervals; an intraday session break counts too): logged; the decision
  on that bar carries the flag ``gap``.
- **stale feed** (the newest row closed longer ago than ``max_age``; default as ``evo predict``:
  3 intervals intraday, 4 days daily; ``None`` = off, for replays): logged once per newest row,
  no decision (there is no new bar to decide on). A bar that closed longer ago than ``max_age``
  when it is decided (catching up after an outage) is decided, flagged ``late``: do not trade it.
- **unreadable** (a line that does not parse), **feed down** (no file, yfinance offline): logged,
  no decision, retried with back-off (the poll interval doubled each failure, up to ``max_backoff``).

Rows older than the ledger's first bar that come before it in the feed are history from before the
runner started and are skipped (further down the feed such a row is out of order).
At the first start the closed bars already there prime the stream (the ``tail_bars - 1`` before the
newest are kept in the ledger as ``history``) and the newest of them is the first bar decided; a bar is decided
only once the stream holds ``tail_bars`` bars (``allow_unsettled``: ``min_bars``, flagged
``unsettled``). The paper account opens, flat with 1.0 of cash, at the first decided bar.
"""

from __future__ import annotations

import hashlib
import logging
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evo.deploy.ledger import Ledger
from evo.deploy.paper import PaperAccount, RiskSpec
from evo.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["CLOSED_RULES", "FileFeed", "LiveConfig", "LiveRunner", "YfFeed", "bundle_digest", "missing_slots"]

CLOSED_RULES = ("next", "clock")
COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class LiveConfig:
    """How the runner judges its feed. ``closed``: :data:`CLOSED_RULES`; ``max_age``: the stale
    limit (None = off); ``poll_seconds``/``max_backoff_seconds``: the wait between polls and its
    ceiling after failures (seconds)."""

    closed: str = "next"
    max_age: pd.Timedelta | None = None
    allow_unsettled: bool = False
    poll_seconds: float = 1.0
    max_backoff_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.closed not in CLOSED_RULES:
            raise DataError(f"closed-bar rule {self.closed!r} is not one of {', '.join(CLOSED_RULES)}")
        if not self.poll_seconds >= 0 or not self.max_backoff_seconds >= self.poll_seconds:
            raise DataError(f"--poll must be >= 0 s and at most the back-off ceiling ({self.max_backoff_seconds} s)")


def bundle_digest(path: Path) -> str:
    """SHA-256 of a bundle file: the ledger remembers which bundle wrote it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def missing_slots(prev: pd.Timestamp, time: pd.Timestamp, clock) -> int:
    """Bars of the grid missing strictly between ``prev`` and ``time``: business days for daily bars
    traded Monday to Friday (``clock.week_days == 5``), else whole intervals of ``clock``."""
    if clock.daily and clock.week_days == 5:
        start = (prev + pd.Timedelta(days=1)).date()
        return int(np.busday_count(start, time.date())) if time.date() > start else 0
    step = pd.Timedelta(seconds=int(clock.base_seconds))
    return max(0, int((time - prev) // step) - 1)


# ---------------------------------------------------------------------------------------- feeds

class FileFeed:
    """A bar file that grows (``--follow``): every poll reads its complete lines, in file order."""

    kind = "file"

    def __init__(self, path: Path, fmt: str = "auto"):
        self.path, self.fmt, self.label = Path(path), fmt, str(path)
        self._seen: tuple[int, int] | None = None
        self._rows: pd.DataFrame | None = None

    def read(self, since: pd.Timestamp | None = None) -> pd.DataFrame:
        """The file's rows (:func:`evo.data.read_rows`), re-parsed only when its size or mtime
        changed. Raises :class:`DataError` (no file, a line that does not parse)."""
        from evo.data import read_rows

        try:
            st = self.path.stat()
        except OSError:
            raise DataError(f"{self.path}: no such file (yet)") from None
        key = (st.st_size, st.st_mtime_ns)
        if key != self._seen or self._rows is None:
            self._rows, self._seen = read_rows(self.path, fmt=self.fmt), key
        return self._rows


class YfFeed:
    """yfinance polled for closed bars of ``interval``: the last ``period`` at the first poll, then
    from the day of the newest bar the ledger holds."""

    kind = "yf"

    def __init__(self, ticker: str, interval: str, period: str, download: Callable | None = None,
                 now: Callable[[], pd.Timestamp] | None = None):
        self.ticker, self.interval, self.period, self.download = ticker, interval, period, download
        self.label = f"yf:{ticker}"
        self._now = now

    def read(self, since: pd.Timestamp | None = None) -> pd.DataFrame:
        from evo.data import fetch_yfinance

        now = self._now() if self._now else None
        frame, reason = fetch_yfinance(self.ticker, interval=self.interval, download=self.download, now=now,
                                       **({"start": since} if since is not None else {"period": self.period}))
        if frame is None:
            raise DataError(f"{self.label}: no bars ({reason or 'offline?'})")
        return frame.assign(line=np.arange(len(frame)))


# --------------------------------------------------------------------------------------- runner

def _iso(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).isoformat()


def _digest(values) -> str:
    return hashlib.sha1(np.asarray(values, dtype=np.float64).tobytes()).hexdigest()[:12]


class LiveRunner:
    """Follows ``feed`` with ``bundle``, writing to ``ledger`` (opened by the caller).

    ``emit(decision)`` is called with a dict per decision (time, signal, p_a, p_b, settled, target,
    held, equity, drawdown, fills, flags); ``now()`` gives the UTC time (tz-naive) and ``sleep(s)``
    waits: both can be replaced (tests)."""

    def __init__(self, bundle, ledger: Ledger, feed, config: LiveConfig, *,
                 emit: Callable[[dict[str, Any]], None] = lambda d: None,
                 now: Callable[[], pd.Timestamp] | None = None, sleep: Callable[[float], None] = _time.sleep):
        self.bundle, self.ledger, self.feed, self.config = bundle, ledger, feed, config
        self.emit, self.sleep = emit, sleep
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC").tz_localize(None))
        self.clock = bundle.bar_clock()
        self.risk = RiskSpec.from_manifest(bundle.risk)
        self._span = pd.Timedelta(seconds=int(self.clock.base_seconds))
        self._restore()

    # -- state ---------------------------------------------------------------------------------

    def _restore(self) -> None:
        """Rebuild the stream, the account and what is known of the feed from the ledger."""
        led = self.ledger
        self.known = led.bar_values()                       # time -> OHLCV of every accepted bar
        tail = led.last_bars(self.bundle.tail_bars)
        self.bundle.reset()
        if tail:
            frame = pd.DataFrame([[b[c] for c in COLUMNS] for b in tail], columns=list(COLUMNS),
                                 index=pd.DatetimeIndex(pd.to_datetime([b["time"] for b in tail]), name="time"))
            self.bundle.prime(frame)
        self.window = [pd.Timestamp(b["time"]) for b in tail][-self.bundle.seq_len:]
        first = led.conn.execute("SELECT time FROM bars ORDER BY seq LIMIT 1").fetchone()
        self.first = pd.Timestamp(first[0]) if first else None
        self.last = pd.Timestamp(tail[-1]["time"]) if tail else None
        state, self.want = led.last_account()
        self.account = PaperAccount.from_state(self.risk, state) if state is not None else None
        self.revised = {e["time"] for e in led.rows("events") if e["kind"] == "revised" and e["time"] in self.known}
        self._sorted_key: tuple | None = None
        self._sorted: tuple[list, list] = ([], [])

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, max_bars: int | None = None, once: bool = False, max_polls: int | None = None) -> int:
        """Poll until ``max_bars`` decisions were made, after one poll (``once``) or after
        ``max_polls`` polls (None: forever; Ctrl-C stops it, the ledger is consistent at any
        moment). Waits ``poll_seconds`` between polls, doubling up to ``max_backoff_seconds``
        while the feed fails. Returns the number of decisions made."""
        decided, polls, delay = 0, 0, self.config.poll_seconds
        while True:
            limit = None if max_bars is None else max_bars - decided
            made, ok = self.poll(limit=limit)
            decided += made
            polls += 1
            if once or (max_bars is not None and decided >= max_bars) or (max_polls is not None and polls >= max_polls):
                return decided
            delay = self.config.poll_seconds if ok else min(max(2 * delay, self.config.poll_seconds, 0.5),
                                                            self.config.max_backoff_seconds)
            if not ok:
                log.warning("%s: retrying in %.0f s", self.feed.label, delay)
            self.sleep(delay)

    def poll(self, *, limit: int | None = None) -> tuple[int, bool]:
        """Read the feed once and take every newly closed bar (at most ``limit`` decisions);
        returns (decisions made, whether the feed could be read)."""
        try:
            rows = self.feed.read(self.last.normalize() if self.last is not None and self.feed.kind == "yf" else None)
        except DataError as exc:
            kind = "unreadable" if self.feed.kind == "file" and "no such file" not in str(exc) else "feed_down"
            after = _iso(self.last) if self.last is not None else ""
            self.ledger.log_event(kind, None, {"error": str(exc), "after": after}, key=f"{kind}:{after}:{exc}")
            log.warning("%s; no decision", exc)
            return 0, False
        candidates, events = self._sort(rows)
        now = self.now()
        closed = self._closed(candidates, now)
        if closed and self.first is None:          # the first start: prime on the bars already there
            history = closed[:-1][-(self.bundle.tail_bars - 1):] if self.bundle.tail_bars > 1 else []
            if history:
                self._prime(history)
            start = closed[-1][0] if not history else history[0][0]
            events = [e for e in events if pd.Timestamp(e["time"]) >= start]
            closed = closed[-1:]
        for e in events:
            if self.ledger.log_event(e["kind"], e["time"], e["detail"], e["key"]):
                log.warning("%s: %s at %s: %s", self.feed.label, e["kind"].replace("_", " "), e["time"], e["note"])
                if e["kind"] == "revised" and e["detail"].get("accepted"):
                    self.revised.add(e["time"])
        made = 0
        for t, values in closed:
            if limit is not None and made >= limit:
                break
            made += self._accept(t, values, now)
        self._check_stale(candidates, now, bool(closed))
        return made, True

    # -- rows ----------------------------------------------------------------------------------

    def _sort(self, rows: pd.DataFrame) -> tuple[list[tuple[pd.Timestamp, np.ndarray]], list[dict[str, Any]]]:
        """The feed's new bars (after the ledger's last, in time order, first row of a time wins) and
        the events its other rows raise (module docstring). Cached while neither the rows nor the
        ledger's last bar change (an idle poll of a long file costs its stat only)."""
        key = (id(rows), len(rows), self.last)
        if key != self._sorted_key:
            self._sorted, self._sorted_key = self._sort_rows(rows), key
        return self._sorted

    def _sort_rows(self, rows: pd.DataFrame) -> tuple[list, list[dict[str, Any]]]:
        from evo.pipeline.stream import parse_bar

        known = self.known
        fresh: dict[str, tuple[float, ...]] = {}
        seen: set[str] = set()
        latest = self.last
        candidates, events = [], []
        values = rows[list(COLUMNS)].to_numpy(dtype=np.float64)
        o, h, lo, c, v = values.T
        with np.errstate(invalid="ignore"):
            valid = (np.isfinite(values).all(axis=1) & (values[:, :4] > 0).all(axis=1) & (v >= 0)
                     & (h >= np.maximum(o, c) - 1e-12 * np.abs(h)) & (lo <= np.minimum(o, c) + 1e-12 * np.abs(lo)))
        start = 0 if self.first is None else int(np.argmax(rows.index >= self.first)) if len(rows) else 0
        if self.first is not None and len(rows) and not (rows.index >= self.first).any():
            start = len(rows)                              # all history from before the ledger
        times, lines, bars = list(rows.index[start:]), rows["line"].to_numpy()[start:].tolist(), values[start:].tolist()
        for i, t, line, bar in zip(range(start, len(rows)), times, lines, bars):
            iso, bar = t.isoformat(), tuple(bar)
            if not valid[i]:
                try:
                    parse_bar({"time": t, **dict(zip(COLUMNS, bar))})
                    why = "not a usable bar"
                except DataError as exc:
                    why = str(exc)
                events.append(self._event("bad_bar", iso, f"{iso}:{_digest(bar)}", {"line": line, "values": bar},
                                          f"refused ({why})"))
                continue
            ref = known.get(iso) or fresh.get(iso)
            if ref is not None:
                if bar != tuple(ref):
                    accepted = iso in known
                    events.append(self._event("revised", iso, f"{iso}:{_digest(bar)}",
                                              {"line": line, "first": ref, "now": bar, "accepted": accepted},
                                              "the bar as first seen stands" + (", and so does any decision on it"
                                                                                 if accepted else "")))
                elif iso in seen:
                    events.append(self._event("duplicate", iso, f"{iso}:{line}", {"line": line}, "ignored"))
                seen.add(iso)
            elif latest is not None and t <= latest:
                events.append(self._event("out_of_order", iso, f"{iso}:{_digest(bar)}",
                                          {"line": line, "after": _iso(latest), "values": bar}, "refused"))
            else:
                fresh[iso] = bar
                seen.add(iso)
                latest = t
                candidates.append((t, np.asarray(bar)))
        return candidates, events

    @staticmethod
    def _event(kind: str, time: str, key: str, detail: dict[str, Any], note: str) -> dict[str, Any]:
        detail = {k: (np.asarray(x).tolist() if isinstance(x, np.ndarray) else x) for k, x in detail.items()}
        return {"kind": kind, "time": time, "key": f"{kind}:{key}", "detail": detail, "note": note}

    def _closed(self, candidates: list, now: pd.Timestamp) -> list:
        if self.config.closed == "next":
            return candidates[:-1]
        offset = self._span if self.clock.label == "open" else pd.Timedelta(0)
        return [(t, v) for t, v in candidates if t + offset <= now]

    def _check_stale(self, candidates: list, now: pd.Timestamp, moved: bool) -> None:
        from evo.pipeline.stream import bar_age, describe_age

        newest = candidates[-1][0] if candidates else self.last
        if self.config.max_age is None or newest is None:
            return
        age = bar_age(newest, self.clock, now)
        if age > self.config.max_age and not moved:
            iso = _iso(newest)
            limit = self.config.max_age
            detail = {"age_s": age.total_seconds(), "limit_s": limit.total_seconds()}
            if self.ledger.log_event("stale", iso, detail, key=f"stale:{iso}"):
                log.warning("%s: stale feed: the newest bar (%s) closed %s ago, more than %s; no decision until a "
                            "new bar arrives", self.feed.label, iso, describe_age(age), describe_age(limit))

    # -- one bar -------------------------------------------------------------------------------

    def _prime(self, history: list) -> None:
        """First start: the closed bars already there become the stream's history (no decision)."""
        bars = [{"time": _iso(t), **dict(zip(COLUMNS, map(float, v)))} for t, v in history]
        self.ledger.append_history(bars)
        frame = pd.DataFrame([v for _, v in history], columns=list(COLUMNS),
                             index=pd.DatetimeIndex([t for t, _ in history], name="time"))
        self.bundle.prime(frame)
        for b in bars:
            self.known[b["time"]] = tuple(b[c] for c in COLUMNS)
        self.window = [t for t, _ in history][-self.bundle.seq_len:]
        self.first, self.last = history[0][0], history[-1][0]

    def _accept(self, t: pd.Timestamp, v: np.ndarray, now: pd.Timestamp) -> int:
        """Take one closed bar: fills at its open, stops, equity at its close, the decision, all
        written in one transaction. Returns 1 when it decided, else 0."""
        from evo.deploy.bundle import SIGNAL_NAMES
        from evo.pipeline.stream import bar_age

        iso = _iso(t)
        flags, events = [], []
        if self.last is not None:
            missing = missing_slots(self.last, t, self.clock)
            if missing:
                flags.append("gap")
                events.append(self._event("gap", iso, iso, {"after": _iso(self.last), "missing": missing},
                                          f"{missing} bar(s) missing before it; the decision is flagged"))
        decision = self.bundle.step({"time": t, **dict(zip(COLUMNS, v))})
        self.window = (self.window + [t])[-self.bundle.seq_len:]
        decide = decision is not None and (decision.settled or self.config.allow_unsettled)
        if decide and self.account is None:
            self.account = PaperAccount(risk=self.risk)
            self.want = 0
        bar = {"time": iso, **dict(zip(COLUMNS, map(float, v))), "role": "live" if self.account else "history"}
        record = equity = None
        fills = []
        if self.account is not None:
            held, was_tripped = self.want, self.account.tripped
            fills = [{"reason": f.reason, "units": f.units, "price": f.price, "fees": f.fees}
                     for f in self.account.on_bar(*v[:4], held)]
            acc = self.account
            equity = {"position": int(np.sign(acc.units)) if acc.units else 0, "units": acc.units, "cash": acc.cash,
                      "equity": acc.equity, "drawdown": acc.drawdown, "breaker": acc.tripped, "state": acc.state()}
            if acc.tripped and not was_tripped:
                events.append(self._event("breaker", iso, iso, {"drawdown": acc.drawdown, "limit": self.risk.breaker},
                                          "drawdown breaker fired: flat from the next open on"))
            if decide:
                signal = {v_: k for k, v_ in SIGNAL_NAMES.items()}[decision.signal]
                target = acc.target(signal)
                if acc.tripped:
                    flags.append("breaker")
                if not decision.settled:
                    flags.append("unsettled")
                if any(_iso(w) in self.revised for w in self.window):
                    flags.append("revised")
                if self.config.max_age is not None and bar_age(t, self.clock, now) > self.config.max_age:
                    flags.append("late")
                record = {"time": iso, "signal": decision.signal, "target": target, "p_a": decision.p_a,
                          "p_b": decision.p_b, "settled": decision.settled, "flags": flags}
        self.ledger.append_bar(bar, decision=record, fills=fills, equity=equity, events=events)
        self.known[iso] = tuple(float(x) for x in v)
        self.last = t
        if self.first is None:
            self.first = t
        for e in events:
            log.warning("%s: %s at %s: %s", self.feed.label, e["kind"], iso, e["note"])
        if record is None:
            return 0
        self.want = record["target"]
        self.emit({**record, "held": held, "equity": acc.equity, "drawdown": acc.drawdown, "fills": fills})
        return 1
