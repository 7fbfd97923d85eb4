"""``python -m sweeper server``: an MLflow tracking server on 127.0.0.1 for many writers/nodes.

It serves a sqlite (or PostgreSQL) backend store and a local artifact root; jobs reach it through
``tracking=server`` (``http://127.0.0.1:5000``) or ``MLFLOW_TRACKING_URI``. The store's tables are
created here once, before the server's workers start (no first-use migration race).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def command(store: str, artifacts: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 2) -> list[str]:
    """The ``mlflow server`` command line."""
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", store, "--artifacts-destination", str(artifacts.resolve()),
            "--serve-artifacts", "--workers", str(workers)]


def prepare(store: str) -> str:
    """Absolute sqlite path, tables created once; returns the store URI."""
    from sweeper.tracking import client_for, prepare_store, probe_database, resolve_uri

    store = resolve_uri(store)
    prepare_store(store)
    probe_database(store)
    client_for(store).search_experiments(max_results=1)  # creates/migrates the tables
    return store


def wait_ready(url: str, timeout_s: float = 120) -> None:
    """Block until ``url/health`` answers (raises TimeoutError naming the URL)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the MLflow server at {url} did not answer within {timeout_s:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("SEGSWEEP_MLFLOW_PORT", 5000)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", default="sqlite:///mlflow.db",
                        help="backend store URI: sqlite:///path.db or postgresql://user@host/db")
    parser.add_argument("--artifacts", type=Path, default=Path("mlartifacts"), help="local artifact root")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        store = prepare(args.store)
    except Exception as error:  # noqa: BLE001 - one line naming the store and the fix
        from sweeper.tracking import store_error

        print(f"error: {store_error(args.store, error, kind='backend')}", file=sys.stderr)
        return 2
    args.artifacts.mkdir(parents=True, exist_ok=True)
    cmd = command(store, args.artifacts, args.host, args.port, args.workers)
    print(f"[segsweep] MLflow server on http://{args.host}:{args.port} (store {store}, artifacts "
          f"{args.artifacts.resolve()}); jobs: tracking=server or MLFLOW_TRACKING_URI=http://{args.host}:{args.port}",
          flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached
