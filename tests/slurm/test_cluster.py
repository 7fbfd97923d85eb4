"""The local cluster answers: a plain submitit job and a 2-task array run through sbatch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import submitit

from tests.slurm.cluster import SlurmCluster, cancel_jobs_under, jobs_under, sacct_state

pytestmark = pytest.mark.slurm


def _where(x: int) -> tuple[int, str, str]:
    return x * x, os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_ARRAY_TASK_ID", "")


def _executor(folder: Path, cluster: SlurmCluster) -> submitit.SlurmExecutor:
    ex = submitit.SlurmExecutor(folder=folder)
    ex.update_parameters(partition=cluster.partition, time=3, cpus_per_task=1, signal_delay_s=10)
    return ex


def test_plain_job(slurm_cluster: SlurmCluster, submitit_folder: Path) -> None:
    job = _executor(submitit_folder, slurm_cluster).submit(_where, 7)
    value, job_id, task = job.result()
    assert (value, job_id, task) == (49, job.job_id, "")
    assert sacct_state(job.job_id) == "COMPLETED"
    assert Path(job.paths.stdout).exists()


def test_two_task_array(slurm_cluster: SlurmCluster, submitit_folder: Path) -> None:
    jobs = _executor(submitit_folder, slurm_cluster).map_array(_where, [2, 3])
    results = [j.result() for j in jobs]
    array_id = jobs[0].job_id.split("_")[0]
    assert [r[0] for r in results] == [4, 9]
    assert [r[2] for r in results] == ["0", "1"]
    assert {j.job_id for j in jobs} == {f"{array_id}_0", f"{array_id}_1"}
    assert all(sacct_state(j.job_id) == "COMPLETED" for j in jobs)


def test_cancelled_job_is_cleaned_up(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    ex = _executor(slurm_tmp / "cancel" / "%j", slurm_cluster)
    job = ex.submit(time.sleep, 300)
    assert jobs_under(slurm_tmp) == [job.job_id]
    assert cancel_jobs_under(slurm_tmp) == [job.job_id]
    assert jobs_under(slurm_tmp) == []
