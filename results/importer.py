"""Import the notes' history into MLflow: one FINISHED run per notes table row (``source=notes``).

This module parses and decides; the writes go through ``sweeper.tracking`` (the one writer of MLflow).
Idempotent: each row gets a content key (dataset, name, cells, occurrence) and rows whose key is
already in the store are skipped. Start times are spaced a minute apart in file order (MLflow sorts
the history as the notes list it); each run lasts 0 ms and is tagged ``segsweep.imported``.
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
    dry_run: bool = False
    unparsed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, name, why)
    skipped_tables: list[SkippedTable] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        lines = [f"{verb} {self.created} run(s), {self.existing} already present"]
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
        "segsweep.notes_group": row.group,
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


SPACING_MS = 60_000  # start times of imported rows, one minute apart in file order


def metrics_of(row: NotesRow) -> dict[str, tuple[float, int]]:
    """{metric key: (value, step)} of a notes row, named by the split the notes measured."""
    c = row.cell
    out: dict[str, tuple[float, int]] = {}
    if row.params is not None:
        out["params_M"] = (row.params, 0)
    for kind, value in (("val", c.val), ("test", c.test)):
        if value is None:
            continue
        if c.epoch is not None and kind == row.metric:
            out[f"{kind}_mIoU"] = (value, c.epoch)  # a mid-training reading
        else:
            out[f"final_{kind}_mIoU"] = (value, 0)
    out.update({f"notes_{k}_mIoU": (v, 0) for k, v in c.extras.items()})
    return out


def _existing_keys(client, names: list[str]) -> set[str]:
    """Row keys already imported into the experiments ``names`` (those that exist; creates none)."""
    exps = [e.experiment_id for n in names if (e := client.get_experiment_by_name(n)) is not None]
    if not exps:
        return set()
    runs = client.search_runs(exps, "tags.`segsweep.source` = 'notes'", max_results=50000)
    return {r.data.tags.get("segsweep.notes_key", "") for r in runs}


def import_notes(notes: Path, tracking_uri: str, dry_run: bool = False, codec: bool = True) -> ImportReport:
    """Turn every row of every results table of ``notes`` into a FINISHED MLflow run.

    Each name goes through the codec (``sweeper.naming.canonical``, ~0.3 s a name: Hydra composes it);
    ``codec=False`` keeps the raw names as ``segsweep.name`` (fast; for tests and dry runs).
    ``dry_run`` reads the store (to count what is already there) and writes nothing.
    """
    from mlflow import MlflowClient

    from sweeper import tracking

    rows, skipped = read_notes(Path(notes))
    report = ImportReport(skipped_tables=skipped, dry_run=dry_run)
    client = MlflowClient(tracking_uri)
    datasets = sorted({r.dataset for r in rows})
    existing = _existing_keys(client, datasets)
    exp_ids: dict[str, str] = {}
    seen: Counter[tuple] = Counter()
    base = int(time.time() * 1000) - SPACING_MS * len(rows)  # the last row starts about now
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
        report.created += 1
        if dry_run:
            continue
        if row.dataset not in exp_ids:
            exp_ids[row.dataset] = tracking.history_experiment(client, row.dataset)
        tracking.log_history_run(client, exp_ids[row.dataset], row.name, tags, metrics_of(row),
                                 base + SPACING_MS * order)
    return report
