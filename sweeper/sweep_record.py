"""A sweep's parent run as its record: what it varied, how its jobs ended, what was best.

- params: each swept axis (``train.epochs`` = ``1,2``) and each fixed override (``dataset`` =
  ``camvid``) under its own key, so the parent lines up with its jobs in the runs table; ``sweep.axes``
  names the swept keys;
- metrics: ``jobs_total``, ``jobs_finished``, ``jobs_failed``, ``jobs_running``, ``jobs_pending`` (and
  ``jobs_skipped`` at the end: cells a re-run found already finished), ``best_final_val_mIoU`` /
  ``best_final_test_mIoU`` (full precision); the step is the number of jobs that have ended, or one past
  the last record's when that is more (a re-run, the closing record): it only grows, so each counter
  charts as a curve and no (run, key, step) is written twice;
- description (``mlflow.note.content``): the summary table (markdown), rewritten as jobs end;
- tag ``segsweep.command``: the command line.

The pure functions build these from :class:`JobRow` rows; ``record_start``/``refresh`` write them (through ``sweeper.tracking``).
A search's parent gets the same description and counts from its trial runs (``refresh_from_children``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser

if TYPE_CHECKING:  # MLflow is imported when a record is written, not by the launchers' import (--help)
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the cell manifest a launcher writes into the sweep dir (owned here: bookkeeping writes, this reads)
MANIFEST = "segsweep_cells.json"
COMMAND_TAG = "segsweep.command"
NOTE_TAG = "mlflow.note.content"
SPLITS = ("val", "test")
ENDED = ("FINISHED", "FAILED", "KILLED")
STEP_KEY = "jobs_total"  # every record writes it: its last step is the record's
RECORD_LOCK = ".record.lock"  # in the sweep dir: one record written at a time (parallel jobs end together)


@dataclass(frozen=True)
class JobRow:
    """One job (cell or trial) of a sweep, a row of its parent's record, as its newest MLflow run tells
    it (PENDING: no run yet)."""

    name: str
    seed: str = ""
    status: str = "PENDING"
    run_id: str = ""
    val: float | None = None  # final_val_mIoU
    test: float | None = None  # final_test_mIoU
    error: str = ""




# --------------------------------------------------------------------------- pure decisions


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(swept axes {key: "v1,v2,..."}, fixed overrides {key: value as typed}) of a sweep command."""
    axes, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.is_sweep_override():
            axes[key] = ",".join(str(v) for v in override.sweep_string_iterator())
        elif not override.is_delete():
            fixed[key] = override.input_line.split("=", 1)[1]
    return axes, fixed


def parent_params(overrides: Sequence[str]) -> dict[str, str]:
    """The parent run's params: every axis and fixed override under its key, plus ``sweep.axes``."""
    axes, fixed = split_overrides(overrides)
    return {**fixed, **axes, "sweep.axes": ",".join(axes) or "(none)"}


def counts(jobs: Sequence[JobRow], skipped: int | None = None) -> dict[str, int]:
    """Jobs per state (``jobs_*``); ``jobs_skipped`` only when the launcher told it (at the end)."""
    out = {"jobs_total": len(jobs)}
    for state in ("FINISHED", "FAILED", "KILLED", "RUNNING", "PENDING"):
        out[f"jobs_{state.lower()}"] = sum(j.status == state for j in jobs)
    if skipped is not None:
        out["jobs_skipped"] = skipped
    return out


def best(jobs: Sequence[JobRow], split: str) -> JobRow | None:
    """The FINISHED job with the best final mIoU on ``split`` (None when none has one)."""
    done = [j for j in jobs if j.status == "FINISHED" and getattr(j, split) is not None]
    return max(done, key=lambda j: getattr(j, split)) if done else None


def parent_metrics(jobs: Sequence[JobRow], skipped: int | None = None) -> dict[str, float]:
    """Counts and ``best_final_<split>_mIoU`` of each split some job reported."""
    metrics: dict[str, float] = {k: float(v) for k, v in counts(jobs, skipped).items()}
    for split in SPLITS:
        top = best(jobs, split)
        if top is not None:
            metrics[f"best_final_{split}_mIoU"] = float(getattr(top, split))  # full precision: shown rounded
    return metrics


def clip(text: str, width: int) -> str:
    """The first line of ``text``, cut at a word boundary to at most ``width`` characters with " …"
    (a first word longer than that is kept whole: never cut mid-word)."""
    lines = text.strip().splitlines()
    line = lines[0].rstrip() if lines else ""
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width - 1)
    if cut <= 0:
        cut = line.find(" ")
    return line if cut <= 0 else line[:cut].rstrip() + " …"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(title: str, jobs: Sequence[JobRow], skipped: int | None = None) -> str:
    """The parent's description: a line of counts and the best result, then one table row per job."""
    c = counts(jobs, skipped)
    ended = sum(c[f"jobs_{s.lower()}"] for s in ENDED)
    parts = [f"{c['jobs_finished']} finished", f"{c['jobs_failed']} failed"]
    parts += [f"{c[k]} {k[5:]}" for k in ("jobs_killed", "jobs_running", "jobs_pending") if c[k]]
    if skipped:
        parts.append(f"{skipped} skipped (already finished)")
    lines = [f"**{_cell(title)}**", "", f"{ended}/{len(jobs)} jobs ended: {', '.join(parts)}."]
    for split in SPLITS:
        top = best(jobs, split)
        if top is not None:
            lines.append(f"Best final {split} mIoU: **{_num(getattr(top, split))}** (`{top.name}`, seed {top.seed}).")
    splits = [s for s in SPLITS if any(getattr(j, s) is not None for j in jobs)] or ["val"]
    head = ["job", "name", "seed", "status", *(f"final {s} mIoU" for s in splits), "run", "error"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, j in enumerate(jobs):
        row = [str(i), f"`{j.name}`", j.seed, j.status, *(_num(getattr(j, s)) for s in splits), j.run_id[:8],
               clip(j.error, 120)]
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines)


def job_row(run: Any, name: str = "") -> JobRow:
    """The JobRow of an MLflow run (a ``Run`` entity)."""
    m, t = run.data.metrics, run.data.tags
    return JobRow(name=t.get("segsweep.name") or name or run.info.run_name or "", seed=t.get("segsweep.seed", ""),
                    status=run.info.status, run_id=run.info.run_id, val=m.get("final_val_mIoU"),
                    test=m.get("final_test_mIoU"), error=t.get("segsweep.error", ""))


# --------------------------------------------------------------------------- MLflow writes


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed (``python sweep.py -m ...``)."""
    return shlex.join(["python", *(sys.argv if argv is None else argv)])


def cells_of(cells: Iterable[Mapping[str, Any]], like: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The cells that share ``like``'s store and experiment (one parent run's jobs)."""
    return [c for c in cells if c and (c.get("uri"), c.get("experiment")) == (like.get("uri"), like.get("experiment"))]


def _client(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def record_start(client: MlflowClient, run_id: str, overrides: Sequence[str], title: str,
                 cells: Sequence[Mapping[str, Any]], argv: Sequence[str] | None = None) -> None:
    """Axes and fixed overrides as params (those not logged yet: a re-run re-opens the same parent with
    the same command), the command line as a tag, and the first summary (every job pending or as its
    newest run left it). Never raises: the sweep runs without its record rather than not at all."""
    from sweeper import tracking

    try:
        tracking.log_new_params(client, run_id, parent_params(overrides))
        tracking.set_tags(client, run_id, {COMMAND_TAG: command_line(argv)[:5000]})
        refresh(client, run_id, title, cells)
    except Exception as error:  # noqa: BLE001 - see above
        log.warning("could not record the sweep on its parent run %s: %s", run_id, error)


def record_step(client: MlflowClient, run_id: str, jobs: Sequence[JobRow]) -> int:
    """The step of the next record: the jobs ended so far, or one past the last step written when that
    is more (a re-run, the closing record). It only grows, so the counters chart as curves and no
    (run, key, step) is written twice."""
    from sweeper import tracking

    return max(sum(j.status in ENDED for j in jobs), tracking.next_step(client, run_id, STEP_KEY))


def write_summary(client: MlflowClient, run_id: str, title: str, jobs: Sequence[JobRow],
                  skipped: int | None = None) -> None:
    """Metrics (at :func:`record_step`) and the description of the parent run, in one write."""
    from sweeper import tracking

    tracking.log_metrics(client, run_id, parent_metrics(jobs, skipped), record_step(client, run_id, jobs),
                         tags={NOTE_TAG: summary_markdown(title, jobs, skipped)[:60000]})


def cell_rows(client: MlflowClient, cells: Iterable[Mapping[str, Any]]) -> list[JobRow]:
    """Each manifest cell's newest run (by its run key), PENDING when it has none yet."""
    from sweeper import tracking

    rows = []
    for cell in cells:
        runs = tracking.find_runs(client, cell["experiment_id"], cell["run_key"]) if cell.get("run_key") else []
        rows.append(job_row(runs[0], cell.get("name", "")) if runs else
                    JobRow(name=cell.get("name", "(unresolved)"), seed=str(cell.get("seed", ""))))
    return rows


def refresh(client: MlflowClient, run_id: str, title: str, cells: Sequence[Mapping[str, Any]],
            skipped: int | None = None) -> None:
    """Rewrite a sweep parent's counts, best results and summary table from its cells' runs."""
    write_summary(client, run_id, title, cell_rows(client, cells), skipped)


def refresh_from_children(client: MlflowClient, experiment_id: str, run_id: str, title: str) -> None:
    """The same record for a search's parent, from its child (trial) runs in start order."""
    kids = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10000)
    write_summary(client, run_id, title, [job_row(r) for r in kids])


def refresh_parents(parents: Mapping[str, str], cells: Sequence[Mapping[str, Any]], title: str,
                    statuses: Sequence[str] | None = None) -> None:
    """Refresh every parent of a sweep ({"<uri>|<experiment>": run id}) from its own cells; never raises
    (the jobs' runs are what matters). ``statuses``: the jobs' returned statuses, at the end."""
    skipped = None if statuses is None else sum(s == "SKIPPED" for s in statuses)
    for key, run_id in parents.items():
        uri, experiment = key.split("|", 1)
        mine = [c for c in cells if c and c.get("uri") == uri and c.get("experiment") == experiment]
        try:
            refresh(_client(uri), run_id, title, mine, skipped)
        except Exception as error:  # noqa: BLE001 - a summary not written is retried at the next job end
            log.warning("could not update the sweep's parent run %s: %s", run_id, error)


def refresh_from_manifest(sweep_dir: Path, statuses: Sequence[str] | None = None) -> bool:
    """Refresh the parents recorded in ``<sweep dir>/segsweep_cells.json`` (written by the launcher);
    False when there is no manifest."""
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    with record_lock(Path(sweep_dir)):
        refresh_parents(data.get("parents", {}), data.get("cells", []), data.get("sweep", "sweep"), statuses)
    return True


@contextlib.contextmanager
def record_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``<sweep dir>/.record.lock`` while a record is read and written: jobs that end at once (a
    pool's workers, SLURM tasks) write one after the other, each at its own step. Without a usable
    file system lock the record is written unlocked (it never stops a sweep)."""
    try:
        handle = (sweep_dir / RECORD_LOCK).open("a+")
    except OSError:
        yield
        return
    with handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def close_record(parents: Mapping[str, str], statuses: Sequence[str]) -> None:
    """The final record of each parent before it is closed: from the manifest of its sweep dir (tag
    ``segsweep.sweep_dir``), else from its child runs (a launcher without a manifest)."""
    done: set[str] = set()
    for key, run_id in parents.items():
        if run_id in done:
            continue
        uri = key.split("|", 1)[0]
        try:
            client = _client(uri)
            run = client.get_run(run_id)
            sweep_dir = run.data.tags.get("segsweep.sweep_dir")
            if sweep_dir and refresh_from_manifest(Path(sweep_dir), statuses):
                done.update(parents.values())  # the manifest holds every parent of the sweep
                continue
            title = run.data.tags.get("segsweep.sweep", run.info.run_name or "sweep")
            refresh_from_children(client, run.info.experiment_id, run_id, title)
        except Exception as error:  # noqa: BLE001 - closing the parent matters more than its summary
            log.warning("could not write the summary of the sweep's parent run %s: %s", run_id, error)


try:  # Hydra's callback base (always there when a sweep runs)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class RecordJobEnd(_HydraCallback):
    """Hydra callback: when a job of a sweep ends (in whichever process runs it), rewrite its parent's
    counts and summary table."""

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        if not str(OmegaConf.select(config, "hydra.mode", default="")).endswith("MULTIRUN"):
            return
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir", default=None)
        if sweep_dir:
            refresh_from_manifest(Path(str(sweep_dir)))
