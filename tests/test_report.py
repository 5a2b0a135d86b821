"""``evo report``: one self-contained HTML page plus PNG copies, checked in a real headless Chromium.

The runs are written by the test through :class:`evo.search.store.RunStore`, with real genomes from the
smoke search space and results computed from the real NVIDIA bars (a persistent long/flat signal
traded close to close after 10 bps per change), so a report costs seconds instead of a search. One
run is finished (three generations, a checkpoint after the last, holdout results, a third
objective, an Optuna ``studies.db``); the other is still going (a torn last journal line, no
checkpoint of its last generation, no holdout, no studies).

The browser test loads each report in ``chromium --headless`` with a script injected at the top of
the page that collects JavaScript errors and, after load, counts each figure's traces and drawn
points; ``--dump-dom`` brings them back. It skips only when no Chromium can be found
(``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evo.reporting.report import build_report, eligible, hypervolume_2d, pareto_front
from evo.search.records import Record
from evo.search.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
GENERATIONS = 2
POPULATION = 6
HOLDOUT_BARS = 200
TEST_BARS = 1000


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# ------------------------------------------------------------------------------------------------
# building runs


def _strategy(close: np.ndarray, rng: np.random.Generator, skill: float) -> tuple[np.ndarray, int]:
    """Per-bar returns (first 0) of a long/flat signal that switches with probability 5 % a bar
    and peeks at the next move with probability ``skill``; 10 bps per change of position."""
    moves = close[1:] / close[:-1] - 1.0
    pos = np.zeros(len(moves))
    state = 0.0
    for t in range(len(moves)):
        if rng.random() < 0.05:
            state = 1.0 - state
        pos[t] = (1.0 if moves[t] > 0 else 0.0) if rng.random() < skill else state
    changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
    returns = np.concatenate([[0.0], pos * moves - 0.001 * changes])
    return returns, int(changes.sum())


def _result(bars, rng, skill: float, *, min_trades: int = 3, holdout: bool = False,
            latency: bool = False) -> dict:
    from backtest.metrics import max_drawdown, periods_per_year, sharpe_ratio, total_return

    ppy = periods_per_year(bars.index)
    span = bars.iloc[-(TEST_BARS + HOLDOUT_BARS): -HOLDOUT_BARS]
    returns, trades = _strategy(span["close"].to_numpy(), rng, skill)
    res = {
        "sharpe": sharpe_ratio(returns, ppy), "max_drawdown": max_drawdown(returns),
        "total_return": total_return(returns), "trades": trades, "exposure": float(rng.uniform(0.1, 0.6)),
        "traded": trades > 0, "enough_trades": trades >= min_trades,
        "accuracy_a": float(rng.uniform(0.3, 0.45)), "accuracy_b": float(rng.uniform(0.3, 0.45)),
        "f1_a": float(rng.uniform(0.2, 0.4)), "f1_b": float(rng.uniform(0.2, 0.4)),
        "lr_a": float(10 ** rng.uniform(-5, -2)), "lr_b": float(10 ** rng.uniform(-5, -2)),
        "test_start": span.index[0].isoformat(), "test_end": span.index[-1].isoformat(),
        "test_bars": len(span), "seconds": 1.0, "returns": [float(x) for x in returns],
    }
    if latency:
        res["latency_ms"] = float(rng.uniform(0.5, 5.0))
    if holdout:
        hspan = bars.iloc[-HOLDOUT_BARS:]
        hret, htrades = _strategy(hspan["close"].to_numpy(), rng, skill * 0.3)
        res["holdout"] = {"sharpe": sharpe_ratio(hret, ppy), "max_drawdown": max_drawdown(hret),
                          "total_return": total_return(hret), "trades": htrades,
                          "start": hspan.index[0].isoformat(), "end": hspan.index[-1].isoformat(),
                          "returns": [float(x) for x in hret]}
    return res


def make_run(path: Path, *, finished: bool, seed: int) -> RunStore:
    """A run of the smoke search space on the demo bars, written record by record."""
    import features
    from evo.data import load_bars
    from evo.genome import FeaturePools, random_genome
    from experiments import load_budget

    budget = load_budget("smoke")
    bars, label = load_bars(None)
    pools = FeaturePools(a=tuple(features.model_a_features()), b=tuple(features.model_b_features()))
    store = RunStore.create(path, {
        "budget": budget.to_dict(), "data": None, "data_label": label, "data_hash": "test", "n_bars": len(bars),
        "seed": seed, "generations": GENERATIONS, "device": "cpu", "evo_version": "test", "catalog_version": "1",
        "created": "2026-01-01T00:00:00", "pools": {"a": list(pools.a), "b": list(pools.b)},
    })
    if finished:   # what evo run records for the holdout and the buy-and-hold baseline
        hold = bars.iloc[-HOLDOUT_BARS:].index
        store.update_meta(holdout={"start": hold[0].isoformat(), "end": hold[-1].isoformat(), "fraction": 0.05},
                          baselines={"buy_and_hold": {"walk_forward_oos": {"sharpe": 0.41, "max_drawdown": 0.55,
                                                                           "total_return": 0.18},
                                                      "holdout": {"sharpe": 0.9, "max_drawdown": 0.2}}})
    rng = np.random.default_rng(seed)
    last = GENERATIONS   # the run in progress is half-way through this generation
    for gen in range(last + 1):
        n = POPULATION if finished or gen < last else POPULATION // 2
        for i in range(n):
            g = random_genome(budget.search, pools, rng)
            if gen == 0 and i == 0:
                store.append(Record(g.key(), g.to_dict(), gen, None, "GenomeError: out of memory: CUDA"))
                continue
            skill = 0.02 + 0.03 * gen + 0.02 * rng.random()
            min_trades = 10**6 if (gen == 0 and i == 1) else 3   # one genome with too few trades
            res = _result(bars, rng, skill, min_trades=min_trades, holdout=finished and gen == last,
                          latency=finished)
            store.append(Record(g.key(), g.to_dict(), gen, res))
        if finished or gen < last:
            store.save_checkpoint({"generation": gen, "population": [], "rng_state": {}})
    if finished:
        _write_studies(path, [k for k in list(store.records())[-3:]])
    else:
        with open(store.journal_path, "a", encoding="utf-8") as fh:   # a write cut by a crash
            fh.write('{"key": "feedfacefeedface", "genome": {"model_a": {"features": ["cdl_')
    return store


def _write_studies(path: Path, keys: list[str]) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path / 'studies.db'}"
    for k in keys:
        for model in ("a", "b"):
            study = optuna.create_study(storage=storage, study_name=f"{k}-{model}",
                                        sampler=optuna.samplers.TPESampler(seed=0))
            study.optimize(lambda t: (np.log10(t.suggest_float("lr", 1e-5, 1e-2, log=True)) + 3) ** 2, n_trials=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    make_run(root / "finished", finished=True, seed=1)
    make_run(root / "running", finished=False, seed=2)
    return {"finished": root / "finished", "running": root / "running"}


def evo_report(run: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "evo", "report", str(run), "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"evo report exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def reports(runs, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    out = tmp_path_factory.mktemp("html")
    return {name: (out / name / "report.html", evo_report(run, out / name / "report.html"))
            for name, run in runs.items()}


# ------------------------------------------------------------------------------------------------
# pure parts


def test_hypervolume_2d_worked_value_and_grid():
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume_2d([(5, 0)], (4, 4)) == 0.0 and hypervolume_2d([], (4, 4)) == 0.0
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 20, size=(15, 2))
    grid = np.zeros((20, 20), dtype=bool)          # unit cells [x, x+1) x [y, y+1) below ref (20, 20)
    for x, y in pts:
        grid[x:, y:] = True
    assert hypervolume_2d(pts.tolist(), (20, 20)) == pytest.approx(grid.sum())


def test_front_is_non_dominated_and_figures_have_data(runs):
    store = RunStore(runs["finished"], json.loads((runs["finished"] / "run.json").read_text()))
    records = store.records()
    front = pareto_front(records.values())
    elig = [r for r in records.values() if eligible(r)]
    assert front and all(eligible(r) for r in front)

    def dominates(p, q):
        a, b = p.result, q.result
        return (a["sharpe"] >= b["sharpe"] and a["max_drawdown"] <= b["max_drawdown"]
                and (a["sharpe"] > b["sharpe"] or a["max_drawdown"] < b["max_drawdown"]))

    assert not any(dominates(p, q) for p in elig for q in front)
    assert all(any(dominates(p, q) for p in front) for q in elig if q not in front)

    report = build_report(records, store.meta, run="x", checkpoint=store.load_checkpoint())
    assert report.status == "finished"
    names = [s.name for s in report.sections]
    assert names[:6] == ["pareto", "equity", "features_a", "features_b", "topology", "convergence"]
    for s in report.sections:
        assert any(len(t.x if t.x is not None else t.z) for t in s.figure.data), s.name
    pareto = report.sections[0].figure
    assert any(t.name == "holdout" for t in pareto.data) and "latency" in report.sections[0].note


# ------------------------------------------------------------------------------------------------
# the command, in a separate process


@pytest.mark.parametrize("name", ["finished", "running"])
def test_report_writes_html_and_pngs(reports, name):
    out, proc = reports[name]
    page = out.read_text(encoding="utf-8")
    assert "report.html" in proc.stdout and "building the figures" in proc.stderr
    # self-contained: plotly.js inline, no script or stylesheet fetched from anywhere
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?https?:", page)
    assert "Plotly.newPlot" in page and len(page) > 3_000_000
    for label in ("walk-forward out-of-sample", "holdout", "in-sample"):
        assert label in page
    figures = re.findall(r'id="fig-([a-z_]+)"', page)
    expected = {"pareto", "equity", "features_a", "features_b", "topology", "convergence"}
    assert expected <= set(figures)
    if name == "finished":
        assert {"lr_history", "lr_importance"} <= set(figures) and "finished" in page
        assert "buy-and-hold Sharpe" in page and "Sharpe <span class=\"tag ho\">" in page
        assert "baseline buy and hold: sharpe</td><td>+0.41" in page and "<dt>holdout span</dt>" in page
        assert "baseline buy and hold: sharpe</td><td>+0.90</td><td><span class=\"tag ho\">" in page
    else:
        assert "learning_rate" in figures and "No Optuna storage" in page
        assert "in progress: generation 2 of 2 running; last checkpoint after generation 1" in page
        assert "gen 2 (in progress)" in page
    png_failed = "PNG copies of the figures could not be written" in page
    if png_failed and chromium() is None:
        return   # no Chromium for kaleido: the HTML says so (checked), no PNGs to look at
    assert not png_failed
    for fig in figures:
        png = out.with_name(f"report-{fig}.png")
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png


def test_report_leaves_a_live_journal_alone(runs, reports):
    """The torn last line of a run in progress is skipped, not cut: the writer may be mid-line."""
    assert not (runs["running"] / "journal.jsonl").read_text().endswith("\n")


def test_png_failure_still_writes_the_html(runs, tmp_path, monkeypatch, caplog):
    import plotly.io as pio

    from evo.commands import report as command

    def broken(*args, **kwargs):
        raise RuntimeError("no Chromium here")

    monkeypatch.setattr(pio, "write_images", broken)
    out = tmp_path / "r.html"
    args = type("Args", (), {"run_dir": str(runs["running"]), "out": str(out), "no_png": False, "verbose": False})
    assert command.main(args) == 0
    page = out.read_text(encoding="utf-8")
    assert "could not be written (RuntimeError: no Chromium here)" in page
    assert not list(tmp_path.glob("*.png"))


# ------------------------------------------------------------------------------------------------
# in a real browser

CHECK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__errors.push('rejection: ' + e.reason); });
(function () { var ce = console.error; console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  ce.apply(console, arguments); }; })();
window.addEventListener('load', function () { setTimeout(function () {
  var figs = Array.prototype.map.call(document.querySelectorAll('.plotly-graph-div'), function (gd) {
    var pts = (gd.data || []).reduce(function (n, t) {
      var a = t.x || t.z || t.y || t.values || []; return n + (a.length || 0); }, 0);
    return {id: gd.id, container: !!gd.querySelector('.plot-container'), traces: (gd.data || []).length,
            points: pts, drawn: gd.querySelectorAll('.point, .hm image, .js-line').length};
  });
  var pre = document.createElement('pre'); pre.id = 'report-check';
  pre.textContent = JSON.stringify({errors: window.__errors, figures: figs});
  document.body.appendChild(pre);
}, 300); });
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage"]


def render(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=10000",
                           *extra, page.as_uri()], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["finished", "running"])
def test_report_renders_in_headless_chromium(reports, name, tmp_path):
    if chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the browser test cannot run")
    out, _ = reports[name]
    checked = out.with_name("checked.html")
    checked.write_text(out.read_text(encoding="utf-8").replace("<head>", "<head>" + CHECK, 1), encoding="utf-8")
    proc = render(checked, tmp_path, "--dump-dom")
    found = re.search(r'<pre id="report-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page never finished loading\n{proc.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["errors"] == []
    figures = check["figures"]
    assert len(figures) == len(re.findall(r'id="fig-', out.read_text(encoding="utf-8"))) >= 7
    for f in figures:
        assert f["container"] and f["traces"] > 0 and f["points"] > 0 and f["drawn"] > 0, f

    shot = tmp_path / "report.png"
    render(out, tmp_path, "--window-size=1400,2400", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
