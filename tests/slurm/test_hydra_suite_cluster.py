"""Hydra's LauncherTestSuite for ``hydra/launcher=segsweep_slurm`` on the real (local) cluster.

The fast tier runs the same suite on submitit's local executor (tests/test_hydra_suites.py); here
every job is an sbatch array task. Skips without a cluster, fails under ``REQUIRE_SLURM=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import LauncherTestSuite

from tests.slurm.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.conformance]
REPO = Path(__file__).resolve().parents[2]

ON_CLUSTER = ["hydra.launcher.partition=${oc.env:SEGSWEEP_SLURM_PARTITION}", "hydra.launcher.gpus_per_node=null",
              "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=5"]


@pytest.fixture(autouse=True)
def _on_the_cluster(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's partition, and this checkout on the jobs' PYTHONPATH (sbatch exports the env)."""
    monkeypatch.setenv("SEGSWEEP_SLURM_PARTITION", slurm_cluster.partition)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.mark.parametrize("launcher_name, overrides", [("segsweep_slurm", ON_CLUSTER)])
class TestSegsweepSlurmOnTheCluster(LauncherTestSuite):
    """Hydra's launcher contract, each job an sbatch array task."""
