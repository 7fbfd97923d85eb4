"""New sqlite stores start as a copy of an empty, fully migrated one.

MLflow creates a sqlite store by running its whole Alembic migration chain (~1 s on these machines,
for every new store: the first sweep of a project, every test). segsweep runs that chain once per
MLflow version into a template under ``$SEGSWEEP_CACHE`` (default ``~/.cache/segsweep``) and
copies it (~30 ms). The template holds the schema only: MLflow creates the Default experiment
(with its artifact location) when it first opens the copy, as for a store it made itself. Anything
unexpected (no cache dir, another MLflow layout) falls back to MLflow's own creation.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


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
    tmp.replace(path)
    return path


def seed_sqlite_store(db: Path) -> bool:
    """Create the sqlite store ``db`` from the template if it does not exist yet; True when seeded.

    Never overwrites: a store that appears meanwhile (another process) is kept as it is.
    """
    if db.exists():
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
