"""``evo bench``: run the benchmark suite of issue 9 on this machine and write docs/benchmarks.md.

The measurements live in :mod:`experiments.bench.measure`; this module only parses options, draws progress on
stderr and writes the report. It reports numbers and never fails on one (exit code 0 unless the
command itself is misused).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "measure evo on this machine (overhead, xLSTM speed, backtest, start-up, caches, memory, throughput)"

# experiments.bench.measure.ITEMS, kept here so `--help` needs no import of the suite
ITEMS = ("overhead", "multifidelity", "xlstm", "backtest", "startup", "caches", "memory", "gpu", "throughput")
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes (seconds to a few minutes; for tests, not for the reference figures)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding the 1-minute index-future file the caches and memory items read "
                        "(default: ../shared/data beside the checkout)")
    p.add_argument("--only", default=None, metavar="ITEM[,ITEM]",
                   help=f"run only these items: {', '.join(ITEMS)}")
    p.add_argument("--out", default=None, metavar="PATH.md",
                   help="where to write the Markdown report (default docs/benchmarks.md; with --quick or "
                        "--only nothing is written unless --out or --merge is given)")
    p.add_argument("--merge", action="store_true",
                   help="with --only: replace just those items in the last full report (docs/benchmarks.json) "
                        "and rewrite docs/benchmarks.md; every row keeps the date and load of its own run")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.errors import ConfigError

    only = ITEMS
    if args.only:
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in only if s not in ITEMS]
        if unknown:
            raise ConfigError(f"--only: unknown item(s) {unknown}; choose from {', '.join(ITEMS)}")
    from experiments.bench.measure import run_suite
    from experiments.bench.render import render_markdown

    def progress(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    if args.merge and (args.quick or not args.only):
        raise ConfigError("--merge needs --only ITEM[,ITEM] and no --quick: it refreshes items of the full report")
    if args.merge and not DEFAULT_JSON.exists():
        raise ConfigError(f"--merge: {DEFAULT_JSON} is not there; run `python -m evo bench` once in full")
    kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    report = run_suite(quick=args.quick, only=only, progress=progress, **kwargs)
    if args.merge:
        report = merge_reports(json.loads(DEFAULT_JSON.read_text()), report)
    out = Path(args.out) if args.out else (None if (args.quick or args.only) and not args.merge else DEFAULT_OUT)
    if out is not None:
        _write(out, render_markdown(report))
        progress(f"wrote {out}")
        if out == DEFAULT_OUT:
            _write(DEFAULT_JSON, json.dumps(report, indent=1, default=_jsonable))
    if args.json:
        print(json.dumps(report, indent=1, default=_jsonable))
    else:
        print(render_markdown(report))
    return 0


DEFAULT_JSON = DEFAULT_OUT.with_suffix(".json")


def merge_reports(base: dict, new: dict) -> dict:
    """``base`` with the items of ``new`` replaced; each item keeps the date and load of the run that
    measured it (``item_dates``), so a merged table never passes one run's figure off as another's."""
    dates = dict(base.get("item_dates") or {k: base["machine"]["date_utc"] for k in base["items"]})
    merged = {**base, "items": {**base["items"]}, "load": {**base.get("load", {})}, "item_dates": dates}
    for name, result in new["items"].items():
        merged["items"][name] = result
        merged["load"][name] = new["load"][name]
        dates[name] = new["machine"]["date_utc"]
    return merged


def _write(path: Path, text: str) -> None:
    from evo.fileio import write_text_atomic

    write_text_atomic(path, text)


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
