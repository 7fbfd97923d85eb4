"""New sqlite stores are copies of a migrated template: MLflow's migrations run once per version, the
copy behaves like a store MLflow made itself, and any problem falls back to MLflow's own creation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow.store.db.utils as db_utils
import pytest
from mlflow.tracking import MlflowClient

from sweeper import store_template, tracking


def _tables(db: Path) -> dict[str, set[str]]:
    """Each table's and index's definition as a set of clauses (MLflow's migrations do not keep the
    order of constraints from one store to the next)."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')")
        return {name: {line.strip().rstrip(",").strip() for line in (sql or "").splitlines()} for name, sql in rows}


def _version(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT * FROM alembic_version").fetchall()


def test_a_seeded_store_is_the_store_mlflow_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEGSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    reference = tmp_path / "mlflow-made.db"
    MlflowClient(f"sqlite:///{reference}").search_experiments()  # MLflow's own creation

    seeded = tmp_path / "seeded" / "mlflow.db"
    experiment_id = tracking.ensure_experiment(f"sqlite:///{seeded}", "synthetic")
    assert store_template.template_path().parent == tmp_path / "cache"
    assert store_template.template_path().exists()
    index = {store_template.TAG_INDEX: {f"CREATE INDEX {store_template.TAG_INDEX} ON tags (key, value)"}}
    assert _tables(seeded) == {**_tables(reference), **index} and _version(seeded) == _version(reference)
    tracking.ensure_experiment(f"sqlite:///{reference}", "synthetic")  # a store segsweep did not make: indexed
    assert _tables(reference)[store_template.TAG_INDEX] == index[store_template.TAG_INDEX]

    client = MlflowClient(f"sqlite:///{seeded}")
    default = client.get_experiment("0")  # made on first open, with this store's artifact location
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "mlruns" / "0")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "val_mIoU", 50.0, step=1)
    client.set_terminated(run_id)
    assert client.get_run(run_id).data.metrics == {"val_mIoU": 50.0}


def test_once_the_template_exists_new_stores_run_no_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEGSWEEP_CACHE", str(tmp_path / "cache"))
    assert store_template.seed_sqlite_store(tmp_path / "first.db")  # builds the template

    def no_migrations(engine):
        raise AssertionError("MLflow's migrations ran for a store that had a template")

    monkeypatch.setattr(db_utils, "_initialize_tables", no_migrations)
    for i in range(3):
        tracking.ensure_experiment(f"sqlite:///{tmp_path / f'store{i}.db'}", "synthetic")


def test_an_existing_store_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEGSWEEP_CACHE", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    experiment_id = tracking.ensure_experiment(uri, "kept")
    assert not store_template.seed_sqlite_store(db)
    assert tracking.ensure_experiment(uri, "kept") == experiment_id
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".seed", ".tmp"))] == []


def test_without_a_usable_cache_mlflow_creates_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("SEGSWEEP_CACHE", str(not_a_dir / "cache"))
    db = tmp_path / "mlflow.db"
    assert not store_template.seed_sqlite_store(db) and not db.exists()
    experiment_id = tracking.ensure_experiment(f"sqlite:///{db}", "synthetic")
    assert MlflowClient(f"sqlite:///{db}").get_experiment(experiment_id).name == "synthetic"


def _plan(db: Path, sql: str, args: tuple) -> str:
    with sqlite3.connect(db) as con:
        return " ".join(row[-1] for row in con.execute(f"EXPLAIN QUERY PLAN {sql}", args))


def test_a_tag_look_up_uses_the_index_and_mlflow_migrations_keep_it(tmp_path: Path):
    """A store at MLflow's first schema with segsweep's index goes through every migration
    (``mlflow db upgrade``), keeps the index, and a look-up by tag value searches it, not every row."""
    import subprocess
    import sys

    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    db = tmp_path / "old.db"
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)  # MLflow's first schema, before any migration
    engine.dispose()
    assert store_template.ensure_tag_index(db) and not store_template.ensure_tag_index(db)  # idempotent
    done = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{db}"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert store_template.TAG_INDEX in _tables(db) and "tags" in _tables(db)
    query = "SELECT run_uuid FROM tags WHERE key = ? AND value = ?"
    assert f"INDEX {store_template.TAG_INDEX} (key=? AND value=?)" in _plan(db, query, ("segsweep.run_key", "k"))
    with sqlite3.connect(db) as con:
        con.execute(f"DROP INDEX {store_template.TAG_INDEX}")
    assert "sqlite_autoindex_tags" in _plan(db, query, ("segsweep.run_key", "k"))  # without it: every key's row


def test_a_store_segsweep_only_reads_gets_the_index_when_opened(tmp_path: Path):
    db = tmp_path / "mlflow-made.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # MLflow's own creation: no segsweep index
    assert store_template.TAG_INDEX not in _tables(db)
    tracking.client_for(f"sqlite:///{db}")  # what `sweeper status` opens a store with
    assert store_template.TAG_INDEX in _tables(db)
