"""``python -m sweeper status [SWEEP] [--watch | --markdown]``: each cell of a sweep with its state and progress.

SWEEP is a sweep dir (``hydra.sweep.dir``; the launchers write ``segsweep_cells.json`` or
``slurm_jobs.json`` there), a sweep or search id (tag ``segsweep.sweep_id`` of the parent run), or
nothing: the newest sweep, searches included (the newest sweep dir under ``outputs/`` or the newest
search parent in the default store, whichever started last).

A run left RUNNING whose process is gone (no live heartbeat) while its sweep's process is gone too is
closed here, KILLED with the reason as ``segsweep.error``; ``--watch`` then ends with the final table
and exit status 1 (cells the sweep left unfinished), 0 when every cell ended in its own sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.callbacks import split_metric
from sweeper.bookkeeping import KIND_TAG, MANIFEST
from sweeper.sweep_record import clip

SLURM_MANIFEST = "slurm_jobs.json"
TERMINAL = {"FINISHED", "FAILED", "KILLED"}
PARENT_KINDS = ("sweep", "search")
#: the error column's width (cut at a word boundary, with "…"): the plain table and the markdown page
ERROR_WIDTH, MARKDOWN_ERROR_WIDTH = 100, 200
EXIT_UNFINISHED = 1  # --watch ended because the sweep's process is gone with cells it did not end


@dataclass(frozen=True)
class Search:
    """A search known by its parent run (no cell manifest): its cells are the parent's child runs."""

    uri: str
    parent: Any  # the parent run (mlflow.entities.Run)

    @property
    def sweep_dir(self) -> Path | None:
        where = self.parent.data.tags.get("segsweep.sweep_dir")
        return Path(where) if where else None


def _has_manifest(path: Path) -> bool:
    return (path / MANIFEST).exists() or (path / SLURM_MANIFEST).exists()


def _default_store() -> str | None:
    """The default tracking URI when it names a store that exists (a look-up never creates one)."""
    from sweeper import tracking

    uri = tracking.resolve_uri(None)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return None
    return uri


def _parents(uri: str, extra: str = "", kinds: Sequence[str] = PARENT_KINDS, limit: int = 1) -> list:
    """Parent runs (``segsweep.kind`` in ``kinds``) of every experiment, newest first."""
    from sweeper import tracking

    client = tracking.client_for(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    found = []
    for kind in kinds:
        found += client.search_runs(ids, f"tags.`{KIND_TAG}` = '{kind}'" + (f" and {extra}" if extra else ""),
                                    order_by=["attributes.start_time DESC"], max_results=limit)
    return sorted(found, key=lambda r: r.info.start_time or 0, reverse=True)


def find_sweep(sweep: str | None, root: Path = Path("outputs")) -> Path | Search:
    """The sweep dir named by ``sweep`` (a dir, a sweep or search id), or the newest sweep: the newest
    sweep dir under ``root`` or the newest search, whichever started last."""
    if sweep and _has_manifest(Path(sweep)):
        return Path(sweep)
    uri = _default_store()
    if sweep:
        for run in _parents(uri, f"tags.`segsweep.sweep_id` = '{sweep}'") if uri else []:
            where = run.data.tags.get("segsweep.sweep_dir")
            if where and _has_manifest(Path(where)):
                return Path(where)
            if run.data.tags.get(KIND_TAG) == "search":
                return Search(uri, run)
        raise FileNotFoundError(f"no sweep {sweep!r}: give a sweep dir (hydra.sweep.dir, with {MANIFEST} or "
                                f"{SLURM_MANIFEST}) or a sweep id (MLflow tag segsweep.sweep_id)")
    found = [p.parent for name in (MANIFEST, SLURM_MANIFEST) for p in root.glob(f"**/{name}")]
    newest = max(found, key=_started, default=None)
    searches = _parents(uri, kinds=("search",)) if uri else []
    if searches and (newest is None or searches[0].info.start_time / 1000 > _started(newest)):
        return Search(uri, searches[0])
    if newest is None:
        raise FileNotFoundError(f"no sweep under {root.resolve()}: run `python sweep.py -m ...` first, or give "
                                f"the sweep dir: python -m sweeper status <hydra.sweep.dir>")
    return newest


def _started(sweep_dir: Path) -> float:
    """When a sweep dir's sweep last started: its manifest's time (a re-run writes it again)."""
    return max((sweep_dir / n).stat().st_mtime for n in (MANIFEST, SLURM_MANIFEST) if (sweep_dir / n).exists())


def sweep_process_alive(sweep_dir: Path | None) -> bool | None:
    """Whether the process that holds (or last held) the sweep's lock is alive: from ``<sweep dir>/.lock``
    ("[detached ]process PID on HOST"); None when that cannot be told here (no lock file, another host)."""
    from sweeper import tracking

    try:
        words = (sweep_dir / ".lock").read_text().split() if sweep_dir is not None else []
    except OSError:
        return None
    if len(words) < 4 or words[-2] != "on" or not words[-3].isdigit() or words[-1] != os.uname().nodename:
        return None
    pid = int(words[-3])
    return pid == os.getpid() or tracking.pid_alive(pid)


def read_cells(sweep_dir: Path) -> list[dict[str, Any]]:
    """The cells the launcher recorded (name, dataset, run_key, uri, experiment, ...)."""
    if (sweep_dir / MANIFEST).exists():
        return [dict(c) for c in json.loads((sweep_dir / MANIFEST).read_text())["cells"]]
    return [dict(c) for c in json.loads((sweep_dir / SLURM_MANIFEST).read_text())]


def _sweep_id(sweep_dir: Path) -> str:
    """The sweep id its manifest records ('' for a legacy SLURM manifest)."""
    try:
        return str(json.loads((sweep_dir / MANIFEST).read_text()).get("sweep_id", "")) \
            if (sweep_dir / MANIFEST).exists() else ""
    except (OSError, ValueError):
        return ""


def search_cells(search: Search) -> list[tuple[dict[str, Any], Any]]:
    """(cell, run) of each trial run of a search, in start order."""
    from sweeper import tracking

    client = tracking.client_for(search.uri)
    kids = client.search_runs([search.parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{search.parent.info.run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10000)
    return [({"name": r.data.tags.get("segsweep.name", r.info.run_name or "?"), "seed": r.data.tags.get("segsweep.seed", ""),
              "dataset": r.data.tags.get("segsweep.dataset", ""), "run_key": r.data.tags.get("segsweep.run_key", "?"),
              "uri": search.uri}, r) for r in kids]


def latest_runs(cells: Sequence[Mapping[str, Any]], sweep_id: str = "") -> list[Any]:
    """Each cell's newest run by its run key (None: none yet), read per store and experiment in one paged
    search of the sweep's runs (tag ``segsweep.sweep_id``) plus one look-up per key it has not run (a
    cell found finished, a pending one): not a client and a search per cell."""
    from sweeper import tracking

    clients: dict[str, Any] = {}
    experiments: dict[tuple[str, str], str | None] = {}
    newest: dict[tuple[str, str], dict[str, Any]] = {}  # (uri, experiment) -> {experiment id|run key: run}
    out = []
    for cell in cells:
        where = (cell.get("uri", ""), cell.get("experiment", ""))
        if not cell.get("run_key"):
            out.append(None)
            continue
        if where not in experiments:
            client = clients.setdefault(where[0], tracking.client_for(where[0]))
            exp = client.get_experiment_by_name(where[1])
            experiments[where] = exp.experiment_id if exp is not None else None
            newest[where] = (tracking.sweep_runs(client, [exp.experiment_id], sweep_id)
                             if exp is not None and sweep_id else {})
        exp_id = experiments[where]
        key = f"{exp_id}|{cell['run_key']}"
        if exp_id is not None and key not in newest[where]:
            runs = tracking.find_runs(clients[where[0]], exp_id, cell["run_key"])
            newest[where][key] = runs[0] if runs else None
        out.append(newest[where].get(key) if exp_id is not None else None)
    return out


def _latest_run(cell: Mapping[str, Any]) -> Any:
    return latest_runs([cell])[0]


def close_abandoned(run: Any, uri: str) -> str:
    """Close a run its process left RUNNING (KILLED, the reason as ``segsweep.error``); the reason."""
    from sweeper import tracking

    beat = run.data.tags.get(tracking.HEARTBEAT_TAG, "none")
    reason = (f"its process is gone (last heartbeat {beat}) and so is its sweep's: closed KILLED by "
              f"`python -m sweeper status`; run the sweep again to resume it")
    tracking.close_run(tracking.client_for(uri), run.info.run_id, "KILLED", {tracking.TAG + "error": reason})
    return reason


def progress_mIoU(metrics: Mapping[str, float], split: str | None) -> float | None:
    """The final mIoU of the split the run evaluates, else its latest epoch's (runs recorded before the
    split tag logged theirs as ``val``)."""
    split = split or "val"
    return metrics.get(split_metric(split, final=True), metrics.get(split_metric(split)))


LOOK_UP = object()  # cell_row's run when not read yet: looked up by the cell's run key


def cell_row(cell: Mapping[str, Any], run: Any = LOOK_UP, sweep_gone: bool = False,
             error_width: int = ERROR_WIDTH) -> dict[str, Any]:
    """One cell's state, seed, epoch/progress, mIoU so far (with the split it measured), run id and the
    first line of an error (cut at a word boundary). ``run``: the cell's run when read (None: it has
    none), else its newest by run key is looked up; ``sweep_gone``: a RUNNING run without a live heartbeat is closed (KILLED)."""
    from sweeper import tracking

    row = {"name": cell.get("name", "?"), "seed": cell.get("seed", ""),
           "dataset": cell.get("dataset", cell.get("experiment", "")),
           "state": "PENDING", "epoch": "", "mIoU": "", "run id": "", "error": ""}
    if not cell.get("run_key"):
        row["state"] = "UNRESOLVED"
        return row
    run = _latest_run(cell) if run is LOOK_UP else run
    if run is None:
        return row
    status, metrics = run.info.status, run.data.metrics
    error = run.data.tags.get("segsweep.error", "")
    if status == "RUNNING" and not tracking.is_alive(run):
        status = "RUNNING (stale)"
        if sweep_gone:
            status, error = "KILLED", close_abandoned(run, cell["uri"])
    epochs = run.data.params.get("train.epochs", cell.get("epochs", "?"))
    done = int(metrics["epoch"]) if "epoch" in metrics else 0
    split = run.data.tags.get(tracking.EVAL_SPLIT_TAG)
    mIoU = progress_mIoU(metrics, split)
    row.update({"state": status, "seed": run.data.tags.get(tracking.TAG + "seed", row["seed"]),
                "epoch": f"{done}/{epochs}", "run id": run.info.run_id,
                "mIoU": "" if mIoU is None else f"{mIoU:.2f}" + (f" ({split})" if split else ""),
                "error": clip(error, error_width)})
    return row


def rows_of(target: Path | Search, error_width: int = ERROR_WIDTH) -> tuple[list[dict[str, Any]], bool, bool]:
    """(one row per cell, whether the sweep is over, whether it left cells unfinished). Over: every cell
    ended, or the sweep's process is gone and no cell is alive (runs it left RUNNING are closed here)."""
    sweep_dir = target.sweep_dir if isinstance(target, Search) else target
    gone = sweep_process_alive(sweep_dir) is False
    if isinstance(target, Search):
        rows = [cell_row(c, r, gone, error_width) for c, r in search_cells(target)]
    else:
        cells = read_cells(target)
        runs = latest_runs(cells, _sweep_id(target))
        rows = [cell_row(c, r, gone, error_width) for c, r in zip(cells, runs, strict=True)]
    closed = any(r["error"].startswith("its process is gone") for r in rows)
    ended = all(r["state"] in TERMINAL for r in rows)
    live = any(r["state"] == "RUNNING" for r in rows)
    unfinished = closed or (gone and not ended)
    return rows, ended or (gone and not live), unfinished


def _counts(rows: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _detached_line(sweep_dir: Path) -> str:
    pid_file = sweep_dir / "detached.pid"
    if not pid_file.exists():
        return ""
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
        alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, OSError, IndexError):
        alive = False
    return f"detached process {pid}: {'running' if alive else 'ended'} (log {sweep_dir / 'detached.log'})"


def _detached(target: Path | Search) -> str:
    sweep_dir = target.sweep_dir if isinstance(target, Search) else target
    return _detached_line(sweep_dir) if sweep_dir is not None else ""


def _title(target: Path | Search) -> str:
    if isinstance(target, Search):
        tags = target.parent.data.tags
        return f"search {tags.get('segsweep.sweep') or target.parent.info.run_name or tags.get('segsweep.sweep_id', '')}"
    return f"sweep {target}"


def render(target: Path | Search) -> tuple[str, bool]:
    """(the status text, whether the sweep is over: see :func:`rows_of`)."""
    text, over, _ = render_state(target)
    return text, over


def render_state(target: Path | Search) -> tuple[str, bool, bool]:
    """(the status text, whether the sweep is over, whether it left cells unfinished)."""
    from tabulate import tabulate

    rows, over, unfinished = rows_of(target)
    head = [_title(target), _detached(target)]
    if over and unfinished:
        head.append("the sweep's process is gone: cells it did not end are left as shown (run it again to resume)")
    text = "\n".join(h for h in head if h) + "\n" + tabulate(rows, headers="keys") + "\n" + _counts(rows)
    return text, over, unfinished


def render_markdown(target: Path | Search) -> str:
    """The sweep (or search) as a markdown page: its command, where it lives, its counts and one row per
    cell (with the cell's seed, so two seeds of one name never look like one run twice)."""
    from tabulate import tabulate

    sweep_dir = target.sweep_dir if isinstance(target, Search) else target
    manifest = (json.loads((sweep_dir / MANIFEST).read_text())
                if sweep_dir is not None and (sweep_dir / MANIFEST).exists() else {})
    rows = []
    for row in rows_of(target, MARKDOWN_ERROR_WIDTH)[0]:
        row = {"name": f"`{row.pop('name')}`", "seed": str(row.pop("seed")), **row}
        rows.append({k: str(v).replace("|", "\\|") for k, v in row.items()})
    if isinstance(target, Search):
        tags = target.parent.data.tags
        title = _title(target)
        head = [f"# {title}", ""]
        if sweep_dir is not None:
            head.append(f"- sweep dir: `{sweep_dir}`")
        head += [f"- sweep id: `{tags.get('segsweep.sweep_id', '')}`",
                 f"- parent run: `{target.parent.info.run_id}` ({target.parent.info.status})"]
    else:
        title = manifest.get("sweep") or f"sweep {sweep_dir.name}"
        head = [f"# {title}", "", f"- sweep dir: `{sweep_dir}`"]
        if manifest.get("sweep_id"):
            head.append(f"- sweep id: `{manifest['sweep_id']}`")
        head += [f"- parent run: `{run_id}` ({key.split('|', 1)[1]})"
                 for key, run_id in manifest.get("parents", {}).items()]
    if _detached(target):
        head.append(f"- {_detached(target)}")
    head.append("- " + (_counts(rows) or "no cells"))
    return "\n".join(head) + "\n\n" + tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper status", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", help="sweep dir or sweep id (default: the newest sweep)")
    parser.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (5) until every cell has ended, or the sweep's process is gone "
                        "(exit status 1 when it left cells unfinished)")
    parser.add_argument("--markdown", action="store_true", help="print the sweep as a markdown page (once)")
    args = parser.parse_args(argv)
    try:
        sweep_dir = find_sweep(args.sweep)
        if args.markdown:
            print(render_markdown(sweep_dir), end="", flush=True)
            return 0
        while True:
            text, over, unfinished = render_state(sweep_dir)
            if args.watch:
                print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + text, flush=True)
            else:
                print(text, flush=True)
            if not args.watch:
                return 0
            if over:
                return EXIT_UNFINISHED if unfinished else 0
            time.sleep(args.watch)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
