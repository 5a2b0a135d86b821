"""The journal's record type and the rule that folds a genome's evaluations into one record
(its first evaluation plus a survivor's extra training seeds). Pure: records in, records out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from evo.evaluation.results import SEED_AVERAGED


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
        **res, **{k: mean(k) for k in SEED_AVERAGED if k in res},
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
