"""One job: name + config hash -> claim the run key -> decide -> train (resuming) -> record in MLflow.

:func:`decide` is the pure policy (what to do with a run key, given its newest run, its heartbeat, its
checkpoint and ``force``); :func:`run_job` observes those facts, carries the decision out and maps
what ends the training to the run's final state.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from engine import guards
from engine.callbacks import Callback, StopTraining
from engine.checkpoint import CHECKPOINT_NAME
from engine.distributed import DistContext, broadcast_from_main, init_distributed, launched_rank
from engine.train import train, validate_config
from sweeper import (
    PARENTS_ENV,
    SWEEP_ID_ENV,
    errors,
    launch_dir,
    naming,
    optuna_trial,
    placement,
    shutdown,
    tracking,
)

#: bad input (exit 2): the UserError family, the engine's and the data's config errors and the codec's
#: unknown token (``naming.UnknownTokenError`` is a ValueError until the codec joins the family)


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
    return root / "runs" / str(cfg.dataset.name) / run_dirname(name, config_hash)


#: a run dir's name stays below the 255-byte file-name limit (with room for ``.claim`` and temp suffixes)
MAX_DIRNAME = 200


def run_dirname(name: str, config_hash: str) -> str:
    """``<name>--<hash>``; a name too long for one path component keeps its head and a digest of the whole."""
    dirname = f"{name}--{config_hash}"
    if len(dirname.encode()) <= MAX_DIRNAME:
        return dirname
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    head = name.encode()[: MAX_DIRNAME - len(config_hash) - len(digest) - 3].decode(errors="ignore")
    return f"{head}~{digest}--{config_hash}"


def _result(status: str, name: str, run_id: str | None, value: float | None = None, **extra: Any) -> dict:
    return {"status": status, "name": name, "run_id": run_id, "value": value, **extra}


def claim_path(workdir: Path) -> Path:
    """The claim file of a run key: ``<run dir>.claim``, beside the run dir (``+force`` removes the dir)."""
    return workdir.with_name(workdir.name + ".claim")


@contextlib.contextmanager
def claim(workdir: Path) -> Iterator[str | None]:
    """Hold the run key's claim (an exclusive ``flock`` on :func:`claim_path`) while the job runs.

    Yields None when this process holds it, else who holds it ("process <pid> on <host>"): the one
    check-then-create that makes a run key train once, whoever starts it at the same instant. The
    lock goes with its process, so a killed job leaves nothing to clean up.
    """
    path = claim_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            yield handle.read().strip() or "another process"
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Outcome(enum.Enum):
    """What a job does with its run key."""

    SKIP = "skip"                # FINISHED already: report its result
    LEAVE_ALONE = "leave alone"  # running elsewhere (a live heartbeat, or another process's claim)
    TAKE_OVER = "take over"      # RUNNING, its process gone, nothing to resume: closed KILLED, a new run
    RESUME = "resume"            # unfinished, with its checkpoint: continued in the same MLflow run
    NEW = "new"                  # a new run (from scratch with ``force``)


@dataclass(frozen=True)
class KeyState:
    """The facts about one run key that :func:`decide` reads: its newest run and what is on disk."""

    previous: str | None  # MLflow status of the newest run of the key; None when there is none
    heartbeat_alive: bool = False  # a RUNNING previous run's process is alive
    checkpoint_exists: bool = False  # the run dir holds a checkpoint
    force: bool = False  # ``+force=true``: re-run even a FINISHED key, from scratch
    claimed_elsewhere: bool = False  # another process holds the run key's claim


def decide(state: KeyState) -> Outcome:
    """The job policy. A live run is never disturbed (not even by ``force``); FINISHED is skipped
    unless forced; an unfinished run resumes from its checkpoint unless forced; a RUNNING run whose
    process is gone is taken over; everything else starts a new run."""
    if state.claimed_elsewhere or (state.previous == "RUNNING" and state.heartbeat_alive):
        return Outcome.LEAVE_ALONE
    if state.previous is None:
        return Outcome.NEW
    if state.previous == "FINISHED":
        return Outcome.NEW if state.force else Outcome.SKIP
    if state.checkpoint_exists and not state.force:
        return Outcome.RESUME
    return Outcome.TAKE_OVER if state.previous == "RUNNING" else Outcome.NEW


def _extra_callbacks(cfg: DictConfig) -> list[Callback]:
    trial = optuna_trial.trial_of_env()  # a search trial: its study coordinates are in the job's environment
    return [optuna_trial.PruningCallback(trial, str(cfg.dataset.eval_split))] if trial is not None else []


def sweep_tags(uri: str, experiment: str) -> dict[str, str]:
    """``mlflow.parentRunId`` and ``segsweep.sweep_id`` of the sweep (or search) this job belongs to,
    from the environment its launcher (or the search sweeper) set up; empty outside a sweep."""
    tags: dict[str, str] = {}
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
             tracking.HEARTBEAT_TAG: tracking.beat(), **placement.job_tags()}
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPU(s) a pool launcher gave this job
        where[tracking.TAG + "cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return where


@dataclass(frozen=True)
class Job:
    """One resolved cell: its config, name, run key, store and run dir."""

    cfg: DictConfig
    name: str
    config_hash: str
    key: str
    uri: str
    workdir: Path

    @property
    def label(self) -> str:
        """The name and the seed, as the run is listed (the MLflow run name)."""
        return tracking.run_name(self.name, self.cfg.seed)


def prepare(cfg: DictConfig, overrides: list[str]) -> Job:
    """Resolve and validate the config; name it; find its store and run dir (bad input raises here)."""
    cfg = resolve_config(cfg, overrides)
    guards.check_devices(cfg)  # where the job runs (not in the launcher): before any run is created
    name, config_hash = naming.compose(cfg), naming.config_hash(cfg)
    return Job(cfg, name, config_hash, naming.run_key(name, config_hash),
               tracking.tracking_uri(cfg, launch_dir()), run_dir(cfg, name, config_hash))


def observe(job: Job, previous: Any, holder: str | None) -> KeyState:
    """The facts :func:`decide` reads, from the newest run of the key, the claim and the run dir."""
    status = previous.info.status if previous is not None else None
    stale_after = float(job.cfg.tracking.get("stale_after_s", 180))
    return KeyState(previous=status, force=bool(job.cfg.get("force", False)),
                    claimed_elsewhere=holder is not None,
                    heartbeat_alive=status == "RUNNING" and tracking.is_alive(previous, stale_after),
                    checkpoint_exists=(job.workdir / CHECKPOINT_NAME).exists())


def _running_tags(job: Job) -> dict[str, str]:
    running = {**sweep_tags(job.uri, str(job.cfg.tracking.experiment)), **_where_tags(job.workdir)}
    if os.environ.get(optuna_trial.TRIAL_ENV):  # a search trial: linked to its study while it runs
        running[tracking.TAG + "trial"] = os.environ[optuna_trial.TRIAL_ENV]
    return running


def open_run(client: Any, experiment_id: str, job: Job, outcome: Outcome, previous: Any) -> str:
    """Carry out RESUME / TAKE_OVER / NEW: the id of the RUNNING run the job trains into."""
    running = _running_tags(job)
    if outcome is Outcome.RESUME:
        run_id = previous.info.run_id
        tracking.reopen_run(client, run_id, running)
        print(f"[segsweep] resuming {job.label} into run {run_id}", flush=True)
        return run_id
    if outcome is Outcome.TAKE_OVER:
        tracking.close_run(client, previous.info.run_id, "KILLED")  # its process is gone, nothing to resume
    if job.cfg.get("force", False) and job.workdir.exists():
        shutil.rmtree(job.workdir)
    run_id = tracking.create_run(client, experiment_id, job.cfg,
                                 tracking.run_tags(job.cfg, job.name, job.config_hash, job.key, running))
    print(f"[segsweep] run {job.label} -> {run_id} ({job.uri})", flush=True)
    return run_id


def _announce(job: Job, outcome: Outcome, previous: Any, holder: str | None) -> None:
    if outcome is Outcome.SKIP:
        print(f"[segsweep] skipped {job.label}: FINISHED as run {previous.info.run_id}", flush=True)
    elif outcome is Outcome.LEAVE_ALONE and holder is not None:
        print(f"[segsweep] left alone {job.label}: running elsewhere ({holder} holds "
              f"{claim_path(job.workdir)})", flush=True)
    elif outcome is Outcome.LEAVE_ALONE:
        print(f"[segsweep] left alone {job.label}: RUNNING elsewhere as run {previous.info.run_id} "
              f"(live heartbeat)", flush=True)
    elif outcome in (Outcome.TAKE_OVER, Outcome.RESUME) and previous.info.status == "RUNNING":
        print(f"[segsweep] taking over {job.label}: run {previous.info.run_id} is RUNNING with a stale "
              f"heartbeat (its process is gone)", flush=True)


def execute(client: Any, job: Job, run_id: str) -> dict:
    """Train into ``run_id`` and close the run: FINISHED, KILLED (stopped, interrupted) or FAILED
    (raised as :class:`~sweeper.errors.JobFailed` naming the run)."""
    cfg, seed = job.cfg, job.cfg.seed
    try:
        callbacks = [tracking.MlflowCallback(client, run_id), *_extra_callbacks(cfg)]
        with tracking.Heartbeat(job.uri, run_id, float(cfg.tracking.get("heartbeat_s", 30))):
            metrics = train(cfg, callbacks, job.workdir)
    except StopTraining as stop:
        tracking.close_run(client, run_id, "KILLED", {tracking.TAG + "stopped": stop.reason,
                                                      tracking.TAG + "pruned": str(stop.reason == "pruned").lower()})
        return _result("PRUNED" if stop.reason == "pruned" else "STOPPED", job.name, run_id, seed=seed)
    except KeyboardInterrupt as stop:  # SIGINT/SIGTERM (sweeper.shutdown): KILLED, resumable by a re-run
        tracking.close_run(client, run_id, "KILLED", {tracking.TAG + "stopped": shutdown.reason(stop)})
        raise
    except Exception as error:
        tracking.record_failure(client, run_id, error)
        raise errors.JobFailed(run_id, error) from error
    except BaseException:  # SystemExit from a signal handler: cut, resumable by a re-run
        tracking.close_run(client, run_id, "KILLED")
        raise
    tracking.close_run(client, run_id, "FINISHED")
    objective = tracking.objective_metric(cfg)
    value = metrics.get(objective)
    print(f"[segsweep] finished {job.label}: {objective} {value:.2f} (run {run_id})", flush=True)
    return _result("FINISHED", job.name, run_id, value, seed=seed, split=str(cfg.dataset.eval_split),
                   params_M=metrics.get("params_M"))


def follow(job: Job, ctx: DistContext) -> dict:
    """Rank > 0 of a multi-process run: train with rank 0's decision into rank 0's run. It claims nothing
    and writes no MLflow (nor checkpoints: engine.train saves on rank 0 only); it resumes from the run
    dir's checkpoint as rank 0 does, read after rank 0 has prepared the run dir."""
    where = f"rank {ctx.rank} of {ctx.world_size} on {os.uname().nodename}"
    run_id = broadcast_from_main(None, ctx)
    if run_id is None:
        print(f"[segsweep] {where}: rank 0 trains nothing for {job.label}", flush=True)
        return _result("SKIPPED", job.name, None, reason="rank 0", seed=job.cfg.seed, rank=ctx.rank)
    print(f"[segsweep] {where} trains {job.label} with rank 0 into run {run_id}", flush=True)
    metrics = train(job.cfg, (), job.workdir)
    return _result("FINISHED", job.name, run_id, metrics.get(tracking.objective_metric(job.cfg)),
                   seed=job.cfg.seed, rank=ctx.rank, node=os.uname().nodename)


def run_job(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Run one cell of a sweep; returns {"status", "name", "run_id", "value", "seed", ...}.

    The run key is claimed first (:func:`claim`), then :func:`decide` chooses from the newest run of
    the key: FINISHED is skipped (``+force=true`` re-runs it); a run that is running elsewhere is
    left alone (SKIPPED, ``reason: running``); a FAILED/KILLED run, or a RUNNING one whose process is
    gone, is resumed into the same MLflow run when its checkpoint exists, else replaced by a new run.
    Bad input raises before any run exists; a failed training raises :class:`~sweeper.errors.JobFailed`.

    One of several processes of a run (a multi-task SLURM step, torchrun) joins the run's process group
    first; rank 0 alone claims, decides and tracks, and tells the others the run id (None: they stop),
    which :func:`follow` trains with.
    """
    job = prepare(cfg, overrides or [])
    if launched_rank() is None:
        return lead(job, lambda run_id: None)
    ctx = init_distributed(job.cfg)
    if not ctx.is_main:
        return follow(job, ctx)
    print(f"[segsweep] rank 0 of {ctx.world_size} on {os.uname().nodename} ({ctx.backend}) decides for "
          f"{job.label}", flush=True)
    told: list[str] = []

    def tell(run_id: str) -> None:
        told.append(run_id)
        broadcast_from_main(run_id, ctx)

    try:
        return lead(job, tell)
    finally:
        if not told:  # skipped, left alone, or failed before training: the other ranks stop as well
            with contextlib.suppress(Exception):
                broadcast_from_main(None, ctx)


def lead(job: Job, tell: Callable[[str], None]) -> dict:
    """:func:`run_job` for one process (or rank 0): claim, decide, open the run, ``tell(run_id)``, train."""
    experiment_id = tracking.ensure_experiment(job.uri, str(job.cfg.tracking.experiment))
    client = tracking.client_for(job.uri)
    with claim(job.workdir) as holder:
        previous = next(iter(tracking.find_runs(client, experiment_id, job.key)), None)
        outcome = decide(observe(job, previous, holder))
        _announce(job, outcome, previous, holder)
        if outcome is Outcome.SKIP:
            return _result("SKIPPED", job.name, previous.info.run_id, tracking.result_value(previous),
                           seed=job.cfg.seed, split=str(job.cfg.dataset.eval_split))
        if outcome is Outcome.LEAVE_ALONE:
            return _result("SKIPPED", job.name, previous.info.run_id if previous is not None else None,
                           reason="running", seed=job.cfg.seed, claimed_by=holder)
        run_id = open_run(client, experiment_id, job, outcome, previous)
        tell(run_id)
        return execute(client, job, run_id)


def main(cfg: DictConfig) -> dict:
    """The Hydra task: in a multirun a failing job is recorded and the sweep goes on; a single run
    exits with one line naming the problem: 2 for bad input, 1 for anything else."""
    overrides, multirun = _hydra_context()
    try:
        return run_job(cfg, overrides)
    except Exception as error:  # noqa: BLE001 - the task's top: every error is a result or an exit code
        cause = errors.root_cause(error)
        code = errors.exit_code(error)
        line = tracking.first_line(cause) if code == errors.EXIT_BAD_INPUT else tracking.error_line(cause)
        if multirun:
            print(f"[segsweep] FAILED: {line}", file=sys.stderr, flush=True)
            run_id = error.run_id if isinstance(error, errors.JobFailed) else None
            return _result("FAILED", str(cfg.get("name") or ""), run_id, error=line, seed=cfg.get("seed"))
        print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(code)
