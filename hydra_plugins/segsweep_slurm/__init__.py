"""segsweep's SLURM launcher for Hydra: ``hydra/launcher=segsweep_slurm`` (``launcher=slurm`` for sweep.py).

On top of hydra-submitit-launcher's ``submitit_slurm`` (all its ``hydra.launcher.*`` options) it

- submits one ``sbatch`` array per batch, leaving out cells that already have a FINISHED run
  (``hydra.launcher.cell_info``: a function cfg -> dict, see ``sweeper.slurm.cell_info``; null for
  an app of its own: nothing of its config is read);
- writes ``<sweep dir>/slurm_jobs.json`` (cell -> SLURM job id, log paths) for ``status``;
- returns right after submission when ``hydra.launcher.detach=true`` (fire and forget);
- warns when the tracking URI is sqlite (fine only while every job shares this machine's disk);
- runs the same submission on submitit's local executor with ``hydra.launcher.executor=local``
  (tests, a machine without SLURM).

Requeue on preemption/time limit is the inherited ``checkpoint()``: it returns a
``DelayedSubmission`` of the same job, which resumes from its checkpoint into the same MLflow run.
Hydra instantiates launchers only from ``hydra_plugins``, hence the class lives here; keep the
imports light (Hydra imports this package during plugin discovery).
"""


import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import DictConfig, OmegaConf

from sweeper.bookkeeping import import_function
from sweeper.errors import SettingsError
from sweeper.slurm import write_manifest

log = logging.getLogger(__name__)

#: segsweep's own options (everything else under hydra.launcher goes to submitit / sbatch)
OWN_OPTIONS = ("detach", "cell_info", "executor")


@dataclass
class SegsweepSlurmLauncherConf(SlurmQueueConf):
    """``hydra/launcher=segsweep_slurm``: submitit_slurm's options plus segsweep's own."""

    _target_: str = "hydra_plugins.segsweep_slurm.SegsweepSlurmLauncher"
    #: true: return right after sbatch (fire and forget)
    detach: bool = False
    #: dotted function composed job config -> cell dict (sweeper.slurm.cell_info for sweep.py); null: none
    cell_info: str | None = None
    #: submitit executor: slurm, or local (the same submission as local processes: tests, no cluster)
    executor: str = "slurm"


def warn_if_sqlite(cells: Sequence[Mapping[str, Any]]) -> bool:
    """Warn (and return True) when SLURM jobs would write to a sqlite tracking store."""
    uri = next((str(c["uri"]) for c in cells if c.get("uri")), "")
    if not uri.startswith("sqlite:"):
        return False
    log.warning("tracking.uri is %s: sqlite works only while every SLURM job runs on this machine's "
                "disk (the local test cluster). On a multi-node cluster use a tracking server: "
                "tracking=server or MLFLOW_TRACKING_URI=http://<host>:5000", uri)
    return True


class SegsweepSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher plus skip-finished, manifest, detach, sqlite warning."""

    def __init__(self, **params: Any) -> None:
        self.options = {key: params.pop(key, None) for key in OWN_OPTIONS}
        super().__init__(**params)

    def _cell_config(self, overrides: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _info(self, overrides: Sequence[str], cell_info: Any) -> dict:
        return dict(cell_info(self._cell_config(overrides)) or {}) if cell_info is not None else {}

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run the cell inside the SLURM job, then tag its run with the job id, requeues and logs."""
        ret = super().__call__(*args, **kwargs)
        try:
            value = ret.return_value if ret.status == JobStatus.COMPLETED else None
            if isinstance(value, dict) and value.get("run_id") and value.get("status") != "SKIPPED":
                from sweeper.slurm import tag_run

                tag_run(ret.cfg, str(value["run_id"]))
        except Exception as error:  # noqa: BLE001 - tags are a convenience, never fail the cell
            log.warning("could not tag the run with its SLURM job: %s", error)
        return ret

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        cluster = str(self.options.get("executor") or "slurm")
        executor = submitit.AutoExecutor(cluster=cluster, folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the unfinished cells as one array; wait for them unless ``hydra.launcher.detach``."""
        assert self.config is not None
        cell_info = import_function(self.options.get("cell_info"), "hydra.launcher.cell_info")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)

        from sweeper.bookkeeping import close_parents, managed, open_parents, report

        detach = bool(self.options.get("detach"))
        infos = [(idx, list(overrides), self._info(overrides, cell_info))
                 for idx, overrides in enumerate(job_overrides, start=initial_job_idx)]
        if self.options.get("executor", "slurm") == "slurm":
            warn_if_sqlite([info for _, _, info in infos])
        # the sweep's MLflow parent run (jobs find it in the environment sbatch exports to them)
        parents = {} if managed(job_overrides) else open_parents(
            self.config, [info for _, _, info in infos if info.get("experiment_id")], sweep_dir)
        returns: dict[int, JobReturn] = {}
        todo: list[tuple[int, list[str], dict]] = []
        for idx, overrides, info in infos:
            if info.get("finished_run_id"):
                log.info("\t#%d : %s -> already FINISHED (run %s), not submitted", idx,
                         " ".join(filter_overrides(overrides)), info["finished_run_id"])
                returns[idx] = _return(overrides, "SKIPPED", info, run_id=info["finished_run_id"])
            else:
                todo.append((idx, overrides, info))
        if todo:
            try:
                returns.update(self._submit(todo, sweep_dir, detach=detach))
            except BaseException:  # sbatch missing or refusing, Ctrl-C: the parent run is not left RUNNING
                close_parents(parents, [returns[i] for i in sorted(returns)], failed=True)
                raise
        else:
            log.info("all %d cells already FINISHED: nothing submitted", len(job_overrides))
        ordered = [returns[i] for i in sorted(returns)]
        if not detach:  # a detached sweep's parent stays RUNNING while its jobs run
            close_parents(parents, ordered)
        report(ordered, detached=detach)  # summary table; SweepSummary turns a FAILED cell into exit 1
        return ordered

    def _submit(self, todo: list[tuple[int, list[str], dict]], sweep_dir: Path,
                detach: bool) -> dict[int, JobReturn]:
        executor = self._executor()
        params = []
        for idx, overrides, _ in todo:
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            params.append((overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        if self.options.get("executor", "slurm") == "slurm" and shutil.which("sbatch") is None:
            raise SettingsError("launcher=slurm needs SLURM's sbatch on PATH: run on a cluster login node, or "
                               "start the local cluster (scripts/local-slurm-start.sh, see docs/slurm.md)")
        try:
            jobs = executor.map_array(self, *zip(*params, strict=True))
        except Exception as error:
            first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise SettingsError(f"sbatch refused the sweep ({first}): check hydra.launcher.partition and the "
                               f"resources (gpus_per_node, mem_gb, cpus_per_task) against `sinfo`") from error
        cells = [{"job_num": idx, "overrides": overrides, "slurm_job_id": job.job_id,
                  "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr), **info}
                 for (idx, overrides, info), job in zip(todo, jobs, strict=True)]
        manifest = write_manifest(sweep_dir, cells)
        array = jobs[0].job_id.split("_")[0]
        log.info("submitted %d cells as SLURM array %s (%s)", len(jobs), array, manifest)
        if detach:
            log.info("hydra.launcher.detach=true: not waiting; follow with `python -m sweeper status` or "
                     "`sacct -j %s`", array)
            return {idx: _return(overrides, "SUBMITTED", info, slurm_job_id=job.job_id)
                    for (idx, overrides, info), job in zip(todo, jobs, strict=True)}
        return {idx: job.results()[0] for (idx, _, _), job in zip(todo, jobs, strict=True)}


def _return(overrides: Sequence[str], status: str, info: dict, run_id: str | None = None, **extra: Any) -> JobReturn:
    """A JobReturn for a cell that was not run here, shaped like ``sweeper.task``'s results."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": status, "name": info.get("name", ""), "run_id": run_id, "value": None, **extra}
    return ret


ConfigStore.instance().store(group="hydra/launcher", name="segsweep_slurm", node=SegsweepSlurmLauncherConf,
                             provider="segsweep")
