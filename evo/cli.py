"""``python -m evo``: the only module that touches argv, exit codes and the terminal.

Commands import what they need when they run, so ``--help`` loads neither torch nor pandas and
``predict`` never loads deap, optuna, nevergrad or vectorbt. An :class:`evo.errors.EvoError` is
printed as one line and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from evo.errors import EvoError

log = logging.getLogger("evo")

def _setup_logging(verbose: bool, console=None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("evo", "features", "models", "backtest"):
        logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------------------------------------
# run


def _load_dataset(spec: str | None, budget, expected_hash: str | None = None):
    from evo.data import default_cache_dir, load_bars
    from evo.evaluate import prepare_dataset
    from evo.errors import StoreError

    bars, label = load_bars(spec)
    ds = prepare_dataset(bars, label, budget, cache_dir=default_cache_dir() / "features")
    if expected_hash is not None and ds.data_hash != expected_hash:
        raise StoreError(f"{label}: the data changed since the run started (hash {ds.data_hash}, "
                         f"run has {expected_hash})")
    return ds


def _budget_of(meta: dict):
    from evo.config import budget_from_dict

    b = dict(meta["budget"])
    return budget_from_dict(b.pop("name"), b)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    _setup_logging(args.verbose, console)
    from evo.config import check_device, load_budget
    from evo.store import RunStore

    if args.resume:
        store = RunStore.open(Path(args.resume))
        meta = store.meta
        budget = _budget_of(meta)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else int(meta["generations"])
        if generations != meta["generations"]:
            store.update_meta(generations=generations)
        ds = _load_dataset(meta["data"], budget, meta["data_hash"])
        seed = int(meta["seed"])
    else:
        budget = load_budget(args.budget)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else budget.ga.generations
        ds = _load_dataset(args.data, budget)  # bad input fails here, before any run dir exists
        seed = args.seed
        out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{budget.name}"
        import features

        import evo

        store = RunStore.create(out, {
            "budget": budget.to_dict(), "data": args.data, "data_label": ds.label, "data_hash": ds.data_hash,
            "n_bars": ds.n_bars, "seed": seed, "generations": generations, "device": device,
            "evo_version": evo.__version__, "catalog_version": features.CATALOG_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pools": {"a": list(ds.pools.a), "b": list(ds.pools.b)},
        })
    console.print(f"[bold]evo run[/] {store.path}  budget={budget.name} device={device} "
                  f"data={ds.label} ({ds.n_bars} bars) generations={generations} seed={seed}")
    _search(store, ds, budget, generations, seed, device, console)
    _print_front(store, as_json=False, top=None)
    console.print(f"next: python -m evo front {store.path}   |   "
                  f"python -m evo export {store.path} --member ID --out model.evo")
    return 0


def _search(store, ds, budget, generations, seed, device, console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from evo.ga import Search

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[detail]}")]
    with Progress(*columns, console=console, transient=False) as bar:
        total = bar.add_task("search", total=(generations + 1) * budget.ga.population, detail="")

        def progress(event: dict) -> None:
            kind = event["kind"]
            if kind == "generation":
                bar.update(total, description=f"generation {event['generation']}/{generations}")
            elif kind == "detail":
                bar.update(total, detail=event["message"])
            elif kind == "genome":
                bar.advance(total)
                rec = event["record"]
                if rec.ok:
                    r = rec.result
                    bar.update(total, detail=f"{rec.key[:8]} sharpe {r['sharpe']:+.2f} dd {r['max_drawdown']:.1%} "
                                             f"trades {r['trades']}")
                else:
                    bar.update(total, detail=f"{rec.key[:8]} failed: {rec.error[:60]}")
            elif kind == "checkpoint":
                done = (event["generation"] + 1) * budget.ga.population
                bar.update(total, completed=max(done, bar.tasks[0].completed))

        search = Search(ds, budget, store, seed=seed, device=device, progress=progress)
        try:
            search.run(generations)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: the journal and last checkpoint are saved; "
                          f"continue with python -m evo run --resume {store.path}[/]")


# ---------------------------------------------------------------------------------------------
# front


def _abbrev(features: list[str], width: int = 38) -> str:
    text = ",".join(features)
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_front(store, *, as_json: bool, top: int | None, sort: str = "sharpe") -> None:
    from evo.front import front_payload

    payload = front_payload(store.records(), store.meta, str(store.path))
    key = {"sharpe": lambda m: -m["sharpe"], "drawdown": lambda m: m["max_drawdown"],
           "trades": lambda m: -m["trades"]}[sort]
    payload["members"].sort(key=key)
    if top:
        payload["members"] = payload["members"][:top]
    if as_json:
        print(json.dumps(payload, indent=1, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    from evo.genome import Genome

    table = Table(title=f"Pareto front: {payload['run']}  ({payload['sample']})", title_justify="left")
    numeric = ("Sharpe", "DSR", "max DD", "return", "trades")
    for col in ("id", *numeric, "acc A/B", "model A", "model B", "window/h", "consensus"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for m in payload["members"]:
        g = Genome.from_dict(m["genome"])
        table.add_row(
            m["id"][:8], f"{m['sharpe']:+.2f}", f"{m['dsr']:.2f}", f"{m['max_drawdown']:.1%}", f"{m['total_return']:+.1%}",
            str(m["trades"]), f"{m['accuracy_a']:.2f}/{m['accuracy_b']:.2f}",
            f"{g.model_a.describe()}\n{_abbrev(list(g.model_a.features))}",
            f"{g.model_b.describe()}\n{_abbrev(list(g.model_b.features))}",
            f"{g.seq_len}/{g.horizon}", f"{g.consensus}>{g.threshold:.2f}",
        )
    # Not a terminal (a pipe, a log file): rich would assume 80 columns and squeeze the table.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    span = payload["test_span"]
    pbo = payload["pbo"]
    causes = ", ".join(f"{k} {v}" for k, v in payload["failures"].items())
    console.print(f"{payload['evaluated']} genomes evaluated, {payload['failed']} failed"
                  f"{f' ({causes})' if causes else ''}, {payload['too_few_trades']} with too few trades; "
                  f"test span {span[0][:10] + '..' + span[1][:10] if span else '-'}")
    console.print(f"selection bias: {payload['trials']} trials; DSR = probability the Sharpe beats the best of "
                  f"that many lucky tries (< 0.95: no evidence of skill); "
                  f"PBO = {'n/a' if pbo is None else f'{pbo:.2f}'} (0.5 = what noise gives)")
    if not payload["members"]:
        console.print("[yellow]no genome traded enough to enter the front[/]")


def cmd_front(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    from evo.store import RunStore

    _print_front(RunStore.open(Path(args.run_dir)), as_json=args.json, top=args.top, sort=args.sort)
    return 0


# ---------------------------------------------------------------------------------------------
# export / predict


def cmd_export(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    from evo.config import check_device
    from evo.errors import StoreError
    from evo.export import export_member
    from evo.store import RunStore

    store = RunStore.open(Path(args.run_dir))
    records = store.records()
    matches = [r for k, r in records.items() if k.startswith(args.member)]
    if len(matches) != 1:
        raise StoreError(f"{store.path}: member id {args.member!r} matches {len(matches)} genomes; "
                         "use an id from `python -m evo front`")
    budget = _budget_of(store.meta)
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda":
        check_device(budget)
    ds = _load_dataset(store.meta["data"], budget, store.meta["data_hash"])
    out = Path(args.out) if args.out else store.path / f"member-{matches[0].key[:8]}.evo"
    export_member(matches[0], ds, budget, out, seed=int(store.meta["seed"]), device=device,
                  run_meta={"run": str(store.path), "budget": budget.name})
    print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
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


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evo",
        description="Evolve a consensus pair of xLSTM trading models, inspect the Pareto front, export the winner.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="evolve a consensus pair of xLSTM models")
    p.add_argument("--generations", type=int, default=None, help="generations after the initial one")
    p.add_argument("--budget", default="smoke", help="smoke | cpu | gpu | PATH.toml (default smoke)")
    p.add_argument("--data", default=None,
                   help="PATH.csv or yf:TICKER (default: the NVDA daily data shipped with evo)")
    p.add_argument("--out", default=None, help="run directory (default runs/<time>-<budget>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("front", help="show a run's Pareto front")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    p.add_argument("--top", type=int, default=None)
    p.add_argument("--sort", choices=("sharpe", "drawdown", "trades"), default="sharpe")
    p.set_defaults(func=cmd_front)

    p = sub.add_parser("export", help="train a front member for deployment and write its bundle")
    p.add_argument("run_dir")
    p.add_argument("--member", required=True, help="member id (a unique prefix is enough)")
    p.add_argument("--out", default=None, help="bundle file (default RUN_DIR/member-ID.evo)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="decide on the latest bar with a bundle (CPU, light)")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="PATH.csv with recent bars")
    p.add_argument("--bars", type=int, default=1, help="decisions for the last K bars")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EvoError as exc:
        print(f"evo: error: {exc}", file=sys.stderr)
        return 2
