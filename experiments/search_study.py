"""The search study (issue 17): does evo's search beat guessing, at equal wall time?

Arms, each given the same wall time per run (the search stops at the first generation boundary
after it, ``evo.search.termination.TimeLimit``):

- ``nsga2``, ``random``, ``ngopt``, ``tpe``: the four optimisers over the same genome space;
- ``bot``: today's bot (``experiments/seeds/todays_bot.toml``) alone, evaluated once (no search);
- with ``--arms``, the variants of :data:`VARIANTS`: noise handling (``nsga2-rescore``: the final
  front re-scored with 2 fresh seeds inside the same wall time and the member chosen on that;
  ``nsga2-reeval``: survivors gain a seed per generation survived; ``nsga2-pop8``: twice the
  population, no re-evaluation), quantile thresholds (``nsga2-q``, ``random-q``, ``ngopt-q``;
  compared with ``random-q``) and multi-fidelity (``nsga2-halving``, ``nsga2-halving-q``: successive
  halving, eta 3, whose screens rank by non-dominated sorting and crowding, MO-ASHA style).

Markets: the synthetic ones of :mod:`experiments.markets` (a planted edge in model A's pool, in
model B's, in both together, and pure noise), one fresh market per seed, and slices of the real
files in ``../shared/data``. Per run:

- the hypervolume of the final front **re-scored with fresh training seeds** (each of the best
  ``rescore_members`` front members trained again with ``rescore_seeds`` seeds never used by the
  search, its mean objectives taken), against the fixed reference (Sharpe -3, drawdown 100 %),
  beside the hypervolume of the search's own (noisy) scores;
- the chosen member, as a trader picks it: the front member with the best walk-forward Sharpe;
  whether it holds the planted features (exactly, or a feature of the same family: see
  :data:`experiments.markets.FAMILIES`); its holdout Sharpe and trade count (the untouched last
  20 %, traded once after the search); its deflated Sharpe (DSR over the run's trials);
- how often the planted features appear among the front and among each generation's genomes;
- the share of evaluated genomes that traded too little to enter the front.

Arms are compared per market with paired tests across seeds (the same seed gives every arm the
same market): wins of each arm over random search on the re-scored hypervolume, and a Wilcoxon
signed-rank p-value. Every run is appended to a JSONL file as it ends (a crash loses nothing;
``--resume`` skips finished runs); the summary goes to ``docs/experiments/search_study.json``,
rendered into ``docs/benchmarks.md`` by ``python -m evo bench``.

    python -m experiments.search_study                 # the full study (about 2 h on 2 cores)
    python -m experiments.search_study --quick         # about a minute: checks the machinery
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
OPTIMIZERS = ("nsga2", "random", "ngopt", "tpe")
ARMS = OPTIMIZERS + ("bot",)
QUANTILE = {"search": {"threshold": [0.5, 0.95], "threshold_mode": "quantile"}}
# Further arms (``--arms``): an optimiser with budget changes. Noise handling (item 3) at equal wall
# time: the final front re-scored with fresh seeds and the member chosen on that (the search
# stops at RESCORE_SHARE of the wall time to leave room for it), survivors re-evaluated with one
# more seed per generation survived, a population twice as large with no re-evaluation.
# Thresholds (item 4): quantiles of the pair's own validation scores instead of absolute levels.
# Multi-fidelity (item 5): successive halving inside each generation (eta 3), Pareto-ranked screens.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "nsga2-rescore": ("nsga2", {"ga": {"rescore": 2}}),
    "nsga2-reeval": ("nsga2", {"ga": {"reevaluate": 1}}),
    "nsga2-pop8": ("nsga2", {"ga": {"population": 8}}),
    "nsga2-q": ("nsga2", QUANTILE),
    "random-q": ("random", QUANTILE),
    "ngopt-q": ("ngopt", QUANTILE),
    "nsga2-halving": ("nsga2", {"ga": {"halving_eta": 3}}),
    "nsga2-halving-q": ("nsga2", {**QUANTILE, "ga": {"halving_eta": 3}}),
}
ALL_ARMS = ARMS + tuple(VARIANTS)
RESCORE_SHARE = 0.7
SYNTHETIC = ("pattern", "indicator", "both", "noise")
REAL_FILES = {"nvda": "NVDA_1d_1999_2014.csv", "orcl": "ORCL_1d_1995_2014.csv", "indexfut": "INDEXFUT_1m_2006.csv"}
HV_REF = (3.0, 1.0)     # minimised (-Sharpe, drawdown): the fixed reference (Sharpe -3, drawdown 100 %)

BUDGET = {
    "search": {"embedding_dim": [8, 16], "num_blocks": [1, 2], "num_heads": [1, 2], "seq_len": [8, 12, 16],
               "horizon": [1, 1], "threshold": [0.36, 0.6], "consensus": ["both", "either", "weighted"],
               "max_features_a": 8, "max_features_b": 6},
    "train": {"max_epochs": 3, "patience": 2, "batch_size": 64, "max_train_windows": 600, "lr_trials": 0,
              "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "test_fraction": 0.3, "val_fraction": 0.15, "min_trades": 5, "risk_trials": 6,
                 "holdout_fraction": 0.2},
    "ga": {"population": 4, "generations": 1000},
}
QUICK = {**BUDGET, "search": {**BUDGET["search"], "embedding_dim": [8, 8], "num_blocks": [1, 1], "seq_len": [8]},
         "train": {**BUDGET["train"], "max_epochs": 1, "max_train_windows": 300},
         "evaluate": {**BUDGET["evaluate"], "risk_trials": 2}, "ga": {"population": 3, "generations": 1000}}


@dataclass(frozen=True)
class Job:
    market: str          # a synthetic kind or a real file's short name
    arm: str
    seed: int
    wall_s: float
    n_bars: int
    quick: bool = False
    rescore_members: int = 3
    rescore_seeds: int = 2
    data_dir: str = str(DEFAULT_DATA_DIR)

    @property
    def ident(self) -> str:
        return f"{self.market}/{self.arm}/{self.seed}"


def study_budget(quick: bool = False, arm: str | None = None):
    """The study's budget; an arm of :data:`VARIANTS` with its changes."""
    from evo.config import budget_from_dict

    base = QUICK if quick else BUDGET
    changes = VARIANTS[arm][1] if arm in VARIANTS else {}
    return budget_from_dict("search-study", {k: {**v, **changes.get(k, {})} for k, v in base.items()})


def load_market(job: Job):
    """(bars, label, planted kind or None) for the job's market and seed."""
    if job.market in SYNTHETIC:
        from experiments.markets import make_market

        m = make_market(job.market, n_bars=job.n_bars, seed=1000 + job.seed)
        return m.bars, f"synthetic:{job.market}:{job.seed}", job.market, m.info
    from evo.data import load_bars

    frame, label = load_bars(str(Path(job.data_dir) / REAL_FILES[job.market]))
    return frame.iloc[-job.n_bars:].copy(), f"{label} (last {job.n_bars} bars)", None, {}


def _bot_genome():
    from evo.genome import load_genome_file

    [(_, g)] = load_genome_file(ROOT / "experiments" / "seeds" / "todays_bot.toml")
    return g


def _genome_facts(g, kind: str | None) -> dict[str, Any]:
    from experiments.markets import uses

    fa, fb = tuple(g.model_a.features), tuple(g.model_b.features)
    return {"planted": uses(fa, fb, kind) if kind and kind != "noise" else None,
            "family": uses(fa, fb, kind, family=True) if kind and kind != "noise" else None}


def run_job(job: Job) -> dict[str, Any]:
    """One run of one arm on one market (see the module docstring); returns its figures."""
    import torch

    from evo.evaluation.dataset import prepare_run_data
    from evo.evaluation.evaluate import evaluate_holdouts
    from evo.genome import Genome
    from evo.reporting.front import latest_screens, selection_bias
    from evo.search.ga import Search
    from evo.search.objectives import hypervolume, objectives, pareto_front
    from evo.search.records import rescored as rescored_by_search
    from evo.search.store import RunStore
    from evo.search.tasks import EvalContext, EvalTask, evaluate_task
    from evo.search.termination import AnyOf, MaxGenerations, TimeLimit

    torch.set_num_threads(1)
    budget = study_budget(job.quick, job.arm)
    optimizer = VARIANTS[job.arm][0] if job.arm in VARIANTS else job.arm
    bars, label, kind, info = load_market(job)
    ds, holdout = prepare_run_data(bars, label, budget)
    ctx = EvalContext(ds, budget, job.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evo-study-") as tmp:
        store = RunStore.create(Path(tmp) / "run", {"budget": budget.to_dict()})
        if job.arm == "bot":
            store.append(evaluate_task(EvalTask(_bot_genome(), 0), ctx))
            generations = 1
        else:
            search = Search(ctx, store, optimizer=optimizer)
            share = RESCORE_SHARE if budget.ga.rescore else 1.0
            search.run(AnyOf(MaxGenerations(budget.ga.generations), TimeLimit(share * job.wall_s)))
            generations = search.generation + 1
            if budget.ga.rescore:
                search.rescore_front()
        search_s = time.perf_counter() - t0
        records = store.records()
        screens = latest_screens(store.iter_records())
        fresh = rescored_by_search(store.iter_records())
    ok = [r for r in records.values() if r.ok]
    front = pareto_front(records.values())
    if fresh:   # the arm re-scored its final front: the trader picks on those figures
        front = sorted(front, key=lambda r: -fresh[r.key]["sharpe"] if r.key in fresh else math.inf)
    search_points = [(-s, d) for s, d in (objectives(r) for r in front)]
    # re-score the best members with training seeds the search never used
    rescored = []
    for r in front[: job.rescore_members]:
        g = Genome.from_dict(r.genome)
        vals = [objectives(evaluate_task(EvalTask(g, 0, "full", 100 + i), ctx)) for i in range(job.rescore_seeds)]
        rescored.append({"id": r.key, "search": list(objectives(r)), "fresh": [list(v) for v in vals],
                         "mean": [float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))]})
    fresh_points = [(-m["mean"][0], m["mean"][1]) for m in rescored]
    bias = selection_bias(records.values(), screens)
    chosen = front[0] if front else None
    row: dict[str, Any] = {
        "market": job.market, "arm": job.arm, "seed": job.seed, "label": label, "kind": kind,
        "market_info": {k: v for k, v in info.items() if k in ("oracle_sharpe", "signal_share", "strength")},
        "wall_s": round(search_s, 1), "generations": generations, "evaluated": len(records),
        "failed": sum(1 for r in records.values() if not r.ok),
        "too_few_trades": sum(1 for r in ok if not r.result.get("enough_trades")),
        "hv_search": round(hypervolume(search_points, HV_REF), 4),
        "hv_rescored": round(hypervolume(fresh_points, HV_REF), 4),
        "front": [{"id": r.key, "sharpe": r.result["sharpe"], "max_drawdown": r.result["max_drawdown"],
                   **_genome_facts(Genome.from_dict(r.genome), kind)} for r in front],
        "rescored": rescored, "max_dsr": max(bias.dsr.values()) if bias.dsr else None,
        "dsr_trials": bias.dsr_trials,
        "per_generation": _planted_by_generation(records.values(), kind),
        "search_rescored": {k: v["sharpe"] for k, v in fresh.items()},  # the arm's own re-scoring (rescore arms)
    }
    if chosen is not None:
        g = Genome.from_dict(chosen.genome)
        if holdout is not None:
            holdout.unseal()   # the search has ended: the chosen member is traded on it once
        hold = evaluate_holdouts(g, chosen.result, [holdout], budget, seed=job.seed) if holdout else None
        row["chosen"] = {"id": chosen.key, "sharpe": chosen.result["sharpe"],
                         "max_drawdown": chosen.result["max_drawdown"], "trades": chosen.result["trades"],
                         "dsr": bias.dsr.get(chosen.key), "features_a": list(g.model_a.features),
                         "features_b": list(g.model_b.features), **_genome_facts(g, kind),
                         "holdout_sharpe": None if hold is None else hold["sharpe"],
                         "holdout_trades": None if hold is None else hold["trades"]}
    row["total_s"] = round(time.perf_counter() - t0, 1)
    return row


def _planted_by_generation(records, kind: str | None) -> list[float] | None:
    """Share of each generation's evaluated genomes that hold the planted features."""
    from evo.genome import Genome
    from experiments.markets import uses

    if not kind or kind == "noise":
        return None
    by_gen: dict[int, list[bool]] = {}
    for r in records:
        g = Genome.from_dict(r.genome)
        by_gen.setdefault(r.generation, []).append(uses(tuple(g.model_a.features), tuple(g.model_b.features), kind))
    return [round(float(np.mean(by_gen[k])), 3) for k in sorted(by_gen)]


# ------------------------------------------------------------------------------------------------
# summary


def _wilcoxon(diffs: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (None with fewer than 2
    non-zero differences)."""
    d = [x for x in diffs if x != 0]
    if len(d) < 2:
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(d).pvalue)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (market, arm): means over seeds and the paired comparison with random."""
    rows = []
    markets = list(dict.fromkeys(r["market"] for r in runs))
    for market in markets:
        by_arm = {a: {r["seed"]: r for r in runs if r["market"] == market and r["arm"] == a} for a in ALL_ARMS}
        for arm in ALL_ARMS:
            rs = list(by_arm[arm].values())
            if not rs:
                continue
            # arms with quantile thresholds against random search with them, the others against plain random
            vs = "random-q" if arm.endswith("-q") and by_arm["random-q"] else "random"
            base = by_arm[vs]
            chosen = [r.get("chosen") for r in rs]
            hold = [c["holdout_sharpe"] if c and c.get("holdout_sharpe") is not None else 0.0 for c in chosen]
            wins, n, p = _paired(by_arm[arm], base)
            kind = rs[0].get("kind")
            row = {"market": market, "arm": arm, "runs": len(rs),
                   "evaluated": round(float(np.mean([r["evaluated"] for r in rs])), 1),
                   "hv_rescored": round(float(np.mean([r["hv_rescored"] for r in rs])), 3),
                   "hv_search": round(float(np.mean([r["hv_search"] for r in rs])), 3),
                   "beats_random": f"{wins}/{n}" if arm != vs and n else "",
                   "p_vs_random": _fmt_p(p) if arm != vs else "",
                   "vs": vs if arm != vs else "",
                   "beats_bot": _beats(by_arm[arm], by_arm["bot"]) if arm != "bot" else "",
                   "holdout_sharpe": round(float(np.mean(hold)), 2),
                   "holdout_positive": f"{sum(h > 0 for h in hold)}/{len(hold)}",
                   "no_trade_share": round(float(np.sum([r["too_few_trades"] + r["failed"] for r in rs])
                                                 / max(1, np.sum([r["evaluated"] for r in rs]))), 2),
                   "max_dsr": _max(r["max_dsr"] for r in rs)}
            if kind and kind != "noise":
                row["planted_chosen"] = f"{sum(bool(c and c['planted']) for c in chosen)}/{len(chosen)}"
                row["family_chosen"] = f"{sum(bool(c and c['family']) for c in chosen)}/{len(chosen)}"
            rows.append(row)
    return rows


def attainment(runs: list[dict[str, Any]], level: float = 0.5) -> dict[str, dict[str, list[list[float]]]]:
    """The ``level`` attainment surface of each arm's re-scored fronts across seeds, per market:
    the (Sharpe, drawdown) points that at least ``level`` of the arm's runs reached or beat
    (``moocore.eaf``, the empirical attainment function, on minimised (-Sharpe, drawdown)). A run
    whose front is empty counts as attaining nothing (the share is over every run of the arm).
    ``{market: {arm: [[sharpe, drawdown], ...]}}``, Sharpe descending."""
    import moocore

    out: dict[str, dict[str, list[list[float]]]] = {}
    for market in dict.fromkeys(r["market"] for r in runs):
        for arm in ALL_ARMS:
            rs = [r for r in runs if r["market"] == market and r["arm"] == arm]
            pts, sets = [], []
            for i, r in enumerate(rs):
                for m in r.get("rescored") or []:
                    pts.append([-m["mean"][0], m["mean"][1]])
                    sets.append(i)
            if not rs or not pts:
                continue
            eaf = moocore.eaf(np.array(pts), np.array(sets))
            present = len(set(sets))
            # eaf's percentile is over the runs that have points; count attaining runs over all of them
            k = np.rint(eaf[:, -1] * present / 100.0)
            need = math.ceil(level * len(rs) - 1e-9)
            surface = eaf[k >= need][:, :2]
            if len(surface):
                keep = moocore.is_nondominated(surface)
                surface = surface[keep]
                order = np.argsort(surface[:, 0])
                out.setdefault(market, {})[arm] = [[round(float(-x), 4), round(float(y), 4)] for x, y in surface[order]]
    return out


def attainment_figure(surfaces: dict[str, dict[str, list[list[float]]]], path: Path) -> Path | None:
    """One panel per market: each arm's median attainment surface as a step line (plotly; PNG by
    kaleido). None when there is nothing to draw or no PNG engine."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    markets = [m for m in SYNTHETIC if m in surfaces]   # the markets with a known answer
    if not markets:
        return None
    cols = 2
    rows = math.ceil(len(markets) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=markets)
    shown: set[str] = set()
    colours = {"nsga2": "#1f77b4", "random": "#7f7f7f", "ngopt": "#2ca02c", "tpe": "#ff7f0e", "bot": "#d62728"}
    for j, market in enumerate(markets, start=1):
        row, col = (j - 1) // cols + 1, (j - 1) % cols + 1
        for arm, pts in surfaces[market].items():
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line_shape="vh", name=arm,
                                     legendgroup=arm, showlegend=arm not in shown,
                                     line={"color": colours.get(arm), "dash": "dot" if "-" in arm else "solid"}),
                          row=row, col=col)
            shown.add(arm)
        fig.update_xaxes(title_text="Sharpe (re-scored)", row=row, col=col)
        fig.update_yaxes(title_text="max drawdown", row=row, col=col)
    fig.update_layout(width=1000, height=380 * rows, title="Median attainment surfaces of the re-scored "
                      "fronts (50 % of seeds reach or beat each line; right and down is better)")
    try:
        fig.write_image(str(path))
    except Exception as exc:  # noqa: BLE001 - no chromium/kaleido: the JSON keeps the numbers
        print(f"attainment figure not written ({type(exc).__name__}: {exc})")
        return None
    return path


def _paired(arm: dict, other: dict) -> tuple[int, int, float | None]:
    """Runs of two arms under the same key (a seed, or a (market, seed)): in how many ``arm``'s
    re-scored hypervolume is the higher, of how many, and the Wilcoxon p-value of the differences."""
    d = [r["hv_rescored"] - other[k]["hv_rescored"] for k, r in arm.items() if k in other]
    return sum(x > 0 for x in d), len(d), _wilcoxon(d)


def _beats(arm: dict[int, dict], other: dict[int, dict]) -> str:
    """Seeds where ``arm``'s re-scored hypervolume exceeds ``other``'s on the same market, of the
    seeds both ran, with the Wilcoxon p-value: ``"9/10 (p 0.004)"``."""
    wins, n, p = _paired(arm, other)
    if not n:
        return ""
    p = _fmt_p(p)
    return f"{wins}/{n}" + (f" (p {p})" if p else "")


def variant_notes(runs: list[dict[str, Any]]) -> list[str]:
    """Each variant arm against the plain arm of its optimiser (``nsga2-q`` vs ``nsga2``), paired
    by seed over the planted markets together: re-scored hypervolume wins, mean difference and
    Wilcoxon p-value; the share of genomes too inactive to enter the front; holdout Sharpe > 0."""
    notes = []
    planted = ("pattern", "indicator", "both")
    for arm, (base, _) in VARIANTS.items():
        mine = {(r["market"], r["seed"]): r for r in runs if r["arm"] == arm and r["market"] in planted}
        other = {(r["market"], r["seed"]): r for r in runs if r["arm"] == base and r["market"] in planted}
        keys = sorted(set(mine) & set(other))
        if not keys:
            continue
        wins, n, p = _paired(mine, other)

        def share(rs):
            return sum(r["too_few_trades"] + r["failed"] for r in rs) / max(1, sum(r["evaluated"] for r in rs))

        def positive(rs):
            return sum(1 for r in rs if ((r.get("chosen") or {}).get("holdout_sharpe") or 0) > 0)
        a, b = [mine[k] for k in keys], [other[k] for k in keys]
        notes.append(f"{arm} vs {base} (planted markets, {n} paired runs): re-scored hypervolume higher in "
                     f"{wins}/{n}, mean {np.mean([r['hv_rescored'] for r in a]):.2f} vs "
                     f"{np.mean([r['hv_rescored'] for r in b]):.2f} (p {_fmt_p(p) or 'n/a'}); genomes "
                     f"judged {np.mean([r['evaluated'] for r in a]):.0f} vs {np.mean([r['evaluated'] for r in b]):.0f} "
                     f"a run; too few trades {share(a):.0%} vs {share(b):.0%}; chosen member's holdout Sharpe > 0 "
                     f"{positive(a)}/{len(a)} vs {positive(b)}/{len(b)}")
    return notes


def _fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.3f}"


def _max(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return round(max(vals), 3) if vals else None


def check_targets(runs: list[dict[str, Any]], default: str = "nsga2") -> list[str]:
    """The issue's targets, each stated with its measured figure and met / missed."""
    notes = []
    for kind in ("pattern", "indicator", "both"):
        rs = {r["seed"]: r for r in runs if r["market"] == kind and r["arm"] == default}
        base = {r["seed"]: r for r in runs if r["market"] == kind and r["arm"] == "random"}
        if not rs:
            continue
        wins = sum(rs[s]["hv_rescored"] > base[s]["hv_rescored"] for s in rs if s in base)
        n = sum(1 for s in rs if s in base)
        chosen = [r.get("chosen") for r in rs.values()]
        pos = sum(1 for c in chosen if c and (c.get("holdout_sharpe") or 0) > 0)
        planted = sum(1 for c in chosen if c and c["planted"])
        family = sum(1 for c in chosen if c and c["family"])
        k = len(chosen)
        notes.append(f"{kind}: {default} beats random's re-scored hypervolume in {wins}/{n} seeds (target >= 8/10: "
                     f"{'met' if n and wins / n >= 0.8 else 'missed'}); chosen member's holdout Sharpe > 0 in "
                     f"{pos}/{k} (target >= 80 %: {'met' if k and pos / k >= 0.8 else 'missed'}); planted features in "
                     f"the chosen member {planted}/{k}, their family {family}/{k} (target >= 80 %: "
                     f"{'met' if k and max(planted, family) / k >= 0.8 else 'missed'})")
    noise = [r for r in runs if r["market"] == "noise"]
    if noise:
        worst = _max(r["max_dsr"] for r in noise)
        notes.append(f"noise: highest DSR of any member in {len(noise)} runs = {worst} (target < 0.95: "
                     f"{'met' if worst is None or worst < 0.95 else 'missed'})")
    for market in REAL_FILES:
        rs = [r for r in runs if r["market"] == market]
        if not rs:
            continue
        mean = {a: np.mean([(r.get("chosen") or {}).get("holdout_sharpe") or 0.0 for r in rs if r["arm"] == a])
                for a in ALL_ARMS if any(r["arm"] == a for r in rs)}
        notes.append(f"{market}: mean holdout Sharpe of the chosen member: "
                     + ", ".join(f"{a} {v:+.2f}" for a, v in mean.items()))
    return notes


# ------------------------------------------------------------------------------------------------
# running


def jobs_for(*, quick: bool, seeds: int, real_seeds: int, noise_seeds: int, wall_s: float,
             data_dir: str, markets: tuple[str, ...] | None = None, arms: tuple[str, ...] = ARMS) -> list[Job]:
    """Every run of the study, interleaved so all arms meet the same machine load and a study cut
    short still covers every market: seed 0 of every market (every arm in turn), then seed 1, ..."""
    if quick:
        return [Job("pattern", arm, 0, wall_s, 700, quick=True, rescore_members=1, rescore_seeds=1,
                    data_dir=data_dir) for arm in ("nsga2", "random", "bot")]
    plan = [(m, seeds) for m in ("pattern", "indicator", "both")] + [("noise", noise_seeds)] + \
        [(m, real_seeds) for m in REAL_FILES]
    jobs = []
    for seed in range(max(n for _, n in plan)):
        for market, n in plan:
            if seed >= n or (markets and market not in markets):
                continue
            n_bars = 4000 if market == "indexfut" else 2000
            jobs += [Job(market, arm, seed, wall_s, n_bars, data_dir=data_dir) for arm in arms]
    return jobs


def _init_worker() -> None:
    import logging
    import threading

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    logging.basicConfig(level=logging.ERROR)
    parent = os.getppid()

    def orphaned() -> None:   # a study killed with SIGKILL/SIGTERM leaves no worker behind
        while True:
            time.sleep(5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()


def _safe_run(job: Job) -> dict[str, Any]:
    try:
        return run_job(job)
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the study goes on
        return {"market": job.market, "arm": job.arm, "seed": job.seed, "error": f"{type(exc).__name__}: {exc}"}


def run_study(jobs: list[Job], journal: Path, *, workers: int = 2, log=print) -> list[dict[str, Any]]:
    """Run the jobs not yet in ``journal`` (JSONL, one finished run a line) on ``workers``
    processes; return every finished run."""
    import multiprocessing as mp

    done: dict[str, dict] = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[f"{r['market']}/{r['arm']}/{r['seed']}"] = r
    todo = [j for j in jobs if j.ident not in done]
    log(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done, {len(todo)} to go on {workers} workers")
    journal.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool, open(journal, "a") as fh:
        for job, row in zip(todo, pool.map(_safe_run, todo)):
            fh.write(json.dumps(row, allow_nan=False, default=float) + "\n")
            fh.flush()
            done[job.ident] = row
            c = row.get("chosen") or {}
            log(f"{job.ident}: " + (row["error"] if "error" in row else
                f"{row['evaluated']} genomes in {row['wall_s']:.0f} s, HV rescored {row['hv_rescored']:.2f} "
                f"(search {row['hv_search']:.2f}), chosen holdout {c.get('holdout_sharpe')}, planted {c.get('planted')}"))
    return [done[j.ident] for j in jobs if j.ident in done]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.search_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="about a minute: one market, three arms, one seed")
    p.add_argument("--seeds", type=int, default=10, help="seeds per arm on the planted markets")
    p.add_argument("--noise-seeds", type=int, default=3)
    p.add_argument("--real-seeds", type=int, default=2)
    p.add_argument("--wall", type=float, default=None, help="search seconds per run (default 60; quick 12)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--markets", default=None, help="comma-separated subset of the markets")
    p.add_argument("--arms", default=",".join(ARMS),
                   help=f"comma-separated arms (default {','.join(ARMS)}; also {','.join(VARIANTS)})")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--out", default=str(ROOT / "docs" / "experiments"))
    p.add_argument("--journal", default=None, help="JSONL of finished runs (default OUT/search_study.jsonl)")
    p.add_argument("--name", default=None,
                   help="name of the journal and summary in OUT (default search_study; a second study beside it)")
    p.add_argument("--title", default=None, help="title of the summary (rendered in docs/benchmarks.md)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: summarise the runs already in the journal (e.g. of a study still going)")
    args = p.parse_args(argv)
    wall = args.wall if args.wall is not None else (12.0 if args.quick else 60.0)
    out = Path(args.out)
    name = args.name or ("search_study_quick" if args.quick else "search_study")
    journal = Path(args.journal) if args.journal else out / f"{name}.jsonl"
    if args.quick and args.journal is None:
        journal.unlink(missing_ok=True)
    markets = tuple(args.markets.split(",")) if args.markets else None
    jobs = jobs_for(quick=args.quick, seeds=args.seeds, real_seeds=args.real_seeds, noise_seeds=args.noise_seeds,
                    wall_s=wall, data_dir=args.data_dir, markets=markets, arms=tuple(args.arms.split(",")))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.perf_counter()
    if args.summarize:
        done = {}
        for line in journal.read_text().splitlines() if journal.exists() else []:
            r = json.loads(line)
            done[f"{r['market']}/{r['arm']}/{r['seed']}"] = r
        runs = [done[j.ident] for j in jobs if j.ident in done and "error" not in done[j.ident]]
        print(f"{len(runs)} of {len(jobs)} runs finished")
    else:
        runs = [r for r in run_study(jobs, journal, workers=args.workers) if "error" not in r]
    payload = {
        "title": args.title or "Search study: optimisers, random search and today's bot at equal wall time",
        "command": "python -m experiments.search_study " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": started, "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the end",
        "wall_s_per_run": wall, "study_s": round(time.perf_counter() - t0, 1),
        "runs_finished": f"{len(runs)} of {len(jobs)}",
        "budget": BUDGET if not args.quick else QUICK,
        "variants": {arm: {"optimizer": opt, "budget_changes": ch} for arm, (opt, ch) in VARIANTS.items()},
        "rescore_share": RESCORE_SHARE,
        "rows": summarize(runs),
        "notes": check_targets(runs) + variant_notes(runs) + [
            f"each arm searches {wall:.0f} s per run (stopping at the generation boundary after it); hv_rescored: "
            "hypervolume of the best front members re-trained with fresh seeds (the search's own scores: hv_search); "
            "chosen = the front member with the best walk-forward Sharpe; holdout = the untouched last 20 % "
            "(0 where no member entered the front); planted/family: see experiments/markets.py; beats_random: "
            "seeds where the arm's re-scored hypervolume exceeds random search's on the same market, with a "
            "Wilcoxon signed-rank p-value; beats_bot: the same against today's bot evaluated alone"],
    }
    out.mkdir(parents=True, exist_ok=True)
    payload["attainment_50"] = attainment(runs)
    figure = attainment_figure(payload["attainment_50"], out / f"{name}_attainment.png")
    if figure is not None:
        payload["figure"] = f"docs/experiments/{figure.name}"
    (out / f"{name}.json").write_text(json.dumps(payload, indent=1, allow_nan=False, default=float) + "\n")
    for row in payload["rows"]:
        print(row)
    for note in payload["notes"]:
        print("-", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
