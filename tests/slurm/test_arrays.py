"""SLURM arrays at lab size, on the real local cluster: ``array_parallelism`` (sbatch's ``%N``), the split at
MaxArraySize (``hydra.launcher.max_array_size`` below the cluster's), one sacct call per status for all
arrays, and a re-run that submits only the cells that failed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from sweeper.launch_slurm import cluster_max_array_size
from sweeper.slurm import read_manifest, submitted
from tests.slurm.cluster import SlurmCluster
from tests.slurm.test_launcher import APP, REPO, run_app, wait_final

pytestmark = pytest.mark.slurm


def _arrays(cells: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for cell in submitted(cells):
        by.setdefault(cell["slurm_job_id"].split("_")[0], []).append(cell)
    return by


def _times(job_ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    out = subprocess.run(["sacct", "-n", "-X", "--parsable2", "-o", "JobID,Start,End", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    return {r[0]: (datetime.fromisoformat(r[1]), datetime.fromisoformat(r[2])) for r in rows}


def _counting_sacct(bin_dir: Path, calls: Path) -> dict[str, str]:
    """A PATH whose ``sacct`` logs each call, then runs the real one."""
    bin_dir.mkdir()
    wrapper = bin_dir / "sacct"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {subprocess.check_output(["which", "sacct"], text=True).strip()} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def test_the_cluster_max_array_size_is_read_from_scontrol(slurm_cluster: SlurmCluster) -> None:
    assert cluster_max_array_size() == 1001  # scripts/local-slurm-start.sh: MaxArraySize = 1001


def test_arrays_split_throttled_and_status_asks_sacct_once(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    """5 cells, at most 3 per array, %1: arrays of 3 and 2 tasks, each with ArrayTaskThrottle=1 (its
    tasks never overlap); status reads sacct once for both arrays."""
    run_app(slurm_tmp, slurm_cluster, "x=1,2,3,4,5", "epochs=1", "sleep_s=0.5", "hydra.launcher.max_array_size=3",
            "hydra.launcher.array_parallelism=1", "hydra.launcher.detach=true")
    arrays = _arrays(read_manifest(slurm_tmp / "multirun"))
    assert sorted(len(a) for a in arrays.values()) == [2, 3], arrays
    for array in arrays:  # while queued or running, scontrol shows the throttle (%N) of each array
        shown = subprocess.run(["scontrol", "show", "job", "-o", array], capture_output=True, text=True).stdout
        assert "ArrayTaskThrottle=1" in shown, shown
    ids = [c["slurm_job_id"] for a in arrays.values() for c in a]
    assert set(wait_final(ids, timeout=180).values()) == {"COMPLETED"}
    times = _times(ids)
    for cells in arrays.values():  # %1: one task of an array at a time
        spans = sorted(times[c["slurm_job_id"]] for c in cells)
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), spans

    calls = slurm_tmp / "sacct-calls.log"
    env = _counting_sacct(slurm_tmp / "bin", calls)
    status = subprocess.run([sys.executable, "-m", "sweeper.slurm", "status", str(slurm_tmp / "multirun")],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert status.returncode == 0, status.stderr
    assert [row.split()[3] for row in status.stdout.splitlines()[1:]] == ["COMPLETED"] * 5  # slurm_state
    lines = calls.read_text().splitlines()
    assert len(lines) == 1, lines  # one sacct call for 2 arrays of 5 tasks
    assert lines[0].split()[-1] == ",".join(sorted(arrays))  # each array named once, not each task


def _x(cell: dict) -> str:
    return next(o for o in cell["overrides"] if o.startswith("x="))


def test_a_rerun_submits_only_the_failed_cells(slurm_cluster: SlurmCluster, slurm_tmp: Path) -> None:
    (slurm_tmp / "out" / "x2").mkdir(parents=True)
    (slurm_tmp / "out" / "x2" / "fail").write_text("until removed")
    cmd = [sys.executable, str(APP), "-m", f"hydra.searchpath=[file://{REPO}/conf]", f"out={slurm_tmp}/out",
           f"hydra.sweep.dir={slurm_tmp}/multirun", f"hydra.launcher.partition={slurm_cluster.partition}",
           "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=5",
           "x=1,2,3", "epochs=1"]
    first = subprocess.run(cmd, cwd=slurm_tmp, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr  # a FAILED cell: exit 1
    before = {_x(c): c["slurm_job_id"] for c in read_manifest(slurm_tmp / "multirun")}
    assert len({j.split("_")[0] for j in before.values()}) == 1 and len(before) == 3

    (slurm_tmp / "out" / "x2" / "fail").unlink()
    run_app(slurm_tmp, slurm_cluster, "x=1,2,3", "epochs=1")
    after = {_x(c): c for c in read_manifest(slurm_tmp / "multirun")}
    assert after["x=1"]["slurm_job_id"] == before["x=1"] and after["x=3"]["slurm_job_id"] == before["x=3"]
    assert after["x=2"]["slurm_job_id"] != before["x=2"]  # only the failed cell went out again
    assert after["x=1"]["previous"] == "FINISHED" and after["x=2"]["previous"] == "FAILED"
    assert (slurm_tmp / "out" / "x2" / "done").exists()
    scripts = sorted((slurm_tmp / "multirun" / ".submitit").glob("*/*_submission.sh"))
    assert sum("#SBATCH --array=" in s.read_text() for s in scripts) == 1  # the re-run: one plain job
