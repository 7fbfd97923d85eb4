"""Helpers for tests against a real SLURM cluster: reachability, partition, job cleanup."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

START_HINT = "start one as root with: PART=$(LOCAL_SLURM_CPUS=4 scripts/local-slurm-start.sh)"


@dataclass(frozen=True)
class SlurmCluster:
    """A reachable SLURM cluster: its partition for test jobs."""

    partition: str


def _run(*cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def why_unreachable() -> str | None:
    """None when sbatch/sinfo/sacct all answer, else the reason in one line."""
    missing = [c for c in ("sinfo", "sbatch", "squeue", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        root = "" if os.geteuid() == 0 else " (and not root: the local cluster needs root)"
        return f"SLURM client commands not found: {', '.join(missing)}{root}; {START_HINT}"
    try:
        ping = _run("scontrol", "ping")
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return f"no slurmctld reachable (scontrol ping: {(ping.stdout + ping.stderr).strip()!r}); {START_HINT}"
        acct = _run("sacct", "-n", "-X", "-S", "now-1minutes", "-o", "JobID")
        if acct.returncode != 0:
            return f"sacct does not work (accounting off?): {acct.stderr.strip()!r}; {START_HINT}"
    except subprocess.TimeoutExpired as exc:
        return f"SLURM command timed out: {exc.cmd}; {START_HINT}"
    return None


def find_partition() -> str:
    env = os.environ.get("SEGSWEEP_SLURM_PARTITION")
    if env:
        return env
    out = _run("sinfo", "-h", "-o", "%P").stdout.split()
    default = [p.rstrip("*") for p in out if p.endswith("*")]
    return (default or [p.rstrip("*") for p in out] or ["debug"])[0]


def jobs_under(path: Path) -> list[str]:
    """Ids of queued/running jobs whose stdout, workdir or command lies under ``path``."""
    out = _run("scontrol", "show", "job", "-o").stdout
    root = str(path.resolve())
    ids: set[str] = set()
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        ours = any(fields.get(k, "").startswith(root) for k in ("StdOut", "StdErr", "WorkDir", "Command"))
        if ours and fields.get("JobState") not in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}:
            ids.add(fields.get("ArrayJobId") or fields["JobId"])
    return sorted(ids)


def cancel_jobs_under(path: Path, wait_s: float = 30) -> list[str]:
    """scancel every live job under ``path`` and wait until none is left; returns the ids."""
    ids = jobs_under(path)
    if ids:
        _run("scancel", *ids)
        end = time.monotonic() + wait_s
        while jobs_under(path) and time.monotonic() < end:
            time.sleep(0.5)
    return ids


def sacct_state(job_id: str, timeout: float = 15) -> str:
    """The job's sacct state once it is final (slurmdbd lags squeue by up to ~0.5 s)."""
    state = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = _run("sacct", "-n", "-X", "--parsable2", "-o", "JobID,State", "-j", job_id).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        state = states.get(job_id, "").split(" ")[0]
        if state and state not in {"PENDING", "RUNNING", "REQUEUED", "COMPLETING"}:
            return state
        time.sleep(0.3)
    return state


def release_requeued(job_id: str, timeout: float = 60) -> None:
    """Make a requeued job eligible now.

    SLURM holds a requeued job for about two minutes (``Reason=BeginTime``); tests shorten that wait
    with ``scontrol update StartTime=now`` once the requeue has happened. Nothing else changes.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = _run("squeue", "-h", "-j", job_id, "-o", "%T|%r").stdout.strip()
        if out.startswith("PENDING") and "BeginTime" in out:
            # slurmd refuses a credential created in the same second as the old one's revocation
            # ("Killing non-startable batch JobId=...: Job credential revoked"): start 2 s later
            time.sleep(2)
            _run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} was not requeued within {timeout}s (squeue: {out!r})")
