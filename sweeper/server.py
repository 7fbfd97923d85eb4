"""``python -m sweeper server``: an MLflow tracking server for many writers/nodes.

Without ``--auth`` it listens on 127.0.0.1 only (any other ``--host`` is refused: whoever reaches the
port could read, overwrite or delete every experiment); ``--auth`` runs MLflow's basic-auth app with
the users, grants and admin of :mod:`sweeper.server_auth`, and ``python -m sweeper server user add NAME``
adds a user (docs/tracking.md). It serves a sqlite (or PostgreSQL) backend store and a local artifact root; jobs reach it through
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
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRACE_S = 15.0
#: the addresses a server without authentication may listen on: this machine's own 127.0.0.1 (any
#: other address, another loopback one included, stands for an interface other machines reach)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def default_workers(cpus: int | None = None) -> int:
    """Server workers for ``cpus`` cores: one per two cores, 1 to 4."""
    return max(1, min(4, (cpus or os.cpu_count() or 1) // 2))


#: database connections the server's workers may hold together: under PostgreSQL's default
#: max_connections (100), with room for psql, backups and the jobs that write the store directly
DB_CONNECTIONS = 80


def pool_env(store: str, workers: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """MLflow's SQLAlchemy pool for a database store, sized so ``workers`` x (pool + overflow) stays
    within :data:`DB_CONNECTIONS` (MLflow's default, 5 + 10 per worker, refused 64 writers with HTTP 400
    "QueuePool limit ... reached"); nothing for sqlite, and the environment's own settings win."""
    if store.startswith("sqlite:"):
        return {}
    budget = max(DB_CONNECTIONS // max(workers, 1), 2)
    wanted = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(budget // 2),
              "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(budget - budget // 2)}
    have = os.environ if environ is None else environ
    return {key: value for key, value in wanted.items() if key not in have}


def command(store: str, artifacts: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 2,
            auth: bool = False, allowed_hosts: Sequence[str] = ()) -> list[str]:
    """The ``mlflow server`` command line (no secret on it: those go in the environment)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
           "--backend-store-uri", store, "--artifacts-destination", str(artifacts.resolve()),
           "--serve-artifacts", "--workers", str(workers)]
    if auth:
        cmd += ["--app-name", "basic-auth"]
    if allowed_hosts:
        cmd += ["--allowed-hosts", ",".join(allowed_hosts)]
    return cmd


def is_local(host: str) -> bool:
    """Whether a server on ``host`` is reachable from this machine only (:data:`LOCAL_HOSTS`)."""
    return host in LOCAL_HOSTS


def refuse_open_host(host: str, auth: bool) -> str | None:
    """The one-line refusal of a ``--host`` other machines reach without ``--auth``; None when fine."""
    if auth or is_local(host):
        return None
    return (f"--host {host} lets every machine that reaches it read, overwrite and delete every experiment: "
            f"turn authentication on with --auth (MLflow basic-auth; docs/tracking.md), or serve 127.0.0.1")


def allowed_hosts(host: str, port: int) -> list[str]:
    """The Host headers the server accepts (MLflow's DNS-rebinding check): MLflow's defaults (localhost,
    private networks) plus the address it listens on and this machine's names, with and without the port."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = [host] if host not in ("0.0.0.0", "::") else []
    names += [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            names[0] = f"[{host}]"
    extra = [n for name in dict.fromkeys(names) if name for n in (name, f"{name}:{port}")]
    return list(dict.fromkeys([*get_default_allowed_hosts(), *extra]))


def prepare(store: str) -> str:
    """Absolute sqlite path, tables created once; returns the store URI."""
    from sweeper.tracking import client_for, prepare_store, probe_database, resolve_uri

    store = resolve_uri(store)
    prepare_store(store)
    probe_database(store)
    client_for(store).search_experiments(max_results=1)  # creates/migrates the tables
    from sweeper.store_template import ensure_server_tag_index

    ensure_server_tag_index(store)  # look-ups by tag value: an index, not a scan (issue 27)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweeper server", description=__doc__.splitlines()[0],
                                     epilog="python -m sweeper server user add NAME [...]: add a user to an --auth server")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SEGSWEEP_MLFLOW_PORT", 5000)))
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything but 127.0.0.1/localhost/::1 needs --auth")
    parser.add_argument("--store", default="sqlite:///mlflow.db",
                        help="backend store URI: sqlite:///path.db or postgresql://user@host/db")
    parser.add_argument("--artifacts", type=Path, default=Path("mlartifacts"), help="local artifact root")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="uvicorn workers (default: one per two cores, 1 to 4)")
    parser.add_argument("--auth", action="store_true",
                        help="MLflow's basic-auth app: users, passwords and per-experiment grants")
    _auth_options(parser)
    parser.add_argument("--allowed-hosts", default=None,
                        help="comma-separated Host headers to accept (default: this machine's names and "
                             "addresses, localhost and private networks)")
    return parser


def _auth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--auth-dir", type=Path, default=None,
                        help="auth state: users db, admin credentials (default: <store>-auth/ beside a sqlite "
                             "store, ./mlflow-auth for a database server)")
    parser.add_argument("--auth-db", default=None, help="auth database URI (default: sqlite in --auth-dir)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["user"]:
        return user_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.workers < 1:
        print(f"error: --workers {args.workers}: the server needs at least one worker (e.g. --workers 1)",
              file=sys.stderr)
        return 2
    refusal = refuse_open_host(args.host, args.auth)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        store = prepare(args.store)
    except Exception as error:  # noqa: BLE001 - one line naming the store and the fix
        from sweeper.tracking import store_error

        print(f"error: {store_error(args.store, error, kind='backend')}", file=sys.stderr)
        return 2
    env: dict[str, str] = {}
    auth_note = ""
    if args.auth:
        from sweeper import server_auth

        auth_dir = args.auth_dir or server_auth.auth_dir_for(store)
        try:
            env = server_auth.prepare(auth_dir, args.auth_db)
        except Exception as error:  # noqa: BLE001 - one line: the auth set-up and the fix
            from sweeper.tracking import first_line

            print(f"error: cannot set up authentication in {auth_dir}: {first_line(error)}", file=sys.stderr)
            return 2
        auth_note = (f"; basic auth: admin login in {server_auth.admin_file(auth_dir.resolve())} (0600), add users "
                     f"with `python -m sweeper server user add NAME --server http://{args.host}:{args.port}`")
    args.artifacts.mkdir(parents=True, exist_ok=True)
    hosts = args.allowed_hosts.split(",") if args.allowed_hosts else (
        [] if is_local(args.host) else allowed_hosts(args.host, args.port))
    cmd = command(store, args.artifacts, args.host, args.port, args.workers, args.auth, hosts)
    print(f"[segsweep] MLflow server on http://{args.host}:{args.port} (store {store}, artifacts "
          f"{args.artifacts.resolve()}){auth_note}; jobs: tracking=server or MLFLOW_TRACKING_URI=http://{args.host}:{args.port}; "
          f"stop it with Ctrl-C or `kill {os.getpid()}`", flush=True)
    return serve(cmd, {**pool_env(store, args.workers), **env})


def user_main(argv: Sequence[str]) -> int:
    """``python -m sweeper server user add NAME``: a user on a running ``--auth`` server."""
    from sweeper import server_auth
    from sweeper.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m sweeper server user",
                                     description="Add a user to a running `python -m sweeper server --auth`.")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create a user, grant it experiments, write its 0600 credentials file")
    add.add_argument("name")
    add.add_argument("--server", default=f"http://127.0.0.1:{os.environ.get('SEGSWEEP_MLFLOW_PORT', 5000)}",
                     help="the server's URL (default http://127.0.0.1:5000)")
    add.add_argument("--store", default="sqlite:///mlflow.db", help="the server's --store (finds its --auth-dir)")
    _auth_options(add)
    add.add_argument("--out", type=Path, default=None,
                     help="the user's credentials file (default <auth-dir>/users/NAME.credentials), mode 0600")
    add.add_argument("--password-file", default=None,
                     help="read the password from this file, or `-` for standard input (default: generate one)")
    add.add_argument("--experiment", action="append", default=[],
                     help="grant this experiment only (repeatable; created if missing); default: every experiment")
    add.add_argument("--permission", default="EDIT", choices=server_auth.PERMISSIONS,
                     help="what the grant allows (default EDIT: read and write runs)")
    args = parser.parse_args(argv)
    from sweeper.tracking import resolve_uri

    auth_dir = (args.auth_dir or server_auth.auth_dir_for(resolve_uri(args.store))).resolve()
    try:
        path = server_auth.add_user(args.server, auth_dir, args.name, args.out, args.password_file,
                                    args.experiment, args.permission)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    granted = ", ".join(args.experiment) or "every experiment"
    print(f"[segsweep] user {args.name} added to {args.server} ({args.permission} on {granted}); its login is in "
          f"{path} (0600): jobs use it with tracking.credentials={path}", flush=True)
    return 0


def _stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM the server's process group, wait up to ``grace_s``, then SIGKILL what is left of it."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)


def serve(cmd: Sequence[str], extra_env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in a new process group until it exits or this process gets SIGTERM/SIGINT (then the
    whole group is stopped); returns its exit status (0 when stopped by a signal). ``extra_env``
    (the auth app's config path and secret key) goes to the server's environment only."""
    env = {**os.environ, **(extra_env or {})}
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
