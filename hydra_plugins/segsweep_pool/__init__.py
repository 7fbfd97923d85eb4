"""segsweep's local launchers for Hydra: ``hydra/launcher=segsweep_local`` and ``hydra/launcher=segsweep_pool``.

``segsweep_local`` runs the jobs one after the other in this process (like Hydra's basic launcher);
``segsweep_pool`` runs them in a pool of worker processes, one job per visible GPU
(``hydra.launcher.gpus_per_job`` GPUs each, ``CUDA_VISIBLE_DEVICES`` set per job), or
``hydra.launcher.workers`` CPU workers on a machine without GPUs. Both print a summary table and
support ``hydra.launcher.detach=true`` (the sweep goes on in a detached process). With
``hydra.launcher.cell_info`` set (segsweep's ``launcher=`` group sets it for ``sweep.py``) they also
open the sweep's MLflow parent run and write its cell manifest first.

This module only holds the config (Hydra's ``_impl`` pattern): ``launch`` is ``sweeper.launch``'s
skeleton with the backends of ``sweeper.pool``; the dataclass fields are the launcher's options
(``launcher.options``). Keep it light: Hydra imports it during plugin discovery.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeper.launch import own_options


@dataclass
class SegsweepLocalLauncherConf:
    """``hydra/launcher=segsweep_local``: the jobs in this process, one after the other."""

    _target_: str = "hydra_plugins.segsweep_pool.SegsweepLocalLauncher"
    #: true: the sweep goes on in a detached process (log: <sweep dir>/detached.log)
    detach: bool = False
    #: dotted path of a function composed job config -> cell dict (name, uri, experiment, ...);
    #: null: no MLflow bookkeeping (any Hydra app); segsweep's launcher= group sets
    #: sweeper.bookkeeping.cell_info
    cell_info: str | None = None


@dataclass
class SegsweepPoolLauncherConf(SegsweepLocalLauncherConf):
    """``hydra/launcher=segsweep_pool``: a pool of worker processes, one job per GPU slot or CPU worker."""

    _target_: str = "hydra_plugins.segsweep_pool.SegsweepPoolLauncher"
    #: GPUs per job (DDP inside the job when > 1); the visible GPUs are cut into slots of this size
    gpus_per_job: int = 1
    #: CPU worker processes when no GPU is visible
    workers: int = 2


class SegsweepLocalLauncher(Launcher):
    """Sequential launcher: every job in this process, Hydra's job dirs, a summary table."""

    #: whether jobs run in worker processes (``sweeper.pool`` reads it)
    pool = False
    #: every config of a batch is composed here before any job starts (``segsweep_basic`` relies on it)
    composes_before_launching = True

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = own_options(dict(options))  # every field of the dataclass
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sweeper.pool import launch

        return launch(self, job_overrides, initial_job_idx)


class SegsweepPoolLauncher(SegsweepLocalLauncher):
    """Worker-pool launcher: one job per GPU slot (or CPU worker) at a time."""

    pool = True


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/launcher", name="segsweep_local", node=SegsweepLocalLauncherConf, provider="segsweep")
_STORE.store(group="hydra/launcher", name="segsweep_pool", node=SegsweepPoolLauncherConf, provider="segsweep")
