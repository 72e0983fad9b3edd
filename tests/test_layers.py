"""The package's layers import only downward: data -> splits -> engine -> models -> training ->
evaluation -> recommender -> experiment -> serving/bench/tuning/blend -> auto -> cli. A cycle, or a lower
layer reaching up (a model importing the trainer, the experiment importing serving), fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "deepmovie"
LAYERS = [
    {"errors", "registry", "machine", "rundir", "files", "metrics", "datasets"},
    {"data"},
    {"splits"},
    {"engine"},
    {"models", "config"},
    {"training"},
    {"evaluation"},
    {"recommender"},
    {"experiment"},
    {"serving", "bench", "tuning", "blend"},
    {"auto"},  # searches with tuning, blends with blend
    {"cli", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(path: Path) -> str:
    """The top-level part of the package a module belongs to (``models`` for models/base.py)."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level deepmovie part) of every import in a module, function-local ones included."""
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + (
                [f"{node.module}.{a.name}" for a in node.names] if node.module == "deepmovie" else []
            )
        for name in names:
            parts = name.split(".")
            if parts[0] == "deepmovie" and len(parts) > 1 and parts[1] != "__version__":
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_part_of_the_package_has_a_layer():
    parts = {_top(p) for p in MODULES}
    assert parts <= set(RANK), f"give these a layer: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
    own = RANK[_top(path)]
    upward = [
        f"line {line}: {target} (layer {RANK[target]})"
        for line, target in _imported(ast.parse(path.read_text()))
        if RANK.get(target, -1) > own
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {own}) imports upward: {upward}"
