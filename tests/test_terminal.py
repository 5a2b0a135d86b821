"""What a trader sees in the terminal: ``evo front`` at 80 and 120 columns in a real pseudo-terminal
and through a pipe, members that never traded in the holdout, members with identical scores, the
member-id prefix rule, ``--help`` texts, and Ctrl-C / SIGTERM during ``evo run``.

The front tests read one run directory written record by record through
:class:`evo.search.store.RunStore` (real genomes of the smoke search space, figures chosen so the
front has a member with no holdout trade and four members with identical objectives), so each
``evo front`` costs a process start, not a search. The interrupt tests start a real tiny search.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest

from evo.search.records import Record
from evo.search.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
SPAN = 120   # test bars of every record

# (WF Sharpe, WF max drawdown, holdout trades) of the front members, best Sharpe first; the last
# four have identical objectives.
FRONT = [(0.79, 0.30, 0), (0.55, 0.20, 14), (0.31, 0.11, 9)] + [(0.12, 0.05, 5)] * 4
DOMINATED = [(0.10, 0.40, None), (-0.20, 0.50, None), (0.05, 0.35, None)]


def _result(rng, sharpe: float, drawdown: float, holdout_trades: int | None) -> dict:
    returns = rng.normal(0.0005, 0.01, SPAN)
    res = {
        "sharpe": sharpe, "max_drawdown": drawdown, "total_return": float(np.sum(returns)), "trades": 7,
        "exposure": 0.4, "traded": True, "enough_trades": True, "accuracy_a": 0.38, "accuracy_b": 0.41,
        "f1_a": 0.3, "f1_b": 0.33, "lr_a": 1e-3, "lr_b": 2e-3, "test_start": "2010-01-04T00:00:00",
        "test_end": "2010-06-24T00:00:00", "test_bars": SPAN, "seconds": 1.0,
        "returns": [float(x) for x in returns], "risk": {"threshold": 0.37, "weight": 0.6},
    }
    if holdout_trades is not None:
        flat = holdout_trades == 0   # never opened a position: every figure is 0
        res["holdout"] = {"sharpe": 0.0 if flat else 0.42, "max_drawdown": 0.0 if flat else 0.08,
                          "total_return": 0.0 if flat else 0.05, "trades": holdout_trades,
                          "start": "2012-01-03T00:00:00", "end": "2014-12-31T00:00:00"}
    return res


def make_run(path: Path) -> dict[str, list[str]]:
    """The run directory; returns the front's ids by kind (``best``, ``same`` and ``all``)."""
    import features
    from evo.genome import FeaturePools, random_genome
    from experiments import load_budget

    budget = load_budget("smoke")
    pools = FeaturePools(a=tuple(features.model_a_features()), b=tuple(features.model_b_features()))
    store = RunStore.create(path, {
        "budget": budget.to_dict(), "data": None, "data_label": "NVDA_1d", "data_hash": "test", "n_bars": 3000,
        "seed": 0, "generations": 1, "device": "cpu", "evo_version": "test", "catalog_version": "1",
        "created": "2026-01-01T00:00:00", "pools": {"a": list(pools.a), "b": list(pools.b)},
        "holdout": {"start": "2012-01-03T00:00:00", "end": "2014-12-31T00:00:00", "fraction": 0.2},
    })
    rng = np.random.default_rng(7)
    ids = []
    for sharpe, dd, ho in FRONT + DOMINATED:
        g = random_genome(budget.search, pools, rng)
        store.append(Record(g.key(), g.to_dict(), 0, _result(rng, sharpe, dd, ho)))
        ids.append(g.key())
    store.save_checkpoint({"generation": 0, "population": ids, "rng_state": {}})
    return {"best": ids[:1], "same": ids[3:7], "all": ids[:len(FRONT)]}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    path = tmp_path_factory.mktemp("terminal") / "run"
    return path, make_run(path)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    return {**env, "OMP_NUM_THREADS": "1", "TERM": "xterm-256color", **extra}


def in_terminal(args: list[str], columns: int, lines: int = 50) -> str:
    """``python -m evo ARGS`` with stdout and stderr on a pseudo-terminal of ``columns`` x ``lines``;
    what it showed, without colour codes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "evo", *args], cwd=ROOT, stdin=slave, stdout=slave,
                            stderr=slave, env=_env(COLUMNS=str(columns), LINES=str(lines)), close_fds=True)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError(f"evo {' '.join(args)}: no output for 120 s\n{out.decode(errors='replace')}")
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return ANSI.sub("", out.decode()).replace("\r\n", "\n")


def through_pipe(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=_env(**env))


def front_json(path: Path) -> dict:
    proc = through_pipe(["front", str(path), "--json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def table_rows(text: str, ids: list[str]) -> dict[str, str]:
    """The table row of each id shown (the first line that starts with its 8 characters)."""
    rows = {}
    for line in text.splitlines():
        for k in ids:
            if line.startswith(k[:8]) and k not in rows:
                rows[k] = line
    return rows


def cells_before_topology(row: str) -> list[str]:
    """The row's cells left of the topology (the only column with a "×": ``16×2 ms · 8×1 m``)."""
    return row[:row.index("×")].rsplit(" ", 1)[0].split()


# ------------------------------------------------------------------------------------------------
# evo front in a terminal and through a pipe


@pytest.mark.parametrize("columns", [80, 120])
def test_front_fits_the_terminal_with_every_decisive_figure_whole(run, columns):
    path, ids = run
    payload = {m["id"]: m for m in front_json(path)["members"]}
    text = in_terminal(["front", str(path)], columns)
    assert max(len(line) for line in text.splitlines()) <= columns
    rows = table_rows(text, ids["all"])
    shown = [k for k in ids["all"] if k not in ids["same"]] + [min(ids["same"])]
    assert set(rows) == set(shown)
    for k in shown:
        m = payload[k]
        cells = cells_before_topology(rows[k])
        ho = ["no", "trades"] if m["holdout_trades"] == 0 else [f"{m['holdout_sharpe']:+.2f}"]
        # id (whole: what export --member takes), WF Sharpe, DSR, WF maxDD, trades, HO Sharpe, HO trades
        assert cells[:6 + len(ho)] == [k[:8], f"{m['sharpe']:+.2f}", f"{m['dsr']:.2f}",
                                       f"{m['max_drawdown']:.1%}", str(m["trades"]), *ho,
                                       str(m["holdout_trades"])]
        assert "…" not in " ".join(cells)
    if columns >= 120:   # a wider terminal adds columns: the consensus rule and the accuracies
        assert "rule" in text and "acc A/B" in text and ("either>0.37" in text or "both>0.37" in text)
    else:
        assert "acc A/B" not in text.split("\n\n")[0]


def test_front_through_a_pipe_has_every_column_and_wraps_no_line(run):
    path, ids = run
    proc = through_pipe(["front", str(path)], COLUMNS="80")   # a pipe ignores the terminal's width
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines), "lines padded with spaces"
    assert any(len(line) > 80 for line in lines)
    for header in ("model A features", "model B features", "acc A/B", "window/", "HO"):
        assert header in text
    rows = table_rows(text, ids["all"])
    for k, row in rows.items():
        assert "×" in row and "…" not in " ".join(cells_before_topology(row))
    assert any(line.startswith("export one: python -m evo export ") and "--member ID --out model.evo" in line
               for line in lines)
    assert any(line.startswith("selection bias:") and "PBO" in line for line in lines)


def test_wide_shows_every_column_in_a_narrow_terminal(run):
    path, ids = run
    narrow = in_terminal(["front", str(path)], 80)
    wide = in_terminal(["front", str(path), "--wide"], 80)
    assert "model A features" not in narrow and "model A features" in wide
    best = table_rows(wide, ids["best"])[ids["best"][0]]
    assert "no trades" in best and ("either>0.37" in best or "both>0.37" in best)


def test_a_member_without_a_holdout_trade_says_no_trades(run):
    path, ids = run
    members = {m["id"]: m for m in front_json(path)["members"]}
    best = members[ids["best"][0]]
    assert best["holdout_trades"] == 0 and best["holdout_traded"] is False
    assert all(m["holdout_traded"] is True for k, m in members.items() if k != ids["best"][0])
    text = through_pipe(["front", str(path)]).stdout
    row = table_rows(text, ids["best"])[ids["best"][0]]
    assert "no trades" in row and "+0.00" not in row
    assert "no trades = the member never opened a position in the holdout" in text


def test_members_with_identical_scores_share_one_row_that_lists_them(run):
    path, ids = run
    members = {m["id"]: m for m in front_json(path)["members"]}
    same = sorted(ids["same"])
    for k in same:
        assert sorted(members[k]["same_scores"]) == [x for x in same if x != k]
    assert all(members[k]["same_scores"] == [] for k in ids["all"] if k not in same)
    for columns in (80, 120):
        text = in_terminal(["front", str(path)], columns)
        # the note may wrap inside the last column (80 columns), the other cells of its lines empty
        assert f"+{len(same) - 1} with the same scores:" in " ".join(text.split())
        starts = [line[:8] for line in text.splitlines()]
        assert starts.count(same[0][:8]) == 2            # its table row and its description in words
        assert all(starts.count(k[:8]) == 0 for k in same[1:])
        assert all(k[:8] in text for k in same)         # the others are listed, whole
        assert f"shown for {len(same)} members with the same scores (sharpe, drawdown; the first by id)" \
            in " ".join(text.split())


def test_top_counts_a_shared_row_once(run):
    path, ids = run
    text = through_pipe(["front", str(path), "--top", "4"]).stdout
    rows = table_rows(text, ids["all"])
    assert len(rows) == 4 and min(ids["same"]) in rows
    assert len(front_json(path)["members"]) == len(FRONT)


def test_topology_and_rule_in_words(run):
    from evo.genome import Genome, ModelGenes
    from evo.reporting.labels import model_words, rule_words, topology_short

    genes = ModelGenes(features=("rsi_14", "sma_20"), embedding_dim=16, num_blocks=2, num_heads=2,
                       slstm_at=(1,), dropout=0.0)
    assert model_words(genes) == "16 wide × 2 blocks (mLSTM, sLSTM), 2 heads, 2 features"
    g = Genome(model_a=genes, model_b=genes, seq_len=12, horizon=3, consensus="either", threshold=0.41)
    assert topology_short(g) == "16×2 ms · 16×2 ms"
    assert rule_words(g, {"threshold": 0.37}) == "long when either model p(up) > 0.37, neither p(down) > 0.37"
    g = Genome(model_a=genes, model_b=genes, seq_len=12, horizon=3, consensus="weighted", threshold=0.41)
    assert rule_words(g, {"threshold": 0.5, "weight": 0.25}) == "long when 0.25×A + 0.75×B p(up) > 0.50"
    text = through_pipe(["front", str(run[0])]).stdout
    assert "chance is 1/3" in text and "wide × " in text and "long when " in text


def test_report_honesty_table_says_no_trades(run):
    from evo.reporting.front import front_payload
    from evo.reporting.report import honesty_table
    from evo.search.objectives import pareto_front

    path, ids = run
    store = RunStore.open(path)
    records = store.records()
    front = pareto_front(records.values())
    html = honesty_table(front_payload(records, store.meta, str(path)), records, front, None)
    row = next(r for r in html.split("<tr>") if ids["best"][0] in r)
    assert "no trades" in row and "+0.00" not in row
    other = next(r for r in html.split("<tr>") if ids["all"][1] in r)
    assert "no trades" not in other and "+0.42" in other


# ------------------------------------------------------------------------------------------------
# member ids


def test_a_member_prefix_must_be_unique_and_at_least_4_characters(run):
    from evo.commands._members import MIN_PREFIX, find_member
    from evo.errors import StoreError

    records = RunStore.open(run[0]).records()
    k = run[1]["best"][0]
    assert MIN_PREFIX == 4
    for prefix in (k, k[:8], k[:4], f" {k[:6].upper()} "):
        assert find_member(records, prefix).key == k
    for prefix, message in ((k[:3], "too short"), ("", "too short"), ("zz" + k[2:8], "not an id"),
                            ("ffffffff", "no genome's id starts with")):
        with pytest.raises(StoreError, match=message):
            find_member(records, prefix)
    twins = {"abcd0000aaaaaaaa": 1, "abcd0000bbbbbbbb": 2, "abce000000000000": 3}
    with pytest.raises(StoreError, match=r"matches 2 genomes \(abcd0000aaaaaaaa, abcd0000bbbbbbbb\)"):
        find_member(twins, "abcd")
    assert find_member(twins, "abcd0000b") == 2 and find_member(twins, "abce") == 3


# ------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM during evo run

# Learning-rate tuning (Optuna trials) takes most of each genome's time here, so an interrupt lands
# inside an Optuna trial, where Optuna used to log the KeyboardInterrupt with a long traceback.
INTERRUPT_BUDGET = """
description = "test budget: interrupts"
device = "cpu"
[search]
embedding_dim = [8, 16]
num_blocks = [1, 1]
num_heads = [1, 2]
slstm_share = 0.5
dropout = [0.0, 0.2]
seq_len = [8, 12]
horizon = [1, 3]
threshold = [0.34, 0.45]
consensus = ["both", "either", "weighted"]
max_features_a = 5
max_features_b = 4
[train]
max_epochs = 1
patience = 1
batch_size = 64
max_train_windows = 400
lr_trials = 3
lr_trial_epochs = 2
[evaluate]
folds = 2
test_fraction = 0.3
val_fraction = 0.15
min_trades = 1
[ga]
population = 4
generations = 1
"""


@pytest.fixture(scope="module")
def interrupt_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupt")
    (root / "tiny.toml").write_text(INTERRUPT_BUDGET)
    return root


def _optuna_trial_running(db: Path) -> bool:
    import sqlite3

    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] > 0
    except sqlite3.Error:   # not created yet, or locked for a moment
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, what", [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"),
                                               (signal.SIGTERM, 143, "SIGTERM")])
def test_an_interrupted_run_says_what_it_saved_and_exits_with_the_signals_status(interrupt_dir, sig, status, what):
    out = interrupt_dir / f"run-{sig.name}"
    proc = subprocess.Popen([sys.executable, "-m", "evo", "run", "--budget", "tiny.toml", "--out", str(out),
                             "--seed", "1"], cwd=interrupt_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(EVO_CACHE_DIR=str(interrupt_dir / "cache"), PYTHONPATH=str(ROOT)))
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:   # the first genome is in the journal and
        if journal.exists() and journal.read_text().strip() and _optuna_trial_running(out / "studies.db"):
            break                                                # the next one's tuning is under way
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.communicate()[1]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    n = len(journal.read_text().splitlines())
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and "Trial " not in stderr, stderr
    assert " bars searched + " in stderr and " held out)" in stderr
    assert (f"interrupted by {what}. Saved in {out}: journal.jsonl with {n} evaluation{'s' * (n != 1)}; "
            "no checkpoint yet") in stderr, stderr
    assert f"continue with: python -m evo run --resume {out}\n" in stderr
    assert n >= 1 and not (out / "checkpoint.json").exists()
    assert stdout == ""   # no front: the user asks for one with evo front


def test_the_interrupt_message_names_the_checkpoint_and_the_resume_command(tmp_path, run):
    import argparse

    from evo.commands.run import interrupted_message

    args = argparse.Namespace(workers=2, scheduler=None)
    assert interrupted_message(None, "SIGTERM", args) == \
        "interrupted by SIGTERM before the run directory was created: nothing was saved"
    store = RunStore.open(run[0])   # a checkpoint of generation 0 of 1
    text = interrupted_message(store, "Ctrl-C (SIGINT)", args)
    assert f"journal.jsonl with {len(FRONT) + len(DOMINATED)} evaluations; checkpoint of generation 0; " \
           "a resume continues with generation 1" in text
    assert text.endswith(f"continue with: python -m evo run --resume {run[0]} --workers 2")
    last = RunStore.create(tmp_path / "with space", {"generations": 0})
    last.save_checkpoint({"generation": 0, "population": [], "rng_state": {}})
    text = interrupted_message(last, "SIGTERM", argparse.Namespace(workers=1, scheduler=None))
    assert "journal.jsonl with 0 evaluations; checkpoint of generation 0, the last; a resume trades the " \
           "front on the holdout" in text
    assert text.endswith(f"--resume '{tmp_path / 'with space'}'")


def test_run_help_says_where_the_defaults_come_from():
    text = through_pipe(["run", "--help"]).stdout
    assert "budget's ga.generations" in " ".join(text.split())
    assert "same front" in " ".join(text.split())


# ------------------------------------------------------------------------------------------------
# --help


def _undocumented(command: str) -> list[str]:
    import argparse

    from evo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return [a.dest for a in sub._actions
            if not isinstance(a, argparse._HelpAction) and (not a.help or a.help == argparse.SUPPRESS)]


@pytest.mark.parametrize("command", __import__("evo.cli", fromlist=["COMMANDS"]).COMMANDS)
def test_every_option_of_every_command_has_help(command):
    assert _undocumented(command) == []
