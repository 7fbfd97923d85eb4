"""A sweep ends with its record: the parent run summarises the jobs, the results README (outside the
package) lists them with their seeds and links the sweep's page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeper import naming
from tests.conftest import FAST, REPO, subprocess_env


@pytest.mark.slow
def test_a_sweep_records_itself_and_regenerates_the_results_readme(store: str, tmp_path: Path):
    package = sorted(p.name for p in (REPO / "results").iterdir())
    args = ["-m", "seed=0,1", *FAST, "train.epochs=1", "train.max_steps_per_epoch=1"]
    result = subprocess.run([sys.executable, str(REPO / "sweep.py"), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("synthetic")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development" and exp.tags["mlflow.note.content"]
    (parent,) = client.search_runs([exp.experiment_id], "tags.`segsweep.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["seed"] == "0,1" and parent.data.params["sweep.axes"] == "seed"
    assert parent.data.params["train.max_steps_per_epoch"] == "1"
    m = parent.data.metrics
    assert (m["jobs_total"], m["jobs_finished"], m["jobs_failed"], m["jobs_skipped"]) == (2, 2, 0, 0)
    kids = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert m["best_final_val_mIoU"] == max(k.data.metrics["final_val_mIoU"] for k in kids)
    note = parent.data.tags["mlflow.note.content"]
    assert "2/2 jobs ended: 2 finished, 0 failed." in note and note.count("| FINISHED |") == 2
    assert parent.data.tags["segsweep.command"].startswith("python ") and "seed=0,1" in parent.data.tags["segsweep.command"]
    assert [x.step for x in client.get_metric_history(parent.info.run_id, "jobs_finished")][:3] == [0, 1, 2]

    readme = (tmp_path / "outputs" / "results" / "README.md").read_text()
    name = naming.compose(naming.compose_config([*FAST, "train.epochs=1", "train.max_steps_per_epoch=1"]))
    assert name.endswith(".train-epochs-1.train-max_steps_per_epoch-1")  # the settings the tests changed show
    assert f"| {name}" in readme and "± " in readme and "| 0, 1 " in readme  # one row, two seeds, shown
    assert "](sweeps/" in readme
    page = next((tmp_path / "outputs" / "results" / "sweeps").glob("*.md")).read_text()
    assert page.count(f"| {name}") == 1 and "| 0, 1 " in page
    assert sorted(p.name for p in (REPO / "results").iterdir()) == package  # nothing generated in the package
    assert not (tmp_path / "results").exists()

    status = subprocess.run([sys.executable, "-m", "sweeper", "status", "--markdown"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert status.returncode == 0, status.stderr[-2000:]
    assert status.stdout.startswith("# sweep seed=0,1") and status.stdout.count(f"| `{name}`") == 2
    assert "| 0 " in status.stdout and "| 1 " in status.stdout  # the seeds tell the two rows apart
