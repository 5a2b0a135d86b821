"""``evo bench``: run the benchmark suite of issue 9 on this machine and write docs/benchmarks.md.

The measurements live in :mod:`evo.bench`; this module only parses options, draws progress on
stderr and writes the report. It reports numbers and never fails on one (exit code 0 unless the
command itself is misused).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "measure evo on this machine (overhead, xLSTM speed, backtest, start-up, caches, memory)"

ITEMS = ("overhead", "multifidelity", "xlstm", "backtest", "startup", "caches", "memory", "gpu")  # evo.bench.ITEMS
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes (seconds to a few minutes; for tests, not for the reference figures)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout")
    p.add_argument("--only", default=None, metavar="ITEM[,ITEM]",
                   help=f"run only these items: {', '.join(ITEMS)}")
    p.add_argument("--out", default=None, metavar="PATH.md",
                   help="where to write the Markdown report (default docs/benchmarks.md; with --quick or "
                        "--only nothing is written unless --out is given)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.errors import ConfigError

    only = ITEMS
    if args.only:
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in only if s not in ITEMS]
        if unknown:
            raise ConfigError(f"--only: unknown item(s) {unknown}; choose from {', '.join(ITEMS)}")
    from evo.bench import render_markdown, run_suite

    def progress(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    report = run_suite(quick=args.quick, only=only, progress=progress)
    out = Path(args.out) if args.out else (None if (args.quick or args.only) else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(render_markdown(report))
        tmp.replace(out)
        progress(f"wrote {out}")
    if args.json:
        print(json.dumps(report, indent=1, default=_jsonable))
    else:
        print(render_markdown(report))
    return 0


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
