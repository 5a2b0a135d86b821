"""Ctrl-C and SIGTERM during a long command: stop cleanly, say what is saved, exit 128 + signal.

Python turns Ctrl-C into a ``KeyboardInterrupt`` wherever the main thread happens to be. Inside an
Optuna trial (the learning-rate tuning of every genome) Optuna catches it, logs the trial as failed
with a ~20-line traceback, and raises it again. :func:`stop_on_signals` installs one handler for
SIGINT and SIGTERM that first silences Optuna's logger, then raises :class:`Interrupted` (a
``KeyboardInterrupt``, so the ``finally`` blocks on the way out still close worker pools and files),
which the command catches at its top to print one message and return :func:`exit_status`.
"""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The last signal received inside stop_on_signals. A signal that lands while Python runs a weakref
# callback or a __del__ has its exception printed and dropped ("Exception ignored in ..."), so the
# command also calls raise_if_pending() at safe points (after each evaluation, before each phase).
_pending: list[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def what(self) -> str:
        return "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def exit_status(signum: int) -> int:
    """What a shell reports for a program ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def _quiet_optuna() -> None:
    """No log line from Optuna while the interrupt unwinds its trial ("Trial 3 failed ... Traceback")."""
    optuna = sys.modules.get("optuna")
    if optuna is not None:
        optuna.logging.set_verbosity(optuna.logging.CRITICAL + 1)
    logging.getLogger("optuna").setLevel(logging.CRITICAL + 1)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (each time one
    arrives). The previous handlers are restored on the way out."""

    def handler(signum, frame):  # noqa: ARG001 - the signal module's signature
        _quiet_optuna()
        _pending.append(signum)
        raise Interrupted(signum)

    _pending.clear()
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def raise_if_pending() -> None:
    """Raise :class:`Interrupted` if a signal arrived whose exception was swallowed on the way."""
    if _pending:
        raise Interrupted(_pending[-1])
