"""The Pareto front of a run and the honesty figures beside it (pure: records in, dict out)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from evo.search.records import Record

SAMPLE_NOTE = "walk-forward out-of-sample (concatenated test folds, after fees and slippage)"
HOLDOUT_NOTE = "untouched holdout (never seen by the search; traded once, after it ended)"


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
    from evo.search.objectives import pareto_front

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
            "sharpe_mean", "max_drawdown_mean", "sharpe_sd", "seeds")   # *_mean, sd: the seeds' selection score
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
