"""Do multi-timeframe and regime genes earn their cost? The same search, with and without them.

    OMP_NUM_THREADS=1 python -m experiments.multitimeframe --out docs/experiments/

On each data file (the 1-minute index future and NVIDIA daily from ``../shared/data``) the same
small NSGA-II search runs twice with the same seed, budget and walk-forward layout:

- ``single``: today's space: every model reads the base timeframe only, no regime input;
- ``open``: the timeframe genes open (``x1, x5, x15, x60`` on minute data, ``x1, x5`` (week) on
  daily), both fusions, and the regime gene (``none``, ``features``, ``gate``).

Both searches share one :class:`evo.evaluation.dataset.Dataset` (prepared with the open space, so the first
decision bar leaves room for the slowest timeframe's warm-up): same folds, same test bars, same
holdout. Per (data, space) the JSON reports the hypervolume of the front (Sharpe up, drawdown
down; fixed reference point), the best walk-forward Sharpe with its deflated Sharpe (DSR, over
every genome that search evaluated), that genome's holdout Sharpe (trained on the bars before
the holdout, traded once), its genes, and the wall time (search + holdout). A tiny budget, sized
for about 20 minutes on a loaded 2-core CPU: it measures cost honestly and skill only weakly. Run
it with ``OMP_NUM_THREADS=1`` (one torch thread, as the search workers use) for comparable times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

DATA = (("INDEXFUT_1m_2006.csv", (1, 5, 15, 60)), ("NVDA_1d_1999_2014.csv", (1, 5)))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

BUDGET: dict[str, Any] = {
    "description": "multi-timeframe experiment: smoke-like training, population 6, 2 generations",
    "search": {"embedding_dim": [8, 16], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8, 12],
               "horizon": [1, 3], "threshold": [0.36, 0.6], "max_features_a": 5, "max_features_b": 5},
    "train": {"max_epochs": 2, "patience": 1, "max_train_windows": 400, "lr_trials": 1, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "test_fraction": 0.3, "val_fraction": 0.15, "holdout_fraction": 0.2,
                 "min_trades": 3, "risk_trials": 8},
    "ga": {"population": 6, "generations": 2},
}


def budgets(timeframes: tuple[int, ...], quick: bool = False):
    """(single, open) budgets: identical but for the timeframe, fusion and regime genes
    (``quick``: population 2, no generation after the first, for a smoke check)."""
    from evo.config import budget_from_dict

    ga = {"population": 2, "generations": 0} if quick else BUDGET["ga"]
    opened = budget_from_dict("multitimeframe-open", {
        **BUDGET, "ga": ga,
        "search": {**BUDGET["search"], "timeframes": list(timeframes), "fusion": ["concat", "attention"],
                   "regime": ["none", "features", "gate"]}})
    single = replace(opened, name="multitimeframe-single",
                     search=replace(opened.search, timeframes=(1,), fusion=("concat",), regime=("none",)))
    return single, opened


def run_search(ds, holdout, budget, *, seed: int, workdir: Path) -> dict[str, Any]:
    """One search on ``ds``; its front's hypervolume, best walk-forward member, DSR and holdout."""
    from evo.evaluation.evaluate import evaluate_holdouts
    from evo.genome import Genome
    from evo.reporting.front import selection_bias
    from evo.search.ga import Search
    from evo.search.objectives import pareto_front
    from evo.search.store import RunStore
    from evo.search.tasks import EvalContext

    t0 = time.perf_counter()
    store = RunStore.create(workdir, {"budget": budget.to_dict(), "data_label": ds.label, "seed": seed})
    search = Search(EvalContext(ds, budget, seed), store)
    search.run(budget.ga.generations)
    records = search.records
    ok = [r for r in records.values() if r.ok]
    front = pareto_front(records.values())
    bias = selection_bias(records.values())
    dsr, pbo, trials = bias.dsr, bias.pbo, bias.trials
    best = max(front or ok, key=lambda r: r.result["sharpe"]) if ok else None
    row: dict[str, Any] = {"evaluated": len(records), "failed": len(records) - len(ok), "trials": trials,
                           "hypervolume": round(search.hypervolume(), 4), "front_size": len(front),
                           "pbo": None if pbo is None else round(pbo, 3)}
    multi = [r for r in ok if any(len(r.genome[m].get("timeframes", [1])) > 1 for m in ("model_a", "model_b"))]
    row["multi_timeframe_genomes"] = len(multi)
    row["regime_genomes"] = sum(any(r.genome[m].get("regime", "none") != "none" for m in ("model_a", "model_b"))
                                for r in ok)
    if best is not None:
        g = Genome.from_dict(best.genome)
        holdout.unseal()
        hold = evaluate_holdouts(g, best.result, [holdout], budget, seed=seed)
        row.update({
            "best": best.key, "wf_sharpe": round(best.result["sharpe"], 3),
            "wf_max_drawdown": round(best.result["max_drawdown"], 3),
            "dsr": round(dsr[best.key], 3) if best.key in dsr else None,   # None: not meaningful
            "wf_trades": best.result["trades"], "test_span": [best.result["test_start"], best.result["test_end"]],
            "holdout_sharpe": round(hold["sharpe"], 3), "holdout_trades": hold["trades"],
            "genes": {m: {"timeframes": list(getattr(g, m).timeframes), "fusion": getattr(g, m).fusion,
                          "regime": getattr(g, m).regime} for m in ("model_a", "model_b")},
            "seconds_per_genome": round(sum(r.result.get("seconds", 0.0) for r in ok) / max(1, len(ok)), 1),
        })
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def run(out: Path, *, seed: int = 0, quick: bool = False) -> dict[str, Any]:
    from evo.data import load_bars
    from evo.evaluation.dataset import prepare_run_data

    rows = []
    load_start = _loadavg()
    started = time.perf_counter()
    _warm_up()
    with tempfile.TemporaryDirectory(prefix="evo-mtf-") as tmp:
        for name, timeframes in DATA:
            bars, label = load_bars(str(SHARED / name))
            single, opened = budgets(timeframes, quick)
            for space, budget in (("single", single), ("open", opened)):
                ds, holdout = prepare_run_data(bars, label, opened)  # one layout for both spaces
                logging.getLogger(__name__).info("%s, %s space", name, space)
                row = run_search(ds, holdout, budget, seed=seed, workdir=Path(tmp) / f"{name}-{space}")
                rows.append({"data": name, "space": space, "timeframes": list(budget.search.timeframes),
                             "fusion": list(budget.search.fusion), "regime": list(budget.search.regime),
                             "first_decision_bar": ds.first_bar, **row})
    payload = {
        "title": "Multi-timeframe and regime genes vs single-timeframe genomes (same search budget)",
        "command": "OMP_NUM_THREADS=1 python -m experiments.multitimeframe --out docs/experiments/",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"), "loadavg_start": load_start},
        "budget": BUDGET,
        "rows": rows,
        "notes": NOTES,
    }
    payload["machine"]["loadavg_end"] = _loadavg()
    payload["total_wall_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "multitimeframe.json").write_text(json.dumps(payload, indent=1) + "\n")
    return payload


NOTES = ("Population 6, two generations after the initial one (18 genomes per search), 2 walk-forward folds, "
         "2 epochs at most, one Optuna trial: a cost measurement with a weak reading of skill. "
         "Both spaces of a data file share the dataset, folds, test bars and holdout (prepared with the open "
         "space). hypervolume: front of (Sharpe, max drawdown) against the fixed reference point of evo.reporting.front; "
         "dsr: deflated Sharpe of the best walk-forward genome over that search's trials; holdout: that "
         "genome retrained on the bars before the holdout and traded once. wall_s: search + holdout.")


def _warm_up() -> None:
    """One untimed evaluation (numba, torch and xlstm first-call costs), so the first timed search
    does not pay them for the others."""
    import numpy as np

    from evo.data import load_bars
    from evo.evaluation.dataset import prepare_dataset
    from evo.evaluation.evaluate import evaluate_genome
    from evo.genome import random_genome

    _, opened = budgets((1, 5), quick=True)
    bars, label = load_bars(str(SHARED / DATA[1][0]))
    ds = prepare_dataset(bars.iloc[-1500:], label, opened)
    g = random_genome(opened.search, ds.pools, np.random.default_rng(1))
    evaluate_genome(g, ds, opened, seed=0)


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.multitimeframe", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/experiments"), help="folder for multitimeframe.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="population 2, one generation: a smoke check")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    payload = run(args.out, seed=args.seed, quick=args.quick)
    for r in payload["rows"]:
        print(f"{r['data']:<24} {r['space']:<7} HV {r['hypervolume']:.4f}  WF Sharpe {r.get('wf_sharpe')}  "
              f"DSR {r.get('dsr')}  HO Sharpe {r.get('holdout_sharpe')}  {r['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
