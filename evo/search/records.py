"""The journal's record type and the rule that folds a genome's evaluations into one record
(its first evaluation plus a survivor's extra training seeds). Pure: records in, records out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from evo.evaluation.results import selection_score


@dataclass(frozen=True)
class Record:
    """One evaluated genome: its result, or the error that stopped it."""

    key: str
    genome: dict[str, Any]
    generation: int
    result: dict[str, Any] | None
    error: str | None = None
    fidelity: str = "full"          # "low": a successive-halving screen, never in the front
    seed_index: int | None = None   # None: the genome's first evaluation; i: one extra training seed i

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_json(self) -> str:
        d = {"key": self.key, "genome": self.genome, "generation": self.generation,
             "result": self.result, "error": self.error}
        if self.fidelity != "full":
            d["fidelity"] = self.fidelity
        if self.seed_index is not None:
            d["seed_index"] = self.seed_index
        return json.dumps(d, allow_nan=False)


def record_ident(r: Record) -> tuple[str, str, int | None]:
    """What :meth:`EvalTask.ident` a journal record answers."""
    return (r.key, r.fidelity, r.seed_index)


def merge_genome(records: Iterable[Record]) -> Record | None:
    """One genome's full-fidelity record: its last first-evaluation record (``seed_index`` None;
    a later one, e.g. with the holdout traded, replaces an earlier one) with every successful
    extra-seed record it does not already cover folded in. ``None`` when there is no such record
    (a genome only screened at low fidelity).

    Extra seeds change only the **selection score** (:mod:`evo.evaluation.results`): over the
    base's ``n`` seeds and the extra seeds ``i >= n``, ``sharpe_mean`` is the mean of the per-seed
    Sharpes (``seed_sharpes``), ``sharpe_sd`` their sample spread and ``max_drawdown_mean`` the
    seed-weighted mean drawdown. Every figure shown — Sharpe, drawdown, return, trades, ``returns``
    (DSR, PBO), whether it has enough trades, learning rates, risk parameters — stays the base's:
    seed index 0's, the model the holdout trades and export ships. A base whose per-seed Sharpes
    are unknown counts its score once per seed. The too-few-trades mark is the exported seed's own.
    Pure: the merged record is new.
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
        per_seed = [selection_score(res, "sharpe")] * n
    per_seed += [selection_score(x, "sharpe") for x in add]
    weights = np.array([n] + [1] * len(add), dtype=np.float64)
    drawdown = np.average([selection_score(x, "max_drawdown") for x in [res] + add], weights=weights)
    merged = {
        **res, "sharpe_mean": float(np.mean(per_seed)), "sharpe_sd": float(np.std(per_seed, ddof=1)),
        "max_drawdown_mean": float(drawdown), "seeds": len(per_seed), "seed_sharpes": per_seed,
        "seconds": round(sum(float(x.get("seconds") or 0.0) for x in [res] + add), 3),
    }
    return Record(base.key, base.genome, base.generation, merged, base.error, base.fidelity, None)


def merge_records(records: Iterable[Record]) -> dict[str, Record]:
    """:func:`merge_genome` for every genome of a journal (in journal order), by key, in the
    order each genome first appears in the journal."""
    by_key: dict[str, list[Record]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r)
    out = {}
    for key, rs in by_key.items():
        merged = merge_genome(rs)
        if merged is not None:
            out[key] = merged
    return out


RESCORE_BASE = 500   # seed indices of the final front's re-scoring: seeds the search never uses


def rescored(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """The final front's re-scoring (journal records of fidelity ``"rescore"``), by genome key:
    ``{"sharpe": mean, "max_drawdown": mean, "seeds": n, "sharpes": [...], "trades": mean}`` over
    the fresh seeds that succeeded (the last record per seed index wins)."""
    by_key: dict[str, dict[int, Record]] = {}
    for r in records:
        if r.fidelity == "rescore" and r.ok:
            by_key.setdefault(r.key, {})[int(r.seed_index or 0)] = r
    out = {}
    for key, seeds in by_key.items():
        rs = [seeds[i].result for i in sorted(seeds)]
        out[key] = {"sharpe": float(np.mean([x["sharpe"] for x in rs])),
                    "max_drawdown": float(np.mean([x["max_drawdown"] for x in rs])),
                    "trades": float(np.mean([x["trades"] for x in rs])), "seeds": len(rs),
                    "sharpes": [float(x["sharpe"]) for x in rs]}
    return out
