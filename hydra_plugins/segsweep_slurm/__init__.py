"""segsweep's SLURM launcher for Hydra: ``hydra/launcher=segsweep_slurm`` (``launcher=slurm`` for sweep.py).

hydra-submitit-launcher's ``submitit_slurm`` (all its ``hydra.launcher.*`` options; its job side:
``__call__`` runs a cell inside the SLURM job, ``checkpoint()`` requeues it) plus segsweep's own
options, the fields this dataclass adds. The launch itself (sweeper.launch's skeleton: cells left out
through ``sweeper.task.decide``, arrays split at MaxArraySize, the manifest, detach) is
``sweeper.launch_slurm``. Keep this module light: Hydra imports it during plugin discovery.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from sweeper.launch import fields_of, own_options


@dataclass
class SegsweepSlurmLauncherConf(SlurmQueueConf):
    """``hydra/launcher=segsweep_slurm``: submitit_slurm's options plus segsweep's own (the fields below)."""

    _target_: str = "hydra_plugins.segsweep_slurm.SegsweepSlurmLauncher"
    #: true: return right after sbatch (fire and forget)
    detach: bool = False
    #: dotted function composed job config -> cell dict (sweeper.slurm.cell_info for sweep.py); null: none
    cell_info: str | None = None
    #: submitit executor: slurm, or local (the same submission as local processes: tests, no cluster)
    executor: str = "slurm"
    #: at most this many tasks per sbatch array; null: the cluster's MaxArraySize (scontrol show config)
    max_array_size: int | None = None


class SegsweepSlurmLauncher(SlurmLauncher):
    """submitit_slurm's launcher; its ``launch`` is ``sweeper.launch_slurm.launch``."""

    #: submitit's own options (they go to sbatch); every other field of the dataclass is segsweep's
    SUBMITIT_OPTIONS = fields_of(SlurmQueueConf)
    #: submitit's options common to all its executors (passed without the ``slurm_`` prefix)
    GENERIC_OPTIONS = fields_of(BaseQueueConf)

    def __init__(self, **params: Any) -> None:
        self.options = own_options(params, self.SUBMITIT_OPTIONS)
        super().__init__(**params)

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Inside the SLURM job: run the cell, then tag its run with the job id, requeues and logs.

        In a job of several tasks (``nodes`` x ``tasks_per_node`` > 1: one DDP run) every task runs the
        cell; only rank 0 tags the run and runs the job callbacks (which write MLflow)."""
        from sweeper.launch_slurm import follower_context, is_follower, tag_job

        if is_follower():
            self.hydra_context = follower_context(self.hydra_context)
            return super().__call__(*args, **kwargs)
        return tag_job(super().__call__(*args, **kwargs))

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        from sweeper.launch_slurm import launch

        return launch(self, job_overrides, initial_job_idx)


ConfigStore.instance().store(group="hydra/launcher", name="segsweep_slurm", node=SegsweepSlurmLauncherConf,
                             provider="segsweep")
