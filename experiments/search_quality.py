"""Search-quality experiments: optimisers on the same evaluation budget, and multi-fidelity
(successive halving) against full fidelity on the same wall time. Real searches (real xLSTM
training and vectorbt backtests) on the demo data shipped with evo (NVIDIA daily), smoke-sized
so each comparison takes minutes on a busy 2-core CPU::

    python -m experiments.search_quality --out docs/experiments/

writes ``optimizers.json`` and ``multifidelity.json`` there, each::

    {"title": ..., "command": ..., "when": ..., "machine": ..., "rows": [{column: value}], "notes": [...]}

(a) ``optimizers``: NSGA-II, random search and nevergrad's NGOpt (``--optimizer``), each with
the same population and generations (the same number of genome evaluations), for each of
``--seeds`` run seeds: the hypervolume of the run's Pareto front against the fixed reference
(Sharpe -3, drawdown 100 %), the best walk-forward Sharpe on the front, wall time.

(b) ``multifidelity``: full-fidelity evaluation vs successive halving (``ga.halving_eta`` 3)
for the same wall time: genomes judged (at any fidelity) per hour and the hypervolume reached
by the end of the wall time (full-fidelity results only).

Survivor re-evaluation is off in both (``ga.reevaluate = 0``), so every evaluation is a new
genome and the evaluation counts compare directly. The numbers are from one small data set and a
handful of runs: they show the machinery and its costs, not a general ranking of optimisers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BARS = 1500          # the last 1500 NVDA daily bars (2009-2014 or so)

SEARCH = {"embedding_dim": [8, 16], "num_blocks": [1, 2], "num_heads": [1, 2, 4], "seq_len": [8, 12, 16],
          "horizon": [1, 3, 5], "threshold": [0.36, 0.6], "max_features_a": 6, "max_features_b": 5}
TRAIN = {"max_epochs": 3, "patience": 2, "max_train_windows": 600, "lr_trials": 1, "lr_trial_epochs": 1}
EVALUATE = {"folds": 2, "min_trades": 3, "risk_trials": 6, "holdout_fraction": 0.0}

# Part (b) trains like the `cpu` preset (more epochs and windows, 3 folds), where training is most of
# a genome's time, as on the overnight search the multi-fidelity target is about.
FIDELITY_TRAIN = {"max_epochs": 6, "patience": 2, "max_train_windows": 1500, "lr_trials": 2, "lr_trial_epochs": 1}
FIDELITY_EVALUATE = {"folds": 3, "min_trades": 3, "risk_trials": 10, "holdout_fraction": 0.0}

QUICK_TRAIN = {"max_epochs": 1, "patience": 1, "max_train_windows": 300, "lr_trials": 1, "lr_trial_epochs": 1}


def budget(*, population: int, generations: int, halving_eta: int = 1, quick: bool = False, heavy: bool = False):
    from evo.config import budget_from_dict

    train, evaluate = (FIDELITY_TRAIN, FIDELITY_EVALUATE) if heavy else (TRAIN, EVALUATE)
    return budget_from_dict("search-quality", {
        "search": SEARCH if not quick else {**SEARCH, "embedding_dim": [8], "num_blocks": [1, 1]},
        "train": train if not quick else QUICK_TRAIN,
        "evaluate": evaluate if not quick else {**EVALUATE, "risk_trials": 2},
        "ga": {"population": population, "generations": generations, "halving_eta": halving_eta, "reevaluate": 0},
    })


def dataset(b, bars: int = BARS):
    from evo.data import load_bars
    from evo.evaluation.dataset import prepare_dataset

    frame, label = load_bars(None)
    return prepare_dataset(frame.iloc[-bars:].copy(), f"{label} (last {bars} bars)", b)


def run_one(ds, b, *, optimizer: str, seed: int, generations: int, time_limit_s: float | None = None) -> dict[str, Any]:
    """One search in a temporary run directory: its figures, and (elapsed s, hypervolume) after
    each generation."""
    from evo.search.ga import Search
    from evo.search.objectives import pareto_front
    from evo.search.store import RunStore
    from evo.search.tasks import EvalContext

    curve: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", {"budget": b.to_dict()})
        t0 = time.perf_counter()

        def progress(event: dict) -> None:
            if event["kind"] == "checkpoint":
                curve.append((round(time.perf_counter() - t0, 1), round(float(event["hypervolume"]), 4)))

        search = Search(EvalContext(ds, b, seed), store, optimizer=optimizer, progress=progress)
        stop: Callable[[], bool] = (lambda: False) if time_limit_s is None else \
            (lambda: time.perf_counter() - t0 >= time_limit_s)
        search.run(generations, should_stop=stop)
        wall = time.perf_counter() - t0
        journal = list(store.iter_records())
        front = pareto_front(search.records.values())
    return {
        "wall_s": round(wall, 1), "generations": search.generation + 1,
        "evaluations": sum(1 for r in journal if r.fidelity == "full"),
        "low_fidelity": sum(1 for r in journal if r.fidelity == "low"),
        "judged": len({r.key for r in journal}),
        "failed": sum(1 for r in journal if not r.ok),
        "hypervolume": round(search.hypervolume(), 4),
        "best_sharpe": round(max(r.result["sharpe"] for r in front), 3) if front else None,
        "front_size": len(front), "curve": curve,
    }


def compare_optimizers(*, seeds: int = 2, population: int = 4, generations: int = 3,
                       quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """(a): the three optimisers on the same number of evaluations, ``seeds`` run seeds each."""
    b = budget(population=population, generations=generations, quick=quick)
    ds = dataset(b)
    rows = []
    for seed in range(seeds):
        for optimizer in ("nsga2", "random", "ngopt"):   # interleaved: each seed's three meet the same load
            r = run_one(ds, b, optimizer=optimizer, seed=seed, generations=generations)
            log(f"optimizer {optimizer} seed {seed}: HV {r['hypervolume']:.3f} best Sharpe {r['best_sharpe']} "
                f"{r['evaluations']} evaluations in {r['wall_s']:.0f} s")
            rows.append({"optimizer": optimizer, "seed": seed, "evaluations": r["evaluations"],
                         "failed": r["failed"], "hypervolume": r["hypervolume"], "best_sharpe": r["best_sharpe"],
                         "front_size": r["front_size"], "wall_s": r["wall_s"]})
    notes = [f"data: {ds.label}, {ds.n_bars} bars; {b.evaluate.folds} walk-forward folds, no holdout",
             f"population {population}, {generations} generations after the first: "
             f"{population * (generations + 1)} genome evaluations per run (fewer if an optimiser proposed "
             "duplicates), one training seed each, no re-evaluation",
             "hypervolume: area dominated by the run's front in (Sharpe, max drawdown) up to the reference "
             "(Sharpe -3, drawdown 100 %): larger is better"]
    for optimizer in ("nsga2", "random", "ngopt"):
        own = [r for r in rows if r["optimizer"] == optimizer]
        hv = sum(r["hypervolume"] for r in own) / len(own)
        sharpes = [r["best_sharpe"] for r in own if r["best_sharpe"] is not None]
        sh = f"{sum(sharpes) / len(sharpes):+.2f}" if sharpes else "n/a (empty fronts)"
        notes.append(f"{optimizer}: mean hypervolume {hv:.3f}, mean best Sharpe {sh} over {len(own)} seeds")
    return {"title": "Optimisers on the same evaluation budget (hypervolume of the walk-forward front)",
            "rows": rows, "notes": notes}


def compare_fidelity(*, wall_s: float = 240.0, population: int = 4, eta: int = 3, seed: int = 0,
                     quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """(b): full fidelity vs successive halving, each stopped after the generation that crosses
    ``wall_s``; the hypervolume compared is the one reached within ``wall_s``."""
    rows = []
    for name, e in (("full fidelity", 1), (f"halving eta {eta}", eta)):
        b = budget(population=population, generations=1000, halving_eta=e, quick=quick, heavy=True)
        ds = dataset(b)
        r = run_one(ds, b, optimizer="nsga2", seed=seed, generations=1000, time_limit_s=wall_s)
        within = [hv for t, hv in r["curve"] if t <= wall_s]
        per_hour = r["judged"] / r["wall_s"] * 3600.0
        log(f"{name}: {r['judged']} genomes judged in {r['wall_s']:.0f} s ({per_hour:.0f}/h), "
            f"HV within {wall_s:.0f} s {within[-1] if within else 0.0:.3f}")
        rows.append({"mode": name, "halving_eta": e, "wall_s": r["wall_s"], "generations": r["generations"],
                     "judged": r["judged"], "full_evaluations": r["evaluations"], "low_fidelity": r["low_fidelity"],
                     "judged_per_hour": round(per_hour, 1), "full_per_hour": round(r["evaluations"] / r["wall_s"]
                                                                                   * 3600.0, 1),
                     "hypervolume_at_wall": within[-1] if within else 0.0, "hypervolume_end": r["hypervolume"],
                     "best_sharpe": r["best_sharpe"], "curve": r["curve"]})
    full, half = rows
    ratio = half["judged_per_hour"] / full["judged_per_hour"] if full["judged_per_hour"] else float("nan")
    tb = b.train
    notes = [f"training like the cpu preset: {tb.max_epochs} epochs, {tb.max_train_windows} windows, "
             f"{b.evaluate.folds} folds, {tb.lr_trials} lr trials, {b.evaluate.risk_trials} risk trials",
             f"population {population}; halving screens {population * eta} genomes a generation on one fold "
             f"with 1/{eta} of the epochs and training windows (lr 1e-3, no risk tuning, one seed: "
             f"evo.search.tasks.low_fidelity_budget) and trains the best {population} fully; same seed {seed}, same data, "
             "nsga2",
             f"genomes judged per hour, halving / full: {ratio:.2f}x (target >= 3x)",
             f"hypervolume within {wall_s:.0f} s: full {full['hypervolume_at_wall']:.3f}, "
             f"halving {half['hypervolume_at_wall']:.3f} (target: halving >= full)",
             "each run stops after the generation that crosses the wall time; the hypervolume compared is the "
             "last one logged within it; curve = (elapsed s, hypervolume) after each generation"]
    return {"title": "Multi-fidelity: successive halving vs full fidelity on the same wall time", "rows": rows,
            "notes": notes, "ratio_judged_per_hour": round(ratio, 2)}


def _corr(value) -> float | None:
    """A correlation, or None where it is undefined (one side constant: e.g. no screen traded)."""
    import math

    return None if value is None or not math.isfinite(float(value)) else round(float(value), 3)


def fidelity_ranks(*, n_genomes: int = 24, markets: tuple[str, ...] = ("pattern", "indicator", "both"),
                   seed: int = 0, eta: int = 3, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Do successive halving's low-fidelity screens rank genomes as full evaluations do (issue 17
    item 5)? On each planted market of :mod:`experiments.markets` (seed ``1000 + seed``, 2,000
    bars) with the search study's budget, in both threshold modes: ``n_genomes`` random genomes
    evaluated at full fidelity and at the screen's (:func:`evo.search.tasks.low_fidelity_budget`,
    ``eta``); Spearman and Kendall correlations of their walk-forward Sharpe ratios and of their
    Pareto ranks (``moocore.pareto_rank`` on Sharpe and drawdown), the share of the full top
    third the screen's top third keeps (a third: the share eta 3 promotes), and seconds per genome."""
    import warnings
    from dataclasses import replace

    import moocore
    import numpy as np
    from scipy.stats import ConstantInputWarning, kendalltau, spearmanr

    warnings.filterwarnings("ignore", category=ConstantInputWarning)   # reported as None

    from evo.errors import GenomeError
    from evo.evaluation.dataset import prepare_run_data
    from evo.genome import random_genome
    from evo.search.objectives import objectives
    from evo.search.tasks import EvalContext, EvalTask, evaluate_task
    from experiments.markets import make_market
    from experiments.search_study import study_budget

    rows = []
    for arm in ("nsga2", "nsga2-q"):
        b = study_budget(quick, arm)
        b = replace(b, ga=replace(b.ga, halving_eta=eta))
        for market in markets:
            m = make_market(market, n_bars=700 if quick else 2000, seed=1000 + seed)
            ds, _ = prepare_run_data(m.bars, f"synthetic:{market}:{seed}", b)
            ctx = EvalContext(ds, b, seed)
            rng = np.random.default_rng(seed)
            genomes = [random_genome(b.search, ds.pools, rng) for _ in range(n_genomes)]
            if not rows:   # first-use costs (vectorbt's compile, autograd, nevergrad) paid untimed
                evaluate_task(EvalTask(genomes[0], 0), ctx)
            full, low, secs = [], [], {"full": 0.0, "low": 0.0}
            for g in genomes:
                pair = []
                for fidelity in ("full", "low"):
                    t0 = time.perf_counter()
                    rec = evaluate_task(EvalTask(g, 0, fidelity), ctx)
                    secs[fidelity] += time.perf_counter() - t0
                    pair.append(objectives(rec) if rec.ok else None)
                if None not in pair:
                    full.append(pair[0])
                    low.append(pair[1])
            f, lo = np.array(full), np.array(low)
            if len(f) < 4:
                raise GenomeError(f"{market}: only {len(f)} genomes evaluated at both fidelities")
            rank_f = moocore.pareto_rank(np.column_stack([-f[:, 0], f[:, 1]]))
            rank_l = moocore.pareto_rank(np.column_stack([-lo[:, 0], lo[:, 1]]))
            top = max(1, len(f) // eta)
            best_f, best_l = set(np.argsort(-f[:, 0])[:top]), set(np.argsort(-lo[:, 0])[:top])
            row = {"market": market, "thresholds": "quantile" if arm.endswith("-q") else "probability",
                   "genomes": len(f), "spearman_sharpe": _corr(spearmanr(f[:, 0], lo[:, 0]).statistic),
                   "kendall_sharpe": _corr(kendalltau(f[:, 0], lo[:, 0]).statistic),
                   "spearman_pareto_rank": _corr(spearmanr(rank_f, rank_l).statistic),
                   "low_untraded": int(np.sum(lo[:, 0] == 0.0)), "full_untraded": int(np.sum(f[:, 0] == 0.0)),
                   "top_third_kept": f"{len(best_f & best_l)}/{top}",
                   "full_s_per_genome": round(secs["full"] / n_genomes, 2),
                   "low_s_per_genome": round(secs["low"] / n_genomes, 2),
                   "cost_ratio": round(secs["full"] / max(secs["low"], 1e-9), 2)}
            rows.append(row)
            log(str(row))
    return {"title": "Multi-fidelity: do low-fidelity screens rank genomes like full evaluations?", "rows": rows,
            "notes": [f"{n_genomes} random genomes per market and threshold mode (seed {seed}), the search study's "
                      f"budget; screen = one fold, epochs and training windows / {eta}, lr 1e-3, no lr study, no risk "
                      "tuning (the genome's own threshold), one seed (evo.search.tasks.low_fidelity_budget); "
                      "correlations of walk-forward Sharpe and of Pareto rank (moocore.pareto_rank on Sharpe and "
                      "drawdown) between the two (None: one side constant); low_untraded/full_untraded: genomes with no trade "
                      "(Sharpe 0) at each fidelity; top_third_kept: of the full evaluation's best third by Sharpe, how "
                      "many the screen's best third holds (chance: a third)"]}


def _machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
            f"load average {os.getloadavg()[0]:.2f}")


def _write(out: Path, name: str, payload: dict[str, Any], command: str, started: str, load_before: float) -> None:
    payload = {"title": payload["title"], "command": command, "when": started,
               "machine": f"{_machine()} (load {load_before:.2f} at the start)",
               **{k: v for k, v in payload.items() if k != "title"}}
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")


def bench_multifidelity(quick: bool = False) -> dict[str, Any]:
    """Bench item 2 (multi-fidelity): the figures of ``docs/experiments/multifidelity.json``, or
    with ``quick=True`` of a fresh ~1-minute comparison on a tiny budget. Returns::

        {"judged_per_hour_full": float, "judged_per_hour_halving": float, "ratio": float,
         "hypervolume_full": float, "hypervolume_halving": float, "wall_s": float,
         "eta": int, "source": str}
    """
    if quick:
        import torch

        torch.set_num_threads(1)
        res = compare_fidelity(wall_s=30.0, population=2, eta=3, quick=True, log=lambda msg: None)
        source = "quick run (tiny budget, 30 s each)"
    else:
        path = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "multifidelity.json"
        res = json.loads(path.read_text())
        source = str(path)
    full, half = res["rows"][0], res["rows"][1]
    return {"judged_per_hour_full": full["judged_per_hour"], "judged_per_hour_halving": half["judged_per_hour"],
            "ratio": half["judged_per_hour"] / full["judged_per_hour"] if full["judged_per_hour"] else float("nan"),
            "hypervolume_full": full["hypervolume_at_wall"], "hypervolume_halving": half["hypervolume_at_wall"],
            "wall_s": max(full["wall_s"], half["wall_s"]), "eta": half["halving_eta"], "source": source}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.search_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/experiments/")
    p.add_argument("--part", choices=("all", "optimizers", "multifidelity", "ranks"), default="all")
    p.add_argument("--genomes", type=int, default=24, help="random genomes per market, part ranks")
    p.add_argument("--seeds", type=int, default=2, help="run seeds per optimiser")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--generations", type=int, default=3, help="generations after the first, part (a)")
    p.add_argument("--wall", type=float, default=240.0, help="seconds per side, part (b)")
    p.add_argument("--eta", type=int, default=3, help="halving eta, part (b)")
    p.add_argument("--quick", action="store_true", help="tiny budget (minutes in all): checks the script")
    args = p.parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)   # one thread: as evo's workers, and fair on a shared machine
    out = Path(args.out)
    command = "python -m experiments.search_quality " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.part in ("all", "optimizers"):
        started, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
        res = compare_optimizers(seeds=args.seeds, population=args.population, generations=args.generations,
                                 quick=args.quick)
        _write(out, "optimizers.json", res, command, started, load)
    if args.part in ("all", "multifidelity"):
        started, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
        res = compare_fidelity(wall_s=args.wall, population=args.population, eta=args.eta, quick=args.quick)
        _write(out, "multifidelity.json", res, command, started, load)
    if args.part == "ranks":   # not in "all": it is part of the search study's evidence (issue 17 item 5)
        started, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
        res = fidelity_ranks(n_genomes=args.genomes, eta=args.eta, quick=args.quick)
        _write(out, "fidelity_ranks.json", res, command, started, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
