"""A run ends by regenerating results/README.md in the launch directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import FAST, REPO, subprocess_env


def test_a_run_regenerates_the_results_readme(store: str, tmp_path: Path):
    result = subprocess.run([sys.executable, str(REPO / "sweep.py"), *FAST, "train.epochs=1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert result.returncode == 0, result.stderr[-3000:]
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "synthetic.scratch.imagesize32.dense30k12.scale1.batchsize4" in readme
    assert "auto-generated" in readme.lower() or "generated" in readme.lower()
