"""``evo predict``: the trading-PC runtime. Imports no search library (deap, optuna, nevergrad,
vectorbt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "decide on the latest bar with a bundle (CPU, light)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="PATH.csv with recent bars")
    p.add_argument("--bars", type=int, default=1, help="decisions for the last K bars")
    p.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.bundle import Bundle
    from evo.data import load_bars

    bundle = Bundle.load(Path(args.bundle))
    bars, _ = load_bars(args.data)
    decisions = [d.to_dict() for d in bundle.decide(bars, last=args.bars)]
    if args.json:
        print(json.dumps(decisions[0] if args.bars == 1 else decisions, allow_nan=False))
    else:
        for d in decisions:
            print(f"{d['time']}  {d['signal']:<5}  p_up A={d['p_a']:.3f}  B={d['p_b']:.3f}  "
                  "(decided at this bar's close; trade at the next bar's open)")
    return 0
