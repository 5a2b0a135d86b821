"""``pip install .`` gives the whole tool: pyproject.toml and requirements.txt name the same
packages, and every third-party package the product imports is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("evo", "models", "features", "backtest", "experiments")
# import name -> distribution name, where they differ
DISTRIBUTION = {"talib": "ta-lib"}
# imported on purpose without being a dependency: the benchmark's optional comparison row
OPTIONAL_IMPORTS = {"backtesting"}


def canonical(name: str) -> str:
    """PEP 503: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, spec
    return canonical(match.group(1))


def pyproject() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(s) for s in project["dependencies"]}
    extras = {k: {requirement_name(s) for s in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


def requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(requirement_name(line))
    return names


def imported_packages() -> set[str]:
    """Top-level third-party modules imported anywhere in the product, deferred imports included."""
    local = set(PRODUCT)
    found = set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in local and m not in sys.stdlib_module_names and m != "__future__"}


def test_pyproject_and_requirements_name_the_same_packages():
    core, extras = pyproject()
    everything = core.union(*extras.values())
    pinned = requirements()
    assert pinned - everything == set(), "in requirements.txt but not in pyproject.toml"
    assert everything - pinned == set(), "in pyproject.toml but not in requirements.txt"


def test_the_report_is_in_the_core_and_dask_in_an_extra():
    core, extras = pyproject()
    assert {"plotly", "kaleido", "rich", "vectorbt", "torch", "xlstm"} <= core
    assert "distributed" not in core and "distributed" in extras["distributed"]
    assert "pytest" in extras["test"]


def test_every_imported_package_is_declared():
    core, extras = pyproject()
    declared = core.union(*extras.values())
    imported = {canonical(DISTRIBUTION.get(m, m)) for m in imported_packages() - OPTIONAL_IMPORTS}
    assert {"plotly", "distributed", "torch", "ta-lib"} <= imported   # the scan sees deferred imports
    assert imported - declared == set()
    assert imported - {"distributed"} <= core      # only Dask is optional for the product
