"""One job: name + config hash -> skip if finished -> train (resuming) -> record in MLflow."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from engine.callbacks import Callback, StopTraining
from engine.checkpoint import CHECKPOINT_NAME
from engine.train import train, validate_config
from sweeper import LAUNCH_DIR_ENV, naming, slurm, tracking

PARENTS_ENV = "SEGSWEEP_PARENT_RUNS"  # JSON {"<uri>|<experiment>": parent run id}, set by the launcher
SWEEP_ID_ENV = "SEGSWEEP_SWEEP_ID"


def launch_dir() -> Path:
    """The directory the command was started in (relative paths of the config resolve against it)."""
    return Path(os.environ.get(LAUNCH_DIR_ENV) or os.getcwd())


def _hydra_context() -> tuple[list[str], bool]:
    """(the job's command-line overrides, whether this is a multirun)."""
    if not HydraConfig.initialized():
        return [], False
    hc = HydraConfig.get()
    return list(hc.overrides.task), hc.mode == RunMode.MULTIRUN


def resolve_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply a seed name (``name=...``) under the explicit overrides, then validate."""
    if cfg.get("name"):
        cfg = naming.apply_seed_name(cfg, overrides)
    validate_config(cfg)
    return cfg


def run_dir(cfg: DictConfig, name: str, config_hash: str) -> Path:
    """Where a run's checkpoint lives: derived from the run key, never from a timestamp."""
    root = Path(str(cfg.output_root))
    root = root if root.is_absolute() else launch_dir() / root
    return root / "runs" / str(cfg.dataset.name) / f"{name}--{config_hash}"


def _result(status: str, name: str, run_id: str | None, value: float | None = None, **extra: Any) -> dict:
    return {"status": status, "name": name, "run_id": run_id, "value": value, **extra}


def _extra_callbacks(cfg: DictConfig) -> list[Callback]:
    if "optuna" in cfg:
        from sweeper.search import PruningCallback

        return [PruningCallback(cfg.optuna)]
    return []


def sweep_tags(uri: str, experiment: str, cfg: DictConfig | None = None) -> dict[str, str]:
    """``mlflow.parentRunId`` and ``segsweep.sweep_id`` of the sweep this job belongs to: from
    ``sweep.parent_run_id`` / ``sweep.id`` in the config (set by the search sweeper), else from the
    environment segsweep's launcher set up; empty outside a sweep."""
    tags: dict[str, str] = {}
    given = (cfg.get("sweep") if cfg is not None else None) or {}
    if given.get("parent_run_id"):
        tags["mlflow.parentRunId"] = str(given["parent_run_id"])
        if given.get("id"):
            tags[tracking.TAG + "sweep_id"] = str(given["id"])
        return tags
    if os.environ.get(SWEEP_ID_ENV):
        tags[tracking.TAG + "sweep_id"] = os.environ[SWEEP_ID_ENV]
    try:
        parents = json.loads(os.environ.get(PARENTS_ENV) or "{}")
    except ValueError:
        parents = {}
    parent = parents.get(f"{uri}|{experiment}")
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def _where_tags(workdir: Path) -> dict[str, str]:
    """Where this attempt runs: work dir, host, GPUs, SLURM job, and a first heartbeat."""
    where = {tracking.TAG + "workdir": str(workdir), tracking.TAG + "host": os.uname().nodename,
             tracking.HEARTBEAT_TAG: tracking.beat(), **slurm.job_tags()}
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPU(s) a pool launcher gave this job
        where[tracking.TAG + "cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return where


def run_job(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Run one cell of a sweep; returns {"status", "name", "run_id", "value", ...}.

    FINISHED runs of the same run key are skipped (``+force=true`` re-runs them); a RUNNING run with
    a live heartbeat is left alone (SKIPPED, ``reason: running``); a FAILED/KILLED run, or a RUNNING
    one whose heartbeat is stale, is taken over: resumed into the same MLflow run when its checkpoint
    exists, else replaced by a new run.
    """
    cfg = resolve_config(cfg, overrides or [])
    name, config_hash = naming.compose(cfg), naming.config_hash(cfg)
    key = naming.run_key(name, config_hash)
    uri = tracking.tracking_uri(cfg, launch_dir())
    experiment_id = tracking.ensure_experiment(uri, str(cfg.tracking.experiment))
    client = tracking.client_for(uri)
    workdir = run_dir(cfg, name, config_hash)
    previous = next(iter(tracking.find_runs(client, experiment_id, key)), None)
    force = bool(cfg.get("force", False))
    if previous is not None and previous.info.status == "FINISHED" and not force:
        print(f"[segsweep] skipped {name}: FINISHED as run {previous.info.run_id}", flush=True)
        return _result("SKIPPED", name, previous.info.run_id, previous.data.metrics.get("final_val_mIoU"))
    stale_after = float(cfg.tracking.get("stale_after_s", 180))
    if previous is not None and previous.info.status == "RUNNING" and not force:
        if tracking.is_alive(previous, stale_after):
            print(f"[segsweep] left alone {name}: RUNNING elsewhere as run {previous.info.run_id} "
                  f"(live heartbeat)", flush=True)
            return _result("SKIPPED", name, previous.info.run_id, None, reason="running")
        print(f"[segsweep] taking over {name}: run {previous.info.run_id} is RUNNING with a stale "
              f"heartbeat (its process is gone)", flush=True)
    if force and workdir.exists():
        shutil.rmtree(workdir)
    resumable = (previous is not None and previous.info.status != "FINISHED" and not force
                 and (workdir / CHECKPOINT_NAME).exists())
    running = {**sweep_tags(uri, str(cfg.tracking.experiment), cfg), **_where_tags(workdir)}
    if "optuna" in cfg:  # a search trial: linked to its study while it runs, not only at the end
        running[tracking.TAG + "trial"] = str(cfg.optuna.trial_number)
    if resumable:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
        tracking.set_tags(client, run_id, running)
        print(f"[segsweep] resuming {name} into run {run_id}", flush=True)
    else:
        if previous is not None and previous.info.status == "RUNNING":
            client.set_terminated(previous.info.run_id, "KILLED")  # stale, nothing to resume
        run_id = tracking.create_run(client, experiment_id, cfg,
                                     tracking.run_tags(cfg, name, config_hash, key, running))
        print(f"[segsweep] run {name} -> {run_id} ({uri})", flush=True)
    try:
        with tracking.Heartbeat(uri, run_id, float(cfg.tracking.get("heartbeat_s", 30))):
            metrics = train(cfg, [tracking.MlflowCallback(client, run_id), *_extra_callbacks(cfg)], workdir)
    except StopTraining as stop:
        tracking.set_tags(client, run_id, {tracking.TAG + "stopped": stop.reason,
                                           tracking.TAG + "pruned": str(stop.reason == "pruned").lower()})
        client.set_terminated(run_id, "KILLED")
        return _result("PRUNED" if stop.reason == "pruned" else "STOPPED", name, run_id)
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except Exception as error:
        tracking.record_failure(client, run_id, error)
        error.segsweep_run_id = run_id  # the FAILED result of a multirun names its run
        raise
    client.set_terminated(run_id, "FINISHED")
    value = metrics.get("final_val_mIoU")
    print(f"[segsweep] finished {name}: val mIoU {value:.2f} (run {run_id})", flush=True)
    return _result("FINISHED", name, run_id, value, params_M=metrics.get("params_M"))


def main(cfg: DictConfig) -> dict:
    """The Hydra task: in a multirun a failing job is recorded and the sweep goes on; a single run
    exits non-zero with one line naming the problem."""
    overrides, multirun = _hydra_context()
    try:
        return run_job(cfg, overrides)
    except Exception as error:
        if multirun:
            print(f"[segsweep] FAILED: {tracking.error_line(error)}", file=sys.stderr, flush=True)
            return _result("FAILED", str(cfg.get("name") or ""), getattr(error, "segsweep_run_id", None),
                           error=tracking.error_line(error))
        print(f"error: {tracking.error_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(error, naming.UnknownTokenError | ValueError) else 1)
