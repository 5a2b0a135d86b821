"""``evo front``: a run's Pareto front as a table or JSON.

The table fits the terminal it is printed in. At 80 columns it keeps what a trader decides on, each
figure whole: the id (what ``export --member`` takes), WF Sharpe, DSR, WF maxDD, WF trades, HO
Sharpe, HO trades and a one-line topology; a wider terminal adds the consensus rule, the models'
accuracy, the returns, the window, the features (:data:`OPTIONAL`, in that order, each while it
fits). ``--wide``, a file or a pipe get every column and no line is wrapped. Under the table each
member is spelled out in words.

A member that never traded in the holdout shows ``no trades`` there (a Sharpe of +0.00 from no
trade is no figure). Members whose objectives are identical (the search cannot tell them apart)
share one row: it shows the first by id and lists the others' ids.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evo.commands._common import make_console, setup_logging

HELP = "show a run's Pareto front"

GAP = 2          # columns between two table columns (padding 1 on each side, no rule)
MIN_TOPOLOGY = 12
HO_SHARPE = 5    # the essential column that says "no trades"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `evo run` (it may still be running)")
    p.add_argument("--json", action="store_true",
                   help="print the front as one JSON object (every figure, each member's genome) for scripts")
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="show only the first N rows in --sort order (default: all)")
    p.add_argument("--sort", choices=("sharpe", "drawdown", "trades"), default="sharpe",
                   help="row order: walk-forward Sharpe, highest first (default); max drawdown, smallest first; "
                        "walk-forward trades, most first")
    p.add_argument("--wide", action="store_true",
                   help="every column, however narrow the terminal (default: the columns that fit it; "
                        "written to a file or a pipe, every column)")


def _abbrev(features: list[str], width: int | None = 38) -> str:
    text = ",".join(features)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _fmt(value, pattern: str, missing: str = "-") -> str:
    return missing if value is None else pattern.format(value)


def _ho_sharpe(m: dict) -> str:
    if m.get("holdout_traded") is False:
        return "no trades"
    return _fmt(m["holdout_sharpe"], "{:+.2f}")


def _ho_drawdown(m: dict) -> str:
    return "-" if m.get("holdout_traded") is False else _fmt(m["holdout_max_drawdown"], "{:.1%}")


def _rescored(m: dict) -> str:
    """The member's walk-forward Sharpe re-scored with fresh seeds (``ga.rescore``), with their count."""
    r = m.get("rescored")
    return "-" if not r else f"{r['sharpe']:+.2f} ({r['seeds']})"


@dataclass(frozen=True)
class Column:
    header: str                       # lines joined by "\n"
    cell: Callable[[dict, Any], str]  # (member, Genome) -> text
    numeric: bool = True


def _count(value) -> str:
    """A trade count (a mean over instruments may not be whole)."""
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _columns(cut: int | None) -> tuple[list[Column], list[Column]]:
    """The essential and the optional columns; ``cut``: the most characters of a features list
    (None: whole)."""
    from evo.reporting.labels import rule_short

    essential = [
        Column("id", lambda m, g: m["id"][:8], numeric=False),
        Column("WF\nSharpe", lambda m, g: f"{m['sharpe']:+.2f}"),
        Column("DSR", lambda m, g: _fmt(m["dsr"], "{:.2f}", "n/m")),
        Column("WF\nmaxDD", lambda m, g: f"{m['max_drawdown']:.1%}"),
        Column("WF\ntrades", lambda m, g: _count(m["trades"])),
        Column("HO\nSharpe", lambda m, g: _ho_sharpe(m)),
        Column("HO\ntrades", lambda m, g: _count(m.get("holdout_trades"))),
    ]
    optional = [
        Column("re-scored\nSharpe", lambda m, g: _rescored(m)),
        Column("rule\n(long if)", lambda m, g: rule_short(g, m.get("risk")), numeric=False),
        Column("acc A/B\nchance .33", lambda m, g: f"{m['accuracy_a']:.2f}/{m['accuracy_b']:.2f}"),
        Column("WF\nreturn", lambda m, g: f"{m['total_return']:+.1%}"),
        Column("HO\nmaxDD", lambda m, g: _ho_drawdown(m)),
        Column("window/\nhorizon", lambda m, g: f"{g.seq_len}/{g.horizon}"),
        Column("gen", lambda m, g: str(m.get("generation", "-"))),
        Column("model A features", lambda m, g: _abbrev(list(g.model_a.features), cut), numeric=False),
        Column("model B features", lambda m, g: _abbrev(list(g.model_b.features), cut), numeric=False),
    ]
    return essential, optional


def _width(col: Column, rows: list[tuple[dict, Any]]) -> int:
    return max([len(line) for line in col.header.split("\n")] + [len(col.cell(m, g)) for m, g in rows])


def rows_of(members: list[dict]) -> list[tuple[dict, list[str]]]:
    """One row per member, except that members with identical objectives (``same_scores``) share
    one row, shown by the first of them by id: ``(member shown, ids of the others)``, in the order
    of ``members``' first of each group."""
    by_id = {m["id"]: m for m in members}
    rows, done = [], set()
    for m in members:
        if m["id"] in done:
            continue
        group = sorted(k for k in (m["id"], *m.get("same_scores", [])) if k in by_id)
        done.update(group)
        rows.append((by_id[group[0]], group[1:]))
    return rows


def front_table(payload: dict, width: int | None):
    """The rich Table of ``payload``'s members (one row per :func:`rows_of`) for a console ``width``
    columns wide: the essential columns, then the optional ones while they fit, the topology last
    (None: every column, each whole)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from evo.genome import Genome
    from evo.reporting.labels import topology_short

    rows = rows_of(payload["members"])
    genomes = [(m, Genome.from_dict(m["genome"])) for m, _ in rows]
    essential, optional = _columns(None if width is None else 38)
    topology = Column("model A · B", lambda m, g: topology_short(g), numeric=False)
    topo_width = _width(topology, genomes)
    used = sum(_width(c, genomes) for c in essential) + GAP * len(essential)   # + the topology's gap
    chosen = list(essential)
    for col in optional:   # in order of importance, while they fit
        w = _width(col, genomes) + GAP
        if width is not None and used + w + topo_width > width:
            break
        chosen.append(col)
        used += w
    topo_max = None if width is None else max(MIN_TOPOLOGY, width - used)
    table = Table(title=f"Pareto front: {payload['run']} ({_trials_used(payload)})", title_justify="left",
                  box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    for col in chosen:
        table.add_column(col.header, justify="right" if col.numeric else "left", no_wrap=True)
    table.add_column(topology.header, justify="left", max_width=topo_max)
    for (m, others), (_, g) in zip(rows, genomes):
        cells: list[Any] = [c.cell(m, g) for c in chosen]
        if m.get("holdout_traded") is False:   # marked: no figure, not a poor one
            cells[HO_SHARPE] = Text(cells[HO_SHARPE], style="yellow")
        topo = Text(topology.cell(m, g), no_wrap=True, overflow="ellipsis")
        if others:
            note = Text(f"+{len(others)} with the same scores: {' '.join(k[:8] for k in others)}", style="dim")
            topo = Group(topo, note)
        table.add_row(*cells, topo)
    return table


def print_front(store, *, as_json: bool, top: int | None, sort: str = "sharpe", wide: bool = False,
                console=None) -> None:
    from evo.reporting.front import front_payload, latest_screens
    from evo.search.records import rescored

    journal = list(store.iter_records())
    payload = front_payload(store.records(), store.meta, str(store.path), screens=latest_screens(journal),
                            rescored=rescored(journal))
    key = {"sharpe": lambda m: -m["sharpe"], "drawdown": lambda m: m["max_drawdown"],
           "trades": lambda m: -m["trades"]}[sort]
    payload["members"].sort(key=key)
    if as_json:
        if top:
            payload["members"] = payload["members"][:top]
        print(json.dumps(payload, indent=1, allow_nan=False))
        return
    from rich.table import Table

    from evo.commands._common import PIPE_WIDTH
    from evo.genome import Genome
    from evo.reporting.labels import LEGEND, genome_words

    console = console or make_console()
    allow_short = bool(((store.meta.get("budget") or {}).get("evaluate") or {}).get("allow_short"))
    if top:   # the first N rows; a shared row counts once
        keep = {k for m, others in rows_of(payload["members"])[:top] for k in (m["id"], *others)}
        payload["members"] = [m for m in payload["members"] if m["id"] in keep]
    terminal = console.is_terminal and console.width < PIPE_WIDTH
    table = front_table(payload, None if wide or not terminal else console.width)
    if wide and terminal:   # every column, each whole: rows longer than the terminal, which folds them
        from rich.measure import Measurement

        width = console.width
        console.width = max(width, Measurement.get(console, console.options.update(width=PIPE_WIDTH), table).maximum)
        _print(console, table)
        console.width = width
    else:
        _print(console, table)

    words = Table.grid(padding=(0, 2))
    words.add_column(no_wrap=True)
    words.add_column()
    for m, others in rows_of(payload["members"]):
        lines = genome_words(Genome.from_dict(m["genome"]), m.get("risk"), allow_short=allow_short)
        if others:
            names = ", ".join(payload["objectives"])
            lines.append(f"shown for {len(others) + 1} members with the same scores ({names}; the first by id): "
                         f"{', '.join([m['id'][:8], *(k[:8] for k in others)])}")
        words.add_row(m["id"][:8], "\n".join(lines))
    if payload["members"]:
        console.print()
        _print(console, words)
        console.print()
    _print_summary(console, payload)
    console.print("[dim]WF = walk-forward out-of-sample (test folds, after costs); HO = the untouched holdout; "
                  "DSR = deflated Sharpe: probability of skill (< 0.95: no evidence of skill)[/]")
    if any(m.get("holdout_traded") is False for m in payload["members"]):
        console.print("[dim]no trades = the member never opened a position in the holdout: its HO Sharpe and "
                      "drawdown say nothing[/]")
    console.print(f"[dim]{LEGEND}[/]")
    if payload["members"]:
        console.print(f"[dim]export one: python -m evo export {store.path} --member ID --out model.evo "
                      "(ID: the 8 characters shown, or any unique prefix of 4 or more)[/]")


def _print(console, renderable) -> None:
    """Print a table; written to a file or a pipe, without the spaces rich pads each line with."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _print_summary(console, payload: dict) -> None:
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
        ho = "no trades" if b.get("holdout_trades") == 0 else _fmt(b["holdout_sharpe"], "{:+.2f}")
        console.print(f"baseline {b['name']}: WF Sharpe {_fmt(b['sharpe'], '{:+.2f}')}, "
                      f"WF maxDD {_fmt(b['max_drawdown'], '{:.1%}')}, HO Sharpe {ho}")
    if payload["holdout"] and all(m["holdout_sharpe"] is None for m in payload["members"]):
        console.print("holdout: not traded yet (it is, once the last generation has finished)")
    if not payload["members"]:
        console.print("[yellow]no genome traded enough to enter the front[/]")


def _trials_used(payload) -> str:
    """How many trials each honesty figure used, for the table's header."""
    dsr = f"DSR over {payload['dsr_trials']} trials" if payload.get("dsr_note") is None else "DSR not meaningful"
    pbo = f"PBO over {payload['pbo_trials']}" if payload.get("pbo_note") is None else "PBO not meaningful"
    return f"{dsr}, {pbo}; {payload['no_trade']} of {payload['trials']} never traded"


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.search.store import RunStore

    print_front(RunStore.open(Path(args.run_dir)), as_json=args.json, top=args.top, sort=args.sort,
                wide=args.wide)
    return 0
