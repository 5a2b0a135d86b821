"""``evo bench-bundle``: what a bundle costs on this machine (the trading PC).

- **full vs stream** (the default engine): what ``evo predict`` does on every new bar, the features
  over the whole history up to the bar (``Bundle.decide(bars[:t+1])``), vs what a live bot does,
  ``Bundle.step(bar)`` on the bundle's last ``tail_bars`` bars.
- **engines**: ``Bundle.step`` on the onnx engine (onnxruntime on the bundle's ONNX graphs) and on
  the torch engine, interleaved bar by bar (so both meet the same machine load), with the models'
  own share (both models on one window, batch 1) and how far their decisions differ; with
  ``--int8 BUNDLE`` (``evo export --quantize int8`` of the same member) its graphs as a third
  engine, and the agreement and gain its export measured.
- **cold start**: ``python -m evo predict`` in a fresh process, from its start to its exit right
  after the first decision (bundle load, the golden check, features, the decision), per engine, on
  a file of the bundle's ``tail_bars`` bars; next to ``python -c "import pandas, talib"``, the floor
  any evo runtime pays, and to a process that only reads that file and computes its features (no
  bundle: what the feature pipeline's first call costs, numba's start-up included).
- **install sizes**: the bytes on disk of the distributions each engine needs (their files as
  ``importlib.metadata`` lists them, requirements followed; extras left out): the runtime set
  (:data:`RUNTIME_SET`, ``requirements-runtime.txt``) vs the torch set.

Every path runs the models on exactly the window of the last ``seq_len`` bars (never a recurrent
state carried across bars: that is not the computation the backtest judged). Reports the median
(p50) and 99th percentile (p99) in milliseconds. Numbers only; it never fails on a timing.
``--record PATH.json`` writes the figures as a ``docs/experiments`` table (``python -m evo bench``
renders those into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "time a bundle on this machine: full vs stream, onnx vs torch engine, cold start, install size"

WARMUP_CALLS = 3   # untimed calls per path first (lazy imports, numba and allocator warm-up)
# What each engine needs installed on the trading PC (requirements followed from these roots).
RUNTIME_SET = ("numpy", "pandas", "ta-lib", "ta", "numba", "onnxruntime")       # requirements-runtime.txt
TORCH_SET = ("numpy", "pandas", "ta-lib", "ta", "numba", "torch", "xlstm", "safetensors")
COLD_START_TARGET_S = 0.5   # predict's cold start beyond `import pandas, talib` (issue 18)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a bundle file written by `evo export` (.evo)")
    p.add_argument("--data", required=True, help="PATH.csv (or yf:TICKER) with at least tail_bars + N bars")
    p.add_argument("--decisions", type=int, default=200, help="bars replayed and timed per path (default 200)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of both engines (default: torch's own choice, onnxruntime 1)")
    p.add_argument("--engines", default=None, metavar="ENGINE[,ENGINE]",
                   help="engines to compare (default: onnx when the bundle has graphs, torch when installed)")
    p.add_argument("--int8", default=None, metavar="BUNDLE",
                   help="an int8 bundle of the same member (`evo export --quantize int8`): its step timed as a "
                        "third engine, its export's agreement with the float graphs reported")
    p.add_argument("--cold-starts", type=int, default=3, metavar="N",
                   help="fresh `predict` processes per engine for the cold start (median; 0 skips it; default 3)")
    p.add_argument("--record", default=None, metavar="PATH.json",
                   help="also write the figures as a docs/experiments table (rendered by `python -m evo bench`)")
    p.add_argument("--json", action="store_true", help="print the timings as one JSON object instead of a table")


def _percentiles(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "max_ms": round(float(ms.max()), 3)}


def _check_length(bundle, bars, decisions: int) -> int:
    from evo.errors import DataError

    start = len(bars) - decisions
    if decisions < 1 or start < bundle.min_bars + WARMUP_CALLS:
        raise DataError(f"{len(bars)} bars are too few to time {decisions} decisions: need at least "
                        f"{bundle.min_bars + WARMUP_CALLS + decisions}")
    return start


def _rows(bars) -> list[dict]:
    columns = ["open", "high", "low", "close", "volume"]
    return [{"time": t, **dict(zip(columns, v))} for t, v in zip(bars.index, bars[columns].to_numpy())]


def bench(bundle, bars, decisions: int) -> dict:
    """Time full history vs stream over the last ``decisions`` bars of ``bars``; return the report dict."""
    n = len(bars)
    start = _check_length(bundle, bars, decisions)
    rows = _rows(bars)
    bundle.reset()
    bundle.prime(bars.iloc[: start - WARMUP_CALLS])
    full_s, stream_s, full, stream = [], [], [], []
    # Interleaved, bar by bar, so both paths meet the same machine load.
    for t in range(start - WARMUP_CALLS, n):
        history = bars.iloc[: t + 1]
        t0 = time.perf_counter()
        a = bundle.decide(history)[0]
        t1 = time.perf_counter()
        b = bundle.step(rows[t])
        t2 = time.perf_counter()
        if t >= start:
            full_s.append(t1 - t0)
            stream_s.append(t2 - t1)
            full.append(a)
            stream.append(b)

    full_p, stream_p = _percentiles(full_s), _percentiles(stream_s)
    diff = max(max(abs(a.p_a - b.p_a), abs(a.p_b - b.p_b)) for a, b in zip(full, stream))
    return {
        "bars": n, "decisions": decisions, "history_bars": [start + 1, n], "tail_bars": bundle.tail_bars,
        "seq_len": bundle.seq_len, "engine": bundle.engine.name, "full": full_p, "stream": stream_p,
        "ratio_p50": round(full_p["p50_ms"] / stream_p["p50_ms"], 2),
        "ratio_p99": round(full_p["p99_ms"] / stream_p["p99_ms"], 2),
        "max_prob_diff": float(diff), "signals_equal": int(sum(a.signal == b.signal for a, b in zip(full, stream))),
        "stream_settled": bundle.settled,
    }


def bench_engines(bundles: dict, bars, decisions: int) -> dict:
    """``Bundle.step`` per engine over the last ``decisions`` bars, interleaved bar by bar (the
    order alternating), and the models alone (both models on one window, batch 1); with two
    engines, how far their probabilities and signals differ."""
    n = len(bars)
    first = next(iter(bundles.values()))
    start = _check_length(first, bars, decisions)
    rows = _rows(bars)
    names = list(bundles)
    step_s = {e: [] for e in names}
    out = {e: [] for e in names}
    for b in bundles.values():
        b.reset()
        b.prime(bars.iloc[: start - WARMUP_CALLS])
    for t in range(start - WARMUP_CALLS, n):
        for e in (names if t % 2 else names[::-1]):
            t0 = time.perf_counter()
            d = bundles[e].step(rows[t])
            dt = time.perf_counter() - t0
            if t >= start:
                step_s[e].append(dt)
                out[e].append(d)
    inputs = first.inputs(bars, last=decisions)
    model_s = {e: [] for e in names}
    for i in range(-WARMUP_CALLS, decisions):
        one = {m: w[max(i, 0): max(i, 0) + 1] for m, w in inputs.windows.items()}
        for e in (names if i % 2 else names[::-1]):
            engine = bundles[e].engine
            t0 = time.perf_counter()
            for m in ("a", "b"):
                engine.proba(m, one[m])
            if i >= 0:
                model_s[e].append(time.perf_counter() - t0)
    report = {e: {"step": _percentiles(step_s[e]), "models": _percentiles(model_s[e])} for e in names}
    if "onnx" in names and "torch" in names:
        a, b = out["onnx"], out["torch"]
        report["max_prob_diff"] = float(max(max(abs(x.p_a - y.p_a), abs(x.p_b - y.p_b)) for x, y in zip(a, b)))
        report["signals_equal"] = int(sum(x.signal == y.signal for x, y in zip(a, b)))
    if "int8" in names and "onnx" in names:
        report["int8_signals_equal"] = int(sum(x.signal == y.signal for x, y in zip(out["int8"], out["onnx"])))
    return report


def cold_starts(path: Path, bars, engines: list[str], runs: int, tail_bars: int) -> dict:
    """Wall time of fresh ``python -m evo predict`` processes per engine (median of ``runs``,
    interleaved) on a CSV of the last ``tail_bars`` bars, and of ``python -c "import pandas, talib"``."""
    import os
    import statistics
    import subprocess
    import sys
    import tempfile

    from evo.errors import EvoError

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "recent.csv"
        frame = bars.iloc[-tail_bars:][["open", "high", "low", "close", "volume"]]
        frame.rename_axis("time").to_csv(csv)
        features_only = ("import pandas, talib; import features; from evo.data import load_bars; "
                         f"features.compute_features(load_bars({str(csv)!r})[0])")
        commands = {"import pandas, talib": [sys.executable, "-c", "import pandas, talib"],
                    "features only": [sys.executable, "-c", features_only]}
        for e in engines:
            commands[f"predict --engine {e}"] = [sys.executable, "-m", "evo", "predict", "--bundle", str(path),
                                                 "--data", str(csv), "--json", "--allow-stale", "--engine", e]
        seconds: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(runs):
            for label, cmd in commands.items():
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
                seconds[label].append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise EvoError(f"cold start: `{' '.join(cmd[1:])}` failed: {proc.stderr.strip().splitlines()[-1:]}")
    med = {k: round(statistics.median(v), 3) for k, v in seconds.items()}
    floor = med["import pandas, talib"]
    return {"runs": runs, "csv_bars": int(min(tail_bars, len(bars))), "median_s": med,
            "beyond_imports_s": {e: round(med[f"predict --engine {e}"] - floor, 3) for e in engines},
            "beyond_features_s": {e: round(med[f"predict --engine {e}"] - med["features only"], 3) for e in engines}}


def _requirement_names(dist) -> list[str]:
    import re

    out = []
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
        if m:
            out.append(m.group(1))
    return out


def install_size(roots) -> dict:
    """Bytes on disk of the distributions ``roots`` and everything they require (extras left out),
    from their ``importlib.metadata`` file lists; missing distributions are named, not counted."""
    import importlib.metadata as md
    import re

    def canon(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen, missing, sizes, todo = set(), [], {}, list(roots)
    while todo:
        name = canon(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        total = 0
        for f in dist.files or []:
            try:
                total += dist.locate_file(f).stat().st_size
            except OSError:
                pass
        sizes[name] = total
        todo += _requirement_names(dist)
    top = sorted(sizes.items(), key=lambda kv: -kv[1])
    return {"mib": round(sum(sizes.values()) / 2**20, 1), "distributions": len(sizes),
            "largest_mib": {k: round(v / 2**20, 1) for k, v in top[:6]}, "missing": sorted(missing)}


def install_sizes() -> dict:
    return {"runtime": install_size(RUNTIME_SET), "torch": install_size(TORCH_SET)}


def _available_engines(path: Path, has_graphs: bool) -> list[str]:
    import importlib.util

    engines = ["onnx"] if has_graphs and importlib.util.find_spec("onnxruntime") else []
    try:
        torch_there = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        torch_there = False
    return engines + (["torch"] if torch_there else [])


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    import os
    import platform

    from evo.data import load_bars
    from evo.deploy.bundle import Bundle, read_bundle
    from evo.errors import ConfigError

    path = Path(args.bundle)
    manifest, _ = read_bundle(path)
    if args.engines:
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        if not engines or any(e not in ("onnx", "torch") for e in engines):
            raise ConfigError(f"--engines: choose from onnx, torch, got {args.engines!r}")
    else:
        engines = _available_engines(path, isinstance(manifest.get("graphs"), dict))
    threads = {}
    if "torch" in engines:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads["torch"] = torch.get_num_threads()
    if "onnx" in engines:
        threads["onnx"] = args.threads or 1
    bundles = {e: Bundle.load(path, verify=True, engine=e, threads=args.threads or 1) for e in engines}
    quantization = None
    if args.int8:
        int8 = Bundle.load(Path(args.int8), verify=True, engine="onnx", threads=args.threads or 1)
        quantization = (int8.manifest.get("graphs") or {}).get("quantization")
        if quantization is None or int8.manifest["member"] != manifest["member"]:
            raise ConfigError(f"--int8 {args.int8}: not an int8 bundle of member {manifest['member'][:8]}")
        bundles["int8"] = int8
    bars, label = load_bars(args.data)
    default = Bundle.load(path, engine="auto", threads=args.threads or 1)
    report = {"bundle": str(args.bundle), "data": label, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "threads": threads, "load_avg_start": list(os.getloadavg()),
              "options": {"threads": args.threads, "cold_starts": args.cold_starts, "int8": args.int8},
              **bench(default, bars, args.decisions),
              "engines": bench_engines(bundles, bars, args.decisions)}
    if quantization is not None:
        report["quantization"] = quantization
    if args.cold_starts > 0:
        report["cold_start"] = cold_starts(path, bars, engines, args.cold_starts, default.tail_bars)
    report["install"] = install_sizes()
    report["load_avg_end"] = list(os.getloadavg())
    if args.record:
        from evo.fileio import write_json_atomic

        write_json_atomic(Path(args.record), experiment_table(report))
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return 0
    for line in text_lines(report):
        print(line)
    return 0


def text_lines(r: dict) -> list[str]:
    f, s = r["full"], r["stream"]
    lines = [f"{r['data']}: {r['decisions']} decisions, history {r['history_bars'][0]}..{r['bars']} bars, "
             f"tail {r['tail_bars']} bars, window {r['seq_len']}, threads {r['threads']}",
             f"  full history   p50 {f['p50_ms']:8.2f} ms   p99 {f['p99_ms']:8.2f} ms   ({r['engine']} engine)",
             f"  stream (step)  p50 {s['p50_ms']:8.2f} ms   p99 {s['p99_ms']:8.2f} ms",
             f"  full / stream  p50 x{r['ratio_p50']:.2f}   p99 x{r['ratio_p99']:.2f}   "
             f"max |dp| {r['max_prob_diff']:.1e}, signals equal {r['signals_equal']}/{r['decisions']}"]
    eng = r["engines"]
    for e in (k for k in ("onnx", "int8", "torch") if k in eng):
        st, mo = eng[e]["step"], eng[e]["models"]
        lines.append(f"  {e:<5} step     p50 {st['p50_ms']:8.2f} ms   p99 {st['p99_ms']:8.2f} ms   models alone p50 "
                     f"{mo['p50_ms']:.3f} ms   p99 {mo['p99_ms']:.3f} ms")
    if "signals_equal" in eng:
        lines.append(f"  onnx vs torch  max |dp| {eng['max_prob_diff']:.1e}, signals equal "
                     f"{eng['signals_equal']}/{r['decisions']}")
    q = r.get("quantization")
    if q:
        lines.append(f"  int8 vs float  {eng.get('int8_signals_equal')}/{r['decisions']} signals equal here; at export "
                     f"{q['differ']} of {q['decisions']} {q['span']} decisions differed ({q['disagreement']:.2%}), "
                     f"|dp| up to {q['max_prob_diff']:.3f}, models p50 x{q['latency_gain_p50']:.2f} faster, "
                     f"{q['bytes']['int8'] / 1e6:.2f} vs {q['bytes']['float'] / 1e6:.2f} MB")
    if "cold_start" in r:
        c = r["cold_start"]
        floor = c["median_s"]["import pandas, talib"]
        feats = c["median_s"]["features only"]
        for e, extra in c["beyond_imports_s"].items():
            lines.append(f"  cold start {e:<5} {c['median_s'][f'predict --engine {e}']:.2f} s  ({extra:+.2f} s beyond "
                         f"`import pandas, talib` {floor:.2f} s, {c['beyond_features_s'][e]:+.2f} s beyond a process "
                         f"computing the features only, {feats:.2f} s; median of {c['runs']})")
    for k, v in r["install"].items():
        lines.append(f"  install {k:<8} {v['mib']:8.1f} MiB in {v['distributions']} distributions (largest: "
                     + ", ".join(f"{n} {m}" for n, m in v["largest_mib"].items()) + ")"
                     + (f"; not installed: {', '.join(v['missing'])}" if v["missing"] else ""))
    return lines


def _cold_note(c: dict | None) -> list[str]:
    """Where the onnx engine's cold start goes: the feature pipeline's first call, then the rest."""
    if not c or "onnx" not in c["beyond_features_s"]:
        return []
    med = c["median_s"]
    feats, floor = med["features only"], med["import pandas, talib"]
    return [f"cold start: a process that only reads the CSV and computes its features takes {feats} s "
            f"({feats - floor:.2f} s beyond `import pandas, talib`: numba's import and first call of the feature "
            f"kernels, then the features); the onnx engine adds {c['beyond_features_s']['onnx']:.2f} s to that "
            "(onnxruntime, the bundle's checks and sessions, the golden check, the decision)"]


def experiment_table(r: dict) -> dict:
    """The report as a ``docs/experiments`` JSON (rows: figure, onnx, torch, target, met)."""
    import datetime

    eng, rows = r["engines"], []

    def ms(e: str, part: str, q: str):
        return eng[e][part][f"{q}_ms"] if e in eng else None

    for part, what in (("step", "Bundle.step per bar (features on the tail + both models)"),
                       ("models", "both models alone, one window (batch 1)")):
        for q in ("p50", "p99"):
            onnx, torch = ms("onnx", part, q), ms("torch", part, q)
            met = None if part == "models" or onnx is None or torch is None else onnx <= torch
            rows.append({"figure": f"{what}, {q} ms", "onnx": onnx, "torch": torch,
                         **({"onnx int8": ms("int8", part, q)} if "int8" in eng else {}),
                         "target": "onnx ≤ torch" if part == "step" else "-",
                         "met": "-" if met is None else ("yes" if met else "no")})
    c = r.get("cold_start")
    if c:
        rows.append({"figure": "`predict` cold start, process start to first decision, s (median)",
                     "onnx": c["median_s"].get("predict --engine onnx"),
                     "torch": c["median_s"].get("predict --engine torch"), "target": "-", "met": "-"})
        beyond = c["beyond_imports_s"]
        rows.append({"figure": f"… beyond `import pandas, talib` ({c['median_s']['import pandas, talib']} s), s",
                     "onnx": beyond.get("onnx"), "torch": beyond.get("torch"), "target": f"≤ {COLD_START_TARGET_S}",
                     "met": "-" if "onnx" not in beyond else ("yes" if beyond["onnx"] <= COLD_START_TARGET_S
                                                              else "no") + " (onnx)"})
        rows.append({"figure": f"… beyond a process computing the same bars' features only "
                               f"({c['median_s']['features only']} s: imports, numba start-up, features), s",
                     "onnx": c["beyond_features_s"].get("onnx"), "torch": c["beyond_features_s"].get("torch"),
                     "target": "-", "met": "-"})
    ins = r["install"]
    rows.append({"figure": "install size of the engine's set, MiB (distributions)",
                 "onnx": f"{ins['runtime']['mib']} ({ins['runtime']['distributions']})",
                 "torch": f"{ins['torch']['mib']} ({ins['torch']['distributions']})", "target": "-", "met": "-"})
    if "signals_equal" in eng:
        rows.append({"figure": "onnx vs torch over the timed bars: max |Δp|; equal signals",
                     "onnx": f"{eng['max_prob_diff']:.1e}; {eng['signals_equal']}/{r['decisions']}", "torch": "-",
                     "target": "≤ 1e-5; all", "met": "yes" if eng["max_prob_diff"] <= 1e-5
                     and eng["signals_equal"] == r["decisions"] else "no"})
    q = r.get("quantization")
    if q:
        rows.append({"figure": f"int8 graphs vs float: decisions that differ over the {q['span']} (at export)",
                     "onnx": f"{q['differ']} of {q['decisions']} ({q['disagreement']:.2%})", "torch": "-",
                     "onnx int8": f"|Δp| ≤ {q['max_prob_diff']:.3f}", "target": "≤ --max-disagreement",
                     "met": "-"})
        rows.append({"figure": "int8 graphs vs float: both models p50 at export (batch 1), ms; size MB",
                     "onnx": f"{q['latency_ms']['float']['p50']} ms; {q['bytes']['float'] / 1e6:.2f} MB", "torch": "-",
                     "onnx int8": f"{q['latency_ms']['int8']['p50']} ms (x{q['latency_gain_p50']:.2f}); "
                                  f"{q['bytes']['int8'] / 1e6:.2f} MB", "target": "-", "met": "-"})
    return {
        "title": "Trading PC: onnx vs torch engine (evo bench-bundle)",
        "command": f"python -m evo bench-bundle {Path(r['bundle']).name} --data {Path(r['data']).name} "
                   f"--decisions {r['decisions']}"
                   + "".join(f" --{k.replace('_', '-')} {Path(str(v)).name if k == 'int8' else v}"
                             for k, v in r.get("options", {}).items() if v is not None)
                   + " --record docs/experiments/trading_pc.json",
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": r["machine"], "cpus": r["cpus"], "threads": r["threads"],
                    "loadavg_start": [round(x, 2) for x in r["load_avg_start"]],
                    "loadavg_end": [round(x, 2) for x in r["load_avg_end"]]},
        "rows": rows,
        "notes": [f"bundle: window {r['seq_len']}, tail {r['tail_bars']} bars; {r['decisions']} decisions timed per "
                  "engine, interleaved bar by bar; cold start on a CSV of the tail's bars, golden check included",
                  *_cold_note(c),
                  "install sizes: files of the distributions each engine needs, requirements followed "
                  f"(runtime set {', '.join(RUNTIME_SET)}; torch set {', '.join(TORCH_SET)}); largest: "
                  + "; ".join(f"{k}: " + ", ".join(f"{n} {m}" for n, m in v["largest_mib"].items())
                              for k, v in ins.items())],
    }
