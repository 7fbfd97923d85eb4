"""sweeper.slurm helpers that need no cluster: sacct id expansion, job tags, the sweep manifest."""

from __future__ import annotations

from sweeper.placement import job_tags
from sweeper.slurm import _expand, arrays_of


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


def test_sacct_is_asked_about_each_array_once() -> None:
    assert arrays_of(["5_0", "5_1", "5_2", "6_0", "7"]) == ["5", "6", "7"]
