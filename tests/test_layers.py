"""The package layout is the architecture: lower layers never import higher ones.

Read from the source with ``ast`` (imports inside functions count too), so a shortcut that would
tie, say, a worker to the trainers shows up here rather than as an import cycle later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignflow"

# Each package may import only the packages listed for it (and itself).
BASE = {"batch", "config", "runtime"}
ALLOWED = {
    "runtime": {"config"},
    "algorithms": {"batch"},
    "data": {"batch", "config"},
    "rollout": {"batch", "data", "runtime"},
    "models": BASE | {"algorithms", "data"},
    "rewards": BASE | {"data", "models"},
    "workers": BASE | {"algorithms", "data", "models", "rewards", "rollout"},
}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignflow."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("alignflow.")}
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_upward_imports(layer):
    upward = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[layer] - {layer}
        if bad:
            upward[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not upward, f"{layer} imports layers above it: {upward}"
