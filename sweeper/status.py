"""``python -m sweeper status [SWEEP] [--watch | --markdown]``: each cell of a sweep with its state and progress.

SWEEP is a sweep dir (``hydra.sweep.dir``; the launchers write ``segsweep_cells.json`` or
``slurm_jobs.json`` there), a sweep id (tag ``segsweep.sweep_id`` of the parent run), or nothing: the
newest sweep dir under ``outputs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.callbacks import split_metric
from sweeper.launch import KIND_TAG, MANIFEST

SLURM_MANIFEST = "slurm_jobs.json"
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def _has_manifest(path: Path) -> bool:
    return (path / MANIFEST).exists() or (path / SLURM_MANIFEST).exists()


def find_sweep(sweep: str | None, root: Path = Path("outputs")) -> Path:
    """The sweep dir named by ``sweep`` (a dir or a sweep id), or the newest one under ``root``."""
    if sweep and _has_manifest(Path(sweep)):
        return Path(sweep)
    if sweep:
        from sweeper import tracking

        client = tracking.client_for(tracking.resolve_uri(None))
        for exp in client.search_experiments():
            runs = client.search_runs([exp.experiment_id], f"tags.`segsweep.sweep_id` = '{sweep}' and "
                                      f"tags.`{KIND_TAG}` = 'sweep'", max_results=1)
            if runs and runs[0].data.tags.get("segsweep.sweep_dir"):
                return Path(runs[0].data.tags["segsweep.sweep_dir"])
        raise FileNotFoundError(f"no sweep {sweep!r}: give a sweep dir (hydra.sweep.dir, with {MANIFEST} or "
                                f"{SLURM_MANIFEST}) or a sweep id (MLflow tag segsweep.sweep_id)")
    found = [p.parent for name in (MANIFEST, SLURM_MANIFEST) for p in root.glob(f"**/{name}")]
    if not found:
        raise FileNotFoundError(f"no sweep under {root.resolve()}: run `python sweep.py -m ...` first, or give "
                                f"the sweep dir: python -m sweeper status <hydra.sweep.dir>")
    return max(found, key=lambda p: max((p / n).stat().st_mtime for n in (MANIFEST, SLURM_MANIFEST)
                                        if (p / n).exists()))


def read_cells(sweep_dir: Path) -> list[dict[str, Any]]:
    """The cells the launcher recorded (name, dataset, run_key, uri, experiment, ...)."""
    if (sweep_dir / MANIFEST).exists():
        return [dict(c) for c in json.loads((sweep_dir / MANIFEST).read_text())["cells"]]
    return [dict(c) for c in json.loads((sweep_dir / SLURM_MANIFEST).read_text())]


def _latest_run(cell: Mapping[str, Any]) -> Any:
    from sweeper import tracking

    client = tracking.client_for(cell["uri"])
    exp = client.get_experiment_by_name(cell["experiment"])
    runs = tracking.find_runs(client, exp.experiment_id, cell["run_key"]) if exp is not None else []
    return runs[0] if runs else None


def progress_mIoU(metrics: Mapping[str, float], split: str | None) -> float | None:
    """The final mIoU of the split the run evaluates, else its latest epoch's (runs recorded before the
    split tag logged theirs as ``val``)."""
    split = split or "val"
    return metrics.get(split_metric(split, final=True), metrics.get(split_metric(split)))


def cell_row(cell: Mapping[str, Any]) -> dict[str, Any]:
    """One cell's state, seed, epoch/progress, mIoU so far (with the split it measured), run id and the
    first line of an error."""
    from sweeper import tracking

    row = {"name": cell.get("name", "?"), "seed": cell.get("seed", ""),
           "dataset": cell.get("dataset", cell.get("experiment", "")),
           "state": "PENDING", "epoch": "", "mIoU": "", "run id": "", "error": ""}
    if not cell.get("run_key"):
        row["state"] = "UNRESOLVED"
        return row
    run = _latest_run(cell)
    if run is None:
        return row
    status, metrics = run.info.status, run.data.metrics
    if status == "RUNNING" and not tracking.is_alive(run):
        status = "RUNNING (stale)"
    epochs = run.data.params.get("train.epochs", cell.get("epochs", "?"))
    done = int(metrics["epoch"]) if "epoch" in metrics else 0
    split = run.data.tags.get(tracking.EVAL_SPLIT_TAG)
    mIoU = progress_mIoU(metrics, split)
    row.update({"state": status, "seed": run.data.tags.get(tracking.TAG + "seed", row["seed"]),
                "epoch": f"{done}/{epochs}", "run id": run.info.run_id,
                "mIoU": "" if mIoU is None else f"{mIoU:.2f}" + (f" ({split})" if split else ""),
                "error": run.data.tags.get("segsweep.error", "")[:100]})
    return row


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


def render(sweep_dir: Path) -> tuple[str, bool]:
    """(the status text, whether every cell has ended)."""
    from tabulate import tabulate

    rows = [cell_row(c) for c in read_cells(sweep_dir)]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    head = [f"sweep {sweep_dir}", _detached_line(sweep_dir)]
    text = "\n".join(h for h in head if h) + "\n" + tabulate(rows, headers="keys") + "\n" + \
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return text, all(r["state"] in TERMINAL for r in rows)


def render_markdown(sweep_dir: Path) -> str:
    """The sweep as a markdown page: its command, where it lives, its counts and one row per cell
    (with the cell's seed, so two seeds of one name never look like one run twice)."""
    from tabulate import tabulate

    manifest = json.loads((sweep_dir / MANIFEST).read_text()) if (sweep_dir / MANIFEST).exists() else {}
    cells = read_cells(sweep_dir)
    rows = []
    for cell in cells:
        row = cell_row(cell)
        row = {"name": f"`{row.pop('name')}`", "seed": str(cell.get("seed", "")), **row}
        rows.append({k: str(v).replace("|", "\\|") for k, v in row.items()})
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    title = manifest.get("sweep") or f"sweep {sweep_dir.name}"
    head = [f"# {title}", "", f"- sweep dir: `{sweep_dir}`"]
    if manifest.get("sweep_id"):
        head.append(f"- sweep id: `{manifest['sweep_id']}`")
    head += [f"- parent run: `{run_id}` ({key.split('|', 1)[1]})" for key, run_id in manifest.get("parents", {}).items()]
    if _detached_line(sweep_dir):
        head.append(f"- {_detached_line(sweep_dir)}")
    head.append("- " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cells"))
    return "\n".join(head) + "\n\n" + tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper status", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", help="sweep dir or sweep id (default: the newest sweep)")
    parser.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (5) until every cell has ended")
    parser.add_argument("--markdown", action="store_true", help="print the sweep as a markdown page (once)")
    args = parser.parse_args(argv)
    try:
        sweep_dir = find_sweep(args.sweep)
        if args.markdown:
            print(render_markdown(sweep_dir), end="", flush=True)
            return 0
        while True:
            text, done = render(sweep_dir)
            if args.watch:
                print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + text, flush=True)
            else:
                print(text, flush=True)
            if not args.watch or done:
                return 0
            time.sleep(args.watch)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
