"""Budget presets (``budgets/*.toml``), seed genomes, studies and benchmarks.

A preset fixes the search space (gene ranges), the training effort, the walk-forward layout and
the GA's population; :func:`load_budget` resolves a preset name or a path and
:func:`evo.config.load_budget` parses the file into frozen dataclasses. Inside ``evo/`` only
``evo.commands`` imports this package.
"""

from __future__ import annotations

from pathlib import Path

BUDGETS_DIR = Path(__file__).resolve().parent / "budgets"
PRESETS = ("smoke", "cpu", "gpu")


def preset_path(name: str) -> Path:
    """The TOML file of the built-in preset ``name`` (``smoke``, ``cpu``, ``gpu``)."""
    return BUDGETS_DIR / f"{name}.toml"


def load_budget(name_or_path: str):
    """A built-in preset (``smoke``, ``cpu``, ``gpu``) or a user's TOML file, as an
    :class:`evo.config.Budget`."""
    from evo import config
    from evo.errors import ConfigError

    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = preset_path(name_or_path)
        if not path.exists():
            raise ConfigError(f"unknown budget {name_or_path!r}: use smoke, cpu, gpu or a path to a .toml file")
    return config.load_budget(path)
