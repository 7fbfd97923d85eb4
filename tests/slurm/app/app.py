"""A tiny checkpointing Hydra task for the SLURM launcher tests (no MLflow, no torch).

Cell ``x`` writes one line per epoch to ``<out>/x<x>/epochs.log`` and a ``done`` marker; a restarted
job resumes after the last logged epoch, like segsweep's runs resume from their checkpoint.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


def cell_dir(cfg: DictConfig) -> Path:
    return Path(str(cfg.out)) / f"x{cfg.x}"


def cell_info(cfg: DictConfig) -> dict:
    """The launcher's cell_info (``hydra.launcher.cell_info``): a cell with a done marker is FINISHED
    (``previous``, the fact sweeper.task.decide reads), one with a ``failed`` marker FAILED; its
    (unused) sqlite store makes the launcher warn as it would for segsweep's runs."""
    d = cell_dir(cfg)
    previous = "FINISHED" if (d / "done").exists() else "FAILED" if (d / "failed").exists() else None
    return {"name": f"x{cfg.x}", "uri": "sqlite:///app-unused.db",
            **({"previous": previous, "previous_run_id": str(d)} if previous else {})}


@hydra.main(version_base=None, config_path="conf", config_name="app")
def main(cfg: DictConfig) -> int:
    d = cell_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    log = d / "epochs.log"
    start = len(log.read_text().splitlines()) if log.exists() else 0
    env = os.environ
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_JOB_ID")
           else env.get("SLURM_JOB_ID", "local"))
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    for epoch in range(start + 1, int(cfg.epochs) + 1):
        time.sleep(float(cfg.sleep_s))
        if cfg.fail or (d / "fail").exists():  # the `fail` marker: a cell that fails until it is removed
            (d / "failed").write_text(job)
            raise ValueError(f"boom in cell {cfg.x}")
        with log.open("a") as f:
            f.write(f"{epoch} {job} {restarts}\n")
    (d / "done").write_text(job)
    return int(cfg.x) ** 2


if __name__ == "__main__":
    main()
