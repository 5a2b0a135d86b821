"""``evo predict``: the trading-PC runtime. Imports no search library (deap, optuna, nevergrad,
vectorbt).

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
  have not settled (``--allow-unsettled`` decides anyway and marks it ``"settled": false``).
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
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="PATH.csv with recent bars (or yf:TICKER)")
    p.add_argument("--format", default="auto", choices=("auto", "yahoo", "generic", "mt5", "klines"),
                   help="how to read the CSV (default: detected from its header)")
    p.add_argument("--bars", type=int, default=None,
                   help="decisions for the last K bars (default 1; with --stream every bar from the first with "
                        "tail_bars of history, the earlier ones primed without deciding)")
    p.add_argument("--stream", action="store_true",
                   help="replay the file bar by bar through the live stream (Bundle.step)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing the bundle's golden probabilities before deciding")
    p.add_argument("--allow-unsettled", action="store_true",
                   help="decide even with fewer than the bundle's tail_bars bars of history before a decision "
                        "(its indicators have not settled; such decisions say \"settled\": false)")


def _line(d: dict) -> str:
    flag = "" if d.get("settled", True) else "  UNSETTLED: too little history for its indicators;"
    return (f"{d['time']}  {d['signal']:<5}  p_up A={d['p_a']:.3f}  B={d['p_b']:.3f}{flag}  "
            "(decided at this bar's close; trade at the next bar's open)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.data import load_bars
    from evo.deploy.bundle import Bundle
    from evo.errors import DataError

    if args.bars is not None and args.bars < 1:
        raise DataError(f"--bars must be >= 1, got {args.bars}")
    bundle = Bundle.load(Path(args.bundle), verify=not args.no_verify)
    bars, label = load_bars(args.data, fmt=args.format)
    n, tail = len(bars), bundle.tail_bars
    bundle.check_volume(bars, source=label)
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
