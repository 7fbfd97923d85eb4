"""The direction of imports is the architecture: models/, data/, engine/ know nothing of tracking or
launching; only sweeper/ writes MLflow; results/ reads it; no package or module imports itself back."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeper", "engine", "models", "data", "results", "hydra_plugins")
FORBIDDEN = {
    "models": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna", "engine", "data"},
    "data": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna", "engine", "models"},
    "engine": {"mlflow", "submitit", "hydra", "sweeper", "results", "optuna"},
    "results": {"submitit", "hydra", "optuna", "engine", "models"},
    "sweeper": {"results", "hydra_plugins"},
    "hydra_plugins": {"mlflow", "results"},
}
#: The documented exceptions: the summary CLI composes a config from a name in main(); the results hook
#: is a Hydra callback (Hydra instantiates it from conf/sweep.yaml, so sweeper never imports results).
ALLOWED = {("models/summary.py", "sweeper"), ("models/summary.py", "hydra"),
           ("results/hook.py", "hydra")}  # the results README refresh is a Hydra callback
#: Entry-point modules nothing imports: their edges cannot close a cycle between packages.
ENTRY_POINTS = {"models.summary"}
#: MLflow calls that write a store; only sweeper/ makes them.
WRITE_CALLS = {"create_run", "start_run", "end_run", "set_terminated", "update_run", "delete_run", "restore_run",
               "log_metric", "log_metrics", "log_param", "log_params", "log_batch", "log_artifact",
               "log_artifacts", "log_dict", "log_text", "log_figure", "log_image", "log_table", "log_input",
               "log_inputs", "log_outputs", "set_tag", "set_tags", "delete_tag", "create_experiment",
               "set_experiment", "set_experiment_tag", "delete_experiment", "rename_experiment"}
WRITERS = ("sweeper",)
#: The one owner of run-state writes (open, tag, counters, heartbeats, failures, close) in sweeper/:
#: everything else in sweeper/ calls its functions (``tracking.close_run(...)``), never the client.
RUN_STATE_OWNER = "sweeper/tracking.py"
#: the client ``tracking.client_for`` returns (per-run limits): its overrides hand each write on to
#: MlflowClient itself (``super().log_batch(...)``) and decide no run state; any other write there fails
CLIENT_MODULE = "sweeper/throttle.py"
OWNER_MODULE = "tracking"  # a call on it (``tracking.set_tags``, ``self.tracking.set_tags``) is routed


def _sources(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports count)."""
    names: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str):
    offending = []
    for path in _sources(package):
        rel = path.relative_to(REPO).as_posix()
        for name in sorted(_imports(path) & FORBIDDEN[package]):
            if (rel, name) not in ALLOWED:
                offending.append(f"{rel} imports {name}")
    assert not offending, "\n".join(offending)


def _write_calls(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_CALLS:
            calls.append(f"{path.relative_to(REPO)}:{node.lineno} calls .{node.func.attr}(...)")
    return calls


@pytest.mark.parametrize("package", [p for p in PACKAGES if p not in WRITERS])
def test_only_sweeper_writes_mlflow(package: str):
    """MLflow writes (create_run, log_*, set_tag*, set_terminated ...) live behind sweeper/tracking.py."""
    calls = [c for path in _sources(package) for c in _write_calls(path)]
    assert not calls, "MLflow writes outside sweeper/:\n" + "\n".join(calls)


def _raw_write_calls(tree: ast.Module, rel: str) -> list[str]:
    """Write calls (by method name) on anything but the run-state owner module."""
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_CALLS):
            continue
        receiver = node.func.value
        name = receiver.id if isinstance(receiver, ast.Name) else receiver.attr if isinstance(receiver, ast.Attribute) else ""
        passed_on = rel == CLIENT_MODULE and isinstance(receiver, ast.Call) and ast.unparse(receiver) == "super()"
        if name != OWNER_MODULE and not passed_on:
            calls.append(f"{rel}:{node.lineno} calls {ast.unparse(node.func)}(...)")
    return calls


def test_run_state_has_one_writer():
    """In sweeper/, MLflow writes are made by sweeper/tracking.py alone; the rest calls its functions."""
    calls = []
    for path in _sources("sweeper"):
        rel = path.relative_to(REPO).as_posix()
        if rel != RUN_STATE_OWNER:
            calls += _raw_write_calls(_tree(path), rel)
    assert not calls, f"MLflow writes in sweeper/ outside {RUN_STATE_OWNER}:\n" + "\n".join(calls)


def test_the_run_state_scan_finds_a_planted_raw_write():
    planted = ast.parse("client.set_terminated(run_id, 'KILLED')\nself.client.log_batch(r)\n"
                        "tracking.close_run(client, run_id, 'KILLED')\nself.tracking.set_tags(c, r, {})\n")
    assert [c.split(" calls ")[1] for c in _raw_write_calls(planted, "x.py")] == [
        "client.set_terminated(...)", "self.client.log_batch(...)"]
    client_side = ast.parse("super().log_batch(run_id)\nself.client.log_batch(r)\n")
    assert [c.split(" calls ")[1] for c in _raw_write_calls(client_side, CLIENT_MODULE)] == ["self.client.log_batch(...)"]
    assert len(_raw_write_calls(client_side, "sweeper/other.py")) == 2  # super() passes on only in the client


def _graph(level: str) -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in _sources(pkg)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if level == "package" and name in ENTRY_POINTS:
            continue
        targets = set()
        for imported in _imported_modules(path):
            if level == "package":
                top = imported.split(".")[0]
                if top in PACKAGES:
                    targets.add(top)
            else:  # the longest project module the import names
                while imported and imported not in modules:
                    imported = imported.rpartition(".")[0]
                if imported and imported != name:
                    targets.add(imported)
        node = name.split(".")[0] if level == "package" else name
        graph.setdefault(node, set()).update(t for t in targets if t != node)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


@pytest.mark.parametrize("level", ["package", "module"])
def test_no_import_cycles(level: str):
    """Imports (function-local ones included) form no cycle between packages or between modules."""
    cycle = _cycle(_graph(level))
    assert cycle is None, f"{level} import cycle: " + " -> ".join(cycle)


def test_cycle_detection_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
