"""SLURM for segsweep: sacct states (one sacct call for all of a sweep's arrays), what the launcher
learns about a cell before submitting it, the MLflow tags of a SLURM job, ``status`` of a SLURM sweep.

The launch itself is ``sweeper.launch_slurm`` (the SLURM backend of ``sweeper.launch``); the plugin
``hydra_plugins.segsweep_slurm`` only holds its config. Both record the sweep's cells in the one
manifest of every launcher (``sweeper.bookkeeping.write_manifest``: ``<sweep dir>/segsweep_cells.json``).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.placement import job_tags

log = logging.getLogger(__name__)

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


def arrays_of(job_ids: Iterable[str]) -> list[str]:
    """The jobs to ask sacct about: each array once (``123_4`` -> ``123``: sacct lists all its tasks)."""
    return sorted({str(j).split("_")[0] for j in job_ids})


def sacct_states(job_ids: Iterable[str], timeout: float = 30) -> dict[str, str]:
    """SLURM state of each job (``123`` or array task ``123_4``), read with ONE ``sacct --parsable2``
    call that names each array once (:func:`arrays_of`), whatever the number of tasks.

    States are sacct's first word (``CANCELLED by 0`` -> ``CANCELLED``); an array id also yields
    each of its tasks. Jobs that sacct does not list yet (slurmdbd lags submission) are read from
    squeue; unknown ids are left out. Raises ``RuntimeError`` (one line) when sacct fails.
    """
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    cmd = ["sacct", "-n", "-X", "--parsable2", "-o", "JobID,State", "-j", ",".join(arrays_of(ids))]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise RuntimeError(f"sacct failed ({detail.strip()[:200]}): is SLURM accounting (slurmdbd) "
                           f"reachable from this machine?") from error
    states = _parse(out)
    missing = [j for j in ids if j not in states and not any(k.startswith(j + "_") for k in states)]
    if missing:  # just submitted: slurmdbd may not know the job yet, squeue does
        cmd = ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(missing)]
        try:
            squeue = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout
            states.update({k: v for k, v in _parse(squeue).items() if k not in states})
        except (OSError, subprocess.SubprocessError):
            pass
    return states


def _parse(out: str) -> dict[str, str]:
    states: dict[str, str] = {}
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        for one in _expand(job_id.strip()):
            states[one] = state.split(" ")[0] or "UNKNOWN"
    return states


# --------------------------------------------------------------------------------------------------
# inside a job


def tag_run(cfg: DictConfig, run_id: str) -> dict[str, str]:
    """Set :func:`job_tags` on ``run_id`` in the cell's tracking store; returns the tags."""
    from sweeper import launch_dir, tracking

    tags = job_tags()
    if tags:
        tracking.set_tags(tracking.client_for(tracking.tracking_uri(cfg, launch_dir())), run_id, tags)
    return tags


def read_manifest(sweep_dir: Path) -> list[dict[str, Any]]:
    """The cells of a sweep dir's manifest (``sweeper.bookkeeping.manifest_cells``; empty if none)."""
    from sweeper.bookkeeping import manifest_cells

    return manifest_cells(sweep_dir)


def submitted(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The cells that were submitted to SLURM (those with a job id)."""
    return [dict(c) for c in cells if c.get("slurm_job_id")]


# --------------------------------------------------------------------------------------------------
# before submission: which cells are already FINISHED


def cell_info(cfg: DictConfig) -> dict[str, Any]:
    """What the launcher records about a cell before submitting it (the launcher's ``cell_info``).

    ``cfg`` is the cell's composed sweep config (with ``hydra``). The cell is resolved as
    ``sweeper.task.run_job`` resolves it (seed name under the explicit overrides); the result has its
    ``name``, ``run_key``, tracking ``uri`` and ``experiment``, ``force`` (``+force=true``) and, when the
    run key has runs, the facts ``sweeper.task.decide`` reads about the newest: ``previous`` (its
    status), ``previous_run_id`` and ``alive`` (a RUNNING run's heartbeat). The launcher leaves out
    the cells decide would skip or leave alone (``sweeper.launch.left_out``). The store and experiment
    are created here, once, before any job starts (no migration race). A cell whose config does not
    resolve is submitted anyway: its job records the error.
    """
    from sweeper import tracking
    from sweeper.bookkeeping import cell_info as resolve_cell

    info = resolve_cell(cfg)
    if not info:
        return info
    info["force"] = bool(cfg.get("force", False))
    runs = tracking.find_runs(tracking.client_for(info["uri"]), info["experiment_id"], info["run_key"])
    if runs:
        stale_after = float(OmegaConf.select(cfg, "tracking.stale_after_s", default=180) or 180)
        info.update(previous=runs[0].info.status, previous_run_id=runs[0].info.run_id,
                    alive=runs[0].info.status == "RUNNING" and tracking.is_alive(runs[0], stale_after))
    return info


# --------------------------------------------------------------------------------------------------
# status of a sweep: the manifest + sacct + MLflow


def sweep_status(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per submitted cell: its SLURM job id and sacct state, and its MLflow run and status.

    ``state`` is the run's MLflow status once it has ended (FINISHED/FAILED/KILLED), else the SLURM
    state (PENDING/RUNNING/COMPLETED/FAILED/TIMEOUT/PREEMPTED/CANCELLED...).
    """
    cells = read_manifest(sweep_dir)
    slurm = sacct_states(c["slurm_job_id"] for c in submitted(cells))  # one sacct call for every array
    rows = []
    for cell in cells:
        run = _mlflow_run(cell)
        slurm_state = slurm.get(cell["slurm_job_id"], "UNKNOWN") if cell.get("slurm_job_id") else "NOT SUBMITTED"
        mlflow_state = run.info.status if run is not None else ""
        state = mlflow_state if mlflow_state in {"FINISHED", "FAILED", "KILLED"} else slurm_state
        rows.append({"cell": cell["job_num"], "name": cell.get("name", " ".join(cell["overrides"])),
                     "slurm_job_id": cell.get("slurm_job_id", ""), "slurm_state": slurm_state,
                     "mlflow_status": mlflow_state, "run_id": run.info.run_id if run is not None else "",
                     "state": state, "stdout": cell.get("stdout", "")})
    return rows


def _mlflow_run(cell: Mapping[str, Any]) -> Any:
    if not cell.get("run_key") or not cell.get("uri"):
        return None
    from sweeper import tracking

    client = tracking.client_for(cell["uri"])
    experiment = client.get_experiment_by_name(cell["experiment"])
    if experiment is None:
        return None
    runs = tracking.find_runs(client, experiment.experiment_id, cell["run_key"])
    return runs[0] if runs else None


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`sweep_status` rows."""
    cols = ("cell", "state", "slurm_job_id", "slurm_state", "mlflow_status", "run_id", "name")
    table = [cols, *[tuple(str(r[c]) for c in cols) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sweeper.slurm status <sweep dir>``: the cells of a SLURM sweep and their states."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sweeper.slurm", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="cells of a sweep dir, SLURM + MLflow states").add_argument("sweep_dir")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not read_manifest(sweep_dir):
        print(f"error: no sweep manifest (segsweep_cells.json) in {sweep_dir}: give the hydra.sweep.dir of a "
              f"launcher=slurm sweep", file=sys.stderr)
        return 2
    try:
        print(format_status(sweep_status(sweep_dir)))
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
