"""``evo export``: train a front member for deployment and write its bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from evo.commands._common import budget_of, load_dataset, setup_logging, single_thread_torch
from evo.commands._members import find_member

HELP = "train a front member for deployment and write its bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="the run directory (`evo run --out`), read only")
    p.add_argument("--member", required=True,
                   help="member id from `evo front` (a prefix of at least 4 characters that only one genome's id "
                        "starts with is enough)")
    p.add_argument("--out", default=None, help="bundle file (default RUN_DIR/member-ID.evo)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the final training runs (default cpu; the bundle always runs on the CPU, and a "
                        "cuda fit is not bit-identical to the run's, so its holdout figures are not compared)")
    p.add_argument("--instrument", default=None, metavar="LABEL",
                   help="a run over several instruments: the one to build the bundle for, by its label in "
                        "`front` (e.g. NVDA_1d_1999_2014.csv) or its position (1, 2, ...); its own learning "
                        "rates and risk parameters are used. Default: the first")
    p.add_argument("--refit-all", action="store_true",
                   help="train on every labelled bar, the holdout included, for the best epoch count the "
                        "default fit found (default: train on the bars before the holdout, early-stopped on "
                        "their last val_fraction: the models whose holdout figures the run reports)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="write int8 ONNX graphs (weights dynamically quantised: smaller, faster on a weak CPU); "
                        "refused when they change more than --max-disagreement of the holdout's decisions")
    p.add_argument("--max-disagreement", type=float, default=0.0, metavar="FRACTION",
                   help="with --quantize: the largest share of holdout decisions (0..1) the int8 graphs may "
                        "decide otherwise than the float model (default 0: none)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    single_thread_torch()
    from evo.config import check_device
    from evo.deploy.bundle import Bundle
    from evo.deploy.export import export_member, final_segments
    from evo.errors import ConfigError, StoreError
    from evo.search.store import RunStore

    if not 0.0 <= args.max_disagreement <= 1.0:
        raise ConfigError(f"--max-disagreement must be a fraction in [0, 1], got {args.max_disagreement}")
    store = RunStore.open(Path(args.run_dir))
    records = store.records()
    member = find_member(records, args.member, run=str(store.path))
    _warn_about(member, records, store.meta)
    budget = budget_of(store.meta)
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda":
        check_device(budget)
    record, data, data_hash, first = pick_instrument(member, store.meta, args.instrument)
    ds = load_dataset(data, budget, data_hash, **store.meta.get("source", {}))
    holdout = final_segments(ds, budget)[2]
    recorded = (store.meta.get("holdout") or {}).get("start")
    start = None if holdout is None else ds.bars.index[holdout[0]].isoformat()
    if first and recorded != start and "holdout" in store.meta:
        raise StoreError(f"{store.path}: the run's holdout starts at {recorded}, this data and budget put it at "
                         f"{start}; the bars changed since the run")
    out = Path(args.out) if args.out else store.path / f"member-{member.key[:8]}.evo"
    manifest = export_member(record, ds, budget, out, seed=int(store.meta["seed"]), device=device,
                             refit_all=args.refit_all, run_meta={"run": str(store.path), "budget": budget.name},
                             front_device=store.meta.get("device"), quantize=args.quantize,
                             max_disagreement=args.max_disagreement)
    diff = Bundle.load(out, engine="torch").verify()  # read back as the trading PC will: CPU, vanilla sLSTM
    graphs = Bundle.load(out, engine="onnx")          # and as a torch-free trading PC will: onnxruntime
    graphs.verify()
    mode = manifest["training"]["mode"]
    what = ("default fit: trained on the bars before the holdout, early-stopped on their last validation share, "
            "the models whose holdout figures the front shows") if mode == "default" else f"{mode} fit"
    print(f"wrote {out} for member {member.key} ({what}; golden probabilities reproduced within "
          f"{diff:.1e}; live stream keeps {manifest['tail_bars']} bars)")
    print(graphs_line(manifest["graphs"]))
    return 0


def graphs_line(block: dict) -> str:
    """One line on the bundle's ONNX graphs: how they compared with the torch models, and for int8
    graphs the decisions they change and their latency gain."""
    c = block["check"]
    line = (f"ONNX graphs (onnxruntime, no torch needed) reproduce the torch models over the {c['span']}: "
            f"{c['decisions']} decisions equal, probabilities within {c['max_prob_diff']:.1e}")
    q = block.get("quantization")
    if q:
        lat = q["latency_ms"]
        line += (f"; int8: {q['differ']} of {q['decisions']} decisions differ ({q['disagreement']:.2%}, limit "
                 f"{q['max_disagreement']:.2%}), probabilities move up to {q['max_prob_diff']:.3f}, p50 "
                 f"{lat['int8']['p50']:.3f} ms vs {lat['float']['p50']:.3f} ms float per decision "
                 f"(x{q['latency_gain_p50']:.2f}), {q['bytes']['int8'] / 1e6:.2f} MB vs "
                 f"{q['bytes']['float'] / 1e6:.2f} MB")
    return line


def _warn_about(member, records: dict, meta: dict) -> None:
    """One line each when the member never traded over the holdout, or shares its scores with other
    front members (the search could not tell them apart)."""
    import sys

    from evo.reporting.front import holdout_traded, score_groups
    from evo.search.objectives import pareto_front

    if member.ok and holdout_traded(member.result.get("holdout")) is False:
        print(f"warning: member {member.key[:8]} made no trade over the holdout: this bundle would not have "
              "traded there either", file=sys.stderr)
    names = tuple(meta.get("objectives") or ("sharpe", "drawdown"))
    twins = next((g for g in score_groups(pareto_front(records.values(), names), names) if member.key in g), [])
    if twins:
        others = ", ".join(k[:8] for k in twins if k != member.key)
        print(f"warning: member {member.key[:8]} has the very same scores as {others}: the search could not tell "
              "them apart (see `evo front`)", file=sys.stderr)


def pick_instrument(record, meta: dict, which: str | None):
    """``(record, data spec, data hash, is_first)`` for the instrument to export. With several
    instruments the record's learning rates, risk parameters and holdout figures become that
    instrument's own (each instrument tuned its own during the search); the walk-forward figures
    stay the combined ones."""
    from dataclasses import replace

    from evo.errors import ConfigError

    instruments = meta.get("instruments") or []
    if which is None:
        return _own_holdout(record, 0), meta["data"], meta["data_hash"], True
    if not instruments:
        raise ConfigError("--instrument: this run searched one instrument; leave the option out")
    labels = [str(i.get("label", i["data"])) for i in instruments]
    names = [label.rsplit("/", 1)[-1] for label in labels]
    if which.isdigit() and 1 <= int(which) <= len(instruments):
        idx = int(which) - 1
    elif which in labels or which in names:
        idx = labels.index(which) if which in labels else names.index(which)
    else:
        raise ConfigError(f"--instrument {which!r}: the run's instruments are {', '.join(names)} (or 1..{len(names)})")
    own = (record.result or {}).get("instruments") or []
    if record.ok and len(own) == len(instruments):
        o = own[idx]
        record = replace(record, result={**record.result, "lr_a": o["lr_a"], "lr_b": o["lr_b"], "risk": o["risk"]})
    return _own_holdout(record, idx), instruments[idx]["data"], instruments[idx]["data_hash"], idx == 0


def _own_holdout(record, idx: int):
    """The record with its holdout figures narrowed to instrument ``idx``'s own (a run over several
    instruments keeps the combined figures and each instrument's in ``holdout.instruments``): the
    bundle is traded on that instrument alone, so its replay compares with those."""
    from dataclasses import replace

    holdout = (record.result or {}).get("holdout")
    parts = holdout.get("instruments") if isinstance(holdout, dict) else None
    if not parts or idx >= len(parts):
        return record
    own = {**parts[idx], "combined": {k: holdout[k] for k in ("sharpe", "max_drawdown", "trades") if k in holdout}}
    return replace(record, result={**record.result, "holdout": own})
