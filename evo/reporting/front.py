"""The Pareto front of a run and the honesty figures beside it (pure: records in, dict out)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from evo.store import Record

SAMPLE_NOTE = "walk-forward out-of-sample (concatenated test folds, after fees and slippage)"
HOLDOUT_NOTE = "untouched holdout (never seen by the search; traded once, after it ended)"


def hypervolume_2d(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact hypervolume of 2-D points under minimisation of both coordinates: the area
    dominated by ``points`` and bounded by ``ref``. Points not strictly better than ``ref`` in
    both coordinates add nothing.

    Sweep: sort by the first coordinate; every point that lowers the best second coordinate so
    far adds the rectangle ``(ref0 - x) * (best_y - y)``. O(N log N).
    Worked value: points (1, 3), (2, 2), (3, 1) with ref (4, 4) cover 3 + 2 + 1 = 6.
    (DEAP 1.4's ``tools.hypervolume`` needs the ``moocore`` package, so evo computes it here.)
    """
    r0, r1 = float(ref[0]), float(ref[1])
    pts = sorted((float(x), float(y)) for x, y in points if x < r0 and y < r1)
    area, best_y = 0.0, r1
    for x, y in pts:
        if y < best_y:
            area += (r0 - x) * (best_y - y)
            best_y = y
    return area


# Fixed reference point for hypervolumes logged per generation, in (Sharpe, max drawdown):
# the area dominated between the front and (Sharpe -3, drawdown 100 %). Fixed, so generations
# (and optimisers) compare on one scale.
HV_REFERENCE = (-3.0, 1.0)


def front_hypervolume(objectives: Iterable[tuple[float, float]]) -> float:
    """Hypervolume of (Sharpe ↑, max drawdown ↓) points against :data:`HV_REFERENCE`."""
    ref_sharpe, ref_dd = HV_REFERENCE
    return hypervolume_2d([(-s, d) for s, d in objectives], (-ref_sharpe, ref_dd))


# Figures of a result that merge as means over training seeds (weighted by the seeds each covers).
_SEED_MEANS = ("max_drawdown", "total_return", "exposure", "accuracy_a", "accuracy_b", "f1_a", "f1_b", "sortino",
               "calmar", "win_rate", "profit_factor", "turnover", "val_sharpe")


def merge_genome(records: Iterable[Record], min_trades: int | None = None) -> Record | None:
    """One genome's full-fidelity record: its last first-evaluation record (``seed_index`` None;
    a later one, e.g. with the holdout traded, replaces an earlier one) with every successful
    extra-seed record it does not already cover folded in. ``None`` when there is no such record
    (a genome only screened at low fidelity).

    Over the base's ``n`` seeds and the extra seeds ``i >= n``: the Sharpe is the mean of the
    per-seed Sharpes (``seed_sharpes``) and ``sharpe_sd`` their sample spread; drawdown and the
    other figures are seed-weighted means, ``returns`` the per-bar seed-weighted mean; learning
    rates and risk parameters stay the base's (seed 0's, as in ``evaluate_genome``). The genome
    has enough trades when the mean trade count reaches ``min_trades`` (every part must have had
    enough when ``min_trades`` is unknown or several instruments were combined). A base whose
    per-seed Sharpes are unknown counts its mean once per seed. Pure: the merged record is new.
    """
    base, extras = None, {}
    for r in records:
        if r.fidelity != "full":
            continue
        if r.seed_index is None:
            base = r
        else:
            extras[int(r.seed_index)] = r
    if base is None or not base.ok:
        return base
    res = base.result
    n = int(res.get("seeds") or 1)
    add = [extras[i].result for i in sorted(extras) if i >= n and extras[i].ok]
    if not add:
        return base
    per_seed = list(res.get("seed_sharpes") or [])
    if len(per_seed) != n:
        per_seed = [float(res["sharpe"])] * n
    per_seed += [float(x["sharpe"]) for x in add]
    parts, weights = [res] + add, np.array([n] + [1] * len(add), dtype=np.float64)

    def mean(name: str) -> float:
        return float(np.average([float(x.get(name) or 0.0) for x in parts], weights=weights))

    trades = int(round(mean("trades")))
    if min_trades is not None and not res.get("instruments"):
        enough = trades >= min_trades
    else:
        enough = all(bool(x["enough_trades"]) for x in parts)
    merged = {
        **res, **{k: mean(k) for k in _SEED_MEANS if k in res},
        "sharpe": float(np.mean(per_seed)), "sharpe_sd": float(np.std(per_seed, ddof=1)),
        "seeds": len(per_seed), "seed_sharpes": per_seed, "trades": trades, "enough_trades": enough,
        "traded": any(bool(x.get("traded")) for x in parts),
        "returns": [float(v) for v in np.average([x["returns"] for x in parts], axis=0, weights=weights)],
        "seconds": round(sum(float(x.get("seconds") or 0.0) for x in parts), 3),
    }
    return Record(base.key, base.genome, base.generation, merged, base.error, base.fidelity, None)


def merge_records(records: Iterable[Record], min_trades: int | None = None) -> dict[str, Record]:
    """:func:`merge_genome` for every genome of a journal (in journal order), by key, in the
    order each genome first appears in the journal."""
    by_key: dict[str, list[Record]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r)
    out = {}
    for key, rs in by_key.items():
        merged = merge_genome(rs, min_trades)
        if merged is not None:
            out[key] = merged
    return out


def _per_bar_sharpe(returns: np.ndarray) -> float:
    sd = returns.std(ddof=1) if len(returns) > 1 else 0.0
    return float(returns.mean() / sd) if sd > 0 else 0.0


def selection_bias(records: Iterable[Record]) -> tuple[dict[str, float], float | None, int]:
    """Deflated Sharpe per evaluated genome, PBO over all of them, and the number of trials
    (distinct genomes evaluated successfully). All genomes of a run share one test span."""
    from backtest.overfitting import deflated_sharpe_of, probability_of_backtest_overfitting

    ok = sorted((r for r in records if r.ok), key=lambda r: r.key)  # independent of arrival order
    if not ok:
        return {}, None, 0
    lengths = {len(r.result["returns"]) for r in ok}
    if len(lengths) != 1:
        raise ValueError(f"evaluated genomes have test spans of different lengths {sorted(lengths)}")
    matrix = np.array([r.result["returns"] for r in ok], dtype=np.float64).T  # (T, N)
    sharpes = np.array([_per_bar_sharpe(matrix[:, j]) for j in range(matrix.shape[1])])
    dsr = {r.key: deflated_sharpe_of(matrix[:, j], sharpes) for j, r in enumerate(ok)}
    pbo = probability_of_backtest_overfitting(matrix, n_blocks=16) if len(ok) >= 2 else float("nan")
    return dsr, (None if np.isnan(pbo) else float(pbo)), len(ok)


def front_payload(records: Mapping[str, Record], meta: Mapping[str, Any], run: str,
                  low_fidelity: int = 0) -> dict[str, Any]:
    """What ``evo front --json`` prints. ``records`` are the merged full-fidelity records
    (``RunStore.records()``); ``low_fidelity`` counts the successive-halving screens beside them
    (genomes judged on little training only; never in the front, the trials or PBO)."""
    from evo.ga import pareto_front

    names = tuple(meta.get("objectives") or ("sharpe", "drawdown"))
    front = pareto_front(records.values(), names)
    dsr, pbo, trials = selection_bias(records.values())
    failures: dict[str, int] = {}
    for r in records.values():
        if not r.ok:
            cause = (r.error or "unknown").split(":")[0]
            failures[cause] = failures.get(cause, 0) + 1
    keys = ("sharpe", "max_drawdown", "total_return", "trades", "exposure", "sortino", "calmar", "win_rate",
            "profit_factor", "turnover", "accuracy_a", "accuracy_b", "f1_a", "f1_b", "lr_a", "lr_b", "val_sharpe",
            "sharpe_sd", "seeds")
    members = []
    for r in front:
        hold = r.result.get("holdout") or {}
        members.append({
            "id": r.key, **{k: r.result.get(k) for k in keys}, "dsr": dsr[r.key],
            "holdout_sharpe": hold.get("sharpe"), "holdout_max_drawdown": hold.get("max_drawdown"),
            "holdout_total_return": hold.get("total_return"), "holdout_trades": hold.get("trades"),
            "latency_ms": r.result.get("latency_ms"),
            "instruments": r.result.get("instruments"),
            "holdout_instruments": hold.get("instruments"),
            "risk": r.result.get("risk", {}), "generation": r.generation, "genome": r.genome,
        })
    return {
        "run": run,
        "data": meta.get("data_label"),
        "budget": meta.get("budget", {}).get("name"),
        "sample": SAMPLE_NOTE,
        "objectives": list(names),
        "test_span": [front[0].result["test_start"], front[0].result["test_end"]] if front else None,
        "evaluated": trials,
        "trials": trials,
        "low_fidelity": low_fidelity,
        "pbo": pbo,
        "failed": sum(1 for r in records.values() if not r.ok),
        "failures": failures,
        "too_few_trades": sum(1 for r in records.values() if r.ok and not r.result["enough_trades"]),
        "holdout": meta.get("holdout"),
        "baselines": baselines(records, meta),
        "members": members,
    }


def baselines(records: Mapping[str, Record], meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the front should beat, on the same test span and costs: buy-and-hold, the median
    genome of the random first generation, and the user's seed genomes."""
    out = []
    bh = (meta.get("baselines") or {}).get("buy_and_hold")
    if bh:
        wf, hold = bh.get("walk_forward_oos", {}), bh.get("holdout") or {}
        out.append({"name": "buy_and_hold", "sharpe": wf.get("sharpe"), "max_drawdown": wf.get("max_drawdown"),
                    "total_return": wf.get("total_return"), "holdout_sharpe": hold.get("sharpe"),
                    "holdout_max_drawdown": hold.get("max_drawdown")})
    seeds = meta.get("seed_genomes") or {}
    first = [r for r in records.values() if r.ok and r.generation == 0 and r.key not in seeds]
    if first:
        order = sorted(first, key=lambda r: (r.result["sharpe"], r.key))
        median = order[(len(order) - 1) // 2]
        out.append({"name": "median_random_genome", "id": median.key, "sharpe": median.result["sharpe"],
                    "max_drawdown": median.result["max_drawdown"], "total_return": median.result["total_return"],
                    "holdout_sharpe": None, "holdout_max_drawdown": None})
    for key, entry in seeds.items():
        r = records.get(key)
        if r is None or not r.ok:
            continue
        hold = r.result.get("holdout") or {}
        out.append({"name": f"seed:{entry['name']}", "id": key, "sharpe": r.result["sharpe"],
                    "max_drawdown": r.result["max_drawdown"], "total_return": r.result["total_return"],
                    "holdout_sharpe": hold.get("sharpe"), "holdout_max_drawdown": hold.get("max_drawdown")})
    return out
