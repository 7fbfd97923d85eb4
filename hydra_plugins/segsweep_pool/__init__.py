"""segsweep's local launcher for Hydra (``launcher=local`` and ``launcher=gpus``).

``local`` runs the jobs one after the other in this process (like Hydra's basic launcher);
``gpus`` runs them in a pool of worker processes, one job per visible GPU (``launcher.gpus_per_job``
GPUs each, ``CUDA_VISIBLE_DEVICES`` set per job), or ``launcher.workers`` CPU workers on a machine
without GPUs. Both open the sweep's MLflow parent run first, print a summary table at the end and
support ``launcher.detach=true`` (the sweep goes on in a detached process). The work is in
``sweeper.launch`` and ``sweeper.pool``; this module stays light for Hydra's plugin discovery.
"""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SegsweepLauncher(Launcher):
    """Sequential (``launcher.mode=local``) or worker-pool (``launcher.mode=gpus``) launcher."""

    #: every config of a batch is composed here before any job starts (``segsweep_basic`` relies on it)
    composes_before_launching = True

    def __init__(self, **kwargs: Any) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sweeper.pool import launch

        return launch(self, job_overrides, initial_job_idx)

    def run_one(self, overrides: Sequence[str], idx: int, singleton_state: Any = None) -> JobReturn:
        from sweeper.pool import run_one

        return run_one(self, overrides, idx, singleton_state)
