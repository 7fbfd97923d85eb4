"""The direction of imports is the architecture: models/, data/, engine/ know nothing of tracking or
launching; results/ reads MLflow and uses only the codec from sweeper/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "models": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna", "engine", "data"},
    "data": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna", "engine", "models"},
    "engine": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna"},
    "results": {"submitit", "hydra", "optuna", "engine", "models", "data"},
}
#: The documented exception: the summary CLI composes a config from a name in main().
ALLOWED = {("models/summary.py", "sweeper"), ("models/summary.py", "hydra")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str):
    offending = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for name in sorted(_imports(path) & FORBIDDEN[package]):
            if (rel, name) not in ALLOWED:
                offending.append(f"{rel} imports {name}")
    assert not offending, "\n".join(offending)


def test_results_uses_only_the_codec_from_sweeper():
    for path in (REPO / "results").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sweeper"):
                assert node.module == "sweeper" and {a.name for a in node.names} <= {"naming"} or \
                    node.module == "sweeper.naming", f"{path}: from {node.module} import ..."
