"""Import the notes' history into MLflow: one FINISHED run per notes table row (``source=notes``).

The only module of ``results`` that writes MLflow. Idempotent: each row gets a content key
(dataset, name, cells, occurrence) and rows whose key is already in the store are skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from results.notes import NotesRow, SkippedTable, read_notes


@dataclass
class ImportReport:
    """What an import did."""

    created: int = 0
    existing: int = 0
    unparsed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, name, why)
    skipped_tables: list[SkippedTable] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"imported {self.created} run(s), {self.existing} already present"]
        lines += [f"  line {ln}: kept raw name {n!r} ({why})" for ln, n, why in self.unparsed]
        lines += [f"  line {t.line}: table under {t.section!r} skipped ({t.reason})" for t in self.skipped_tables]
        return "\n".join(lines)


def canonical_name(raw: str) -> tuple[str, str | None]:
    """(canonical name, None) when the codec understands ``raw``, else (raw, why not)."""
    try:
        from sweeper.naming import canonical
    except ImportError as exc:  # the codec is not importable: keep every raw name, say why
        return raw, f"name codec unavailable: {exc}"
    try:
        return canonical(raw), None
    except ValueError as exc:
        return raw, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def row_key(row: NotesRow, occurrence: int) -> str:
    """Stable identity of a notes row (independent of its line number)."""
    text = "\0".join([row.dataset, row.name, row.params_raw, row.cell.raw, str(occurrence)])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _tags(
    row: NotesRow, order: int, key: str, source_file: str, codec: bool
) -> tuple[dict[str, str], str | None]:
    name, why = canonical_name(row.name) if codec else (row.name, None)
    c = row.cell
    tags = {
        "segsweep.source": "notes",
        "segsweep.name": name,
        "segsweep.dataset": row.dataset,
        "segsweep.notes_name": row.name,
        "segsweep.notes_cell": c.raw,
        "segsweep.notes_params_cell": row.params_raw,
        "segsweep.notes_metric": row.metric,
        "segsweep.notes_section": row.section,
        "segsweep.notes_file": source_file,
        "segsweep.notes_line": str(row.line),
        "segsweep.notes_order": str(order),
        "segsweep.notes_key": key,
    }
    if why:
        tags["segsweep.name_error"] = why
    if c.remark:
        tags["segsweep.notes_remark"] = c.remark
    if c.approx:
        tags["segsweep.notes_approx"] = "true"
    if c.epoch is not None:
        tags["segsweep.notes_epoch"] = str(c.epoch)
    return tags, why


def _metrics(row: NotesRow, ts: int) -> list:
    from mlflow.entities import Metric

    c = row.cell
    out = []
    if row.params is not None:
        out.append(Metric("params_M", row.params, ts, 0))
    for kind, value in (("val", c.val), ("test", c.test)):
        if value is None:
            continue
        if c.epoch is not None and kind == row.metric:
            out.append(Metric(f"{kind}_mIoU", value, ts, c.epoch))  # a mid-training reading
        else:
            out.append(Metric("final_val_mIoU" if kind == "val" else "test_mIoU", value, ts, 0))
    out += [Metric(f"notes_{k}_mIoU", v, ts, 0) for k, v in c.extras.items()]
    return out


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp is not None else client.create_experiment(name)


def _existing_keys(client, exp_ids: list[str]) -> set[str]:
    runs = client.search_runs(exp_ids, "tags.`segsweep.source` = 'notes'", max_results=50000)
    return {r.data.tags.get("segsweep.notes_key", "") for r in runs}


def import_notes(notes: Path, tracking_uri: str, dry_run: bool = False, codec: bool = True) -> ImportReport:
    """Turn every row of every results table of ``notes`` into a FINISHED MLflow run.

    Each name goes through the codec (``sweeper.naming.canonical``, ~0.3 s a name: Hydra composes it);
    ``codec=False`` keeps the raw names as ``segsweep.name`` (fast; for tests and dry runs).
    """
    from mlflow import MlflowClient

    rows, skipped = read_notes(Path(notes))
    report = ImportReport(skipped_tables=skipped)
    client = MlflowClient(tracking_uri)
    exp_ids = {ds: _experiment_id(client, ds) for ds in sorted({r.dataset for r in rows})} if not dry_run else {}
    existing = _existing_keys(client, list(exp_ids.values())) if exp_ids else set()
    seen: Counter[tuple] = Counter()
    base = int(time.time() * 1000)
    for order, row in enumerate(rows):
        ident = (row.dataset, row.name, row.params_raw, row.cell.raw)
        seen[ident] += 1
        key = row_key(row, seen[ident])
        tags, why = _tags(row, order, key, Path(notes).name, codec)
        if why:
            report.unparsed.append((row.line, row.name, why))
        if key in existing:
            report.existing += 1
            continue
        if dry_run:
            report.created += 1
            continue
        ts = base + order  # keeps the notes' order in start times
        run = client.create_run(exp_ids[row.dataset], start_time=ts, tags=tags, run_name=row.name)
        client.log_batch(run.info.run_id, metrics=_metrics(row, ts))
        client.set_terminated(run.info.run_id, "FINISHED", end_time=ts)
        report.created += 1
    return report
