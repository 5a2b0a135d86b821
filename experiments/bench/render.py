"""docs/benchmarks.md from a report of :mod:`experiments.bench.measure` (pure: dict in, text out),
with the search experiments of ``docs/experiments/*.json`` rendered below the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.bench.measure import ITEMS, MINUTE_FILE  # noqa: F401 - the items the table lists


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _fmt_load(load: dict[str, Any] | None) -> str:
    if not load:
        return "-"
    return f"{load['before'][0]:.2f} → {load['after'][0]:.2f}"


def _rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per figure: item, figure, value, target, met (yes/no/-), how measured."""
    items, rows = report["items"], []

    def add(item, figure, value, target, met, how):
        rows.append({"item": item, "figure": figure, "value": value, "target": target,
                     "met": "-" if met is None else ("yes" if met else "**no**"), "how": how,
                     "load": _fmt_load(report["load"].get(_ITEM_KEYS[item]))})

    def failed(item, key):
        r = items.get(key)
        if r is None:
            return True
        if "error" in r:
            add(item, "(error)", r["error"], "-", None, "the item raised; see --json")
            return True
        if "skipped" in r:
            add(item, "(skipped)", r["skipped"], "-", None, "-")
            return True
        return False

    if not failed("1", "overhead"):
        o = items["overhead"]
        g = o["genome"]
        genome = (f"A {g['model_a']['embedding_dim']}x{g['model_a']['num_blocks']} mLSTM, B "
                  f"{g['model_b']['embedding_dim']}x{g['model_b']['num_blocks']} sLSTM, window {g['seq_len']}")
        for threads, r in o["runs"].items():
            tag = f"{threads} thread{'s' if threads != '1' else ''}"
            s = r["sections_s"]
            top = ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if v >= 0.05)
            add("1", f"genome evaluation time outside model forward/backward, {tag}",
                f"{100 * r['outside_fwd_bwd']:.2f} % ({r['outside_fwd_bwd_s']:.1f} s)", "≤ 5 %",
                r["outside_fwd_bwd"] <= 0.05,
                f"one `evaluate_genome` ({r['total_s']:.1f} s; budget `{o['budget']}`, {genome}; {o['bars']} bars of "
                f"{o['data']}); exclusive timers around forward (the loss included), backward, optimiser step, grad "
                f"clip, training loop, prediction, windows, risk tuning, vectorbt. Sections: {top}")
            add("1", f"… outside forward/backward/optimiser step, {tag}", f"{100 * r['outside_model']:.2f} %", "-",
                None, "same run, AdamW's step counted as model work")
        if "typical" in o:
            r = o["typical"]
            t = r["genome"]
            top = ", ".join(f"{k} {v:.1f} s" for k, v in r["sections_s"].items() if v >= 0.05)
            add("1", "genome evaluation time outside model forward/backward, a mid-sized genome, 1 thread",
                f"{100 * r['outside_fwd_bwd']:.2f} % ({r['outside_fwd_bwd_s']:.1f} s)", "≤ 5 %",
                r["outside_fwd_bwd"] <= 0.05,
                f"one `evaluate_genome` ({r['total_s']:.1f} s) of `experiments.bench.measure.typical_genome`: the middle of the "
                f"`{o['budget']}` space (A {t['model_a']['embedding_dim']}x{t['model_a']['num_blocks']} mLSTM, B "
                f"{t['model_b']['embedding_dim']}x{t['model_b']['num_blocks']} with sLSTM at 0, window "
                f"{t['seq_len']}), one thread as a search's workers run; sections: {top}")
            add("1", "… outside forward/backward/optimiser step, mid-sized genome, 1 thread",
                f"{100 * r['outside_model']:.2f} %", "-", None, "same run, AdamW's step counted as model work")
        if "optimizer_step" in o:
            st = o["optimizer_step"]
            desc = "; ".join(f"{k[-1].upper()} ({v['tensors']} tensors): AdamW {v['adamw_default']:.2f} / foreach "
                             f"{v['adamw_foreach']:.2f} / fused {v['adamw_fused']:.2f} ms, clip {v['clip_default']:.2f}"
                             f" / foreach {v['clip_foreach']:.2f} ms" for k, v in st.items())
            add("1", "… per training step: AdamW for-loop vs fused, clip default vs foreach (evo: fused + foreach)",
                f"−{o['fused_saving_ms']:.2f} ms/step (× {o['steps']} steps = "
                f"{o['fused_saving_ms'] * o['steps'] / 1e3:.1f} s)",
                "-", None,
                f"the genome's two models, random gradients, {desc}, median of 200 interleaved rounds; "
                "`models.train` uses the fused AdamW and the foreach clip, so the rows above include the saving")
        if o.get("warmup_s") is not None:
            add("1", "… once per process: imports + vectorbt JIT", f"{o['warmup_s']:.1f} s", "-", None,
                "importing optuna, nevergrad, vectorbt and loading its numba kernels (cached), then one "
                "untimed evaluation on a tiny budget, before the timed genomes; a search pays this once")
        add("1", "… feature matrix (once per run, uncached)",
            f"{o['features_once_s']:.2f} s = {_pct(o['features_share_of_genome'])} of one genome", "-", None,
            "`prepare_run_data` with no cache; a run computes it once for all its genomes")
    if not failed("2", "multifidelity"):
        mf = items["multifidelity"]
        how = (f"{mf['source']}: the same search on the same data for the same wall time "
               f"({mf['side_wall_s']:.0f} s a side), full fidelity vs successive halving with eta {mf['eta']} "
               f"(run {mf.get('when', '?')}, {mf.get('machine', '?')})")
        add("2", "genomes judged per hour, successive halving / full fidelity", f"{mf['ratio']:.2f}× "
            f"({mf['judged_per_hour_full']:.0f}/h → {mf['judged_per_hour_halving']:.0f}/h)", "≥ 3×",
            mf["ratio"] >= 3.0, how)
        add("2", "hypervolume after the same wall time, halving vs full",
            f"{mf['hypervolume_halving']:.3f} vs {mf['hypervolume_full']:.3f}", "halving ≥ full",
            mf["hypervolume_halving"] >= mf["hypervolume_full"], "same runs; hypervolume of the walk-forward "
            "front (Sharpe, max drawdown) against the fixed reference (Sharpe -3, drawdown 100 %)")
    if not failed("3", "xlstm"):
        for threads, r in items["xlstm"]["runs"].items():
            m = r["matmul"]
            tag = f"{threads} thread{'s' if threads != '1' else ''}"
            shape = (f"batch {r['batch']} × {r['seq_len']} bars × {r['n_features']} features, embedding "
                     f"{r['embedding_dim']}, {r['num_blocks']} blocks, {r['num_heads']} heads, dropout 0")
            add("3", f"matmul peak (float32 torch.mm), {tag}", f"{m['peak_gflops']:.1f} GFLOP/s", "-", None,
                f"{m['n']}×{m['n']} @ {m['n']}×{m['n']}, best of 5 (median {m['median_gflops']:.1f})")
            for name, c in r["cases"].items():
                add("3", f"fwd+bwd {name}, {tag}", f"{c['median_ms']:.0f} ms ({_pct(c['peak_share'])} of peak)", "-",
                    None, f"{shape}; {c['params']} params, {c['gflop']:.2f} GFLOP (FlopCounterMode) → "
                    f"{c['gflops']:.1f} GFLOP/s; median of {c['n']} interleaved rounds "
                    f"(min {c['min_ms']:.0f}, max {c['max_ms']:.0f})")
            sp = r["training_path_speedup"]
            if "fast" in r:
                f = r["fast"]
                how = (f"`models.train` runs its CPU forward passes through `models.fast_mlstm` "
                       f"(`TrainConfig.fast_path`, `EVO_FAST_PATH=0` turns it off) on xlstm's own parameters; vs "
                       f"xlstm vanilla, same rounds; one sLSTM block: {f.get('speedup_mixed', float('nan')):.2f}×; "
                       f"max |Δ| outputs {f['max_abs_out_diff']:.1e}, gradients {f['max_abs_grad_diff']:.1e}")
                ok = sp >= 3 and max(f["max_abs_out_diff"], f["max_abs_grad_diff"]) <= 1e-5
                figure = "evo training path vs xlstm vanilla, all mLSTM"
            else:
                how = ("evo trains through `DirectionModel`, which runs xlstm's vanilla path itself: the same code, "
                       "so 1.0× by construction")
                ok, figure = sp >= 3, "evo training path vs xlstm vanilla"
            add("3", f"{figure}, {tag}", f"{sp:.2f}×", "≥ 3×, |Δ| ≤ 1e-5", ok, how)
    if not failed("4", "backtest"):
        r = items["backtest"]
        src = ("captured from the overhead item's `evaluate_genome`" if r.get("source", "captured") == "captured"
               else r["source"])
        add("4", "backtest: backtesting.py time / vectorbt time, one genome's walk-forward", f"{r['speedup']:.1f}×",
            "≥ 20×", r["speedup"] >= 20,
            f"every `backtest_signals` call evo makes to score one genome ({r['calls']} calls: risk tuning on the "
            f"validation segments, their returns, the {r['test_span_bars']}-bar test span; {r['bars']} bars, "
            f"{r['trades']} trades; {src}): `backtest_signals` {r['vectorbt']['median_ms']:.1f} ms "
            f"({r['per_call_ms']:.2f} ms/call) vs backtesting.py {r['backtesting_py']['median_ms']:.0f} ms "
            f"(construct + run), median of {r['vectorbt']['n']} interleaved rounds, vectorbt warm"
            + (f"; {r['skipped_calls']} calls with shorts or a breaker left out" if r.get("skipped_calls") else ""))
        add("4", "backtest: same trades, final equity difference",
            f"{'same' if r['same_trades'] else 'DIFFERENT'} trades ({r['trades']}), "
            f"Δ equity ≤ {r['equity_diff']:.1e}", "same, ≤ 0.5 %",
            r["same_trades"] and r["equity_diff"] <= 0.005,
            "every call of the row above; next-open fills, fees + slippage per side as commission, all-in")
        add("4", "… `Portfolio.from_signals` time / evo's path (vectorbt's from-orders kernels)",
            f"{r['speedup_vs_from_signals']:.1f}×", "-", None,
            f"same calls, same rounds: {r['from_signals']['median_ms']:.0f} ms "
            f"({r['from_signals_per_call_ms']:.2f} ms/call; evo's path before, and still with stops) vs "
            f"{r['vectorbt']['median_ms']:.1f} ms; {'same' if r['same_engines'] else 'DIFFERENT'} trades and "
            "returns (1e-9)")
        if "test_span" in r and "skipped" not in r["test_span"]:
            t = r["test_span"]
            add("4", "… the test span alone (one call)", f"{t['speedup']:.1f}×", "-", None,
                f"{t['bars']} bars, {t['vectorbt_trades']} trades: `backtest_signals` {t['vectorbt']['median_ms']:.2f} "
                f"ms vs backtesting.py {t['backtesting_py']['median_ms']:.1f} ms; "
                f"{'same' if t['same_trades'] else 'DIFFERENT'} trades, equity differs by {t['equity_diff']:.1e}")
        if "minute" in r:
            mm = r["minute"]
            add("4", "… same on a 1-minute test span (scaling)", f"{mm['speedup']:.1f}×", "-", None,
                f"a 10/30 moving-average cross on the last {mm['bars']} bars of {MINUTE_FILE} (the `cpu` test span's "
                f"length there; {mm['vectorbt_trades']} trades): {mm['vectorbt']['median_ms']:.1f} ms vs "
                f"{mm['backtesting_py']['median_ms']:.1f} ms; {'same' if mm['same_trades'] else 'DIFFERENT'} "
                f"trades, equity differs by {mm['equity_diff']:.1e}")
    if not failed("5", "startup"):
        r = items["startup"]
        h, p = r["help"], r["predict_imports_beyond_torch_xlstm"]
        add("5", "`python -m evo --help` wall time", f"{h['median_ms'] / 1e3:.2f} s", "≤ 0.5 s",
            h["median_ms"] <= 500,
            f"fresh process, median of {h['n']} (bare `python -c pass`: {r['python_bare']['median_ms'] / 1e3:.2f} s)")
        add("5", "`evo predict` imports beyond `import torch, xlstm`", f"{p['median_ms'] / 1e3:.2f} s", "≤ 0.5 s",
            p["median_ms"] <= 500,
            f"fresh process, timed inside it after torch+xlstm ({r['torch_xlstm_import']['median_ms'] / 1e3:.2f} s);"
            f" median of {p['n']}; search libraries loaded: {r['predict_forbidden_modules'] or 'none'}")
    if not failed("6", "caches"):
        r = items["caches"]
        f, n = r["features"], r["numba"]
        add("6", "feature cache cold / warm", f"{f['speedup']:.1f}× ({f['cold']['median_ms'] / 1e3:.2f} s → "
            f"{f['warm']['median_ms'] / 1e3:.3f} s)", "-", None,
            f"`features.load_or_compute` on {f['bars']} bars into an empty dir vs a warm one "
            f"({f['file_mib']} MiB file), median of {f['cold']['n']}")
        for mode, label in (("production", "`backtest_signals` (evo's path: from-orders kernels)"),
                            ("from_signals", "same trades via `Portfolio.from_signals` (path with stops)")):
            m = n[mode]
            add("6", f"numba JIT: first backtest cold / warm cache, {label}",
                f"{m['speedup']:.1f}× ({m['cold_first_backtest']['median_ms'] / 1e3:.2f} s → "
                f"{m['warm_first_backtest']['median_ms'] / 1e3:.2f} s)", "≥ 10×" if mode == "production" else "-",
                m["speedup"] >= 10 if mode == "production" else None,
                f"fresh process, `NUMBA_CACHE_DIR` empty vs filled by the cold run; the first backtest call on the "
                f"genome's span ({n['bars']} bars) after `import vectorbt` "
                f"({m['import_vectorbt']['median_ms'] / 1e3:.1f} s, not in the ratio); whole process "
                f"{m['cold_process']['median_ms'] / 1e3:.1f} s → {m['warm_process']['median_ms'] / 1e3:.1f} s "
                f"({m['process_speedup']:.1f}×); median of {m['cold_first_backtest']['n']}; final equity "
                f"×{m['final_equity']:.6f}")
    if not failed("7", "memory"):
        r = items["memory"]
        s, g = r["search"], r["growth"]
        add("7", "peak RSS of a short cpu-like search", f"{s['peak_rss_mib'] / 1024:.2f} GiB",
            "< 4 GiB", s["peak_rss_mib"] < 4096,
            f"`python -m evo run --generations 0` on {r['data']}: `{s['space']}` search space, "
            f"{s['population']} genomes, "
            f"{_train_text(s['budget'])}, then the holdout trade and the front; fresh process, empty feature "
            f"cache; `ru_maxrss` from `os.wait4`; {s['wall_s']:.0f} s")
        add("7", "RSS growth across generations", f"{g['growth_first_to_last_mib']:+.0f} MiB over "
            f"{g['generations']} generations ({g['growth_per_generation_mib']:+.1f} MiB/generation)", "-", None,
            f"`evo.search.ga.Search.run` on {r['data']} with a progress callback reading VmRSS after each generation "
            f"({', '.join(str(int(x)) for x in g['rss_after_generation_mib'])} MiB; "
            f"{g['rss_before_search_mib']:.0f} MiB before loading the data): `{g['space']}` space, population "
            f"{g['population']}, {_train_text(g['budget'])}; peak {g['peak_rss_mib'] / 1024:.2f} GiB")
    if not failed("8", "gpu"):
        pass
    if not failed("16", "throughput"):
        r = items["throughput"]
        batched_s = sum(m["batched_s"] for m in r["models"])
        single_s = sum(m["single_s"] for m in r["models"])
        e = r.get("end_to_end")
        if e:
            add("16", f"genomes judged per hour, end to end, `{e['budget']}` preset, 1 thread: batched / one at a time",
                f"{e['ratio']:.2f}× ({e['batched_per_hour']:.0f} vs {e['single_per_hour']:.0f} an hour)",
                "≥ 2.5×", e["ratio"] >= 2.5,
                f"`evaluate_genome` on {e['data']} ({e['bars']} bars), {e['genomes']} random `{e['budget']}` genomes "
                f"(seed {e['seed']}), each evaluated with `EVO_BATCHED=1` and `=0` back to back, order alternating; "
                f"{e['batched_s']:.0f} s vs {e['single_s']:.0f} s in all; per genome "
                + ", ".join(f"{x['ratio']:.2f}× ({x['shape']})" for x in e["rows"]))
            w = e["workers"]
            if len(w) > 1:
                add("16", "genomes judged per hour, batched, worker processes " + " vs ".join(w),
                    " vs ".join(f"{v['genomes_per_hour']:.0f}" for v in w.values())
                    + f" an hour ({e['workers_ratio']:.2f}×)", "-", None,
                    f"the same {e['genomes']} genomes on a pool of worker processes (one torch thread each, started "
                    f"and warmed untimed, as a search keeps them) on a {e.get('cpus', '?')}-core machine; pool wall "
                    "time " + ", ".join(f"{k} worker(s) {v['wall_s']:.0f} s" for k, v in w.items()))
        add("16", "training a genome's same-shape models batched vs one at a time, 1 thread",
            f"{r['ratio']:.2f}× (CPU time {r['cpu_ratio']:.2f}×)", "-" if e else "≥ 2.5×",
            None if e else r["ratio"] >= 2.5,
            f"K = {r['folds']} folds × ({r['lr_trials']} lr trials + 1) = {r['members']} models of each shape, both "
            f"models of {r['genomes']} random `cpu` genomes (seed {r['seed']}); synthetic windows, "
            f"{'/'.join(str(n) for n in r['train_windows'])} training and {r['val_windows']} validation windows by "
            f"fold, {r['epochs']} epoch{'s' if r['epochs'] > 1 else ''} each; `models.batched.train_models` vs "
            f"`models.train.train_model` in turn, median of {r['repeats']} interleaved rounds; sums over the "
            f"{len(r['models'])} shapes: {batched_s:.1f} s vs {single_s:.1f} s")
        if "schedule_ratio" in r:
            b = sum(m["schedule_batched_s"] for m in r["models"])
            s1 = sum(m["schedule_single_s"] for m in r["models"])
            add("16", "… the genome evaluation's schedule: lr study on fold 0, then every fold",
                f"{r['schedule_ratio']:.2f}×", "-", None,
                f"same shapes and data: {r['lr_trials']} lr trials of {r['schedule_trial_epochs']} epochs on fold 0, "
                f"then {r['folds']} folds × {r['schedule_epochs']} epochs with the chosen lr; "
                "`models.tuning.tune_and_train` (the trials raced inside fold 0's run, every fold started with "
                "every trial's lr: 6 members, then 3) vs `tune_learning_rate` + `train_model` per fold; sums "
                f"{b:.1f} s vs {s1:.1f} s")
        for g in r["per_genome"]:
            ms = [m for m in r["models"] if m["genome"] == g["genome"]]
            sched = f" (schedule {g['schedule_ratio']:.2f}×)" if "schedule_ratio" in g else ""
            add("16", f"… genome {g['genome']}", f"{g['ratio']:.2f}×{sched}", "-", None,
                "; ".join(f"{m['model'].upper()} {m['shape']}: {m['ratio']:.2f}× ({m['single_s']:.1f} s → "
                          f"{m['batched_s']:.1f} s)" for m in ms))
        m = r["matmul"]
        add("16", "share of the matmul peak reached, batched (one at a time)",
            f"{_pct(r['peak_share'])} ({_pct(r['single_peak_share'])})", "-", None,
            f"the training's matrix-product FLOPs (FlopCounterMode on xlstm's own model: forward + backward per "
            f"training window, forward per validation window) over the wall time, against the 1-thread matmul "
            f"peak {m['peak_gflops']:.1f} GFLOP/s ({m['n']}×{m['n']})")
        if "gpu" not in r:
            add("16", "`gpu` preset batched, mixed precision, CUDA sLSTM kernels: genomes/hour, GPU use, kernel compile time",
                "not measured (no GPU lent to this session)", "≥ 70 % GPU use", None, "-")
        k = r.get("mlstm_kernels", {})
        if "skipped" in k or "error" in k:
            add("16", "mLSTM cell: evo's vs NX-AI mlstm_kernels", k.get("skipped", k.get("error")), "-", None, "-")
        elif k:
            names = [n for n in k["total_ms"] if not n.startswith("evo")]
            add("16", f"mLSTM cell fwd+bwd, 1 thread: mlstm_kernels {k['version']} (fastest native backend) / evo's",
                f"{k['evo_speedup_vs_best_kernel']:.2f}×", "-", None,
                "`models.fast_mlstm._cell` (all steps) vs " + ", ".join(f"`{n}`" for n in names)
                + f" on the same q, k, v, gates; median of {k['repeats']} interleaved rounds, ms summed over "
                f"{len(k['shapes'])} cell shapes (batch, heads, steps, head width) "
                + ", ".join(str(tuple(x["shape"])) for x in k["shapes"]) + ": "
                + ", ".join(f"{n} {v:.1f}" for n, v in k["total_ms"].items())
                + "; outputs agree to " + f"{max(max(x['max_abs_diff'].values()) for x in k['shapes']):.0e}"
                + " (float32); evo keeps its own cell")
    return rows


def _train_text(b: dict[str, Any]) -> str:
    return (f"{b['epochs']} epoch{'s' if b['epochs'] > 1 else ''} on ≤ {b['windows']} windows, 1 lr trial, "
            f"{b['folds']} folds, {b['risk']} risk trials")


_ITEM_KEYS = {"1": "overhead", "2": "multifidelity", "3": "xlstm", "4": "backtest", "5": "startup", "6": "caches",
              "7": "memory", "8": "gpu", "16": "throughput"}


def render_markdown(report: dict[str, Any]) -> str:
    """``docs/benchmarks.md``: the table, the machine and the load average during the run."""
    m = report["machine"]
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m evo bench`" + (" --quick (small sizes: not the reference figures)" if report["quick"]
                                              else "") + f" on {m['date_utc']}. Every number below comes "
        "from that run on this machine; rerun it to refresh them. Numbers only: a benchmark never "
        "fails a build.",
        "",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, torch threads "
        f"{m['torch_threads']}, CUDA {'yes' if m['cuda'] else 'no'}; {m['platform']}",
        f"- **Software:** Python {m['python']}, torch {v['torch']}, xlstm {v['xlstm']}, vectorbt {v['vectorbt']}, "
        f"numba {v['numba']}, numpy {v['numpy']}, pandas {v['pandas']}, backtesting.py {v['backtesting'] or '-'}",
        f"- **Load average (1 min):** {report['load_start'][0]:.2f} at the start, {report['load_end'][0]:.2f} at "
        "the end; per item in the table (before → after). The machine is shared: A/B figures are "
        "interleaved and read as medians, so both sides meet the same load.",
        *_merge_lines(report),
        "",
        "| # | figure | value | target | met | how measured | load |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in _rows(report):
        cells = [r["item"], r["figure"], r["value"], r["target"], r["met"], r["how"], r["load"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    lines += ["", "Items as numbered in issue 9: 1 overhead, 2 multi-fidelity, 3 xLSTM on the CPU, 4 backtest "
              "engines, 5 start-up, 6 caches, 7 memory, 8 GPU; 16 (issue 16) batched training throughput.", ""]
    lines += _notes(report)
    lines += experiment_sections()
    return "\n".join(lines) + "\n"


def _merge_lines(report: dict[str, Any]) -> list[str]:
    dates = report.get("item_dates") or {}
    later = {k: d for k, d in dates.items() if d != report["machine"]["date_utc"]}
    if not later:
        return []
    items = ", ".join(f"{k} ({d})" for k, d in sorted(later.items()))
    return [f"- **Refreshed later** with `python -m evo bench --only ITEM --merge` (same machine): {items}; "
            "the other items are from the full run above."]


EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "experiments"


def experiment_sections(directory: Path = EXPERIMENTS_DIR) -> list[str]:
    """Markdown for the search experiments in ``docs/experiments/*.json`` (each written by a script
    under ``experiments/``: ``{"title", "command", "when", "machine", "rows": [{...}], "notes": [...]}``).
    They are real searches, too long for every bench run, so they are rendered from their last run."""
    lines: list[str] = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            exp = json.loads(path.read_text())
            rows = list(exp["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        lines += ["", f"## {exp.get('title', path.stem)}", ""]
        meta = [f"`{exp['command']}`" if exp.get("command") else "", _text(exp.get("when")), _text(exp.get("machine"))]
        lines += ["Run: " + "; ".join(m for m in meta if m) + f" (results: `docs/experiments/{path.name}`).", ""]
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
            for r in rows:
                cells = [_cell(_text(r[c]) if len(r[c]) <= 8 else "(in the JSON)")
                         if isinstance(r.get(c), (dict, list)) else _cell(r.get(c, "")) for c in cols]
                lines.append("| " + " | ".join(cells) + " |")
        notes = exp.get("notes") or []
        lines += [""] + [f"- {_text(n)}" for n in ([notes] if isinstance(notes, str) else notes)]
        figure = exp.get("figure")
        if figure and (Path(directory) / Path(figure).name).exists():   # beside the JSON; linked from docs/
            lines += ["", f"![{exp.get('title', path.stem)}](experiments/{Path(figure).name})"]
    return lines


def _text(value: Any) -> str:
    """A JSON value as one line of text (a dict as ``key value, ...``)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _notes(report: dict[str, Any]) -> list[str]:
    return [
        "## Notes",
        "",
        "- **1.** Measured at torch's default thread count and at 1 thread. The share depends on the "
        "load: on an oversubscribed machine the many small ops of the models (and of the training "
        "loop) slow down more than the rest. The budget is the `cpu` preset unchanged; the genome is fixed "
        "(`experiments.bench.measure.overhead_genome`) at the small end of its space: the smallest embedding, one "
        "block, the shortest window, model A mLSTM and model B sLSTM. Larger genomes spend more "
        "time in the models and the same time in the backtests, so their share is smaller: the "
        "figure is an upper bound for the `cpu` space.",
        "- **2.** Successive halving (`ga.halving_eta`): each generation screens `population x eta` "
        "candidates at low fidelity (one fold, epochs and windows / eta, lr 1e-3, no risk tuning: "
        "`evo.search.tasks.low_fidelity_budget`) and trains the best `population` fully. The figures come from "
        "the experiment's JSON (see the section below), not from this bench run.",
        "- **3.** FLOPs are those `FlopCounterMode` counts (matrix products, convolutions); the "
        "element-wise work of the gates and norms is not counted, so the share of peak is a lower "
        "bound. `nn.LSTM` is sized to about the all-mLSTM model's parameter count; its cells run in "
        "one fused kernel that FlopCounterMode does not see, so their products are counted "
        "analytically (`_lstm_cell_flops`). The fast path is rated on the vanilla model's count.",
        "- **3.** Both torch's default thread count and 1 thread are measured. When the machine is "
        "shared (load average above the core count), each op's threads wait for one another, which "
        "hits many-small-op models (the sLSTM's per-step loop) hardest: compare figures within one "
        "thread count. `models.fast_mlstm` is evo's CPU training path (see its docstring for what it "
        "changes): mLSTM blocks through its own code, sLSTM blocks through xlstm's modules.",
        "- **4.** backtesting.py is not a dependency of evo; `pip install backtesting` into the venv "
        "to include these rows (the bench skips them otherwise). Without stop-loss / take-profit, "
        "`backtest_signals` calls vectorbt's numba kernels behind `Portfolio.from_orders` directly (orders "
        "only where the held position changes; same fills as `from_signals`, pinned by the tests), which "
        "skips ~5 ms per call of pandas and config copying; backtesting.py's cost grows with the bars (a "
        "Python `next()` per bar), so the ratio grows with the span: the 1-minute row shows it.",
        "- **6.** vectorbt's `Portfolio.from_signals` simulator (`simulate_from_signals_nb`) is "
        "`@njit` without `cache=True`, so every fresh process compiles it again, with a warm "
        "`NUMBA_CACHE_DIR` too; the from-orders kernels `backtest_signals` runs without stops are all "
        "cached. The `from_signals` row trades the same signal and reports its final equity next to "
        "`backtest_signals`' one.",
        "- **8.** GPU: " + report["items"].get("gpu", {}).get("skipped", "not run") + ".",
        "- **16.** `models.batched.train_models` trains K models of one architecture as one stacked model "
        "(members' weights on a leading axis, one AdamW step for all, each member its own data, seed, lr, "
        "schedule and early stopping; equal to training each alone up to rounding: `tests/test_batched.py`). "
        "The gain comes from sLSTM blocks (their per-time-step loop, overhead-bound alone, runs once for all "
        "members through a hand-written recurrence); all-mLSTM models already run large tensors alone and "
        "gain little. The genome evaluation does not call it yet (issue 16's wiring into "
        "`evo.evaluation.evaluate`).",
    ]
