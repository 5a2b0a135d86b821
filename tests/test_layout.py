"""The house rules of docs/architecture.md, read from the source: every import (deferred ones
inside functions included) of every first-party module, and the rules they must keep.

- no import circle among evo's modules;
- ``evo.pipeline`` imports nothing above it (evaluation, search, deploy, reporting, commands);
- ``evo.deploy.bundle`` (what ``predict`` loads) reaches neither ``evo.evaluation`` nor
  ``evo.search``, directly or through another module;
- inside ``evo/`` only ``evo.commands`` imports ``experiments``;
- the ground floors (``features``, ``models``, ``backtest``) use only ``evo.errors`` and
  ``evo.fileio`` of ``evo``;
- no module under ``evo/`` is longer than 750 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evo", "models", "features", "backtest", "experiments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """First-party modules ``path`` imports anywhere in its body (a name imported from a package
    counts as its submodule when one exists)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods)) for name, path in mods.items()}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in graph[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_deferred_imports(graph):
    """The walk is real: deferred imports inside functions are edges too."""
    assert "evo.search.ga" in graph["evo.commands.run"]          # imported inside a function
    assert "evo.search.objectives" in graph["evo.reporting.front"]
    assert graph["evo.errors"] == set()


def test_no_import_circle_in_evo(graph):
    evo = {m: {d for d in deps if _in(d, "evo")} for m, deps in graph.items() if _in(m, "evo")}
    circles = sorted(m for m in evo if m in _reach(evo, m))
    assert circles == [], f"modules that import themselves through others: {circles}"


LAYERS_ABOVE_PIPELINE = ("evo.evaluation", "evo.search", "evo.deploy", "evo.reporting", "evo.commands", "evo.cli")


def test_pipeline_imports_nothing_above_it(graph):
    bad = {m: sorted(d for d in deps if any(_in(d, p) for p in LAYERS_ABOVE_PIPELINE))
           for m, deps in graph.items() if _in(m, "evo.pipeline")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_bundle_reaches_neither_evaluation_nor_search(graph):
    reach = _reach(graph, "evo.deploy.bundle")
    assert sorted(m for m in reach if _in(m, "evo.evaluation") or _in(m, "evo.search")) == []


def test_only_commands_import_experiments(graph):
    bad = sorted(m for m, deps in graph.items()
                 if _in(m, "evo") and not _in(m, "evo.commands") and any(_in(d, "experiments") for d in deps))
    assert bad == []


def test_ground_floors_use_only_errors_and_fileio(graph):
    allowed = {"evo", "evo.errors", "evo.fileio"}
    bad = {m: sorted(d for d in deps if _in(d, "evo") and d not in allowed)
           for m, deps in graph.items() if any(_in(m, p) for p in ("features", "models", "backtest"))}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_module_in_evo_is_too_long():
    long = {name: n for name, path in _modules().items() if _in(name, "evo")
            and (n := len(path.read_text().splitlines())) > 750}
    assert long == {}


SEARCH_LIBRARIES = ("deap", "optuna", "nevergrad", "vectorbt")
LIVE_RUNNER = ("evo.deploy.live", "evo.deploy.paper", "evo.deploy.ledger")


def _third_party(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_live_runner_reaches_no_search_library_nor_the_reconciliation(graph):
    """`evo live` runs on the trading PC like `predict`: the runner, its paper account and ledger reach
    neither evaluation, search, reporting, the reconciliation (vectorbt) nor the backtest's portfolio,
    and no module they reach imports deap, optuna, nevergrad or vectorbt, even inside a function."""
    mods = _modules()
    for start in LIVE_RUNNER:
        reach = _reach(graph, start) | {start}
        above = sorted(m for m in reach if any(_in(m, p) for p in ("evo.evaluation", "evo.search", "evo.reporting"))
                       or m in ("evo.deploy.reconcile", "evo.deploy.export", "backtest.portfolio"))
        assert above == [], f"{start} reaches {above}"
        heavy = {m: sorted(_third_party(mods[m]) & set(SEARCH_LIBRARIES)) for m in reach}
        assert {m: h for m, h in heavy.items() if h} == {}, start
    assert "evo.deploy.reconcile" in graph["evo.commands.live"]      # the walk sees the command's deferred import
