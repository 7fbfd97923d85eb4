"""Where a job runs: the SLURM job it belongs to (read from the environment; nothing imported from
sweeper's launchers, so the job side and the launching side share it without importing each other)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)
TAG = "segsweep."


def job_tags(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """MLflow tags of the SLURM job this process runs in (empty outside SLURM).

    ``segsweep.slurm_job_id`` (``<array>_<task>`` for array tasks), ``segsweep.slurm_requeues``
    (``SLURM_RESTART_COUNT``), ``segsweep.slurm_stdout`` / ``segsweep.slurm_stderr`` (the job's logs).
    """
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" not in env:
        return {}
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        job_id = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    else:
        job_id = env["SLURM_JOB_ID"]
    tags = {TAG + "slurm_job_id": job_id, TAG + "slurm_requeues": env.get("SLURM_RESTART_COUNT", "0"),
            TAG + "slurm_cluster": env.get("SLURM_CLUSTER_NAME", ""), TAG + "slurm_node": env.get(
                "SLURMD_NODENAME", "")}
    if env.get("SUBMITIT_EXECUTOR") == "slurm":
        try:
            import submitit

            paths = submitit.JobEnvironment().paths
            tags[TAG + "slurm_stdout"] = str(paths.stdout)
            tags[TAG + "slurm_stderr"] = str(paths.stderr)
        except Exception as error:  # noqa: BLE001 - logs are optional, the run is not
            log.debug("no submitit job paths: %s", error)
    return {k: v for k, v in tags.items() if v}
