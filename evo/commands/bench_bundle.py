"""``evo bench-bundle``: per-decision latency of a bundle on this machine, two ways.

- **full**: what ``evo predict`` does on every new bar: the features over the whole history up
  to the bar (``Bundle.decide(bars[:t+1])``), then the window of the last ``seq_len`` rows.
- **stream**: what a live bot does: ``Bundle.step(bar)``, features over the bundle's last
  ``tail_bars`` bars only, then the same window.

Both run the models on exactly the window of the last ``seq_len`` bars (never a recurrent state
carried across bars: that is not the computation the backtest judged). The replay covers the last
``--decisions`` bars of ``--data``, the two paths interleaved bar by bar (so both meet the same
machine load); the stream is primed with the bars before them. Reports the
median (p50) and 99th percentile (p99) in milliseconds, their ratios full / stream, and how far
the two paths' decisions differ. Numbers only; it never fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "time a bundle's decisions on this machine: full history vs live stream (p50/p99)"

WARMUP_CALLS = 3   # untimed calls per path first (lazy imports, numba and allocator warm-up)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a bundle file written by `evo export` (.evo)")
    p.add_argument("--data", required=True, help="PATH.csv (or yf:TICKER) with at least tail_bars + N bars")
    p.add_argument("--decisions", type=int, default=200, help="bars replayed and timed per path (default 200)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--json", action="store_true", help="print the timings as one JSON object instead of a table")


def _percentiles(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "max_ms": round(float(ms.max()), 3)}


def bench(bundle, bars, decisions: int) -> dict:
    """Time both paths over the last ``decisions`` bars of ``bars``; return the report dict."""
    from evo.errors import DataError

    n = len(bars)
    start = n - decisions
    if decisions < 1 or start < bundle.min_bars + WARMUP_CALLS:
        raise DataError(f"{n} bars are too few to time {decisions} decisions: need at least "
                        f"{bundle.min_bars + WARMUP_CALLS + decisions}")
    columns = ["open", "high", "low", "close", "volume"]
    rows = [{"time": t, **dict(zip(columns, v))} for t, v in zip(bars.index, bars[columns].to_numpy())]

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
        "seq_len": bundle.seq_len, "full": full_p, "stream": stream_p,
        "ratio_p50": round(full_p["p50_ms"] / stream_p["p50_ms"], 2),
        "ratio_p99": round(full_p["p99_ms"] / stream_p["p99_ms"], 2),
        "max_prob_diff": float(diff), "signals_equal": int(sum(a.signal == b.signal for a, b in zip(full, stream))),
        "stream_settled": bundle.settled,
    }


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    import os
    import platform

    import torch

    from evo.data import load_bars
    from evo.deploy.bundle import Bundle

    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = Bundle.load(Path(args.bundle), verify=True)
    bars, label = load_bars(args.data)
    report = {"bundle": str(args.bundle), "data": label, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), **bench(bundle, bars, args.decisions)}
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return 0
    f, s = report["full"], report["stream"]
    print(f"{label}: {report['decisions']} decisions, history {report['history_bars'][0]}..{report['bars']} bars, "
          f"tail {report['tail_bars']} bars, window {report['seq_len']}, torch threads {report['torch_threads']}")
    print(f"  full history   p50 {f['p50_ms']:8.2f} ms   p99 {f['p99_ms']:8.2f} ms")
    print(f"  stream (step)  p50 {s['p50_ms']:8.2f} ms   p99 {s['p99_ms']:8.2f} ms")
    print(f"  full / stream  p50 x{report['ratio_p50']:.2f}   p99 x{report['ratio_p99']:.2f}   "
          f"max |dp| {report['max_prob_diff']:.1e}, signals equal {report['signals_equal']}/{report['decisions']}")
    return 0
