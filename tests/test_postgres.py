"""PostgreSQL as the MLflow backend store (scripts/local-postgres-start.sh): many writers at once,
directly, and a real pool sweep through `python -m sweeper server` on it whose re-run skips
and whose results table is read back. Each test gets a database of its own, dropped afterwards.

Without a reachable server the tests skip with the reason; with ``REQUIRE_POSTGRES=1`` (as in CI)
they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper import tracking
from tests.conftest import FAST, REPO, subprocess_env
from tests.test_server import _check, _writers, serving

DEFAULT_URI = "postgresql://segsweep:segsweep@127.0.0.1:5433/segsweep"
pytestmark = pytest.mark.postgres


def _admin(uri: str, *statements: str) -> None:
    import psycopg  # SQLAlchemy 2.1's driver for postgresql:// URIs

    # autocommit: CREATE/DROP DATABASE cannot run inside a transaction
    with psycopg.connect(uri, connect_timeout=5, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)


@pytest.fixture()
def postgres_store() -> Iterator[str]:
    """A fresh, empty database on the local server; its store URI."""
    base = os.environ.get("SEGSWEEP_POSTGRES_URI", DEFAULT_URI)
    try:
        _admin(base, "SELECT 1")
    except Exception as error:  # noqa: BLE001 - ImportError or OperationalError: say which
        reason = (f"no PostgreSQL at {base} ({str(error).strip().splitlines()[0]}): "
                  f"start one with `scripts/local-postgres-start.sh`")
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin(base, f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        _drop(base, name)


def _drop(base: str, name: str, attempts: int = 20) -> None:
    """Drop a test database. An autovacuum worker (after the writers' inserts) may still be in it,
    and the test role may not end it: wait for it a little, else leave the database to the next
    `local-postgres-stop.sh --purge` (a warning, not a test error)."""
    import psycopg

    for _ in range(attempts):
        try:
            _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            time.sleep(0.5)
    warnings.warn(f"test database {name} left behind (still in use)", stacklevel=1)


def test_8_writers_at_once_into_postgres(postgres_store: str, tmp_path: Path):
    experiment_id = tracking.ensure_experiment(postgres_store, "writers")
    _check(postgres_store, _writers(postgres_store, experiment_id, tmp_path))


def _sweep(uri: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweep.py"), "-m", "tracking=server", "launcher=gpus",
                           "hydra.launcher.workers=2", "scale=1,2", *FAST, "train.epochs=1",
                           f"hydra.sweep.dir={cwd / 'sweep'}"],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(MLFLOW_TRACKING_URI=uri, CUDA_VISIBLE_DEVICES=""))


def test_a_server_on_postgres_takes_a_pool_sweep_whose_rerun_skips(postgres_store: str, tmp_path: Path):
    """Two pool workers write at once through the server (8 writers at once: the tests above)."""
    with serving(postgres_store, tmp_path) as url:
        first = _sweep(url, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        again = _sweep(url, tmp_path)  # run keys are looked up in PostgreSQL, through the server
        assert again.returncode == 0 and "2 skipped" in again.stdout, again.stdout[-2000:]
        out = tmp_path / "README.md"
        table = subprocess.run([sys.executable, "-m", "results", "--tracking-uri", url, "readme", "--out", str(out)],
                               cwd=REPO, capture_output=True, text=True, timeout=300, env=subprocess_env())
        assert table.returncode == 0, table.stderr[-2000:]

    client = MlflowClient(postgres_store)  # the server wrote into PostgreSQL itself
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    jobs = [r for r in runs if r.data.tags.get("segsweep.kind") != "sweep"]
    assert len(runs) == 3 and len(jobs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in jobs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mIoU")] == [1]
        assert run.data.tags["segsweep.name"] in out.read_text()


def test_an_unreachable_postgres_fails_at_once_with_the_fix(tmp_path: Path):
    """MLflow retries a database connection for ~100 s; segsweep probes once and names the fix."""
    uri = "postgresql://segsweep:segsweep@127.0.0.1:1/nothing"
    server = subprocess.run([sys.executable, "-m", "sweeper", "server", "--store", uri], capture_output=True,
                            text=True, timeout=60, env=subprocess_env())
    assert server.returncode == 2 and "Connection refused" in server.stderr, server.stderr[-2000:]
    assert "scripts/local-postgres-start.sh" in server.stderr
    sweep = subprocess.run([sys.executable, str(REPO / "sweep.py"), *FAST], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, env=subprocess_env(MLFLOW_TRACKING_URI=uri))
    assert sweep.returncode != 0 and f"cannot use the tracking store {uri}" in sweep.stderr, sweep.stderr[-2000:]
