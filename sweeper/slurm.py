"""SLURM for segsweep: sacct states, the sweep's job manifest, the MLflow tags of a SLURM job.

The launcher itself (``launcher=slurm``) is ``hydra_plugins.segsweep_slurm`` (Hydra instantiates
launchers only from that package); it records what it submitted with :func:`write_manifest`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "slurm_jobs.json"
TAG = "segsweep."
#: sacct states that end a job (anything else is still queued or running).
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL",
                          "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})


# --------------------------------------------------------------------------------------------------
# sacct


def _expand(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` (a pending array) -> ``123_0 123_1 123_2 123_5``; other ids unchanged."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    ids = []
    for part in match.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        ids += [f"{match.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return ids


def sacct_states(job_ids: Iterable[str], timeout: float = 30) -> dict[str, str]:
    """SLURM state of each job (``123`` or array task ``123_4``), read with ``sacct --parsable2``.

    States are sacct's first word (``CANCELLED by 0`` -> ``CANCELLED``); an array id also yields
    each of its tasks. Unknown ids are left out. Raises ``RuntimeError`` (one line) when sacct fails.
    """
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    cmd = ["sacct", "-n", "-X", "--parsable2", "-o", "JobID,State", "-j", ",".join(ids)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise RuntimeError(f"sacct failed ({detail.strip()[:200]}): is SLURM accounting (slurmdbd) "
                           f"reachable from this machine?") from error
    states: dict[str, str] = {}
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        for one in _expand(job_id.strip()):
            states[one] = state.split(" ")[0] or "UNKNOWN"
    return states


# --------------------------------------------------------------------------------------------------
# inside a job


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


# --------------------------------------------------------------------------------------------------
# the sweep's manifest: what the launcher submitted


def write_manifest(sweep_dir: Path, cells: Sequence[Mapping[str, Any]]) -> Path:
    """Merge ``cells`` (by job number) into ``<sweep dir>/slurm_jobs.json``; returns the path."""
    path = Path(sweep_dir) / MANIFEST
    known = {c["job_num"]: c for c in read_manifest(sweep_dir)}
    known.update({c["job_num"]: dict(c) for c in cells})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([known[k] for k in sorted(known)], indent=1))
    os.replace(tmp, path)
    return path


def read_manifest(sweep_dir: Path) -> list[dict[str, Any]]:
    """The cells ``write_manifest`` recorded for a sweep dir (empty if none)."""
    path = Path(sweep_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else []
