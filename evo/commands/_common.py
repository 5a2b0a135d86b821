"""Helpers shared by the commands: logging set-up, loading a run's dataset and budget."""

from __future__ import annotations

import logging
import sys

# Written to a file or a pipe, rich would wrap every line at 80 columns, in the middle of a command
# or a table row; this width (with soft wrap) leaves each line whole.
PIPE_WIDTH = 1000


def make_console(*, stderr: bool = False):
    """A rich Console on stdout (or stderr): the terminal's width on a terminal; written to a file
    or a pipe, no line is wrapped (:data:`PIPE_WIDTH`, soft wrap)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


def setup_logging(verbose: bool, console=None) -> None:
    """Log records to ``console`` through rich on a terminal, else as plain lines on stderr."""
    level = logging.DEBUG if verbose else logging.INFO
    if console is not None and console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("evo", "features", "models", "backtest"):
        logging.getLogger(name).setLevel(level)


def single_thread_torch() -> None:
    """Train with one torch thread. The models are small: a second thread gains at most ~20 % on
    idle cores and collapses under load (measured here: 2.1 s -> 13.9 s for one training), and
    results are reproducible only for a fixed thread count, so the search, its worker processes
    and export all use one."""
    import torch

    torch.set_num_threads(1)


def load_dataset(spec: str | None, budget, expected_hash: str | None = None, *, fmt: str = "auto",
                 interval: str = "1d", period: str = "max"):
    from evo.data import default_cache_dir, load_bars
    from evo.errors import StoreError
    from evo.evaluation.dataset import prepare_dataset

    bars, label = load_bars(spec, fmt=fmt, interval=interval, period=period)
    ds = prepare_dataset(bars, label, budget, cache_dir=default_cache_dir() / "features")
    if expected_hash is not None and ds.data_hash != expected_hash:
        raise StoreError(f"{label}: the data changed since the run started (hash {ds.data_hash}, "
                         f"run has {expected_hash})")
    return ds


def load_run_data(spec: str | None, budget, expected_hash: str | None = None, *, fmt: str = "auto",
                  interval: str = "1d", period: str = "max"):
    """(search dataset, sealed holdout, bars held out) for a run: the holdout is the last part of the
    bars (None and 0 bars when the budget keeps none)."""
    from evo.data import default_cache_dir, load_bars
    from evo.errors import StoreError
    from evo.evaluation.dataset import prepare_run_data

    bars, label = load_bars(spec, fmt=fmt, interval=interval, period=period)
    ds, holdout = prepare_run_data(bars, label, budget, cache_dir=default_cache_dir() / "features")
    if expected_hash is not None and ds.data_hash != expected_hash:
        raise StoreError(f"{label}: the data changed since the run started (hash {ds.data_hash}, "
                         f"run has {expected_hash})")
    return ds, holdout, (0 if holdout is None else len(bars) - ds.n_bars)


def budget_of(meta: dict):
    from evo.config import budget_from_dict

    b = dict(meta["budget"])
    return budget_from_dict(b.pop("name"), b)
