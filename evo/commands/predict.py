"""``evo predict``: the trading-PC runtime. Imports no search library (deap, optuna, nevergrad,
vectorbt), and no torch on the onnx engine.

Engines (``--engine``, :mod:`evo.deploy.engines`): ``onnx`` runs the bundle's ONNX graphs with
onnxruntime (a trading PC without torch: ``requirements-runtime.txt``); ``torch`` rebuilds the
models from their weights; ``auto`` (the default) takes onnx when the bundle carries graphs
(version 4) and onnxruntime is installed, else torch.

Two modes:

- default: the features over every bar of ``--data``, then the decisions for its last ``--bars``
  bars (one JSON object with ``--json``, a list when ``--bars`` > 1);
- ``--stream``: replays ``--data`` bar by bar through ``Bundle.step`` as a live bot would, keeping
  only the bundle's ``tail_bars``; one line (one JSON object per line with ``--json``) per bar
  from the first bar with enough history on.

Every decision is made at its bar's close and is traded at the next bar's open. Before deciding,
the bundle's golden probabilities are recomputed (``--no-verify`` skips it): a runtime that does
not reproduce the exported models stops with exit code 2. It also stops (exit 2, one line) when

- the models read volume features and the bars carry no volume (FX/CFD data);
- a decision would have fewer than the bundle's ``tail_bars`` bars of history, so its indicators
  have not settled (``--allow-unsettled`` decides anyway and marks it ``"settled": false``);
- the last bar closed longer ago than ``--max-age`` (default: 3 bar intervals intraday, 4 days
  for daily bars), so the decision would be stale (``--allow-stale`` replays old files).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "decide on the latest bar(s) with a bundle (CPU, light); --stream replays bar by bar"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="the bundle file `evo export` wrote (checksums verified on load)")
    p.add_argument("--data", required=True,
                   help="PATH.csv with recent bars, or yf:TICKER (bars of the bundle's interval, cached and topped up "
                        "with the bars since the last cached one)")
    p.add_argument("--format", default="auto", choices=("auto", "yahoo", "generic", "mt5", "klines"),
                   help="how to read the CSV (default: detected from its header)")
    p.add_argument("--bars", type=int, default=None,
                   help="decisions for the last K bars (default 1; with --stream every bar from the first with "
                        "tail_bars of history, the earlier ones primed without deciding)")
    p.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto",
                   help="what runs the models: onnx (the bundle's ONNX graphs on onnxruntime, no torch needed), "
                        "torch, or auto (default: onnx when the bundle has graphs and onnxruntime is installed, "
                        "else torch)")
    p.add_argument("--stream", action="store_true",
                   help="replay the file bar by bar through the live stream (Bundle.step)")
    p.add_argument("--json", action="store_true",
                   help="print each decision as one JSON object instead of a text line")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing the bundle's golden probabilities before deciding")
    p.add_argument("--allow-unsettled", action="store_true",
                   help="decide even with fewer than the bundle's tail_bars bars of history before a decision "
                        "(its indicators have not settled; such decisions say \"settled\": false)")
    p.add_argument("--max-age", default=None, metavar="DURATION",
                   help="refuse when the last bar closed longer ago than this (4d, 2h, 90min; 0 or none: no "
                        "limit). Default: 3 bar intervals for intraday bundles, 4 days for daily ones")
    p.add_argument("--allow-stale", action="store_true",
                   help="decide on bars of any age (replaying a history file); the same as --max-age none")


YF_BY_SECONDS = {60: ("1m", "7d"), 120: ("2m", "60d"), 300: ("5m", "60d"), 900: ("15m", "60d"),
                 1800: ("30m", "60d"), 3600: ("1h", "730d"), 5400: ("90m", "60d"), 86400: ("1d", "max"),
                 7 * 86400: ("1wk", "max")}
"""yfinance's interval for the bundle's bar and the longest period yfinance serves for it."""


def load_for(bundle, spec: str, fmt: str):
    """``(bars, label)`` of ``--data``; a ``yf:`` download takes the bundle's bar interval."""
    from evo.data import load_bars
    from evo.errors import DataError

    if not spec.startswith("yf:"):
        return load_bars(spec, fmt=fmt)
    seconds = bundle.bar_clock().base_seconds
    if seconds not in YF_BY_SECONDS:
        raise DataError(f"{spec}: yfinance has no bars of the bundle's {seconds} s interval; pass --data FILE.csv")
    interval, period = YF_BY_SECONDS[seconds]
    return load_bars(spec, interval=interval, period=period)


def _line(d: dict) -> str:
    flag = "" if d.get("settled", True) else "  UNSETTLED: too little history for its indicators;"
    return (f"{d['time']}  {d['signal']:<5}  p_up A={d['p_a']:.3f}  B={d['p_b']:.3f}{flag}  "
            "(decided at this bar's close; trade at the next bar's open)")


def check_age(bundle, bars, label: str, max_age: str | None, allow_stale: bool, now=None) -> None:
    """Log how old the last bar of ``bars`` is; raise DataError when it is older than the limit
    (``max_age`` text, default :func:`evo.pipeline.stream.default_max_age` of the bundle's bars)."""
    import pandas as pd

    from evo.errors import DataError
    from evo.pipeline.stream import bar_age, default_max_age, describe_age, parse_max_age

    clock = bundle.bar_clock()
    limit = None if allow_stale else parse_max_age(max_age) if max_age is not None else default_max_age(clock)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else now
    last = bars.index[-1]
    age = bar_age(last, clock, now)
    if age < pd.Timedelta(0):
        log.warning("%s: the last bar (%s) closes %s from now (UTC): it may still be running, or the file's times "
                    "are not UTC", label, last.isoformat(), describe_age(-age))
    else:
        log.info("%s: the last bar (%s) closed %s ago%s", label, last.isoformat(), describe_age(age),
                 "" if limit is None else f" (limit {describe_age(limit)})")
    if limit is not None and age > limit:
        raise DataError(f"{label}: the last bar ({last.isoformat()}) closed {describe_age(age)} ago, more than "
                        f"--max-age {describe_age(limit)}: a decision on it would be stale; get fresh bars, or pass "
                        "--allow-stale to replay old data")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.deploy.bundle import Bundle
    from evo.errors import DataError

    if args.bars is not None and args.bars < 1:
        raise DataError(f"--bars must be >= 1, got {args.bars}")
    bundle = Bundle.load(Path(args.bundle), verify=not args.no_verify, engine=args.engine)
    log.debug("%s: running on the %s engine", args.bundle, bundle.engine.name)
    bars, label = load_for(bundle, args.data, args.format)
    n, tail = len(bars), bundle.tail_bars
    bundle.check_volume(bars, source=label)
    check_age(bundle, bars, label, args.max_age, args.allow_stale)
    if args.stream and args.bars is None:
        start, want = (0, bundle.min_bars) if args.allow_unsettled else (tail - 1, tail)   # first bar to step
    else:
        last = args.bars or 1
        start, want = n - last, tail + last - 1
    need = bundle.min_bars + (0 if args.stream else last - 1)
    if n < need:
        raise DataError(f"{label}: {n} bars are too few: the bundle needs at least {need} bars for "
                        f"{'one decision' if args.stream else f'{last} decision(s)'} (indicator warm-up and window)")
    if not args.allow_unsettled and (start + 1 < tail or n <= start):
        raise DataError(f"{label}: {n} bars leave a decision with fewer than the {tail} bars of history the bundle's "
                        f"indicators need to settle (a longer history may decide otherwise); give at least {want} "
                        "bars, or pass --allow-unsettled to decide anyway, marked \"settled\": false")
    if args.stream:
        start = max(0, start)
        bundle.prime(bars.iloc[:start])
        columns = ["open", "high", "low", "close", "volume"]
        for time, values in zip(bars.index[start:], bars[columns].to_numpy()[start:]):
            decision = bundle.step({"time": time, **dict(zip(columns, values))})
            if decision is not None:
                d = decision.to_dict()
                print(json.dumps(d, allow_nan=False) if args.json else _line(d), flush=True)
        return 0
    decisions = [d.to_dict() for d in bundle.decide(bars, last=last)]
    if args.json:
        print(json.dumps(decisions[0] if last == 1 else decisions, allow_nan=False))
    else:
        for d in decisions:
            print(_line(d))
    return 0
