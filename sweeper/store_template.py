"""New sqlite stores start as a copy of an empty, fully migrated one.

MLflow creates a sqlite store by running its whole Alembic migration chain (~1 s on these machines,
for every new store: the first sweep of a project, every test). segsweep runs that chain once per
MLflow version into a template under ``$SEGSWEEP_CACHE`` (default ``~/.cache/segsweep``) and
copies it (~30 ms). The template holds the schema only: MLflow creates the Default experiment
(with its artifact location) when it first opens the copy, as for a store it made itself. Anything
unexpected (no cache dir, another MLflow layout) falls back to MLflow's own creation.

MLflow indexes its ``tags`` table on ``run_uuid`` alone, so every look-up by a tag's value
(``tags.segsweep.run_key = ...``, ``segsweep.sweep_id``, ``segsweep.kind``) scans every row of that
key: O(runs in the store) each. segsweep adds :data:`TAG_INDEX` on ``tags(key, value)``: in the
template (every store it creates) and, idempotently, in any store it opens (:func:`ensure_tag_index`;
``python -m sweeper server`` for PostgreSQL, where it covers segsweep's short look-up tags only: a
btree row holds ~2.7 kB, and a run's description tag is longer). MLflow's migrations keep it
(tests/test_store_template.py runs ``mlflow db upgrade`` over a store that has it).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

TAG_INDEX = "segsweep_tags_key_value"
#: the tags segsweep looks runs up by (PostgreSQL's partial index; sqlite's covers every key)
LOOKUP_TAGS = ("segsweep.run_key", "segsweep.sweep_id", "segsweep.kind", "mlflow.parentRunId")


def cache_dir() -> Path:
    """``$SEGSWEEP_CACHE``, else ``$XDG_CACHE_HOME/segsweep``, else ``~/.cache/segsweep``: the rule of
    ``results.stale.cache_dir``, not imported from there (bench/results.py shadows ``results`` in benches)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segsweep"
    return Path(os.environ.get("SEGSWEEP_CACHE") or default)


def template_path() -> Path:
    import mlflow

    return cache_dir() / f"mlflow-{mlflow.__version__}-empty-store.db"


def _build_template(path: Path) -> Path:
    """Run MLflow's migrations once into ``path`` (written under a temporary name, then renamed)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    engine = create_sqlalchemy_engine(f"sqlite:///{tmp}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    ensure_tag_index(tmp)
    tmp.replace(path)
    return path


def seed_sqlite_store(db: Path) -> bool:
    """Create the sqlite store ``db`` from the template if it does not exist yet; True when seeded.

    Never overwrites: a store that appears meanwhile (another process) is kept as it is.
    """
    if db.exists():
        try:
            ensure_tag_index(db)
        except sqlite3.Error as error:  # a store being created or locked: indexed at the next open
            log.debug("no tag index in %s yet (%s)", db, error)
        return False
    tmp = db.with_name(f".{db.name}.{os.getpid()}.seed")
    try:
        template = template_path()
        if not template.exists():
            _build_template(template)
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, tmp)
        os.link(tmp, db)  # atomic and exclusive: fails if the store exists by now
        return True
    except FileExistsError:
        return False
    except Exception as error:  # noqa: BLE001 - MLflow then creates the store itself, only slower
        log.debug("no store template (%s): MLflow creates %s itself", error, db)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def ensure_tag_index(db: Path) -> bool:
    """Create :data:`TAG_INDEX` in the sqlite store ``db`` when it has MLflow's ``tags`` table and not the
    index yet (a read when it has both); True when created."""
    con = sqlite3.connect(db, timeout=60)
    try:
        names = {row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE (type = 'table' AND name = 'tags') OR name = ?", (TAG_INDEX,))}
        if "tags" not in names or TAG_INDEX in names:
            return False
        with con:
            con.execute(f"CREATE INDEX IF NOT EXISTS {TAG_INDEX} ON tags (key, value)")
        return True
    finally:
        con.close()


def ensure_server_tag_index(uri: str) -> None:
    """:data:`TAG_INDEX` in a database server's store (PostgreSQL: a partial index over
    :data:`LOOKUP_TAGS`; other databases are left as MLflow made them). Idempotent."""
    if not uri.startswith("postgresql"):
        return
    import sqlalchemy

    keys = ", ".join(f"'{key}'" for key in LOOKUP_TAGS)
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.begin() as con:
            if con.execute(sqlalchemy.text("SELECT to_regclass('tags')")).scalar() is not None:
                con.execute(sqlalchemy.text(f"CREATE INDEX IF NOT EXISTS {TAG_INDEX} ON tags (key, value) "
                                            f"WHERE key IN ({keys})"))
    except sqlalchemy.exc.SQLAlchemyError as error:  # the store works without it, only slower
        log.warning("could not index the tags of %s: %s", uri, str(error).splitlines()[0])
    finally:
        engine.dispose()


@functools.lru_cache(maxsize=64)
def index_store(uri: str) -> None:
    """:func:`ensure_tag_index` for a sqlite store segsweep opens (once per process and store; a store
    that does not exist yet or cannot be written is left alone: MLflow creates or refuses it)."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):])
    if db.is_file() and os.access(db, os.W_OK):
        try:
            ensure_tag_index(db)
        except sqlite3.Error as error:
            log.debug("no tag index in %s (%s)", db, error)
