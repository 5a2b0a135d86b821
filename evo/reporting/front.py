"""The Pareto front of a run and the honesty figures beside it (pure: records in, dict out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from backtest.overfitting import MIN_TRIALS
from evo.search.records import Record

SAMPLE_NOTE = "walk-forward out-of-sample (concatenated test folds, after fees and slippage)"
RESCORED_NOTE = ("re-scored: the front's members trained again with fresh seeds the search never used "
                 "(ga.rescore), walk-forward out-of-sample, mean over those seeds: how much of a search score "
                 "repeats")
HOLDOUT_NOTE = "untouched holdout (never seen by the search; traded once, after it ended)"


def _per_bar_sharpe(returns: np.ndarray) -> float:
    sd = returns.std(ddof=1) if len(returns) > 1 else 0.0
    return float(returns.mean() / sd) if sd > 0 else 0.0


TRIALS_RULE = (
    "trials = genomes evaluated at full fidelity + successive-halving screens (each screen judged a genome "
    "on the test span, so it counts once more, also for a genome it then sent to full training); "
    "trials that never traded are left out of DSR and PBO (no_trade); DSR's expected maximum counts every "
    "trading trial (dsr_trials), PBO ranks those with returns on the common test span (pbo_trials); "
    f"fewer than {MIN_TRIALS} trading trials: not meaningful"
)


@dataclass(frozen=True)
class SelectionBias:
    """The selection-bias figures of a run and what they were computed over.

    dsr: deflated Sharpe per trading full-fidelity genome (empty when not meaningful).
    pbo: probability of backtest overfitting; None when not meaningful.
    trials: full-fidelity genomes evaluated successfully + screens (everything judged on the test span).
    screens: low-fidelity screens among ``trials``. no_trade: trials that never traded (left out).
    dsr_trials: trading trials, the number DSR's expected maximum counts.
    pbo_trials: trading trials in PBO's return matrix. *_note: why a figure is missing, else None.
    """

    dsr: dict[str, float]
    pbo: float | None
    trials: int
    screens: int = 0
    no_trade: int = 0
    dsr_trials: int = 0
    pbo_trials: int = 0
    dsr_note: str | None = None
    pbo_note: str | None = None


def _traded(r: Record) -> bool:
    """A trial traded: a trade count above 0 and returns that moved (an old record without ``trades``:
    returns that moved)."""
    trades = r.result.get("trades")
    moved = bool(np.any(np.asarray(r.result.get("returns") or [], dtype=np.float64) != 0.0))
    return moved and (trades is None or float(trades) > 0)


def latest_screens(records: Iterable[Record]) -> list[Record]:
    """The low-fidelity screens among journal records (``RunStore.iter_records()``), the last one per
    genome (a resumed run may journal one twice), in key order."""
    last = {r.key: r for r in records if r.fidelity == "low"}
    return [last[k] for k in sorted(last)]


def _not_meaningful(n: int) -> str:
    return f"not meaningful: {n} trial(s) traded, fewer than {MIN_TRIALS}"


def selection_bias(records: Iterable[Record], screens: Iterable[Record] = ()) -> SelectionBias:
    """Deflated Sharpe per evaluated genome and PBO over the trials (see :data:`TRIALS_RULE`).
    ``records``: full-fidelity records; ``screens``: low-fidelity ones (:func:`latest_screens`).
    All genomes of a run share one test span. Independent of the records' order."""
    from backtest.overfitting import deflated_sharpe_of, probability_of_backtest_overfitting

    ok = sorted((r for r in records if r.ok), key=lambda r: r.key)  # independent of arrival order
    screened = sorted((r for r in screens if r.ok), key=lambda r: r.key)
    if not ok:
        return SelectionBias({}, None, len(screened), screens=len(screened), pbo_note="no genome evaluated",
                             dsr_note="no genome evaluated")
    lengths = {len(r.result["returns"]) for r in ok}
    if len(lengths) != 1:
        raise ValueError(f"evaluated genomes have test spans of different lengths {sorted(lengths)}")
    (span,) = lengths
    trading = [r for r in ok if _traded(r)]
    trading_screens = [r for r in screened if _traded(r)]
    columns = trading + [r for r in trading_screens if len(r.result.get("returns") or []) == span]
    matrix = np.array([r.result["returns"] for r in columns], dtype=np.float64).reshape(len(columns), span).T
    sharpes = np.array([_per_bar_sharpe(matrix[:, j]) for j in range(matrix.shape[1])])
    n_trials = len(trading) + len(trading_screens)
    dsr, dsr_note = {}, None
    if n_trials >= MIN_TRIALS and len(columns) >= MIN_TRIALS:
        dsr = {r.key: deflated_sharpe_of(matrix[:, j], sharpes, n_trials=n_trials)
               for j, r in enumerate(trading)}
    else:
        dsr_note = _not_meaningful(n_trials)
    pbo = probability_of_backtest_overfitting(matrix, n_blocks=16) if len(columns) >= MIN_TRIALS else float("nan")
    pbo_note = None
    if np.isnan(pbo):
        pbo_note = _not_meaningful(len(columns)) if len(columns) < MIN_TRIALS else \
            f"not meaningful: the test span has {span} bars, fewer than 32 (16 blocks of 2)"
    return SelectionBias(
        dsr, None if np.isnan(pbo) else float(pbo), trials=len(ok) + len(screened), screens=len(screened),
        no_trade=len(ok) - len(trading) + len(screened) - len(trading_screens), dsr_trials=n_trials,
        pbo_trials=len(columns), dsr_note=dsr_note, pbo_note=pbo_note,
    )


def holdout_traded(holdout: Mapping[str, Any] | None) -> bool | None:
    """Whether a member traded in the holdout: None before the holdout was traded, False when it
    never opened a position there (its holdout Sharpe 0.00 and drawdown 0.0 % then say nothing)."""
    if not holdout:
        return None
    trades = holdout.get("trades")
    return None if trades is None else float(trades) > 0


def score_groups(front: Iterable[Record], names: tuple[str, ...] = ("sharpe", "drawdown")) -> list[list[str]]:
    """Front members whose objective values (``names``, as the search compares them) are identical,
    as lists of ids in id order; only groups of two or more. Such members are indistinguishable to
    the search: typically genomes that trade the very same signals."""
    from evo.search.objectives import objectives

    by_score: dict[tuple[float, ...], list[str]] = {}
    for r in front:
        by_score.setdefault(objectives(r, tuple(names)), []).append(r.key)
    return [sorted(keys) for keys in by_score.values() if len(keys) > 1]


def front_payload(records: Mapping[str, Record], meta: Mapping[str, Any], run: str,
                  screens: Iterable[Record] = (), rescored: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """What ``evo front --json`` prints. ``records`` are the merged full-fidelity records
    (``RunStore.records()``); ``screens`` the successive-halving screens beside them
    (:func:`latest_screens`: genomes judged on little training, on the same test span; never in the
    front, but trials for DSR and PBO: :data:`TRIALS_RULE`); ``rescored`` the final front's
    re-scoring with fresh seeds (:func:`evo.search.records.rescored`), shown per member as
    ``rescored`` beside the search's figures (None where the member was not re-scored)."""
    from evo.search.objectives import pareto_front

    names = tuple(meta.get("objectives") or ("sharpe", "drawdown"))
    front = pareto_front(records.values(), names)
    same = {key: group for group in score_groups(front, names) for key in group}
    screens = list(screens)
    bias = selection_bias(records.values(), screens)
    dsr = bias.dsr
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
            "id": r.key, **{k: r.result.get(k) for k in keys}, "dsr": dsr.get(r.key),
            "holdout_sharpe": hold.get("sharpe"), "holdout_max_drawdown": hold.get("max_drawdown"),
            "holdout_total_return": hold.get("total_return"), "holdout_trades": hold.get("trades"),
            "holdout_traded": holdout_traded(hold),
            "rescored": dict((rescored or {}).get(r.key) or {}) or None,
            "same_scores": [k for k in same.get(r.key, []) if k != r.key],
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
        "evaluated": bias.trials - bias.screens,
        "trials": bias.trials,
        "low_fidelity": len(screens),
        "no_trade": bias.no_trade,
        "dsr_trials": bias.dsr_trials,
        "pbo_trials": bias.pbo_trials,
        "trials_rule": TRIALS_RULE,
        "dsr_note": bias.dsr_note,
        "pbo": bias.pbo,
        "pbo_note": bias.pbo_note,
        "failed": sum(1 for r in records.values() if not r.ok),
        "failures": failures,
        "too_few_trades": sum(1 for r in records.values() if r.ok and not r.result["enough_trades"]),
        "holdout": meta.get("holdout"),
        "baselines": baselines(records, meta),
        "members": members,
        "rescored_note": RESCORED_NOTE if rescored else None,
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
                    "holdout_sharpe": hold.get("sharpe"), "holdout_max_drawdown": hold.get("max_drawdown"),
                    "holdout_trades": hold.get("trades")})
    return out
