"""``python -m sweeper server``: an MLflow tracking server on 127.0.0.1 for many writers/nodes.

It serves a sqlite (or PostgreSQL) backend store and a local artifact root; jobs reach it through
``tracking=server`` (``http://127.0.0.1:5000``) or ``MLFLOW_TRACKING_URI``. The store's tables are
created here once, before the server's workers start (no first-use migration race).

The ``mlflow server`` processes (its uvicorn workers included) run in a process group of their own
that this process leads and stops: ``kill <pid>`` (SIGTERM) or Ctrl-C (SIGINT) of the pid it prints
stops the whole group (SIGTERM, then SIGKILL after a grace period) and frees the port. The default
worker count fits the machine (1 on a 2-core one, where more workers time out their health checks);
MLflow's job-execution runner is off (segsweep uses none) unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION is set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRACE_S = 15.0


def default_workers(cpus: int | None = None) -> int:
    """Server workers for ``cpus`` cores: one per two cores, 1 to 4."""
    return max(1, min(4, (cpus or os.cpu_count() or 1) // 2))


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
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="uvicorn workers (default: one per two cores, 1 to 4)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        print(f"error: --workers {args.workers}: the server needs at least one worker (e.g. --workers 1)",
              file=sys.stderr)
        return 2
    try:
        store = prepare(args.store)
    except Exception as error:  # noqa: BLE001 - one line naming the store and the fix
        from sweeper.tracking import store_error

        print(f"error: {store_error(args.store, error, kind='backend')}", file=sys.stderr)
        return 2
    args.artifacts.mkdir(parents=True, exist_ok=True)
    cmd = command(store, args.artifacts, args.host, args.port, args.workers)
    print(f"[segsweep] MLflow server on http://{args.host}:{args.port} (store {store}, artifacts "
          f"{args.artifacts.resolve()}); jobs: tracking=server or MLFLOW_TRACKING_URI=http://{args.host}:{args.port}; "
          f"stop it with Ctrl-C or `kill {os.getpid()}`", flush=True)
    return serve(cmd)


def _stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM the server's process group, wait up to ``grace_s``, then SIGKILL what is left of it."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)


def serve(cmd: Sequence[str]) -> int:
    """Run ``cmd`` in a new process group until it exits or this process gets SIGTERM/SIGINT (then the
    whole group is stopped); returns its exit status (0 when stopped by a signal)."""
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = subprocess.Popen(list(cmd), start_new_session=True, env=env)
    stopped: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopped.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the clean stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_group(proc)
        name = signal.Signals(stopped[0]).name if stopped else "SIGINT"
        print(f"[segsweep] MLflow server stopped ({name})", file=sys.stderr, flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing of the group outlives it
            os.killpg(proc.pid, signal.SIGKILL)
