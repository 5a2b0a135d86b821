"""``evo live``: run a bundle on a live feed with a paper ledger, or reconcile a ledger with the backtest.

- ``--follow FILE`` (a bar file that grows, any format ``--data`` reads) or ``--source yf:TICKER``
  (yfinance, polled): decide on each newly closed bar, print one line per decision (a JSON object
  with ``--json``), and write bar, decision, simulated fills and equity to ``--ledger`` (SQLite).
  The rules (closed bars, gaps, duplicates, revisions, a stale feed) are :mod:`evo.deploy.live`'s.
  Killed and restarted with the same arguments, it resumes from the ledger. Imports neither deap,
  optuna, nevergrad nor vectorbt.
- ``--reconcile LEDGER --data FILE``: replay the ledger's bars through the backtest
  (:mod:`evo.deploy.reconcile`, vectorbt), print every bar where a decision, fill or equity value
  differs; exit 0 when nothing differs, 1 otherwise. ``--plot OUT.html`` draws both equity curves.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "follow a live feed with a bundle and a paper ledger; --reconcile checks a ledger against the backtest"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None, help="the bundle file (with --reconcile: default, the ledger's own)")
    feed = p.add_mutually_exclusive_group()
    feed.add_argument("--follow", metavar="FILE", help="a bar file that grows as bars arrive (MT5, klines, CSV)")
    feed.add_argument("--source", metavar="yf:TICKER", help="poll yfinance for the ticker's bars")
    feed.add_argument("--reconcile", metavar="LEDGER", help="compare this ledger with the backtest over --data")
    p.add_argument("--ledger", metavar="PATH.sqlite", help="the paper ledger (created, or resumed when it exists)")
    p.add_argument("--data", help="with --reconcile: the bar file the ledger's bars came from")
    p.add_argument("--format", default="auto", choices=("auto", "yahoo", "generic", "mt5", "klines"),
                   help="how to read --follow/--data (default: detected from the header)")
    p.add_argument("--interval", default=None,
                   help="with --source: yfinance's interval (1m, 5m, 1h, 1d; default: the bundle's bar interval)")
    p.add_argument("--closed", choices=("next", "clock"), default=None,
                   help="when a bar counts as closed: 'next' = once a later row appears (default for files), "
                        "'clock' = once its interval has passed (default for --source)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="seconds between reads of the feed (default 1 for files, 30 for yfinance); doubled after "
                        "each failed read, up to --max-backoff")
    p.add_argument("--max-backoff", type=float, default=300.0, metavar="SECONDS", help="ceiling of the back-off")
    p.add_argument("--max-bars", type=int, default=None, metavar="N", help="stop after N decisions")
    p.add_argument("--max-polls", type=int, default=None, metavar="N", help="stop after N reads of the feed")
    p.add_argument("--once", action="store_true", help="read the feed once, take every closed bar, stop")
    p.add_argument("--json", action="store_true", help="one JSON object per decision (or per difference)")
    p.add_argument("--max-age", default=None, metavar="DURATION",
                   help="a feed whose newest bar closed longer ago is stale (4d, 2h, 90min; none: no limit). "
                        "Default: 3 bar intervals intraday, 4 days daily")
    p.add_argument("--allow-stale", action="store_true", help="replaying old bars: no stale-feed limit")
    p.add_argument("--allow-unsettled", action="store_true",
                   help="decide before the stream holds tail_bars bars (flagged 'unsettled')")
    p.add_argument("--no-verify", action="store_true", help="skip recomputing the bundle's golden probabilities")
    p.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto",
                   help="what runs the models (as `evo predict --engine`): onnx (the bundle's graphs on "
                        "onnxruntime, no torch), torch, or auto (default: onnx when the bundle has graphs)")
    p.add_argument("--plot", metavar="OUT.html", help="with --reconcile: the ledger's and the backtest's equity")


def _line(d: dict) -> str:
    fills = "; ".join(f"{f['reason']} {f['units']:+.6g} @ {f['price']:.6g}" for f in d["fills"])
    flags = f"  [{', '.join(d['flags'])}]" if d["flags"] else ""
    target = {1: "long", 0: "flat", -1: "short"}[d["target"]]
    return (f"{d['time']}  {d['signal']:<5}  p_up A={d['p_a']:.3f}  B={d['p_b']:.3f}  -> {target} at the next open  "
            f"equity {d['equity']:.6f}{'  fills: ' + fills if fills else ''}{flags}")


def _emit(as_json: bool):
    def emit(d: dict) -> None:
        print(json.dumps(d, allow_nan=False) if as_json else _line(d), flush=True)
    return emit


def _run(args: argparse.Namespace) -> int:
    from evo.deploy.bundle import Bundle
    from evo.deploy.ledger import Ledger
    from evo.deploy.live import FileFeed, LiveConfig, LiveRunner, YfFeed, bundle_digest
    from evo.errors import ConfigError
    from evo.pipeline.stream import default_max_age, parse_max_age

    if not args.bundle or not args.ledger:
        raise ConfigError("evo live needs --bundle and --ledger with --follow FILE or --source yf:TICKER")
    if args.max_bars is not None and args.max_bars < 1:
        raise ConfigError(f"--max-bars must be >= 1, got {args.max_bars}")
    bundle = Bundle.load(Path(args.bundle), verify=not args.no_verify, engine=args.engine)
    clock = bundle.bar_clock()
    if args.source:
        from evo.commands.predict import YF_BY_SECONDS

        if not args.source.startswith("yf:"):
            raise ConfigError(f"--source {args.source!r}: give yf:TICKER (or --follow FILE)")
        default = YF_BY_SECONDS.get(clock.base_seconds)
        if args.interval is None and default is None:
            raise ConfigError(f"yfinance has no bars of the bundle's {clock.base_seconds} s interval; pass --interval")
        interval, period = (args.interval, "7d") if args.interval else default
        feed = YfFeed(args.source[3:], interval, period)
        closed, poll = args.closed or "clock", 30.0 if args.poll is None else args.poll
    else:
        feed = FileFeed(Path(args.follow), args.format)
        closed, poll = args.closed or "next", 1.0 if args.poll is None else args.poll
    max_age = None if args.allow_stale else parse_max_age(args.max_age) if args.max_age else default_max_age(clock)
    config = LiveConfig(closed=closed, max_age=max_age, allow_unsettled=args.allow_unsettled, poll_seconds=poll,
                        max_backoff_seconds=max(args.max_backoff, poll))
    meta = {"bundle": str(Path(args.bundle).resolve()), "bundle_sha256": bundle_digest(Path(args.bundle)),
            "member": bundle.manifest.get("member", ""), "source": feed.label, "closed": closed,
            "risk": json.dumps(bundle.risk, sort_keys=True)}
    with Ledger.open(Path(args.ledger), meta) as ledger:
        runner = LiveRunner(bundle, ledger, feed, config, emit=_emit(args.json))
        log.info("%s -> %s: %d bars in the ledger, closed-bar rule %r, polling every %g s", feed.label, args.ledger,
                 ledger.count("bars"), closed, poll)
        made = runner.run(max_bars=args.max_bars, once=args.once, max_polls=args.max_polls)
    log.info("%d decision(s) made", made)
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from evo.data import load_bars
    from evo.deploy.bundle import Bundle
    from evo.deploy.ledger import Ledger
    from evo.deploy.live import bundle_digest
    from evo.deploy.reconcile import reconcile
    from evo.errors import ConfigError, StoreError

    if not args.data:
        raise ConfigError("--reconcile needs --data FILE: the bars the ledger was fed")
    with Ledger.open(Path(args.reconcile)) as ledger:
        path = Path(args.bundle or ledger.meta.get("bundle", ""))
        if not path.is_file():
            raise StoreError(f"{args.reconcile}: its bundle {path} is not there; pass --bundle")
        if bundle_digest(path) != ledger.meta.get("bundle_sha256"):
            raise StoreError(f"{path} is not the bundle that wrote {args.reconcile} (SHA-256 differs)")
        bundle = Bundle.load(path, verify=not args.no_verify, engine=args.engine)
        bars, label = load_bars(args.data, fmt=args.format)
        result = reconcile(ledger, bundle, bars)
    for d in result.differences:
        print(json.dumps(d.to_dict(), allow_nan=False) if args.json else d.line())
    print(result.summary(), file=sys.stderr if args.json else sys.stdout)
    if args.plot:
        from evo.fileio import write_text_atomic
        from evo.reporting.figures import ledger_figure

        fig = ledger_figure(result.index, result.equity_ledger, result.equity_backtest, title=f"{args.reconcile} vs "
                            f"the backtest on {label}")
        write_text_atomic(Path(args.plot), fig.to_html(include_plotlyjs=True, full_html=True))
        log.info("wrote %s", args.plot)
    return 0 if result.ok else 1


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    return _reconcile(args) if args.reconcile else _run(args)
