"""What did tuning the risk parameters on earlier test folds' bars add to the walk-forward Sharpe?

    OMP_NUM_THREADS=1 python -m experiments.risk_tuning --out docs/experiments/

The same fixed genomes (today's bot, ``experiments/seeds/todays_bot.toml``, and 5 random genomes of
the ``smoke`` space drawn with seed 0 from the features all three files give) are evaluated on
each shared data file (``../shared/data``, the search data before the ``smoke`` holdout) with one
training seed (0). Each genome is trained once per file; on those same predictions the
consensus/risk parameters are then tuned and traded twice:

- ``before``: the old joint rule, one set tuned on every fold's validation segment and used on
  every test fold (later folds' validation segments lie inside earlier test folds);
- ``after``: evo's rule, test fold k traded with parameters tuned on the validation segments that
  end a purge gap before it (folds 0..k; :mod:`evo.evaluation.risk`).

Both with the ``smoke`` risk budget (20 NGOpt trials, threshold and weight) and again with
``tune_stops`` (stop-loss and take-profit tuned too). ``change`` is ``after - before`` of the
walk-forward out-of-sample Sharpe (annualised, after costs); the models, folds and costs are
identical, so the difference is the rule alone.

A no-skill control runs the same comparison without training: AR(1) probabilities that know
nothing about the bars, on 30 random-walk series (the setting in which issue 15 found the old
rule +0.28 Sharpe better than honest tuning).

Measured cost: 17 minutes wall on a 2-core machine shared with other work (load 3.5-6.8); today's
bot on the 1-minute file alone takes 5 of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

DATA = ("NVDA_1d_1999_2014.csv", "ORCL_1d_1995_2014.csv", "INDEXFUT_1m_2006.csv")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SEEDS = Path(__file__).resolve().parent / "seeds"
N_RANDOM = 5
CONTROL_SERIES = 30

log = logging.getLogger(__name__)


def variants(budget) -> dict[str, Any]:
    """The smoke budget as is, and with stop-loss / take-profit tuned too."""
    return {"threshold_weight": budget,
            "tune_stops": replace(budget, evaluate=replace(budget.evaluate, tune_stops=True))}


def genomes(pools, budget) -> list[tuple[str, Any]]:
    from evo.genome import load_genome_file, random_genome

    out = list(load_genome_file(SEEDS / "todays_bot.toml"))
    rng = np.random.default_rng(0)
    out += [(f"random-{i}", random_genome(budget.search, pools, rng)) for i in range(N_RANDOM)]
    return out


def compare(g, ds, budget, wf, seed: int) -> dict[str, Any]:
    """Walk-forward Sharpe under the old joint rule and the per-fold rule, for each risk variant."""
    from evo.evaluation.evaluate import score_walk_forward

    row = {}
    for name, b in variants(budget).items():
        before = score_walk_forward(g, ds, b, wf, seed=seed, _joint=True)
        after = score_walk_forward(g, ds, b, wf, seed=seed)
        row[name] = {"before": before.sharpe, "after": after.sharpe, "change": after.sharpe - before.sharpe,
                     "trades_before": before.trades, "trades_after": after.trades,
                     "risk_folds_after": [{k: v for k, v in f.items() if k != "tuned_on"} for f in after.risk_folds]}
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in ("threshold_weight", "tune_stops"):
        ok = [r[name] for r in rows if name in r]
        if not ok:
            continue
        change = np.array([r["change"] for r in ok])
        out[name] = {"genomes": len(ok), "before_mean": float(np.mean([r["before"] for r in ok])),
                     "after_mean": float(np.mean([r["after"] for r in ok])), "change_mean": float(change.mean()),
                     "change_se": float(change.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1 else None,
                     "after_lower": int((change < 0).sum()), "after_higher": int((change > 0).sum())}
    return out


def summary_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (data, tuned parameters): the means the JSON's summaries hold, for the
    experiments table of ``docs/benchmarks.md`` (:func:`experiments.bench.render.experiment_sections`)."""
    parts = [("no-skill control (AR(1) probabilities, random walks)", payload["no_skill_control"]["summary"])]
    parts += [(name, f["summary"]) for name, f in payload["files"].items()]
    return [{"data": data, "tuned": tuned, "n": s["genomes"], "sharpe_before": s["before_mean"],
             "sharpe_after": s["after_mean"], "change": s["change_mean"], "change_se": s["change_se"],
             "after_higher": s["after_higher"], "after_lower": s["after_lower"]}
            for data, summary in parts for tuned, s in summary.items()]


def real_data(budget, seed: int) -> dict[str, Any]:
    from evo.data import load_bars
    from evo.errors import EvoError
    from evo.evaluation.dataset import prepare_run_data
    from evo.evaluation.evaluate import shared_pools, walk_forward_predictions

    datasets = []
    for name in DATA:
        bars, label = load_bars(str(SHARED / name))
        ds, _ = prepare_run_data(bars, label, budget)
        datasets.append((name, ds))
    chosen = genomes(shared_pools([ds for _, ds in datasets]), budget)
    files = {}
    for name, ds in datasets:
        rows = []
        for gname, g in chosen:
            t0 = time.perf_counter()
            row: dict[str, Any] = {"genome": gname, "key": g.key()}
            try:
                wf = walk_forward_predictions(g, ds, budget, seed=seed)
                row.update(compare(g, ds, budget, wf, seed))
            except EvoError as exc:
                row["error"] = str(exc)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            log.info("%s %s: %s", name, gname, {k: row[k].get("change") for k in row if isinstance(row[k], dict)})
            rows.append(row)
        files[name] = {"bars_searched": ds.n_bars, "rows": rows, "summary": summary(rows)}
    return {"genomes": [{"name": n, "key": g.key(), "genome": g.to_dict()} for n, g in chosen], "files": files}


def no_skill_control(budget, n_series: int = CONTROL_SERIES) -> dict[str, Any]:
    """The comparison on random walks with AR(1) no-skill probabilities (no training)."""
    from evo.evaluation.dataset import prepare_dataset
    from evo.evaluation.evaluate import WalkForward, fold_layout
    from evo.evaluation.risk import Segment
    from evo.genome import Genome, ModelGenes

    def probs(n, rng):
        z = np.zeros((n, 3))
        for t in range(1, n):
            z[t] = 0.9 * z[t - 1] + rng.normal(0.0, 0.3, 3)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    g = Genome(model_a=ModelGenes(("body_range",), 8, 1, 2, (), 0.0), model_b=ModelGenes(("rsi_14",), 8, 1, 2, (), 0.0),
               seq_len=8, horizon=1, consensus="weighted", threshold=0.4)
    rows = []
    # The layout (first decision bar, folds) of one prepared series; each series then swaps in its own
    # bars: scoring reads only the bars (the probabilities are given), so its features are not computed.
    layout = prepare_dataset(_random_walk(1500, np.random.default_rng(999)), "noise", budget)
    folds = fold_layout(layout, budget)
    for i in range(n_series):
        rng = np.random.default_rng(1000 + i)
        ds = replace(layout, bars=_random_walk(1500, rng), label=f"noise-{i}")
        ends = np.concatenate([np.arange(*f.test) for f in folds])
        y = np.full(len(ends), -1)
        wf = WalkForward(folds=folds, ends=ends, p_a=probs(len(ends), rng), p_b=probs(len(ends), rng), y_a=y, y_b=y,
                         lr_a=1e-3, lr_b=1e-3,
                         val_segments=[Segment(f.val[0], f.val[1], probs(f.n_val, rng), probs(f.n_val, rng))
                                       for f in folds])
        rows.append({"series": i, **compare(g, ds, budget, wf, seed=0)})
    return {"series": n_series, "bars": 1500, "summary": summary(rows),
            "rows": [{"series": r["series"], **{k: {"before": r[k]["before"], "after": r[k]["after"]}
                                                for k in ("threshold_weight", "tune_stops")}} for r in rows]}


def _random_walk(n: int, rng: np.random.Generator):
    import pandas as pd

    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 0.004, (2, n)))
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * (1 + wiggle[0]),
                         "low": np.minimum(open_, close) * (1 - wiggle[1]), "close": close,
                         "volume": rng.integers(1_000, 5_000, n).astype(float)},
                        index=pd.bdate_range("2000-01-03", periods=n, name="time"))


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def run(out: Path, *, seed: int = 0) -> dict[str, Any]:
    from experiments import load_budget

    budget = load_budget("smoke")
    started, load_start = time.perf_counter(), _loadavg()
    payload = {
        "title": "Risk parameters tuned per test fold on earlier validation rows vs jointly on all of them",
        "command": "OMP_NUM_THREADS=1 python -m experiments.risk_tuning --out docs/experiments/",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
                    "loadavg_start": load_start},
        "budget": "smoke", "training_seed": seed,
        "sharpe": "walk-forward out-of-sample, annualised, after costs; change = after (per fold) - before (joint)",
        "notes": NOTES,
        "no_skill_control": no_skill_control(budget),
        **real_data(budget, seed),
    }
    payload["rows"] = summary_rows(payload)
    payload["machine"]["loadavg_end"] = _loadavg()
    payload["total_wall_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "risk_tuning.json").write_text(json.dumps(payload, indent=1) + "\n")
    return payload


NOTES = ("Paired comparison: per file and genome the models are trained once (training seed 0) and both rules "
         "tune and trade the same predictions, so 'change' is the rule alone. A genome that trades under neither "
         "rule scores 0 before and after and still counts in the means (see trades_before / trades_after). "
         "change_se: standard error of the mean change over genomes (or control series). Smoke budget: 3 folds, "
         "20 NGOpt trials per tuning; the per-fold rule runs one tuning per fold.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.risk_tuning", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/experiments"), help="folder for risk_tuning.json")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for name in ("evo", "models", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    payload = run(args.out, seed=args.seed)
    print("no-skill control:", json.dumps(payload["no_skill_control"]["summary"]))
    for name, f in payload["files"].items():
        print(name, json.dumps(f["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
