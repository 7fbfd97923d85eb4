"""segsweep sweeps through the real local SLURM cluster (sweep.py launcher=slurm), tracked in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper.slurm import read_manifest, sacct_states, submitted, sweep_status
from tests import conftest
from tests.checks import duplicate_rows
from tests.slurm.cluster import SlurmCluster, release_requeued

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
TINY = ["dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32", "dataset.crop_size=32",
        "batch_size=4", "train.epochs=2", "train.max_steps_per_epoch=2"]


def sweep(cwd: Path, cluster: SlurmCluster, *args: str, sweep_dir: str = "sweep", expect_rc: int = 0) -> str:
    """``python sweep.py -m launcher=slurm ...`` sized for the local cluster; returns its output."""
    cmd = [sys.executable, str(REPO / "sweep.py"), "-m", "launcher=slurm", *TINY, f"output_root={cwd / 'out'}",
           f"hydra.sweep.dir={cwd / sweep_dir}", f"hydra.launcher.partition={cluster.partition}",
           "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=30", *args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == expect_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def runs(cwd: Path, kind: str | None = None) -> list:
    """The cells' runs (``kind=None``) or the sweep's parent runs (``kind="sweep"``)."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic")
    found = [] if exp is None else client.search_runs([exp.experiment_id])
    return [r for r in found if r.data.tags.get("segsweep.kind") == kind]


def wait_until(predicate, what: str) -> None:
    conftest.wait_until(predicate, what, timeout=240, poll=1)  # SLURM jobs: minutes, and sacct is slow


def test_two_by_two_sweep_is_one_array_and_rerun_submits_nothing(slurm_cluster: SlurmCluster,
                                                                  slurm_tmp: Path) -> None:
    out = sweep(slurm_tmp, slurm_cluster, "backbone=dense30k12,dense30k36", "scale=1,2")
    cells = read_manifest(slurm_tmp / "sweep")
    assert len(cells) == 4 and len({c["slurm_job_id"].split("_")[0] for c in cells}) == 1
    assert "sqlite works only while every SLURM job runs on this machine" in out
    done = runs(slurm_tmp)
    assert len(done) == 4 and {r.info.status for r in done} == {"FINISHED"}
    (parent,) = runs(slurm_tmp, kind="sweep")  # 4 child runs under one parent
    assert {r.data.tags["mlflow.parentRunId"] for r in done} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["segsweep.run_key"] for r in done} == {c["run_key"] for c in cells}
    by_job = {r.data.tags.get("segsweep.slurm_job_id"): r for r in done}
    assert set(by_job) == {c["slurm_job_id"] for c in cells}
    for cell in cells:
        run = by_job[cell["slurm_job_id"]]
        assert run.data.tags["segsweep.slurm_stdout"] == cell["stdout"] and Path(cell["stdout"]).exists()
    assert set(sacct_states(c["slurm_job_id"] for c in cells).values()) == {"COMPLETED"}

    again = sweep(slurm_tmp, slurm_cluster, "backbone=dense30k12,dense30k36", "scale=1,2", sweep_dir="again")
    assert "all 4 cells already FINISHED: nothing launched" in again
    listed = read_manifest(slurm_tmp / "again")  # every cell, none submitted
    assert len(listed) == 4 and submitted(listed) == [] and len(runs(slurm_tmp)) == 4
    assert {c["previous"] for c in listed} == {"FINISHED"}


def test_failing_cell_is_a_failed_run_with_traceback(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    out = sweep(slurm_tmp, slurm_cluster, "train.adam_eps=2.5e-4,-1.0", expect_rc=1)  # a cell FAILED: exit 1
    assert "1 failed, 1 finished" in out  # the sweep's summary table
    by_eps = {r.data.params["train.adam_eps"]: r for r in runs(slurm_tmp)}
    assert by_eps["0.00025"].info.status == "FINISHED"
    failed = by_eps["-1.0"]
    assert failed.info.status == "FAILED" and "epsilon" in failed.data.tags["segsweep.error"]
    client = MlflowClient(f"sqlite:///{slurm_tmp / 'mlflow.db'}")
    trace = Path(client.download_artifacts(failed.info.run_id, "traceback.txt", str(slurm_tmp)))
    assert "Traceback" in trace.read_text() and "epsilon" in trace.read_text()


def test_scontrol_requeue_resumes_into_the_same_run(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    # epochs long enough that the job is still training when SLURM kills it (KillWait=5 s after SIGTERM,
    # which submitit ignores): the requeued job must resume, not find a FINISHED run. 19 epochs after the
    # first outlast KillWait on a fast machine (0.7 s an epoch: 8 epochs finished inside it there)
    epochs = 20
    longer = [f"train.epochs={epochs}", "train.max_steps_per_epoch=16", "dataset.num_train=64", "dataset.image_size=64",
              "dataset.crop_size=64", "hydra.launcher.detach=true"]
    sweep(slurm_tmp, slurm_cluster, *longer)
    (cell,) = read_manifest(slurm_tmp / "sweep")
    client = MlflowClient(f"sqlite:///{slurm_tmp / 'mlflow.db'}")

    def first_epoch_logged() -> bool:
        return any(client.get_metric_history(r.info.run_id, "val_mIoU") for r in runs(slurm_tmp))

    wait_until(first_epoch_logged, what="the first epoch in MLflow")
    subprocess.run(["scontrol", "requeue", cell["slurm_job_id"]], check=True, capture_output=True)
    (before,) = runs(slurm_tmp)
    assert before.info.status == "RUNNING", "the run ended before the requeue: make its epochs longer"
    release_requeued(cell["slurm_job_id"])
    wait_until(lambda: sacct_states([cell["slurm_job_id"]]).get(cell["slurm_job_id"]) == "COMPLETED",
               what="the requeued job to complete")
    (after,) = runs(slurm_tmp)
    assert after.info.status == "FINISHED"
    assert after.info.run_id == before.info.run_id
    steps = [m.step for m in client.get_metric_history(after.info.run_id, "val_mIoU")]
    assert sorted(steps) == list(range(1, epochs + 1)) and len(steps) == len(set(steps))
    log = Path(cell["stdout"]).read_text()
    assert "[segsweep] skipped" not in log, "the first attempt finished inside KillWait: make its epochs longer"
    assert f"resuming {cell['name']} seed={cell['seed']} into run {before.info.run_id}" in log  # its listed name
    assert after.data.tags["segsweep.slurm_requeues"] == "1"
    assert after.data.tags["segsweep.slurm_job_id"] == cell["slurm_job_id"]
    # the requeue continued every curve (the parent's counters too) without writing a (run, key, step) twice
    assert duplicate_rows(f"sqlite:///{slurm_tmp / 'mlflow.db'}") == []


def test_detach_then_status_shows_cells_finish(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    out = sweep(slurm_tmp, slurm_cluster, "scale=1,2", "train.epochs=3", "hydra.launcher.detach=true")
    assert "launcher.detach=true: not waiting" in out
    first = sweep_status(slurm_tmp / "sweep")
    assert len(first) == 2 and all(r["slurm_job_id"] for r in first)
    assert {r["state"] for r in first} <= {"PENDING", "RUNNING", "COMPLETED", "FINISHED"}
    # the run is FINISHED in MLflow a moment before its job is COMPLETED in sacct
    wait_until(lambda: {(r["state"], r["slurm_state"]) for r in sweep_status(slurm_tmp / "sweep")}
               == {("FINISHED", "COMPLETED")}, what="both cells FINISHED and their jobs COMPLETED")
    cli = subprocess.run([sys.executable, "-m", "sweeper.slurm", "status", str(slurm_tmp / "sweep")],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    rows = [line.split() for line in cli.splitlines()[1:]]
    assert [(r[1], r[3], r[4]) for r in rows] == [("FINISHED", "COMPLETED", "FINISHED")] * 2
    assert {r[2] for r in rows} == {c["slurm_job_id"] for c in read_manifest(slurm_tmp / "sweep")}
