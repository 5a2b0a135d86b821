"""``evo calibrate``: measure the trading PC once, for a hardware-aware search.

Run it on the machine that will trade (CPU only; needs torch, xlstm and the feature libraries,
no search libraries). It times reference xLSTM models of a few sizes on one window (batch 1,
``--threads`` torch threads, as the bot will run them) and the feature computation over a
stream's tail of bars, and writes the profile as JSON (temp-file-then-rename). Bring the file to
the search machine and pass it to ``evo run --target PROFILE.json``; :mod:`evo.search.hardware`
estimates every genome's per-decision latency from it. About 15-60 s (``--quick``: a few seconds,
a coarser profile).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evo.commands._common import setup_logging

JITTER_WARNING = 1.3  # median / least time above which the calibration is flagged as disturbed

HELP = "measure this machine (the trading PC) for a hardware-aware search: writes PROFILE.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="where to write the profile (JSON)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads the trading PC will use per decision (default 1)")
    p.add_argument("--quick", action="store_true", help="a coarser profile in a few seconds (tests, a first look)")
    p.add_argument("--name", default=None, help="profile name shown in limit messages (default: the host name)")
    p.add_argument("--data", default=None,
                   help="PATH.csv (or yf:TICKER) whose last bars time the features (default: the embedded demo data)")
    p.add_argument("--json", action="store_true", help="print the profile as JSON instead of a summary")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.errors import ConfigError

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")

    from evo.data import load_bars
    from evo.search.hardware import calibrate, save_profile

    bars = load_bars(args.data)[0] if args.data else None
    profile = calibrate(threads=args.threads, quick=args.quick, bars=bars, name=args.name,
                        progress=None if args.json else lambda msg: print(msg, flush=True))
    save_profile(profile, out)
    if args.json:
        print(json.dumps(profile, indent=1, allow_nan=False))
        return 0
    m, fit = profile["machine"], profile["fit"]
    print(f"{profile['name']}: {m['cpu_count']} CPUs, {m['platform']}, torch {m['torch']}, "
          f"{profile['threads']} thread(s); {profile['seconds']:.0f} s")
    print("  per model, one window (median / least ms):")
    for r in profile["models"]:
        kind = "mLSTM" if not r["slstm_at"] else f"sLSTM@{r['slstm_at']}"
        print(f"    {r['embedding_dim']:>4}x{r['num_blocks']} {kind:<14} window {r['seq_len']:>4}  "
              f"{r['params']:>9,} params  {r['ms']:8.2f} / {r['min_ms']:.2f} ms")
    print("  features over the stream tail: " + ", ".join(f"{f['tail_bars']} bars {f['ms']:.1f} ms"
                                                           for f in profile["features"]))
    print(f"  latency model fitted to {fit['statistic_used']}: estimated / measured x{fit['ratio_min']:.2f} .. "
          f"x{fit['ratio_max']:.2f} over {len(profile['models'])} models (rms log ratio {fit['rms_log_ratio']:.2f}); "
          f"median wall time / fitted x{fit['jitter']:.2f}")
    if fit["jitter"] > JITTER_WARNING:
        print(f"  note: the median wall times ran x{fit['jitter']:.2f} the undisturbed ones: the machine was busy. "
              "The estimates are idle-machine latencies; on a PC this busy while trading expect more.")
    print(f"wrote {out}")
    return 0
