"""The one error hierarchy. The CLI alone catches these, prints one line and exits with code 2.

Anything that is not an ``EvoError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class EvoError(Exception):
    """Base of every user-facing failure."""


class ConfigError(EvoError):
    """A budget preset, option or genome that cannot be used as given."""


class DataError(EvoError):
    """Input bars that cannot be used: missing columns, bad prices, too few bars, no download."""


class StoreError(EvoError):
    """A run directory that is missing, foreign or inconsistent."""


class BundleError(EvoError):
    """A bundle that is corrupted, tampered with or incompatible."""


class GenomeError(EvoError):
    """A genome that cannot be evaluated (window longer than the data, NaN loss, ...).

    Raised inside evaluation; the GA records it as a failed genome and the run goes on.
    """
