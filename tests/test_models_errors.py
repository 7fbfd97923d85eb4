"""models/ errors are bad input (issue 24.5): a model setting that cannot be built ends ``sweep.py``
with one ``error:`` line and exit 2, through ``models.errors.ModelConfigError`` in sweeper's family."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from models.errors import InitWeightsError, ModelConfigError
from sweeper import errors
from tests.conftest import FAST, REPO, subprocess_env

BUILTIN_ERRORS = {"ValueError", "TypeError", "KeyError", "RuntimeError", "FileNotFoundError", "Exception"}


def test_every_raise_of_models_is_a_model_config_error():
    raised = []
    for path in sorted((REPO / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                    and getattr(node.exc.func, "id", None) in BUILTIN_ERRORS:
                raised.append(f"{path.name}:{node.lineno} {node.exc.func.id}")
    assert raised == [], f"raise models.errors.ModelConfigError (exit 2), not a builtin: {raised}"


def test_model_errors_are_in_the_exit_2_family():
    assert errors.exit_code(ModelConfigError("model.head='x' is unknown")) == errors.EXIT_BAD_INPUT
    assert errors.exit_code(InitWeightsError("init_path='x' does not exist")) == errors.EXIT_BAD_INPUT
    assert errors.exit_code(errors.JobFailed("run", ModelConfigError("x"))) == errors.EXIT_BAD_INPUT
    assert errors.exit_code(ValueError("a bug")) == errors.EXIT_FAILED


def test_a_bad_model_setting_through_sweep_py_exits_2_with_one_line(store: str, tmp_path: Path):
    done = subprocess.run([sys.executable, str(REPO / "sweep.py"), "model.head=bogus", *FAST,
                           f"output_root={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=subprocess_env(MLFLOW_TRACKING_URI=store, PYTHONPATH=str(REPO)))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines == ["error: model.head='bogus' is unknown; use 'single' or 'aspp'"], done.stderr[-3000:]
