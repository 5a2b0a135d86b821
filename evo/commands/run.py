"""``evo run``: evolve a consensus pair of xLSTM models."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evo.commands._common import budget_of, load_run_data, make_console, setup_logging, single_thread_torch
from evo.commands._data_args import add_data_arguments
from evo.commands._interrupts import raise_if_pending

HELP = "evolve a consensus pair of xLSTM models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generations", type=int, default=None,
                   help="generations after the initial one (default: the budget's ga.generations, e.g. 2 in "
                        "the smoke preset; with --resume, the run's own, which this replaces)")
    p.add_argument("--budget", default="smoke", help="smoke | cpu | gpu | PATH.toml (default smoke)")
    add_data_arguments(p, multiple=True)
    p.add_argument("--out", default=None, help="run directory (default runs/<time>-<budget>)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the whole search: random genomes, the GA's choices, the training seeds; the same "
                        "seed, data and budget give the same front (default 0; a resumed run keeps its own)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its journal and last checkpoint; its budget, data and "
                        "seed are the run's own (only --generations and the worker options apply)")
    p.add_argument("--workers", type=int, default=1,
                   help="evaluate genomes in N long-lived local processes (torch on 1 thread each)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="evaluate on the workers of a Dask scheduler (see README: several machines)")
    p.add_argument("--optimizer", choices=("nsga2", "random", "ngopt", "tpe"), default="nsga2",
                   help="nsga2 (default), random search, nevergrad's NGOpt or Optuna's multivariate TPE over the "
                        "same genome (compare them on the same evaluation budget)")
    p.add_argument("--time-limit", default=None, metavar="DURATION",
                   help="stop after the generation that crosses it, e.g. 8h, 45m, 1h30m; the front is complete")
    p.add_argument("--target", default=None, metavar="PROFILE.json",
                   help="the trading PC's profile from `evo calibrate`: estimates each genome's latency there")
    p.add_argument("--objectives", default="sharpe,drawdown",
                   help="sharpe,drawdown (default) or sharpe,drawdown,latency (needs --target)")
    p.add_argument("--max-latency-ms", type=float, default=None,
                   help="hard limit on the estimated per-decision latency on --target; such genomes are never trained")
    p.add_argument("--max-params", type=int, default=None, help="hard limit on the pair's parameter count")
    p.add_argument("--seed-genome", action="append", default=[], metavar="FILE",
                   help="a genome to start from (TOML or JSON; e.g. experiments/seeds/todays_bot.toml); "
                        "it enters the first generation and is reported as a baseline; repeatable")


def main(args: argparse.Namespace) -> int:
    from evo.commands._interrupts import Interrupted, exit_status, stop_on_signals

    console = make_console(stderr=True)
    setup_logging(args.verbose, console)
    opened: dict = {}   # the run's store, once it exists: what an interrupt reports
    with stop_on_signals():
        try:
            return _run(args, console, opened)
        except Interrupted as exc:
            console.print(interrupted_message(opened.get("store"), exc.what, args), highlight=False, markup=False)
            return exit_status(exc.signum)


def interrupted_message(store, what: str, args: argparse.Namespace) -> str:
    """What an interrupted run leaves behind, exactly, and the command that continues it."""
    import shlex

    if store is None:
        return f"interrupted by {what} before the run directory was created: nothing was saved"
    n = sum(1 for _ in store.iter_records())
    ckpt = store.load_checkpoint()
    generations = int(store.meta.get("generations", 0))
    if ckpt is None:
        saved = ("no checkpoint yet (the first is written when generation 0 ends); a resume draws generation 0 "
                 "again and trains only the genomes the journal does not hold")
    elif int(ckpt["generation"]) >= generations:
        saved = (f"checkpoint of generation {ckpt['generation']}, the last; a resume trades the front on the "
                 "holdout")
    else:
        saved = (f"checkpoint of generation {ckpt['generation']}; a resume continues with generation "
                 f"{int(ckpt['generation']) + 1} and trains only the genomes the journal does not hold")
    resume = f"python -m evo run --resume {shlex.quote(str(store.path))}"
    if args.workers > 1:
        resume += f" --workers {args.workers}"
    if args.scheduler:
        resume += f" --scheduler {shlex.quote(args.scheduler)}"
    return (f"interrupted by {what}. Saved in {store.path}: journal.jsonl with {n} evaluation{'s' * (n != 1)}; "
            f"{saved}.\ncontinue with: {resume}")


def _run(args: argparse.Namespace, console, opened: dict) -> int:
    from evo.config import check_device
    from evo.search.store import RunStore
    from experiments import load_budget

    if args.resume:
        store = RunStore.open(Path(args.resume), writable=True)
        opened["store"] = store
        meta = store.meta
        budget = budget_of(meta)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else int(meta["generations"])
        if generations != meta["generations"]:
            store.update_meta(generations=generations)
        source = meta.get("source", {})
        instruments = meta.get("instruments") or [{"data": meta["data"], "data_hash": meta["data_hash"]}]
        loaded = [load_run_data(i["data"], budget, i["data_hash"], **source) for i in instruments]
        seed = int(meta["seed"])
    else:
        budget = load_budget(args.budget)
        device = check_device(budget)
        generations = args.generations if args.generations is not None else budget.ga.generations
        # Bad input fails here, before any run directory exists.
        source = {"fmt": args.format, "interval": args.interval, "period": args.period}
        specs = args.data or [None]
        if len(set(map(str, specs))) != len(specs):
            from evo.errors import ConfigError

            raise ConfigError(f"--data names the same source twice: {specs}")
        loaded = [load_run_data(spec, budget, **source) for spec in specs]
        seed = args.seed
        ds, pools = loaded[0][0], _pools(loaded)
        seeds = _seed_genomes(_read_seed_files(args.seed_genome), pools)
        out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{budget.name}"
        import evo
        import features

        store = RunStore.create(out, {
            "budget": budget.to_dict(), "data": specs[0], "data_label": ds.label, "data_hash": ds.data_hash,
            "instruments": [{"data": spec, "label": d.label, "data_hash": d.data_hash, "n_bars": d.n_bars}
                            for spec, (d, _, _) in zip(specs, loaded)] if len(specs) > 1 else None,
            "n_bars": ds.n_bars, "seed": seed, "generations": generations, "device": device,
            "evo_version": evo.__version__, "catalog_version": features.CATALOG_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pools": {"a": list(pools.a), "b": list(pools.b)},
            "holdout": None if loaded[0][1] is None else {"start": loaded[0][1].start, "end": loaded[0][1].end,
                                                          "fraction": budget.evaluate.holdout_fraction},
            "baselines": _buy_and_hold(ds, budget),
            "seed_genomes": {g.key(): {"name": name, "genome": g.to_dict()} for name, g in seeds},
            "optimizer": args.optimizer,
            "source": source,
            "objectives": _objective_names(args.objectives),
            "hardware": _hardware_meta(args),
        })
        opened["store"] = store
    if args.resume:
        seeds = _seed_genomes(store.meta.get("seed_genomes", {}), _pools(loaded))
    datasets = [d for d, _, _ in loaded]
    holdouts = [h for _, h, _ in loaded]
    ds = datasets[0] if len(datasets) == 1 else datasets
    data_text = ", ".join(f"{d.label} ({d.n_bars} bars searched + {held} held out)"
                          for (d, _, held) in loaded)
    console.print(f"[bold]evo run[/] {store.path}  budget={budget.name} device={device} "
                  f"data={data_text} generations={generations} seed={seed}")
    if seeds and budget.search.threshold_mode == "quantile":
        console.print(f"note: budget {budget.name} reads a genome's threshold as a quantile level (search.threshold_mode "
                      f"= \"quantile\"): seed genome {', '.join(repr(n) for n, _ in seeds)} trades above that quantile "
                      "of its own validation scores, not above an absolute p(up); to judge it exactly as written, use a "
                      "budget with threshold_mode = \"probability\"", highlight=False, markup=False)
    single_thread_torch()
    limit_s = parse_duration(args.time_limit) if args.time_limit else None
    from evo.evaluation.evaluate import study_storage_url
    from evo.search.tasks import EvalContext

    ctx = EvalContext(ds=ds, budget=budget, seed=seed, device=device, study_storage=study_storage_url(store.path),
                      hardware=_hardware(store.meta.get("hardware")))
    _search(store, ctx, generations, console, [g for _, g in seeds],
            optimizer=store.meta.get("optimizer", "nsga2"), time_limit_s=limit_s,
            objective_names=tuple(store.meta.get("objectives") or ("sharpe", "drawdown")),
            workers=args.workers, scheduler=args.scheduler)
    if all(h is not None for h in holdouts):
        _trade_holdout(store, holdouts, budget, seed, device, console)
    from evo.commands.front import print_front

    print_front(store, as_json=False, top=None)
    return 0


def _read_seed_files(paths: list[str]) -> dict:
    from evo.genome import load_genome_file

    out = {}
    for path in paths:
        for name, g in load_genome_file(Path(path)):
            out[g.key()] = {"name": name, "genome": g.to_dict()}
    return out


def _pools(loaded):
    from evo.evaluation.evaluate import shared_pools

    return shared_pools([d for d, _, _ in loaded])


def _seed_genomes(entries: dict, pools) -> list:
    """The seed genomes as (name, Genome), checked against the data's feature pools."""
    from evo.errors import ConfigError
    from evo.genome import Genome

    seeds = []
    for entry in entries.values():
        g = Genome.from_dict(entry["genome"])
        for model, pool in (("model_a", pools.a), ("model_b", pools.b)):
            unknown = [f for f in getattr(g, model).features if f not in pool]
            if unknown:
                raise ConfigError(f"seed genome {entry['name']!r}: {model} uses features this data cannot "
                                  f"give it: {unknown} (see python -m evo features --list)")
        seeds.append((entry["name"], g))
    return seeds


def _buy_and_hold(ds, budget) -> dict:
    """Buy-and-hold on the walk-forward test span, with the same costs (the holdout's is added
    when the holdout is traded)."""
    from evo.evaluation.evaluate import buy_and_hold, fold_layout

    folds = fold_layout(ds, budget)
    span = ds.bars.iloc[folds[0].test[0]: folds[-1].test[1] + 1]
    return {"buy_and_hold": {"walk_forward_oos": buy_and_hold(span, budget, ds.periods_per_year)}}


def _trade_holdout(store, holdouts, budget, seed, device, console) -> None:
    """After the last generation: unseal the holdout and trade each front member on it once
    (on every instrument's holdout when several were searched)."""
    from dataclasses import replace as dc_replace

    from evo.evaluation.evaluate import buy_and_hold, evaluate_holdouts
    from evo.genome import Genome
    from evo.search.objectives import pareto_front

    for h in holdouts:
        h.unseal()
    holdout = holdouts[0]
    full = holdout.dataset
    baselines = dict(store.meta.get("baselines", {}))
    bh = dict(baselines.get("buy_and_hold", {}))
    if "holdout" not in bh:
        bh["holdout"] = buy_and_hold(full.bars.iloc[holdout.cut:], budget, full.periods_per_year)
        store.update_meta(baselines={**baselines, "buy_and_hold": bh})
    records = store.records()
    names = tuple(store.meta.get("objectives") or ("sharpe", "drawdown"))
    members = [r for r in pareto_front(records.values(), names) if r.result.get("holdout") is None]
    seeds = [records[k] for k in store.meta.get("seed_genomes", {}) if k in records and records[k].ok
             and records[k].result.get("holdout") is None]
    for i, rec in enumerate(members + seeds):
        raise_if_pending()
        console.print(f"holdout {i + 1}/{len(members) + len(seeds)}: training {rec.key[:8]} on the bars before "
                      f"{holdout.start[:10]} and trading it on {holdout.start[:10]}..{holdout.end[:10]}")
        result = dict(rec.result)
        result["holdout"] = evaluate_holdouts(Genome.from_dict(rec.genome), result, holdouts, budget,
                                              seed=seed, device=device)
        store.append(dc_replace(rec, result=result))


def _objective_names(text: str) -> list[str]:
    from evo.search.objectives import fitness_class

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    fitness_class(names)  # raises ConfigError for an unknown or incomplete list
    return list(names)


def _hardware_meta(args) -> dict | None:
    """The hardware limits as stored in run.json (the profile itself, so a resume needs no file)."""
    import json

    from evo.errors import ConfigError

    if not (args.target or args.max_latency_ms or args.max_params):
        return None
    profile = None
    if args.target:
        try:
            profile = json.loads(Path(args.target).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--target {args.target}: not a readable profile ({exc})") from None
    if profile is not None:
        from evo.search.hardware import HardwareProfile

        HardwareProfile.from_dict(profile, source=args.target)  # a bad profile fails now, not mid-run
    if args.max_latency_ms and profile is None:
        raise ConfigError("--max-latency-ms needs --target PROFILE.json (made by python -m evo calibrate)")
    return {"profile": profile, "max_latency_ms": args.max_latency_ms, "max_params": args.max_params}


def _hardware(meta: dict | None):
    from evo.search.tasks import Hardware

    return None if not meta else Hardware(**meta)


def parse_duration(text: str) -> float:
    """Seconds in ``8h``, ``45m``, ``90s``, ``1h30m`` or a plain number of seconds."""
    import re

    from evo.errors import ConfigError

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise ConfigError(f"--time-limit {text!r}: use a duration such as 8h, 45m, 1h30m or 600")
    h, m, sec = (float(x) if x else 0.0 for x in parts.groups())
    return h * 3600 + m * 60 + sec


def _search(store, ctx, generations, console, seed_genomes=(), *, optimizer="nsga2",
            time_limit_s: float | None = None, objective_names=("sharpe", "drawdown"),
            workers: int = 1, scheduler: str | None = None) -> None:
    """Run the search in ``ctx`` (an :class:`evo.search.tasks.EvalContext`) until its termination
    (``generations``, and ``time_limit_s`` if given) says done; the same termination's progress
    fraction draws the bar."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from evo.search.ga import Search
    from evo.search.parallel import make_map
    from evo.search.termination import AnyOf, MaxGenerations, TimeLimit

    limit = TimeLimit(time_limit_s) if time_limit_s is not None else None
    termination = MaxGenerations(generations) if limit is None else AnyOf(MaxGenerations(generations), limit)
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[detail]}")]
    with Progress(*columns, console=console, transient=False) as bar:
        total = bar.add_task("search", total=1.0, detail="")
        search = None

        def progress(event: dict) -> None:
            raise_if_pending()   # a signal whose exception was swallowed (e.g. in a GC callback)
            kind = event["kind"]
            if kind == "generation":
                bar.update(total, description=f"generation {event['generation']}/{generations}")
            elif kind == "detail":
                bar.update(total, detail=event["message"])
            elif kind == "genome":
                rec = event["record"]
                if rec.ok:
                    r = rec.result
                    bar.update(total, detail=f"{rec.key[:8]} sharpe {r['sharpe']:+.2f} dd {r['max_drawdown']:.1%} "
                                             f"trades {r['trades']}")
                else:
                    bar.update(total, detail=f"{rec.key[:8]} failed: {rec.error[:60]}")
            if search is not None and kind in ("genome", "checkpoint"):
                bar.update(total, completed=termination.progress(search))

        map_fn = None
        if workers > 1 or scheduler:
            map_fn = make_map(ctx, workers=workers, scheduler=scheduler,
                              progress=lambda msg: progress({"kind": "detail", "message": msg}))
        search = Search(ctx, store, progress=progress, seed_genomes=seed_genomes, optimizer=optimizer,
                        objective_names=tuple(objective_names), map_fn=map_fn)
        bar.update(total, completed=termination.progress(search))
        try:   # Ctrl-C / SIGTERM (evo.commands._interrupts.Interrupted) leaves through here to main
            search.run(termination, should_stop=lambda: bool(raise_if_pending()))
            if limit is not None and limit.reached and search.generation < generations:
                console.print(f"time limit reached after generation {search.generation}: stopping with its front")
            if ctx.budget.ga.rescore:
                bar.update(total, description=f"re-scoring the front with {ctx.budget.ga.rescore} fresh seeds")
                search.rescore_front()
            raise_if_pending()
        finally:
            if map_fn is not None:
                map_fn.close()


# ---------------------------------------------------------------------------------------------
# front
