"""``python -m evo``: the only place that touches argv, exit codes and the terminal.

Each command is a module of :mod:`evo.commands` with ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``, importing what it needs only when it runs: ``--help`` loads neither torch
nor pandas, and ``predict`` never loads deap, optuna, nevergrad or vectorbt. An
:class:`evo.errors.EvoError` is printed as one line and exits with code 2; Ctrl-C exits with 130
(``evo run`` says what it saved first: :mod:`evo.commands._interrupts`); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from evo.errors import EvoError

COMMANDS = ("run", "front", "export", "predict", "live", "features", "report", "bench-bundle", "calibrate", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evo",
        description="Evolve a consensus pair of xLSTM trading models, inspect the Pareto front, export the winner.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"evo.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EvoError as exc:
        print(f"evo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in a command with no handling of its own (`evo run` has one)
        print("evo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `evo front | head`: the reader left; nothing more to say
        sys.stderr.close()
        return 0
