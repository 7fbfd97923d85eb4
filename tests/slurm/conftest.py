"""Fixtures for tests that talk to a real SLURM cluster (scripts/local-slurm-start.sh).

Without a reachable cluster the tests skip with the reason; with ``REQUIRE_SLURM=1`` (as in
``.ci/run``) they fail instead. Each test gets a fresh submitit folder and leaves no job behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm.cluster import SlurmCluster, cancel_jobs_under, find_partition, jobs_under, why_unreachable


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running cluster; skip (or fail under REQUIRE_SLURM=1) when there is none."""
    reason = why_unreachable()
    if reason is not None:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return SlurmCluster(partition=find_partition())


@pytest.fixture
def slurm_tmp(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Path]:
    """A fresh directory for one test's submitit folders and sweeps; its jobs are cancelled after."""
    yield tmp_path
    left = cancel_jobs_under(tmp_path)
    assert not jobs_under(tmp_path), f"jobs still alive after scancel: {left}"


@pytest.fixture
def submitit_folder(slurm_tmp: Path) -> Path:
    """A fresh submitit folder (job ids never collide with stale result pickles)."""
    return slurm_tmp / "submitit" / "%j"
