"""One launch skeleton for segsweep's launchers: local (in this process), pool (worker processes) and
SLURM (sbatch arrays).

The Hydra plugins (``hydra_plugins/segsweep_pool``, ``hydra_plugins/segsweep_slurm``) hold only their
config dataclass and call :func:`launch` with a :class:`Backend` (Hydra's ``_impl`` pattern). Every
launch goes the same way:

1. compose every job's config and describe its cell (``hydra.launcher.cell_info``; nothing of the
   app's config is read without it);
2. ``backend.check``: settings the backend needs (pool slots, ...) fail here, before anything opens;
3. a search's trials (``bookkeeping.managed``) just run: the search owns lock, parent and summary;
4. under the sweep lock: the MLflow parent runs, the cell manifest (``bookkeeping.write_manifest``,
   one format for every launcher), the cells the backend leaves out (:func:`left_out`, through
   ``sweeper.task.decide``), then ``backend.run`` (wait) or ``backend.detach``;
5. the parents are closed FINISHED/FAILED, or KILLED/FAILED when the launch itself is stopped or
   fails (never left RUNNING), and the summary table is printed.

Launcher options are the fields of the plugin's dataclass (:func:`own_options`): adding a field there
is all it takes for ``launcher.options[<field>]`` to reach this code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig

from sweeper import bookkeeping as sweep

log = logging.getLogger(__name__)


def own_options(params: dict[str, Any], inherited: Iterable[str] = ()) -> dict[str, Any]:
    """Pop and return the launcher's own options from ``params`` (Hydra's instantiation kwargs): every
    key that is not one of the ``inherited`` fields (those of a base launcher's dataclass, e.g.
    hydra-submitit-launcher's ``SlurmQueueConf``, which stay in ``params`` for it). The dataclass is
    the schema (Hydra rejects an unknown key), so its fields are the one list of options."""
    keep = set(inherited)
    return {key: params.pop(key) for key in [k for k in params if k not in keep]}


def fields_of(conf: type) -> frozenset[str]:
    """The field names of a launcher's config dataclass (``_target_`` left out)."""
    return frozenset(f.name for f in dataclasses.fields(conf)) - {"_target_"}


@dataclass
class Batch:
    """The jobs of one ``launch`` call: (job number, overrides), their composed configs and cells."""

    jobs: list[tuple[int, list[str]]]
    configs: list[DictConfig]
    cells: list[dict[str, Any]]


@dataclass
class Sweep:
    """The sweep a launch belongs to: its dir, config, parent runs and manifest."""

    dir: Path
    config: DictConfig
    parents: dict[str, str] = field(default_factory=dict)
    manifest: bool = False  # whether this launch keeps <sweep dir>/segsweep_cells.json
    batch: Batch | None = None  # every cell of the launch (those left out too)
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)  # what the backend adds per job

    def record(self, extra: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        """(Re)write the manifest: one entry per cell (job number, overrides, cell, what the backend
        recorded for it so far, e.g. its SLURM job id)."""
        for idx, more in (extra or {}).items():
            self.extra.setdefault(idx, {}).update(more)
        if not self.manifest or self.batch is None:
            return
        entries = [{"job_num": idx, "overrides": list(overrides), **cell, **self.extra.get(idx, {})}
                   for (idx, overrides), cell in zip(self.batch.jobs, self.batch.cells, strict=True)]
        sweep.write_manifest(self.dir, self.config, entries, self.parents)


class Backend(Protocol):
    """Where the jobs run: ``sweeper.pool`` (local, pool) and ``sweeper.launch_slurm`` (SLURM)."""

    #: how the launch log names it
    label: str
    #: True: cells whose run key needs no job (FINISHED, or running elsewhere) are left out before launch
    #: (a queue slot is worth saving); False: every job starts and its task decides (sweeper.task)
    leaves_out_done: bool
    #: True: a manifest is kept even without cell_info (it records launcher ids, e.g. SLURM job ids)
    records_ids: bool

    def check(self, batch: Batch) -> None:
        """Settings the backend needs, before anything is opened (a UserError: exit 2)."""

    def run(self, batch: Batch, sweep: Sweep) -> list[JobReturn]:
        """Run the jobs and wait for them; one return per job, in order."""

    def detach(self, batch: Batch, sweep: Sweep, lock_fd: int) -> list[JobReturn]:
        """Start the jobs and return at once (one SUBMITTED return per job)."""


def returned(overrides: Sequence[str], status: str, cell: Mapping[str, Any], run_id: str | None = None,
             **extra: Any) -> JobReturn:
    """A JobReturn for a job that did not run here, shaped like ``sweeper.task``'s results."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": status, "name": cell.get("name", ""), "run_id": run_id, "value": None,
                        "seed": cell.get("seed", ""), **extra}
    return ret


def left_out(batch: Batch) -> dict[int, JobReturn]:
    """The jobs whose cell needs no job, by :func:`sweeper.task.decide` on what ``cell_info`` found
    (``previous``: the status of the newest run of its key, ``alive``: its heartbeat, ``force``): SKIP
    (FINISHED) and LEAVE_ALONE (running elsewhere) are not launched; a SKIPPED return each."""
    from sweeper.task import KeyState, Outcome, decide

    skipped: dict[int, JobReturn] = {}
    for (idx, overrides), cell in zip(batch.jobs, batch.cells, strict=True):
        if not cell.get("previous"):
            continue
        outcome = decide(KeyState(previous=str(cell["previous"]), heartbeat_alive=bool(cell.get("alive")),
                                  force=bool(cell.get("force"))))
        if outcome in (Outcome.SKIP, Outcome.LEAVE_ALONE):
            why = "FINISHED" if outcome is Outcome.SKIP else "running elsewhere"
            log.info("\t#%d : %s -> %s (run %s), not launched", idx, " ".join(filter_overrides(overrides)), why,
                     cell.get("previous_run_id"))
            skipped[idx] = returned(overrides, "SKIPPED", cell, cell.get("previous_run_id"),
                                    **({} if outcome is Outcome.SKIP else {"reason": "running"}))
    return skipped


def subset(batch: Batch, keep: Iterable[int]) -> Batch:
    """The jobs of ``batch`` whose number is in ``keep``."""
    keep = set(keep)
    pos = [i for i, (idx, _) in enumerate(batch.jobs) if idx in keep]
    return Batch([batch.jobs[i] for i in pos], [batch.configs[i] for i in pos], [batch.cells[i] for i in pos])


def compose(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Batch:
    """Every job's sweep config, composed here before any job starts (a bad override fails the whole
    batch first), and its cell (``hydra.launcher.cell_info``)."""
    config = launcher.config
    loader = launcher.hydra_context.config_loader
    configs = [loader.load_sweep_config(config, list(o)) for o in job_overrides]
    describe = sweep.import_function(launcher.options.get("cell_info"), "hydra.launcher.cell_info")
    cells = [dict(describe(c) or {}) if describe is not None else {} for c in configs]
    jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    return Batch(jobs, configs, cells)


def launch(launcher: Any, backend: Backend, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """The launcher's ``launch`` for every backend (the module docstring has the steps)."""
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    batch = compose(launcher, job_overrides, initial_job_idx)
    backend.check(batch)
    if sweep.managed(job_overrides):  # trials of a search: its sweeper owns the parent run and summary
        return backend.run(batch, Sweep(sweep_dir, config))
    with sweep.sweep_lock(sweep_dir) as lock_fd:
        state = Sweep(sweep_dir, config, batch=batch,
                      manifest=bool(launcher.options.get("cell_info")) or backend.records_ids)
        tracked = [c for c in batch.cells if c.get("experiment_id")]  # cells with a store (cell_info of sweep.py)
        state.parents = sweep.open_parents(config, tracked, sweep_dir)
        done: dict[int, JobReturn] = {}
        try:
            state.record()
            done = left_out(batch) if backend.leaves_out_done else {}
            todo = subset(batch, [idx for idx, _ in batch.jobs if idx not in done])
            detach = bool(launcher.options.get("detach", False))
            if detach and todo.jobs:
                returns = {**done, **_by_job(todo, backend.detach(todo, state, lock_fd))}
                ordered = [returns[idx] for idx, _ in batch.jobs]
                sweep.report(ordered, batch.cells, detached=True)  # the parent stays RUNNING with its jobs
                return ordered
            if not todo.jobs:
                log.info("all %d cells already FINISHED: nothing launched", len(batch.jobs))
            else:
                log.info("Launching %d jobs (%s)", len(todo.jobs), backend.label)
            returns = {**done, **(_by_job(todo, backend.run(todo, state)) if todo.jobs else {})}
        except BaseException as stop:  # a signal (KILLED) or the launch failing (FAILED): never left RUNNING
            sweep.close_parents(state.parents, list(done.values()), interrupted=isinstance(stop, KeyboardInterrupt),
                                failed=not isinstance(stop, KeyboardInterrupt))
            raise
        ordered = [returns[idx] for idx, _ in batch.jobs]
        sweep.close_parents(state.parents, ordered)
        sweep.report(ordered, batch.cells)
        return ordered


def _by_job(batch: Batch, returns: Sequence[JobReturn]) -> dict[int, JobReturn]:
    return {idx: ret for (idx, _), ret in zip(batch.jobs, returns, strict=True)}


def run_and_close(backend: Backend, batch: Batch, state: Sweep) -> list[JobReturn]:
    """Run the jobs, then close the parents and print the summary (a detached process's whole sweep)."""
    returns: list[JobReturn] = []
    try:
        returns = backend.run(batch, state)
    except BaseException as stop:
        sweep.close_parents(state.parents, returns, interrupted=isinstance(stop, KeyboardInterrupt),
                            failed=not isinstance(stop, KeyboardInterrupt))
        raise
    sweep.close_parents(state.parents, returns)
    sweep.report(returns, batch.cells)
    return returns
