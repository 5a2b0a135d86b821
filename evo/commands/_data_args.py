"""The data options every command that reads bars shares: ``--data``, ``--format``, ``--interval``,
``--period``; and loading what they name.

Light at import (``python -m evo --help`` builds every parser): pandas and :mod:`evo.data` are
imported in :func:`load_from_args` only.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMATS = ("auto", "yahoo", "generic", "mt5", "klines")
"""The ``--format`` choices: :data:`evo.data.FORMATS` (kept here so parsers need no pandas)."""
DEFAULT_INTERVAL = "1d"
DEFAULT_PERIOD = "max"


def add_data_arguments(p: argparse.ArgumentParser, *, multiple: bool) -> None:
    """Add ``--data`` (repeatable when ``multiple``: one per instrument), ``--format``,
    ``--interval`` and ``--period`` to ``p``."""
    p.add_argument(
        "--data",
        action="append" if multiple else "store",
        default=None,
        metavar="PATH|yf:TICKER",
        help="bars: a CSV file (Yahoo, MetaTrader 5 export, exchange klines, generic) or yf:TICKER "
        "(downloaded with yfinance, cached)"
        + ("; repeat for several instruments" if multiple else "")
        + " (default: the NVDA daily bars shipped with evo)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="how to read a CSV file: detected from its header (auto, the default) or forced; "
        "klines reads a headerless exchange kline file",
    )
    p.add_argument(
        "--interval", default=DEFAULT_INTERVAL, help="yf: bar interval, e.g. 1m, 5m, 1h, 1d, 1wk (default 1d)"
    )
    p.add_argument(
        "--period", default=DEFAULT_PERIOD, help="yf: how far back, e.g. 5d, 1mo, 1y, 10y, max (default max)"
    )


def load_from_args(args: argparse.Namespace) -> list[tuple[pd.DataFrame, str]]:
    """The bars named by the options of :func:`add_data_arguments`: one ``(bars, label)`` per
    ``--data`` in order, or the demo dataset when none was given. Raises
    :class:`evo.errors.DataError` on the first source that cannot be used."""
    from evo.data import load_many

    data = args.data
    specs: list[str | None] = [None] if not data else [data] if isinstance(data, str) else list(data)
    if (args.interval, args.period) != (DEFAULT_INTERVAL, DEFAULT_PERIOD) and not any(
        s and s.startswith("yf:") for s in specs
    ):
        log.warning(
            "--interval and --period apply to yf: downloads only; ignoring them for %s",
            ", ".join(s or "the demo dataset" for s in specs),
        )
    return load_many(specs, fmt=args.format, interval=args.interval, period=args.period)
