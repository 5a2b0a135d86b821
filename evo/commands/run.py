"""``evo run``: evolve a consensus pair of xLSTM models."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evo.commands._common import budget_of, load_dataset, setup_logging

HELP = "evolve a consensus pair of xLSTM models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generations", type=int, default=None, help="generations after the initial one")
    p.add_argument("--budget", default="smoke", help="smoke | cpu | gpu | PATH.toml (default smoke)")
    p.add_argument("--data", default=None,
                   help="PATH.csv or yf:TICKER (default: the NVDA daily data shipped with evo)")
    p.add_argument("--out", default=None, help="run directory (default runs/<time>-<budget>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    setup_logging(args.verbose, console)
    from evo.config import check_device, load_budget
    from evo.store import RunStore

    if args.resume:
        store = RunStore.open(Path(args.resume))
        meta = store.meta
        budget = budget_of(meta)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else int(meta["generations"])
        if generations != meta["generations"]:
            store.update_meta(generations=generations)
        ds = load_dataset(meta["data"], budget, meta["data_hash"])
        seed = int(meta["seed"])
    else:
        budget = load_budget(args.budget)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else budget.ga.generations
        ds = load_dataset(args.data, budget)  # bad input fails here, before any run dir exists
        seed = args.seed
        out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{budget.name}"
        import evo
        import features

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
    from evo.commands.front import print_front

    print_front(store, as_json=False, top=None)
    console.print(f"next: python -m evo front {store.path}   |   "
                  f"python -m evo export {store.path} --member ID --out model.evo")
    return 0


def _search(store, ds, budget, generations, seed, device, console) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
