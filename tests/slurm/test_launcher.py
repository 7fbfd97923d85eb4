"""launcher=slurm through a tiny Hydra app (tests/slurm/app): arrays, skip, detach, requeue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.slurm import read_manifest, sacct_states, submitted
from tests.conftest import wait_until
from tests.slurm.cluster import SlurmCluster, release_requeued

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "slurm" / "app" / "app.py"


def run_app(cwd: Path, cluster: SlurmCluster, *overrides: str, sweep: str = "multirun") -> str:
    """Run the app's multirun with launcher=slurm sized for the local cluster; returns its output."""
    cmd = [sys.executable, str(APP), "-m", f"hydra.searchpath=[file://{REPO}/conf]", f"out={cwd}/out",
           f"hydra.sweep.dir={cwd}/{sweep}", f"hydra.launcher.partition={cluster.partition}",
           "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=30", *overrides]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def epochs(cwd: Path, x: int) -> list[list[str]]:
    log = cwd / "out" / f"x{x}" / "epochs.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


#: sacct states a job does not leave
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY"})


def wait_final(job_ids: list[str], timeout: float = 120) -> dict[str, str]:
    states: dict[str, str] = {}

    def done() -> bool:
        states.update(sacct_states(job_ids))
        return all(states.get(j) in FINAL for j in job_ids)

    wait_until(done, f"final sacct states of {job_ids}", timeout=timeout)
    # sacct lists a task not started yet under its array's pending entry (``123_[1]``): only the asked ids
    return {job: states[job] for job in job_ids}


def test_sweep_is_one_array(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    out = run_app(slurm_tmp, slurm_cluster, "x=1,2,3")
    cells = read_manifest(slurm_tmp / "multirun")
    arrays = {c["slurm_job_id"].split("_")[0] for c in cells}
    assert len(cells) == 3 and len(arrays) == 1, cells
    assert sorted(c["slurm_job_id"].split("_")[1] for c in cells) == ["0", "1", "2"]
    script = next((slurm_tmp / "multirun" / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-2%" in script and "#SBATCH --requeue" in script
    for x in (1, 2, 3):
        assert [e[0] for e in epochs(slurm_tmp, x)] == ["1", "2"]
    assert set(wait_final([c["slurm_job_id"] for c in cells]).values()) == {"COMPLETED"}
    assert all(Path(c["stdout"]).exists() for c in cells)
    assert "sqlite works only while every SLURM job runs on this machine" in out


def test_finished_cells_are_not_submitted(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    (slurm_tmp / "out" / "x2").mkdir(parents=True)
    (slurm_tmp / "out" / "x2" / "done").write_text("earlier")
    run_app(slurm_tmp, slurm_cluster, "x=1,2,3")
    cells = submitted(read_manifest(slurm_tmp / "multirun"))
    assert [c["overrides"][-1] for c in cells] == ["x=1", "x=3"]
    assert epochs(slurm_tmp, 2) == []
    script = next((slurm_tmp / "multirun" / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1%" in script

    out = run_app(slurm_tmp, slurm_cluster, "x=1,2,3", sweep="again")
    assert "all 3 cells already FINISHED: nothing launched" in out
    assert len(read_manifest(slurm_tmp / "again")) == 3 and submitted(read_manifest(slurm_tmp / "again")) == []
    assert not (slurm_tmp / "again" / ".submitit").exists()


def test_detach_returns_after_submission(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    out = run_app(slurm_tmp, slurm_cluster, "x=1,2", "epochs=3", "sleep_s=2", "hydra.launcher.detach=true")
    assert "launcher.detach=true: not waiting" in out
    assert not any((slurm_tmp / "out" / f"x{x}" / "done").exists() for x in (1, 2))
    ids = [c["slurm_job_id"] for c in read_manifest(slurm_tmp / "multirun")]
    assert set(sacct_states(ids).values()) <= {"PENDING", "RUNNING", "COMPLETED"}
    assert set(wait_final(ids).values()) == {"COMPLETED"}
    assert all((slurm_tmp / "out" / f"x{x}" / "done").exists() for x in (1, 2))


def _requeue_and_check(slurm_cluster: SlurmCluster, slurm_tmp: Path, how: list[str]) -> list[list[str]]:
    run_app(slurm_tmp, slurm_cluster, "x=5", "epochs=5", "sleep_s=1.5", "hydra.launcher.detach=true")
    (job_id,) = [c["slurm_job_id"] for c in read_manifest(slurm_tmp / "multirun")]
    wait_until(lambda: len(epochs(slurm_tmp, 5)) >= 1, "the first epoch")
    subprocess.run([*how, job_id], check=True, capture_output=True, text=True)
    release_requeued(job_id)
    assert wait_final([job_id], timeout=180)[job_id] == "COMPLETED"
    lines = epochs(slurm_tmp, 5)
    assert [e[0] for e in lines] == ["1", "2", "3", "4", "5"]  # resumed: no epoch twice, none lost
    assert {e[1] for e in lines} == {job_id}
    assert lines[0][2] == "0" and lines[-1][2] == "1"  # SLURM_RESTART_COUNT after the requeue
    return lines


def test_scontrol_requeue_resumes(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    _requeue_and_check(slurm_cluster, slurm_tmp, ["scontrol", "requeue"])


def test_preemption_signal_checkpoints_and_requeues(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    # USR2 is what SLURM sends before a time limit / on preemption (--signal): submitit calls the
    # launcher's checkpoint() (a DelayedSubmission of the same job) and requeues it.
    _requeue_and_check(slurm_cluster, slurm_tmp, ["scancel", "--signal=USR2"])
    logs = "".join(p.read_text() for p in (slurm_tmp / "multirun" / ".submitit").glob("*/*_0_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Calling checkpoint method" in logs
    assert "Requeued job" in logs


def test_time_limit_signal_requeues_until_done(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    # a real --time=1 limit: SLURM itself sends USR2 signal_delay_s (40 s) before it. slurmctld checks
    # limits only every ~30 s, so an attempt gets 0-25 epochs: max_num_timeout leaves room for a slow
    # machine's attempts, and the loop releases every requeue (one may follow the done marker too)
    run_app(slurm_tmp, slurm_cluster, "x=7", "epochs=30", "sleep_s=1", "hydra.launcher.detach=true",
            "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=40",
            "hydra.launcher.max_num_timeout=12")
    (job_id,) = [c["slurm_job_id"] for c in read_manifest(slurm_tmp / "multirun")]
    end = time.monotonic() + 300
    while sacct_states([job_id]).get(job_id) not in FINAL:
        assert time.monotonic() < end, f"job {job_id} did not finish: {epochs(slurm_tmp, 7)[-1:]}"
        queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T|%r"], capture_output=True,
                                text=True).stdout
        if queued.startswith("PENDING") and "BeginTime" in queued:
            release_requeued(job_id)
        time.sleep(1)
    assert sacct_states([job_id])[job_id] == "COMPLETED"
    assert (slurm_tmp / "out" / "x7" / "done").exists()
    lines = epochs(slurm_tmp, 7)
    assert [int(e[0]) for e in lines] == list(range(1, 31))
    assert int(lines[-1][2]) >= 1  # finished in a requeued attempt
    logs = "".join(p.read_text() for p in (slurm_tmp / "multirun" / ".submitit").glob("*/*_0_log.out"))
    assert "this job is timed-out" in logs and "remaining timeouts" in logs
