"""The sweep's bookkeeping around the jobs: the sweep lock, one MLflow parent run per sweep, the
cell manifest, the summary table.

Used by segsweep's launchers (``hydra_plugins.segsweep_pool``, ``hydra_plugins.segsweep_slurm``):
with ``hydra.launcher.cell_info`` set (segsweep's ``launcher=`` group sets :func:`cell_info`), before
any job starts they create the store and experiments, open (or re-open, on a re-run) the parent run
and write ``<sweep dir>/segsweep_cells.json``; the jobs find their parent through the environment
(``sweeper.task.sweep_tags``). Without it (any other Hydra app) nothing of the app's config is read.
At the end the summary table is printed and :class:`SweepSummary` makes the command exit non-zero
when a job failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sweeper import sweep_record
from sweeper.errors import SettingsError
from sweeper.resolvers import own_overrides, sweep_id_of

log = logging.getLogger(__name__)

MANIFEST = sweep_record.MANIFEST
KIND_TAG = "segsweep.kind"
#: returns of the last sweep launched in this process (read by SweepSummary)
LAST: dict[str, Any] = {"returns": [], "detached": False, "managed": False}


def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's own overrides (the command line without hydra.*, launcher.* and +force)."""
    return own_overrides(OmegaConf.select(config, "hydra.overrides.task", default=None))


def import_function(dotted: str | None, option: str) -> Callable[[DictConfig], Any] | None:
    """The function a launcher option names by its dotted path (None for null)."""
    if not dotted:
        return None
    module, _, name = str(dotted).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise SettingsError(f"{option}={dotted!r} cannot be imported ({error}): give the dotted path of a "
                         f"function cfg -> dict (sweeper.bookkeeping.cell_info), or null") from error


def managed(job_overrides: Sequence[Sequence[str]]) -> bool:
    """Whether the jobs are trials of a search (they carry ``sweeper.optuna_trial.TRIAL_ENV`` in
    ``hydra.job.env_set``): the search holds the lock and owns the parent run and summary."""
    from sweeper.optuna_trial import is_trial_override

    found = any(is_trial_override(o) for job in job_overrides for o in job)
    LAST["managed"] = LAST["managed"] or found
    return found


def sweep_id(config: DictConfig) -> str:
    """A stable id of the sweep command: a re-run of the same command re-opens the same parent run."""
    return sweep_id_of(OmegaConf.select(config, "hydra.overrides.task", default=None))


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[int]:
    """Hold ``<sweep dir>/.lock`` while this process runs the sweep: the same command started again
    meanwhile (same sweep dir) exits 2 with one line naming the holder, instead of running twice.
    Yields the lock's file descriptor: a detached process that inherits it holds the lock on. The
    lock goes with the last process holding it (a killed sweep leaves none behind)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            print(f"error: this sweep is already running ({holder}; sweep dir {sweep_dir}): follow it with "
                  f"`python -m sweeper status {sweep_dir}`, or run it again when it has ended", file=sys.stderr)
            raise SystemExit(2) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        yield handle.fileno()  # closing it (not LOCK_UN) keeps the lock for a process that inherited it


#: MLflow's run-name column (varchar(250) on PostgreSQL; sqlite does not enforce it)
RUN_NAME_MAX = 250


def sweep_name(config: DictConfig) -> str:
    """The parent run's name: its overrides, cut at a word to fit MLflow's run-name column (the whole
    command stays in tag ``segsweep.command``)."""
    from sweeper.sweep_record import clip

    return clip("sweep " + (" ".join(sweep_overrides(config)) or "(defaults)"), RUN_NAME_MAX)[:RUN_NAME_MAX]


def cell_info(cfg: DictConfig) -> dict[str, Any]:
    """name, dataset, run_key, uri, experiment (+ experiment_id) of one composed cell; {} when the
    cell does not resolve (its job records the error). Creates store and experiment (once, here)."""
    from sweeper import launch_dir, naming, tracking
    from sweeper.task import resolve_config

    overrides = list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    try:
        cfg = resolve_config(cfg, overrides)
        name, config_hash = naming.compose(cfg), naming.config_hash(cfg)
    except Exception:  # noqa: BLE001 - the job reports it, with its traceback, in MLflow
        return {}
    uri = tracking.tracking_uri(cfg, launch_dir())
    experiment = str(cfg.tracking.experiment)
    return {"name": name, "dataset": str(cfg.dataset.name), "run_key": naming.run_key(name, config_hash),
            "uri": uri, "experiment": experiment, "experiment_id": tracking.ensure_experiment(uri, experiment),
            "epochs": int(cfg.train.epochs), "seed": cfg.seed}


def open_parents(config: DictConfig, cells: Sequence[Mapping[str, Any]], sweep_dir: Path) -> dict[str, str]:
    """Open or re-open one parent run per (store, experiment) of the cells; set the jobs' environment.

    Returns {"<uri>|<experiment>": parent run id}.
    """
    from sweeper import PARENTS_ENV, SWEEP_ID_ENV, tracking

    if not any(cells):  # no bookkeeping (not segsweep's app): no store, no environment
        return {}
    sid, name = sweep_id(config), sweep_name(config)
    parents: dict[str, str] = {}
    for cell in cells:
        if not cell or f"{cell['uri']}|{cell['experiment']}" in parents:
            continue
        client = tracking.client_for(cell["uri"])
        found = client.search_runs([cell["experiment_id"]], filter_string=(
            f"tags.`{KIND_TAG}` = 'sweep' and tags.`{tracking.TAG}sweep_id` = '{sid}'"), max_results=1)
        where = {tracking.TAG + "sweep_dir": str(sweep_dir)}
        if found:
            run_id = found[0].info.run_id
            tracking.reopen_run(client, run_id, where)
        else:
            run_id = tracking.open_parent_run(client, cell["experiment_id"], {
                KIND_TAG: "sweep", tracking.TAG + "sweep_id": sid, tracking.TAG + "sweep": name,
                "mlflow.runName": name, **where}, name)
        sweep_record.record_start(client, run_id, sweep_overrides(config), name, sweep_record.cells_of(cells, cell))
        parents[f"{cell['uri']}|{cell['experiment']}"] = run_id
    os.environ[PARENTS_ENV] = json.dumps(parents)
    os.environ[SWEEP_ID_ENV] = sid
    return parents


def write_manifest(sweep_dir: Path, config: DictConfig, cells: Sequence[Mapping[str, Any]],
                   parents: Mapping[str, str]) -> Path:
    """Write ``<sweep dir>/segsweep_cells.json``, the one manifest of every launcher: the sweep's id,
    title and parent runs, and one entry per cell (``job_num``, ``overrides``, what ``cell_info``
    found, what the launcher recorded: ``slurm_job_id``, ``stdout``, ``stderr``).

    A re-run of the same sweep (same sweep id) merges by job number: a cell it did not launch again
    keeps what was recorded for it (its SLURM job id), cells of other batches stay listed.
    """
    path = sweep_dir / MANIFEST
    sid = sweep_id(config)
    before = read_manifest(sweep_dir)
    known = {c.get("job_num"): dict(c) for c in before.get("cells", [])} if before.get("sweep_id") == sid else {}
    for cell in cells:
        old = known.get(cell.get("job_num"), {})
        same = old.get("overrides") == cell.get("overrides")
        known[cell.get("job_num")] = {**(old if same else {}), **cell}
    ordered = [known[k] for k in sorted(known, key=lambda k: (k is None, k if k is not None else 0))]
    data = {"sweep_id": sid, "sweep": sweep_name(config), "parents": dict(parents), "cells": ordered}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


#: the manifest's name before launchers shared one format (a list of cells, SLURM sweeps only)
LEGACY_MANIFEST = "slurm_jobs.json"


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    """What :func:`write_manifest` wrote for a sweep dir (``{}`` if nothing); an older SLURM sweep's
    ``slurm_jobs.json`` reads as ``{"cells": [...]}``."""
    path, legacy = Path(sweep_dir) / MANIFEST, Path(sweep_dir) / LEGACY_MANIFEST
    if path.is_file():
        return json.loads(path.read_text())
    return {"cells": json.loads(legacy.read_text())} if legacy.is_file() else {}


def manifest_cells(sweep_dir: Path) -> list[dict[str, Any]]:
    """The cells of a sweep dir's manifest (empty if none)."""
    return [dict(c) for c in read_manifest(sweep_dir).get("cells", [])]


def result(ret: JobReturn) -> dict[str, Any]:
    """The task's result dict of a JobReturn (a job that raised outside the task counts as FAILED)."""
    if ret.status == JobStatus.COMPLETED:  # a task that is not segsweep's returns a plain value
        value = ret._return_value
        return value if isinstance(value, dict) else {"status": "FINISHED", "name": "", "run_id": None,
                                                      "value": value}
    from sweeper.tracking import error_line

    return {"status": "FAILED", "name": "", "run_id": None, "value": None, "error": error_line(ret._return_value)}


def close_parents(parents: Mapping[str, str], returns: Sequence[JobReturn], interrupted: bool = False,
                  failed: bool = False) -> None:
    from sweeper import tracking

    failed = failed or any(result(r).get("status") == "FAILED" for r in returns)
    status = "KILLED" if interrupted else "FAILED" if failed else "FINISHED"
    sweep_record.close_record(parents, [str(result(r).get("status")) for r in returns])  # counts, summary
    for key, run_id in parents.items():
        try:
            tracking.close_run(tracking.client_for(key.split("|", 1)[0]), run_id, status)
        except Exception as error:  # noqa: BLE001 - the jobs' own runs are what matters
            log.warning("could not close the sweep's parent run %s: %s", run_id, error)


def summary(returns: Sequence[JobReturn], cells: Sequence[Mapping[str, Any]] = ()) -> str:
    """The sweep's summary table (one row per job) and a count line."""
    from tabulate import tabulate

    rows, counts = [], {}
    for i, ret in enumerate(returns):
        res = result(ret)
        status = str(res.get("status"))
        counts[status] = counts.get(status, 0) + 1
        name = res.get("name") or (cells[i].get("name") if i < len(cells) and cells[i] else "") or \
            " ".join(ret.overrides or [])
        note = res.get("error") or res.get("reason") or ""
        value, seed = res.get("value"), res.get("seed", cells[i].get("seed", "") if i < len(cells) and cells[i] else "")
        score = format_value(value) + (f" ({res['split']})" if res.get("split") and value is not None else "")
        rows.append([i, status, name, seed, res.get("run_id") or "", score, note])
    value_header = "mIoU" if any(cells) else "value"  # segsweep's jobs return their final mIoU (its split)
    table = tabulate(rows, headers=["job", "status", "name", "seed", "run id", value_header, "note"])
    return table + "\n" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))


def format_value(value: Any) -> str:
    """A job's value in the summary: numbers with two decimals, anything else as text (one line)."""
    if value is None:
        return ""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.2f}"
    text = str(value).strip().splitlines()
    return (text[0][:60] + (" ..." if len(text) > 1 or len(text[0]) > 60 else "")) if text else ""


def report(returns: Sequence[JobReturn], cells: Sequence[Mapping[str, Any]] = (), detached: bool = False) -> None:
    """Print the summary table and remember the returns for :class:`SweepSummary`."""
    LAST["returns"], LAST["detached"] = list(returns), detached
    if not detached:
        print("\n[segsweep] sweep summary\n" + summary(returns, cells), flush=True)


def any_failed(returns: Sequence[JobReturn]) -> bool:
    return any(result(r).get("status") == "FAILED" for r in returns)


try:  # Hydra's callback base (always there when a sweep runs)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class FixSweepDir(_HydraCallback):
    """Hydra callback: resolve ``hydra.sweep.dir`` once, in the sweep's own config, and hand it to
    every job as a ``hydra.sweep.dir=...`` override (Hydra composes each job from
    ``hydra.overrides.hydra`` plus the job's overrides, whatever the sweeper or launcher), so an
    interpolation of the sweep's overrides (``${sweep_dirname:...}``) means one dir for all jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # (a launcher that cannot run here is the launcher's to report: Hydra turns a callback's error
        # into a warning and goes on, see sweeper.launch_slurm.check_tools)
        given = list(OmegaConf.select(config, "hydra.overrides.hydra", default=None) or [])
        if any(str(o).lstrip("+~").startswith("hydra.sweep.dir=") for o in given):
            return  # set on the command line: already one literal dir for all
        sweep_dir = str(config.hydra.sweep.dir)
        if "'" in sweep_dir:
            raise SettingsError(f"the sweep dir {sweep_dir!r} contains a quote: set hydra.sweep.dir=<dir without quotes>")
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{sweep_dir}'")
            config.hydra.sweep.dir = sweep_dir


class SweepSummary(_HydraCallback):
    """Hydra callback: a multirun with a FAILED job exits with status 1 (after the other callbacks).

    Also collects the returns of launchers that run jobs in this process (Hydra's basic launcher)
    and prints their summary.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self._seen = enabled, []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self._seen.append(job_return)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if LAST["managed"]:  # a search: its sweeper reports trials and decides the exit status
            return
        returns = LAST["returns"]
        if not returns and self._seen:
            report(self._seen)
            returns = self._seen
        if self.enabled and not LAST["detached"] and any_failed(returns):
            raise SystemExit(1)
