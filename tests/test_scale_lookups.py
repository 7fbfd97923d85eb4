"""segsweep's own look-ups grow with the sweep, not with its square (issue 27): a record of N cells is a
fixed number of MLflow searches, a job's end reads no metric history, the last job's end always
writes a complete record, and `sweeper status` reads a sweep in batches with the rows it showed when
it looked each cell up alone. Real sqlite stores; the clients count their calls."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweeper import status, sweep_record, tracking
from tests.checks import duplicate_rows
from tests.test_postgres import postgres_store  # noqa: F401 - the fixture

SID = "sweep-abc"


class CountingClient(MlflowClient):
    """A real client that counts the reads a record or a status makes."""

    calls: Counter = Counter()

    def search_runs(self, *args, **kwargs):
        CountingClient.calls["search_runs"] += 1
        return super().search_runs(*args, **kwargs)

    def get_metric_history(self, *args, **kwargs):
        CountingClient.calls["get_metric_history"] += 1
        return super().get_metric_history(*args, **kwargs)


@pytest.fixture()
def counting(store: str, monkeypatch: pytest.MonkeyPatch) -> Counter:
    CountingClient.calls = Counter()
    monkeypatch.setattr(sweep_record, "_client", CountingClient)
    monkeypatch.setattr(tracking, "client_for", CountingClient)
    return CountingClient.calls


def _sweep(store: str, n: int, tmp_path: Path, outside: int = 0) -> tuple[str, list[dict], Path]:
    """A parent and ``n`` cells: the first ``outside`` have a FINISHED run from before the sweep (no
    sweep id), the next half of the rest ran in this sweep (FINISHED), the others are pending."""
    exp = tracking.ensure_experiment(store, "synthetic")
    client = MlflowClient(store)
    parent = client.create_run(exp, tags={"segsweep.kind": "sweep", sweep_record.SWEEP_ID_TAG: SID}).info.run_id
    cells = [{"name": f"n{i}", "run_key": f"k{i}", "uri": store, "experiment": "synthetic", "experiment_id": exp,
              "seed": i} for i in range(n)]
    for i in range(outside + (n - outside) // 2):
        tags = {"segsweep.run_key": f"k{i}", "segsweep.name": f"n{i}", "segsweep.seed": str(i)}
        if i >= outside:
            tags[sweep_record.SWEEP_ID_TAG] = SID
        run_id = client.create_run(exp, tags=tags).info.run_id
        client.log_batch(run_id, metrics=[Metric("final_val_mIoU", 40.0 + i, 0, 0)])
        client.set_terminated(run_id)
    sweep_dir = tmp_path / f"sweep{n}"
    sweep_dir.mkdir()
    (sweep_dir / sweep_record.MANIFEST).write_text(json.dumps(
        {"sweep_id": SID, "sweep": "s", "parents": {f"{store}|synthetic": parent}, "cells": cells}))
    return parent, cells, sweep_dir


@pytest.mark.parametrize("n", [4, 24])
def test_a_job_ends_record_is_a_fixed_number_of_searches(store: str, tmp_path: Path, counting: Counter, n: int):
    parent, cells, sweep_dir = _sweep(store, n, tmp_path, outside=2)
    assert sweep_record.refresh_from_manifest(sweep_dir, statuses=[])  # the first: looks each key up once
    counting.clear()
    for _ in range(3):  # job ends, the closing record
        assert sweep_record.refresh_from_manifest(sweep_dir, statuses=[])
    # per record: the sweep's runs (one page), the runs from before it by id (one batch); no history read
    assert counting["search_runs"] == 3 * 2 and counting["get_metric_history"] == 0, counting
    metrics = MlflowClient(store).get_run(parent).data.metrics
    assert metrics["jobs_finished"] == 2 + (n - 2) // 2 and metrics["jobs_pending"] == n - 2 - (n - 2) // 2
    assert duplicate_rows(store) == []
    steps = [m.step for m in MlflowClient(store).get_metric_history(parent, "jobs_total")]
    assert steps == sorted(set(steps)) and len(steps) == 4


def test_the_record_rows_are_each_cells_newest_run(store: str, tmp_path: Path):
    parent, cells, sweep_dir = _sweep(store, 6, tmp_path, outside=2)
    client = MlflowClient(store)
    newer = client.create_run(cells[1]["experiment_id"], tags={"segsweep.run_key": "k1", sweep_record.SWEEP_ID_TAG: SID})
    batched = sweep_record.cell_rows(client, cells, SID, {})
    alone = sweep_record.cell_rows(client, cells)  # no sweep id: every key looked up by itself
    assert batched == alone
    assert [r.status for r in batched] == ["FINISHED", "RUNNING", "FINISHED", "FINISHED", "PENDING", "PENDING"]
    assert batched[1].run_id == newer.info.run_id


def test_the_last_job_end_writes_the_record_however_recent_the_last(store: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sweep_record, "REFRESH_SHARE", 1e9)  # every job end may wait, but the last
    parent, cells, sweep_dir = _sweep(store, 4, tmp_path)  # runs k0, k1 finished; k2, k3 pending
    assert sweep_record.refresh_from_manifest(sweep_dir)  # the first record: 2 left open
    client = MlflowClient(store)
    for i in (2, 3):
        run_id = client.create_run(cells[i]["experiment_id"], tags={"segsweep.run_key": f"k{i}",
                                                                    sweep_record.SWEEP_ID_TAG: SID}).info.run_id
        client.set_terminated(run_id)
        sweep_record.refresh_from_manifest(sweep_dir, ran=run_id)  # a job's end
        finished = client.get_run(parent).data.metrics["jobs_finished"]
        assert finished == (2 if i == 2 else 4)  # the first end waits, the last (2 ended of 2 open) writes


def test_status_reads_a_sweep_in_batches_with_the_same_rows(store: str, tmp_path: Path, counting: Counter):
    _, cells, sweep_dir = _sweep(store, 12, tmp_path, outside=3)
    cells.append({"name": "unresolved", "uri": store, "experiment": "synthetic"})
    (sweep_dir / sweep_record.MANIFEST).write_text(json.dumps({"sweep_id": SID, "sweep": "s", "cells": cells}))
    alone = [status.cell_row(c) for c in cells]
    counting.clear()
    rows, _, _ = status.rows_of(sweep_dir)
    assert rows == alone
    # the sweep's runs in one search; the 3 from before it and the 5 pending looked up by key (indexed)
    assert counting["search_runs"] == 1 + 3 + 5, counting


@pytest.mark.postgres
def test_sweeper_servers_postgresql_store_gets_the_tag_index(postgres_store: str):  # noqa: F811
    import sqlalchemy

    from sweeper import server
    from sweeper.store_template import TAG_INDEX

    server.prepare(postgres_store)  # `python -m sweeper server`'s set-up: MLflow's tables, then the index
    server.prepare(postgres_store)  # idempotent
    engine = sqlalchemy.create_engine(postgres_store)
    try:
        with engine.connect() as con:
            definition = con.execute(sqlalchemy.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                     {"n": TAG_INDEX}).scalar()
            con.execute(sqlalchemy.text("SET enable_seqscan = off"))  # an empty table: make the planner show it
            plan = " ".join(r[0] for r in con.execute(sqlalchemy.text(
                "EXPLAIN SELECT run_uuid FROM tags WHERE key = 'segsweep.run_key' AND value = 'k'")))
    finally:
        engine.dispose()
    assert definition and "(key, value)" in definition and "segsweep.run_key" in definition
    assert f"Index Scan using {TAG_INDEX}" in plan or f"Bitmap Index Scan on {TAG_INDEX}" in plan, plan
