"""sweeper.slurm helpers that need no cluster: sacct id expansion, job tags, the sweep manifest."""

from __future__ import annotations

from pathlib import Path

from sweeper.placement import job_tags
from sweeper.slurm import _expand, read_manifest, write_manifest


def test_pending_array_ids_expand() -> None:
    assert _expand("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    assert _expand("12_[3]") == ["12_3"]
    assert _expand("12_4") == ["12_4"] and _expand("77") == ["77"]


def test_job_tags_outside_and_inside_slurm() -> None:
    assert job_tags({}) == {}
    tags = job_tags({"SLURM_JOB_ID": "105", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "5",
                     "SLURM_RESTART_COUNT": "2", "SLURMD_NODENAME": "n1"})
    assert tags["segsweep.slurm_job_id"] == "100_5"
    assert tags["segsweep.slurm_requeues"] == "2" and tags["segsweep.slurm_node"] == "n1"
    assert job_tags({"SLURM_JOB_ID": "9"})["segsweep.slurm_requeues"] == "0"


def test_manifest_merges_by_job_number(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == []
    write_manifest(tmp_path, [{"job_num": 1, "slurm_job_id": "5_0"}, {"job_num": 0, "slurm_job_id": "5_1"}])
    write_manifest(tmp_path, [{"job_num": 1, "slurm_job_id": "6_0"}])
    assert [(c["job_num"], c["slurm_job_id"]) for c in read_manifest(tmp_path)] == [(0, "5_1"), (1, "6_0")]
