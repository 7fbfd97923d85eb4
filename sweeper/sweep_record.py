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
- tag ``segsweep.command``: the command line; tag ``segsweep.record_step``: the newest record's step
  (read instead of the metric's history, which grows with every record).

Costs that grow with the sweep (issue 27): a record reads the sweep's runs in one paged search (tag
``segsweep.sweep_id``), not one look-up per cell; a cell the sweep has not run looks up its key once,
kept in ``<sweep dir>/.record.json`` with the run ids the jobs returned. A job's end rewrites the record
unless the last one is younger than :data:`REFRESH_SHARE` times what it cost (so records take at most
~1/REFRESH_SHARE of a sweep's time, however many cells it has) and fewer jobs ended since than it left
open (the job that may be the last always writes one); the closing record is always written.

The pure functions build these from :class:`JobRow` rows; ``record_start``/``refresh`` write them (through ``sweeper.tracking``).
A search's parent gets the same description and counts from its trial runs (``refresh_from_children``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import sys
import time
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
STEP_TAG = "segsweep.record_step"
SWEEP_ID_TAG = "segsweep.sweep_id"
STATE = ".record.json"  # in the sweep dir: what the job ends' records share (refresh_from_manifest)
REFRESH_SHARE = 20  # a job end skips the record while the last is younger than this x its cost (seconds)


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


def record_step(client: MlflowClient, run_id: str, jobs: Sequence[JobRow], run: Any = None) -> int:
    """The step of the next record: the jobs ended so far, or one past the last step written when that
    is more (a re-run, the closing record). It only grows, so the counters chart as curves and no
    (run, key, step) is written twice. The last step is the parent's ``segsweep.record_step`` tag (one
    ``get_run``; ``run`` when read already), else (a record written before the tag) its metric's history."""
    from sweeper import tracking

    last = (run if run is not None else client.get_run(run_id)).data.tags.get(STEP_TAG, "")
    after = int(last) + 1 if last.isdigit() else tracking.next_step(client, run_id, STEP_KEY)
    return max(sum(j.status in ENDED for j in jobs), after)


def write_summary(client: MlflowClient, run_id: str, title: str, jobs: Sequence[JobRow],
                  skipped: int | None = None, run: Any = None) -> None:
    """Metrics (at :func:`record_step`), the step and the description of the parent run, in one write."""
    from sweeper import tracking

    step = record_step(client, run_id, jobs, run)
    tracking.log_metrics(client, run_id, parent_metrics(jobs, skipped), step,
                         tags={NOTE_TAG: summary_markdown(title, jobs, skipped)[:60000], STEP_TAG: str(step)})


def cell_key(cell: Mapping[str, Any]) -> str:
    """``<experiment id>|<run key>`` of a manifest cell (as :func:`sweeper.tracking.run_key_of`)."""
    return f"{cell['experiment_id']}|{cell['run_key']}"


def cell_rows(client: MlflowClient, cells: Iterable[Mapping[str, Any]], sweep_id: str = "",
              known: dict[str, str] | None = None, ran: Iterable[str] = ()) -> list[JobRow]:
    """Each manifest cell's newest run (by its run key), PENDING when it has none yet.

    The sweep's own runs (tag ``segsweep.sweep_id``) come in one paged search; a key the sweep has not
    run is looked up once and kept in ``known`` ({cell key: run id, '' for none}), the runs of ``known``
    and ``ran`` (run ids the jobs returned: a skipped cell's finished run) are read by id in batches."""
    from sweeper import tracking

    cells = list(cells)
    keyed = [c for c in cells if c.get("run_key")]
    experiments = sorted({str(c["experiment_id"]) for c in keyed})
    newest = tracking.sweep_runs(client, experiments, sweep_id) if sweep_id and experiments else {}
    known = {} if known is None else known
    outside = [cell_key(c) for c in keyed if cell_key(c) not in newest]  # keys the sweep has not run
    for cell in keyed:
        key = cell_key(cell)
        if key not in newest and key not in known:
            runs = tracking.find_runs(client, cell["experiment_id"], cell["run_key"])
            known[key] = runs[0].info.run_id if runs else ""
            newest.update(tracking.newest_by_key(runs[:1]))
    wanted = {known[key] for key in outside} | set(ran)
    have = {r.info.run_id for r in newest.values()}
    fetched = tracking.runs_by_id(client, experiments, [i for i in wanted if i and i not in have]) if experiments else []
    newest.update(tracking.newest_by_key([*newest.values(), *fetched]))
    rows = []
    for cell in cells:
        run = newest.get(cell_key(cell)) if cell.get("run_key") else None
        rows.append(job_row(run, cell.get("name", "")) if run is not None else
                    JobRow(name=cell.get("name", "(unresolved)"), seed=str(cell.get("seed", ""))))
    return rows


def refresh(client: MlflowClient, run_id: str, title: str, cells: Sequence[Mapping[str, Any]],
            skipped: int | None = None, known: dict[str, str] | None = None, ran: Iterable[str] = ()) -> list[JobRow]:
    """Rewrite a sweep parent's counts, best results and summary table from its cells' runs (those of
    its sweep, tag ``segsweep.sweep_id``, in one search: :func:`cell_rows`); the rows written."""
    run = client.get_run(run_id)
    rows = cell_rows(client, cells, run.data.tags.get(SWEEP_ID_TAG, ""), known, ran)
    write_summary(client, run_id, title, rows, skipped, run)
    return rows


def refresh_from_children(client: MlflowClient, experiment_id: str, run_id: str, title: str) -> None:
    """The same record for a search's parent, from its child (trial) runs in start order."""
    kids = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10000)
    write_summary(client, run_id, title, [job_row(r) for r in kids])


def refresh_parents(parents: Mapping[str, str], cells: Sequence[Mapping[str, Any]], title: str,
                    statuses: Sequence[str] | None = None, state: dict[str, Any] | None = None) -> int | None:
    """Refresh every parent of a sweep ({"<uri>|<experiment>": run id}) from its own cells; never raises
    (the jobs' runs are what matters). ``statuses``: the jobs' returned statuses, at the end; ``state``:
    :func:`load_state`'s (its look-ups kept). The cells left not ended (None when a parent failed)."""
    skipped = None if statuses is None else sum(s == "SKIPPED" for s in statuses)
    state = state if state is not None else new_state("")
    left: int | None = 0
    for key, run_id in parents.items():
        uri, experiment = key.split("|", 1)
        mine = [c for c in cells if c and c.get("uri") == uri and c.get("experiment") == experiment]
        try:
            rows = refresh(_client(uri), run_id, title, mine, skipped, state["known"].setdefault(uri, {}),
                           state["ran"])
            left = None if left is None else left + sum(r.status not in ENDED for r in rows)
        except Exception as error:  # noqa: BLE001 - a summary not written is retried at the next job end
            log.warning("could not update the sweep's parent run %s: %s", run_id, error)
            left = None
    return left


def new_state(sweep_id: str) -> dict[str, Any]:
    """What the records of one sweep share: ``known`` ({uri: {cell key: run id}}), ``ran`` (run ids the
    jobs returned), the last record's time (``at``), cost in seconds, cells it left open, job ends since."""
    return {"sweep_id": sweep_id, "known": {}, "ran": [], "at": None, "cost": 0.0, "open": 0, "ends": 0}


def load_state(sweep_dir: Path, sweep_id: str) -> dict[str, Any]:
    """``<sweep dir>/.record.json`` of this sweep (a new one for another sweep id or an unreadable file)."""
    try:
        state = json.loads((sweep_dir / STATE).read_text())
    except (OSError, ValueError):
        return new_state(sweep_id)
    fresh = new_state(sweep_id)
    return {**fresh, **state} if isinstance(state, dict) and state.get("sweep_id") == sweep_id else fresh


def save_state(sweep_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = sweep_dir / f"{STATE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(state))
        tmp.replace(sweep_dir / STATE)
    except OSError as error:  # the next record looks its cells up again: slower, not wrong
        log.debug("could not keep the record's state in %s: %s", sweep_dir, error)


def can_wait(state: Mapping[str, Any], now: float) -> bool:
    """Whether a job's end may leave the record as it is: the last one is younger than REFRESH_SHARE x its
    cost and fewer jobs ended since (this one included) than it left open (so this is not the last)."""
    if state["at"] is None or state["ends"] + 1 >= state["open"]:
        return False
    return now - state["at"] < REFRESH_SHARE * state["cost"]


def refresh_from_manifest(sweep_dir: Path, statuses: Sequence[str] | None = None, ran: str | None = None) -> bool:
    """Refresh the parents recorded in ``<sweep dir>/segsweep_cells.json`` (written by the launcher);
    False when there is no manifest. A job's end (``statuses`` None; ``ran``: the run id it returned)
    may skip it (:func:`can_wait`); the closing record (``statuses`` given) never does."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / MANIFEST
    if not path.is_file():
        return False
    with record_lock(sweep_dir):
        data = json.loads(path.read_text())
        state = load_state(sweep_dir, str(data.get("sweep_id", "")))
        if ran and ran not in state["ran"]:
            state["ran"].append(ran)
        if statuses is None and can_wait(state, time.time()):
            state["ends"] += 1
        else:
            start = time.perf_counter()
            left = refresh_parents(data.get("parents", {}), data.get("cells", []), data.get("sweep", "sweep"),
                                   statuses, state)
            state.update(at=None if left is None else time.time(), cost=time.perf_counter() - start,
                         open=left or 0, ends=0)
        save_state(sweep_dir, state)
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
            refresh_from_manifest(Path(str(sweep_dir)), ran=returned_run_id(job_return))


def returned_run_id(job_return: Any) -> str | None:
    """The run id a job returned (segsweep's task returns {"run_id": ...}), None when there is none."""
    try:
        value = job_return.return_value if job_return is not None else None
    except Exception:  # noqa: BLE001 - a job that raised has no return value
        return None
    run_id = value.get("run_id") if isinstance(value, Mapping) else None
    return str(run_id) if run_id else None
