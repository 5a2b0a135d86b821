"""``evo export``: train a front member for deployment and write its bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from evo.commands._common import budget_of, load_dataset, setup_logging

HELP = "train a front member for deployment and write its bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--member", required=True, help="member id (a unique prefix is enough)")
    p.add_argument("--out", default=None, help="bundle file (default RUN_DIR/member-ID.evo)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.config import check_device
    from evo.errors import StoreError
    from evo.export import export_member
    from evo.store import RunStore

    store = RunStore.open(Path(args.run_dir))
    records = store.records()
    matches = [r for k, r in records.items() if k.startswith(args.member)]
    if len(matches) != 1:
        raise StoreError(f"{store.path}: member id {args.member!r} matches {len(matches)} genomes; "
                         "use an id from `python -m evo front`")
    budget = budget_of(store.meta)
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda":
        check_device(budget)
    ds = load_dataset(store.meta["data"], budget, store.meta["data_hash"])
    out = Path(args.out) if args.out else store.path / f"member-{matches[0].key[:8]}.evo"
    export_member(matches[0], ds, budget, out, seed=int(store.meta["seed"]), device=device,
                  run_meta={"run": str(store.path), "budget": budget.name})
    print(f"wrote {out}")
    return 0
