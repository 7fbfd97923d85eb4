"""The SLURM backend of sweeper.launch's skeleton (``hydra/launcher=segsweep_slurm``, ``launcher=slurm``).

- cells that need no job (FINISHED, or running elsewhere: ``sweeper.launch.left_out`` through
  ``sweeper.task.decide``) are not submitted, so a re-run submits only the cells not finished;
- the others go out as sbatch arrays (``--array=0-N%P``, P = ``hydra.launcher.array_parallelism``, per
  array), split at the cluster's ``MaxArraySize`` (``scontrol show config``) or at
  ``hydra.launcher.max_array_size`` when smaller (:func:`array_chunks`);
- each submitted cell's job id and logs go into the sweep's manifest (``segsweep_cells.json``);
- ``hydra.launcher.detach=true`` returns right after sbatch; otherwise the launch waits for the jobs;
- without SLURM's tools (sbatch, srun) the launch ends with one line naming what is missing (exit 2),
  the sweep's parent run closed FAILED;
- ``hydra.launcher.executor=local`` runs the same submission on submitit's local executor.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from sweeper import launch as launch_
from sweeper.errors import SettingsError
from sweeper.shutdown import SlurmUnavailableError

log = logging.getLogger(__name__)

#: what a SLURM submission needs on PATH (submitit's executor refuses to start without srun)
TOOLS = ("sbatch", "srun")


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """SLURM's commands that are not on PATH."""
    return [tool for tool in TOOLS if which(tool) is None]


def check_tools(missing: Sequence[str]) -> None:
    """Raise the one-line error for a submission without SLURM's tools."""
    if missing:
        raise SlurmUnavailableError(
            f"launcher=slurm needs SLURM's {' and '.join(TOOLS)} on PATH, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing here: run the sweep on a SLURM login node (or start "
            f"the local cluster: scripts/local-slurm-start.sh, docs/slurm.md), or run it on this machine "
            f"with launcher=local or launcher=gpus")


def parse_max_array_size(config_text: str) -> int | None:
    """``MaxArraySize`` from ``scontrol show config`` output (None when absent)."""
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(match.group(1)) if match else None


@cache
def cluster_max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (read once per process); None when scontrol does not answer."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_max_array_size(out)


def array_chunks(n: int, max_size: int | None) -> list[range]:
    """Cells 0..n-1 in consecutive arrays of at most ``max_size`` tasks (task ids run 0..max_size-1,
    below SLURM's MaxArraySize); ``None``: one array. A MaxArraySize of 0 or 1 (arrays off) gives one job each."""
    size = n if max_size is None else max(1, min(int(max_size), n))
    return [range(start, min(start + size, n)) for start in range(0, n, max(size, 1))]


def array_size(option: int | None, cluster: int | None) -> int | None:
    """The largest array a launch submits: ``hydra.launcher.max_array_size``, never above the cluster's."""
    given = [v for v in (option, cluster) if v is not None]
    if option is not None and int(option) < 1:
        raise SettingsError(f"hydra.launcher.max_array_size={option}: give a whole number >= 1, or null (the "
                            f"cluster's MaxArraySize)")
    return min(int(v) for v in given) if given else None


def warn_if_sqlite(cells: Sequence[Mapping[str, Any]]) -> bool:
    """Warn (and return True) when SLURM jobs would write to a sqlite tracking store."""
    uri = next((str(c["uri"]) for c in cells if c.get("uri")), "")
    if not uri.startswith("sqlite:"):
        return False
    log.warning("tracking.uri is %s: sqlite works only while every SLURM job runs on this machine's "
                "disk (the local test cluster). On a multi-node cluster use a tracking server: "
                "tracking=server or MLFLOW_TRACKING_URI=http://<host>:5000", uri)
    return True


class Slurm:
    """sbatch arrays through submitit (``executor=slurm``), or submitit's local executor (``local``)."""

    label = "SLURM"
    leaves_out_done = True  # a queue slot is worth saving: FINISHED cells are not submitted
    records_ids = True  # the manifest holds each cell's job id and logs, with or without cell_info

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.cluster = str(launcher.options.get("executor") or "slurm")

    def check(self, batch: launch_.Batch) -> None:
        if self.cluster == "slurm":
            warn_if_sqlite(batch.cells)

    def executor(self) -> Any:
        """submitit's executor with the launcher's submitit options (generic ones unprefixed)."""
        if self.cluster == "slurm":
            check_tools(missing_tools())  # before submitit: it fails with a traceback without srun
        import submitit

        params = dict(self.launcher.params)
        executor = submitit.AutoExecutor(cluster=self.cluster, folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        generic = self.launcher.GENERIC_OPTIONS
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def array_limit(self) -> int | None:
        """The most tasks one array of this launch holds (:func:`array_size`; the cluster's MaxArraySize
        on SLURM, submitit's local executor has none)."""
        cluster = cluster_max_array_size() if self.cluster == "slurm" else None
        return array_size(self.launcher.options.get("max_array_size"), cluster)

    def submit(self, batch: launch_.Batch, sweep_state: launch_.Sweep) -> list[Any]:
        """Submit the batch as arrays of at most :func:`array_size` tasks; record the job ids."""
        executor = self.executor()
        limit = self.array_limit()
        params = []
        for idx, overrides in batch.jobs:
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            params.append((overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs: list[Any] = []
        for chunk in array_chunks(len(params), limit):
            try:
                jobs += executor.map_array(self.launcher, *zip(*params[chunk.start:chunk.stop], strict=True))
            except Exception as error:
                first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                raise SettingsError(f"sbatch refused the sweep ({first}): check hydra.launcher.partition and the "
                                    f"resources (gpus_per_node, mem_gb, cpus_per_task) against `sinfo`") from error
            finally:  # what was submitted is recorded, even when a later array is refused
                sweep_state.record({idx: {"slurm_job_id": job.job_id, "stdout": str(job.paths.stdout),
                                          "stderr": str(job.paths.stderr)}
                                    for (idx, _), job in zip(batch.jobs, jobs, strict=False)})
        arrays = sorted({job.job_id.split("_")[0] for job in jobs})
        log.info("submitted %d cells as SLURM array%s %s (%s)", len(jobs), "s" if len(arrays) > 1 else "",
                 ", ".join(arrays), sweep_state.dir / "segsweep_cells.json")
        return jobs

    def run(self, batch: launch_.Batch, sweep_state: launch_.Sweep) -> list[JobReturn]:
        return [job.results()[0] for job in self.submit(batch, sweep_state)]

    def detach(self, batch: launch_.Batch, sweep_state: launch_.Sweep, lock_fd: int) -> list[JobReturn]:
        jobs = self.submit(batch, sweep_state)
        log.info("hydra.launcher.detach=true: not waiting; follow with `python -m sweeper status` or "
                 "`sacct -j %s`", ",".join(sorted({j.job_id.split("_")[0] for j in jobs})))
        return [launch_.returned(overrides, "SUBMITTED", cell, slurm_job_id=job.job_id)
                for (_, overrides), cell, job in zip(batch.jobs, batch.cells, jobs, strict=True)]


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """The launcher's ``launch``: sweeper.launch's skeleton with the SLURM backend."""
    return launch_.launch(launcher, Slurm(launcher), job_overrides, initial_job_idx)


def is_follower() -> bool:
    """True in a task other than rank 0 of a multi-task SLURM job (one run over several tasks/nodes)."""
    from engine.distributed import launched_rank

    return launched_rank() not in (None, 0)


def follower_context(context: Any) -> Any:
    """The Hydra context for a rank > 0: no job callbacks (they refresh the sweep's parent run and the
    results pages: rank 0's business)."""
    from hydra._internal.callbacks import Callbacks
    from hydra.types import HydraContext

    return HydraContext(config_loader=context.config_loader, callbacks=Callbacks())


def tag_job(ret: JobReturn) -> JobReturn:
    """Inside the SLURM job, after the cell: tag its run with the job id, requeues and logs."""
    try:
        value = ret.return_value if ret.status == JobStatus.COMPLETED else None
        if isinstance(value, dict) and value.get("run_id") and value.get("status") != "SKIPPED":
            from sweeper.slurm import tag_run

            tag_run(ret.cfg, str(value["run_id"]))
    except Exception as error:  # noqa: BLE001 - tags are a convenience, never fail the cell
        log.warning("could not tag the run with its SLURM job: %s", error)
    return ret
