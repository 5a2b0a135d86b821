"""``evo front``: a run's Pareto front as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "show a run's Pareto front"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    p.add_argument("--top", type=int, default=None)
    p.add_argument("--sort", choices=("sharpe", "drawdown", "trades"), default="sharpe")

def _abbrev(features: list[str], width: int = 38) -> str:
    text = ",".join(features)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_front(store, *, as_json: bool, top: int | None, sort: str = "sharpe") -> None:
    from evo.reporting.front import front_payload, latest_screens

    payload = front_payload(store.records(), store.meta, str(store.path), screens=latest_screens(store.iter_records()))
    key = {"sharpe": lambda m: -m["sharpe"], "drawdown": lambda m: m["max_drawdown"],
           "trades": lambda m: -m["trades"]}[sort]
    payload["members"].sort(key=key)
    if top:
        payload["members"] = payload["members"][:top]
    if as_json:
        print(json.dumps(payload, indent=1, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    from evo.genome import Genome

    table = Table(title=f"Pareto front: {payload['run']} ({_trials_used(payload)})", title_justify="left",
                  caption="WF = walk-forward out-of-sample (test folds, after costs); HO = untouched holdout; "
                          "DSR = deflated Sharpe (probability of skill)", caption_justify="left")
    numeric = ("WF Sharpe", "DSR", "WF maxDD", "WF return", "trades", "HO Sharpe", "HO maxDD")
    for col in ("id", *numeric, "acc A/B", "model A", "model B", "window/h", "consensus"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for m in payload["members"]:
        g = Genome.from_dict(m["genome"])
        risk = m.get("risk") or {}
        rule = f"{g.consensus}>{risk.get('threshold', g.threshold):.2f}"
        if g.consensus == "weighted":
            rule += f" w{risk.get('weight', 0.5):.2f}"
        table.add_row(
            m["id"][:8], f"{m['sharpe']:+.2f}", _fmt(m["dsr"], "{:.2f}", "n/m"), f"{m['max_drawdown']:.1%}",
            f"{m['total_return']:+.1%}", str(m["trades"]), _fmt(m["holdout_sharpe"], "{:+.2f}"),
            _fmt(m["holdout_max_drawdown"], "{:.1%}"), f"{m['accuracy_a']:.2f}/{m['accuracy_b']:.2f}",
            f"{g.model_a.describe()}\n{_abbrev(list(g.model_a.features))}",
            f"{g.model_b.describe()}\n{_abbrev(list(g.model_b.features))}",
            f"{g.seq_len}/{g.horizon}", rule,
        )
    # Not a terminal (a pipe, a log file): rich would assume 80 columns and squeeze the table.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    span = payload["test_span"]
    pbo = payload["pbo"]
    causes = ", ".join(f"{k} {v}" for k, v in payload["failures"].items())
    screened = f" (+{payload['low_fidelity']} low-fidelity screens)" if payload.get("low_fidelity") else ""
    console.print(f"{payload['evaluated']} genomes evaluated{screened}, {payload['failed']} failed"
                  f"{f' ({causes})' if causes else ''}, {payload['too_few_trades']} with too few trades; "
                  f"test span {span[0][:10] + '..' + span[1][:10] if span else '-'}")
    dsr_what = payload.get("dsr_note") or (f"over {payload['dsr_trials']} trading trials = probability the Sharpe "
                                            "beats the best of that many lucky tries (< 0.95: no evidence of skill)")
    pbo_what = payload.get("pbo_note") or (f"{pbo:.2f} over {payload['pbo_trials']} trading trials "
                                           "(0.5 = what noise gives)")
    console.print(f"selection bias: {payload['trials']} trials, {payload['no_trade']} never traded (left out); "
                  f"DSR {dsr_what}; PBO {pbo_what}")
    for b in payload["baselines"]:
        console.print(f"baseline {b['name']}: WF Sharpe {_fmt(b['sharpe'], '{:+.2f}')}, "
                      f"WF maxDD {_fmt(b['max_drawdown'], '{:.1%}')}, HO Sharpe {_fmt(b['holdout_sharpe'], '{:+.2f}')}")
    if payload["holdout"] and all(m["holdout_sharpe"] is None for m in payload["members"]):
        console.print("holdout: not traded yet (it is, once the last generation has finished)")
    if not payload["members"]:
        console.print("[yellow]no genome traded enough to enter the front[/]")


def _fmt(value, pattern: str, missing: str = "-") -> str:
    return missing if value is None else pattern.format(value)


def _trials_used(payload) -> str:
    """How many trials each honesty figure used, for the table's header."""
    dsr = f"DSR over {payload['dsr_trials']} trials" if payload.get("dsr_note") is None else "DSR not meaningful"
    pbo = f"PBO over {payload['pbo_trials']}" if payload.get("pbo_note") is None else "PBO not meaningful"
    return f"{dsr}, {pbo}; {payload['no_trade']} of {payload['trials']} never traded"


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.search.store import RunStore

    print_front(RunStore.open(Path(args.run_dir)), as_json=args.json, top=args.top, sort=args.sort)
    return 0
