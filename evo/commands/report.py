"""``evo report``: one self-contained HTML report of a run, with PNG copies of its figures.

Reads the run directory without writing to it (a run that is still going keeps appending to its
journal; a torn last line is skipped, not cut), loads the run's bars for the buy-and-hold line
and, when the run directory holds an Optuna SQLite file, its learning-rate studies. The HTML
embeds plotly.js and opens offline. PNG copies go next to it (kaleido, which drives a Chromium);
when they cannot be made the HTML is still written and says so.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from evo.commands._common import setup_logging

HELP = "write a run's report: one self-contained HTML file plus PNG copies of its figures"

log = logging.getLogger(__name__)

STUDY_FILES = ("studies.db", "*.db", "*.sqlite", "*.sqlite3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `evo run` (it may still be running)")
    p.add_argument("--out", default=None, help="HTML file (default RUN_DIR/report.html); PNGs go beside it")
    p.add_argument("--no-png", action="store_true", help="skip the PNG copies")


def load_run_bars(meta: dict):
    """(bars, note): the run's bars, or None and why not."""
    from evo.data import load_bars
    from evo.errors import EvoError

    try:
        bars, label = load_bars(meta.get("data"), **meta.get("source", {}))
    except (EvoError, OSError) as exc:
        log.warning("no buy-and-hold line: %s", exc)
        return None, str(exc)
    log.info("loaded %d bars of %s", len(bars), label)
    return bars, ""


def find_study_file(run_dir: Path) -> Path | None:
    for pattern in STUDY_FILES:
        found = sorted(run_dir.glob(pattern))
        if found:
            return found[0]
    return None


def load_studies(run_dir: Path):
    """(studies, note): the Optuna studies in the run directory's SQLite file, or None and why."""
    path = find_study_file(run_dir)
    if path is None:
        return None, f"No Optuna storage (studies.db) in {run_dir}"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{path.resolve()}"
        names = optuna.study.get_all_study_names(storage=storage)
        studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
    except Exception as exc:  # noqa: BLE001 - an unreadable study file must not stop the report
        log.warning("%s: cannot read the Optuna studies (%s)", path, exc)
        return None, f"{path.name} could not be read as Optuna storage ({exc})"
    log.info("loaded %d Optuna studies from %s", len(studies), path.name)
    return (studies or None), (f"{path.name} holds no study" if not studies else "")


def write_pngs(sections, out: Path) -> tuple[list[str], str]:
    """PNG copies next to ``out`` (``<stem>-<figure>.png``): (file names, "" or why none)."""
    paths = [out.with_name(f"{out.stem}-{s.name}.png") for s in sections]
    try:
        import plotly.io as pio

        pio.write_images([s.figure for s in sections], paths, width=1200, height=[s.height for s in sections])
    except Exception as exc:  # noqa: BLE001 - no Chromium, no kaleido: the HTML still gets written
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("PNG export failed (%s: %s); writing the HTML without PNG copies", type(exc).__name__, reason)
        for p in paths:
            p.unlink(missing_ok=True)
        return [], (f"The PNG copies of the figures could not be written ({type(exc).__name__}: {reason}). "
                    "kaleido needs a Chromium: apt-get install -y chromium.")
    return [p.name for p in paths], ""


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from evo.reporting.report import build_report, render_html

    run_dir = Path(args.run_dir)
    from evo.search.store import RunStore

    store = RunStore.open(run_dir)  # read-only: a live run's torn last line is left alone
    out = Path(args.out) if args.out else run_dir / "report.html"
    log.info("reading the journal of %s", run_dir)
    records = store.records()
    checkpoint = store.load_checkpoint()
    log.info("%d genomes evaluated; last checkpoint: %s", len(records),
             f"generation {checkpoint['generation']}" if checkpoint else "none")
    bars, bars_note = load_run_bars(store.meta)
    studies, studies_note = load_studies(run_dir)
    log.info("building the figures")
    from evo.reporting.front import latest_screens
    from evo.search.records import rescored

    journal = list(store.iter_records())
    report = build_report(records, store.meta, run=str(run_dir), checkpoint=checkpoint, bars=bars,
                          bars_note=bars_note, studies=studies, studies_note=studies_note,
                          screens=latest_screens(journal), rescored=rescored(journal))
    out.parent.mkdir(parents=True, exist_ok=True)
    png_files, png_note = [], "PNG copies were not requested (--no-png)."
    if not args.no_png:
        log.info("writing %d PNG copies with kaleido", len(report.sections))
        png_files, png_note = write_pngs(report.sections, out)
    page = render_html(report, png_note=png_note, png_files=png_files)
    from evo.fileio import write_text_atomic

    write_text_atomic(out, page)
    log.info("wrote %s (%d figures, %.1f MB)%s", out, len(report.sections), len(page) / 1e6,
             f" and {len(png_files)} PNGs beside it" if png_files else "")
    print(out)
    return 0
