"""Export a front member: train its two models one last time and write the bundle.

Final training uses every decision bar whose label is known, except the last ``val_fraction`` of
them, which (after a purge gap of ``horizon`` bars) is the validation segment for early stopping.
Each model trains with the learning rate the search found for it, with the run's seed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from evo.bundle import library_versions, write_bundle
from evo.config import Budget
from evo.errors import StoreError
from evo.evaluate import Dataset, model_config, train_pair_model
from evo.genome import Genome
from evo.store import Record

log = logging.getLogger(__name__)


def final_segments(ds: Dataset, g: Genome, val_fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train, val) decision-bar ranges for the final fit, purged by the horizon."""
    last = ds.n_bars - g.horizon            # decision bars with a known label: < last
    n = last - ds.first_bar
    val_len = max(16, int(n * val_fraction))
    val = (last - val_len, last)
    train = (ds.first_bar, val[0] - g.horizon)
    return train, val


def export_member(record: Record, ds: Dataset, budget: Budget, out: Path, *, seed: int,
                  device: str = "cpu", run_meta: dict | None = None) -> dict:
    """Train the member's models and write the bundle to ``out``; return the manifest."""
    import features
    from models import state_dict_for_export

    if not record.ok:
        raise StoreError(f"member {record.key} failed during the search ({record.error}); pick another")
    g = Genome.from_dict(record.genome)
    result = record.result
    train, val = final_segments(ds, g, budget.evaluate.val_fraction)
    runs, tensors = {}, {}
    for name, genes, lr in (("a", g.model_a, result["lr_a"]), ("b", g.model_b, result["lr_b"])):
        log.info("training model %s on bars %s..%s", name.upper(), *train)
        run, _ = train_pair_model(genes, g, ds, train, val, budget, lr=lr, seed=seed, device=device)
        runs[name] = run
        tensors[name] = state_dict_for_export(run.model)
    warmup = max(ds.warmup[f] for f in g.model_a.features + g.model_b.features)
    idx = ds.bars.index
    manifest = {
        "catalog_version": features.CATALOG_VERSION,
        "member": record.key,
        "genome": g.to_dict(),
        "seq_len": g.seq_len,
        "horizon": g.horizon,
        "min_bars": warmup + g.seq_len,
        "consensus": {"rule": g.consensus, "threshold": g.threshold,
                      "allow_short": budget.evaluate.allow_short},
        "models": {
            name: {
                "config": {**asdict(model_config(genes, g.seq_len, "cpu")), "backend": "vanilla"},
                "features": list(genes.features),
                "scaler": runs[name].scaler.to_dict(),
                "dead_zone": float(runs[name].dead_zone),
                "lr": float(lr),
            }
            for name, genes, lr in (("a", g.model_a, result["lr_a"]), ("b", g.model_b, result["lr_b"]))
        },
        "trained_on": {
            "data": ds.label, "data_hash": ds.data_hash,
            "train": [idx[train[0]].isoformat(), idx[train[1] - 1].isoformat()],
            "val": [idx[val[0]].isoformat(), idx[val[1] - 1].isoformat()],
            "seed": seed, "device": device,
        },
        "metrics": {
            "walk_forward_oos": {k: result[k] for k in ("sharpe", "max_drawdown", "total_return", "trades",
                                                         "exposure", "test_start", "test_end")},
        },
        "run": run_meta or {},
        "versions": library_versions(),
    }
    write_bundle(out, manifest, tensors["a"], tensors["b"])
    return manifest
