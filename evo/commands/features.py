"""``evo features``: list the feature catalog, or write the features of a data file to CSV."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from evo.commands._common import setup_logging
from evo.commands._data_args import add_data_arguments, load_from_args

HELP = "list the feature catalog, or compute every feature of a data file into a CSV"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--list",
        action="store_true",
        help="list the catalog: name, kind, source, warm-up, volume, which model may use it",
    )
    p.add_argument("--json", action="store_true", help="with --list: one JSON object instead of a table")
    add_data_arguments(p, multiple=False)
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE.csv",
        help="write one row per input bar (first column `time`, the input's timestamps) and "
        "one column per usable feature, raw values (NaN during warm-up is an empty cell)",
    )
    p.add_argument(
        "--model-ready", action="store_true", help="write the model-ready (stationary) values instead of the raw ones"
    )
    p.add_argument(
        "--timeframes",
        default=None,
        metavar="M[,M]",
        help="also write each feature on higher timeframes, as multiples of the data's bar (e.g. 5,15,60 on "
        "minute data, 5 = the week on daily data): columns `<feature>@x<M>`, the last CLOSED period's value at "
        "each bar (features/timeframes.py), as the multi-timeframe models see them",
    )


def catalog_rows() -> list[dict]:
    """The catalog as plain dicts, catalog order; ``model`` is "A" or "B"."""
    import features as F

    return [
        {
            "name": s.name,
            "kind": s.kind,
            "source": s.source,
            "warmup_bars": s.warmup_bars,
            "needs_volume": s.needs_volume,
            "model": "B" if s.kind == "indicator" else "A",
        }
        for s in F.catalog()
    ]


def print_catalog(*, as_json: bool) -> None:
    import features as F

    rows = catalog_rows()
    if as_json:
        print(json.dumps({"catalog_version": F.CATALOG_VERSION, "features": rows}, indent=1))
        return
    header = ("name", "kind", "source", "warmup_bars", "needs_volume", "model")
    cells = [header] + [
        (r["name"], r["kind"], r["source"], str(r["warmup_bars"]), "yes" if r["needs_volume"] else "no", r["model"])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    n_a = sum(r["model"] == "A" for r in rows)
    print(
        f"{len(rows)} features (catalog version {F.CATALOG_VERSION}): {n_a} for model A "
        f"(patterns, pattern features), {len(rows) - n_a} for model B (indicators)"
    )


def write_features(args: argparse.Namespace) -> None:
    import features as F
    from evo.errors import ConfigError

    started = time.perf_counter()
    out = Path(args.out)
    if args.data and not args.data.startswith("yf:") and out.resolve() == Path(args.data).resolve():
        raise ConfigError(f"{out}: --out would overwrite the --data file")
    [(bars, label)] = load_from_args(args)
    names = list(F.usable_features(bars, warn=True, source=label))
    check_long_enough(bars, names, label)
    frame = F.compute_features(bars, raw=not args.model_ready)[names]
    if args.timeframes:
        import pandas as pd

        frame = pd.concat([frame] + [higher_timeframe(bars, m, names, raw=not args.model_ready)
                                     for m in parse_timeframes(args.timeframes, bars, label)], axis=1)
    from evo.fileio import atomic_path

    try:
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, index_label="time")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    mode = "model-ready" if args.model_ready else "raw"
    print(
        f"wrote {frame.shape[1]} feature columns ({mode}) x {len(frame)} bars of {label} to {out} "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


def check_long_enough(bars, names: list[str], label: str) -> None:
    """DataError unless some bar is past every feature's warm-up: a shorter file would write a
    CSV in which no row has all its features (the longest warm-up is ``sma_50``'s 49 bars)."""
    import features as F
    from evo.errors import DataError

    warmups = {s.name: s.warmup_bars for s in F.catalog() if s.name in names}
    longest = max(warmups, key=lambda n: warmups[n])
    if len(bars) <= warmups[longest]:
        raise DataError(f"{label}: {len(bars)} bars are too few for the features: {longest} needs "
                        f"{warmups[longest]} bars of warm-up, so no bar would have every feature; "
                        f"give at least {warmups[longest] + 1} bars")


def parse_timeframes(text: str, bars, label: str) -> list[int]:
    """``"5,15"`` -> ``[5, 15]``, each a timeframe the data's bar clock offers (ConfigError otherwise)."""
    from evo.errors import ConfigError
    from features.timeframes import infer_clock

    offered = infer_clock(bars.index).multipliers()
    try:
        ms = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--timeframes {text!r}: give multiples of the bar, e.g. 5,15") from None
    bad = [m for m in ms if m == 1 or m not in offered]
    if bad or not ms:
        raise ConfigError(f"--timeframes {text!r}: {label} offers {', '.join(str(m) for m in offered[1:]) or 'none'} "
                          "(multiples of its bar)")
    return ms


def higher_timeframe(bars, m: int, names: list[str], *, raw: bool):
    """The features of the closed ``x m`` bars aligned to the base bars (``<feature>@x<m>``)."""
    import numpy as np
    import pandas as pd

    import features as F
    from features.timeframes import column_name, infer_clock, resample_closed

    r = resample_closed(bars, m, infer_clock(bars.index))
    values = F.compute_features(r.bars, raw=raw)[names].to_numpy(dtype=np.float64)
    out = np.full((len(bars), len(names)), np.nan)
    ok = r.visible >= 0
    out[ok] = values[r.visible[ok]]
    return pd.DataFrame(out, index=bars.index, columns=[column_name(n, m) for n in names])


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.errors import ConfigError

    if args.list:
        if args.out:
            raise ConfigError("give either --list or --out, not both")
        print_catalog(as_json=args.json)
        return 0
    if args.json:
        raise ConfigError("--json goes with --list")
    if not args.out:
        raise ConfigError("nothing to do: give --list, or --out FILE.csv (with --data PATH) to write features")
    write_features(args)
    return 0
