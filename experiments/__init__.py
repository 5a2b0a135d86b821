"""Budget presets (``budgets/*.toml``) and run configurations.

A preset fixes the search space (gene ranges), the training effort, the walk-forward layout and
the GA's population; ``evo.config.load_budget`` parses one into frozen dataclasses.
"""

from pathlib import Path

BUDGETS_DIR = Path(__file__).resolve().parent / "budgets"


def preset_path(name: str) -> Path:
    """The TOML file of the built-in preset ``name`` (``smoke``, ``cpu``, ``gpu``)."""
    return BUDGETS_DIR / f"{name}.toml"
