"""Tracking-server credentials: 0600 files, never a command line, a config value or a log line.

A credentials file is MLflow's own ``~/.mlflow/credentials`` format (so it also works copied there)::

    [mlflow]
    mlflow_tracking_username = alice
    mlflow_tracking_password = <generated>

Jobs name the file by its path (``tracking.credentials=~/.segsweep/alice.credentials``, or
``SEGSWEEP_TRACKING_CREDENTIALS``); the path travels in the job's config (SLURM jobs, pool workers),
the secret stays in the file: :func:`authenticate` reads it and hands it to MLflow's HTTP client through
a request-auth provider of this process (``MLFLOW_TRACKING_AUTH=segsweep``), not through the
environment, so no child process, ``sbatch`` environment or log ever holds it.
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` in the environment win over the file (MLflow's
own precedence). A server that refuses the login fails the job at once, in one line, before any run.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import os
import secrets
import stat
from pathlib import Path

from sweeper.errors import UserError

SECTION = "mlflow"
USERNAME_KEY, PASSWORD_KEY = "mlflow_tracking_username", "mlflow_tracking_password"
AUTH_NAME = "segsweep"  # MLFLOW_TRACKING_AUTH: the request-auth provider below
PATH_ENV = "SEGSWEEP_TRACKING_CREDENTIALS"
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"

#: server URL prefix -> (username, password) this process logs in with (filled by :func:`install`)
_LOGINS: dict[str, tuple[str, str]] = {}
_PROBED: set[tuple[str, str | None]] = set()


class CredentialsError(UserError):
    """A credentials file that cannot be used, or a server that refuses the login (exit 2)."""


def generate_password() -> str:
    """A fresh random password (32 URL-safe characters; MLflow wants at least 12)."""
    return secrets.token_urlsafe(24)


def write(path: Path, username: str, password: str) -> Path:
    """Write a credentials file with mode 0600 (its directory 0700 when created); atomic, never
    group- or world-readable even for an instant."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    parser = configparser.ConfigParser(interpolation=None)
    parser[SECTION] = {USERNAME_KEY: username, PASSWORD_KEY: password}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.replace(tmp, path)
    return path


def check_private(path: Path, what: str = "tracking.credentials") -> None:
    """Refuse a secret file that group or others may read (one line naming the fix)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(f"{what} {path} is readable by group/others (mode {mode:04o}): "
                               f"make it private with `chmod 600 {path}`")


def read(path: str | os.PathLike[str], what: str = "tracking.credentials") -> tuple[str, str]:
    """(username, password) of a 0600 credentials file; one-line errors for a missing, shared or
    malformed file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CredentialsError(f"{what} {path}: no such file: create it with `python -m sweeper server user add "
                               f"NAME --out {path}` (or point {what} at the file you were given)")
    check_private(path, what)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
        username, password = parser[SECTION][USERNAME_KEY], parser[SECTION][PASSWORD_KEY]
    except (configparser.Error, KeyError):
        raise CredentialsError(f"{what} {path} is not a credentials file: it needs a [{SECTION}] section with "
                               f"{USERNAME_KEY} and {PASSWORD_KEY} (as `python -m sweeper server user add` "
                               f"writes)") from None
    if not username or not password:
        raise CredentialsError(f"{what} {path} has an empty {USERNAME_KEY} or {PASSWORD_KEY}")
    return username, password


def server_prefix(uri: str) -> str:
    """``scheme://host:port`` of a server URI (what a request's URL must start with to get the login)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _auth_object():
    """A ``requests`` auth that adds the login of the server a request goes to (none for others)."""
    import requests

    class ServerLogin(requests.auth.AuthBase):
        def __call__(self, request):
            for prefix, (username, password) in _LOGINS.items():
                if request.url == prefix or request.url.startswith(prefix + "/"):
                    request.headers["Authorization"] = _basic(username, password)
                    break
            return request

    return ServerLogin()


def _provider_class():
    from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

    class SegsweepRequestAuth(RequestAuthProvider):
        """MLflow request-auth plugin: the logins read from credentials files by this process."""

        def get_name(self) -> str:
            return AUTH_NAME

        def get_auth(self):
            return _auth_object()

    return SegsweepRequestAuth


def _register_provider() -> None:
    """Register the provider with MLflow's request-auth registry (once per process)."""
    from mlflow.tracking.request_auth import registry

    if not any(p.get_name() == AUTH_NAME for p in registry._request_auth_provider_registry):
        registry._request_auth_provider_registry.register(_provider_class())


def install(uri: str, username: str, password: str) -> None:
    """Log in to ``uri`` with these credentials from this process on (in memory only)."""
    _register_provider()
    _LOGINS[server_prefix(uri)] = (username, password)
    os.environ["MLFLOW_TRACKING_AUTH"] = AUTH_NAME  # a provider's name, not a secret


def login_for(uri: str) -> None:
    """Before a client talks to ``uri``: the provider registered where this process inherited
    ``MLFLOW_TRACKING_AUTH=segsweep``, and the login of ``SEGSWEEP_TRACKING_CREDENTIALS`` installed if
    none is (a process started by one that authenticated; :func:`authenticate` reports bad files)."""
    if os.environ.get("MLFLOW_TRACKING_AUTH") == AUTH_NAME:
        _register_provider()
    if not uri.startswith(("http://", "https://")) or server_prefix(uri) in _LOGINS or from_environment():
        return
    path = credentials_path(None)
    if path is not None and path.is_file():
        with contextlib.suppress(CredentialsError):
            install(uri, *read(path))


def credentials_path(configured: str | None) -> Path | None:
    """The credentials file of a job: ``tracking.credentials``, else ``SEGSWEEP_TRACKING_CREDENTIALS``."""
    value = configured or os.environ.get(PATH_ENV)
    return Path(str(value)).expanduser() if value else None


def from_environment() -> bool:
    """Whether MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are both set (they win)."""
    return bool(os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"))


def authenticate(uri: str, configured: str | None = None) -> None:
    """Set up the login to a tracking server ``uri`` and check it once per process.

    No-op for a store that is not a server. The environment's MLFLOW_TRACKING_USERNAME/PASSWORD win;
    else the file named by ``configured`` (``tracking.credentials``) or ``SEGSWEEP_TRACKING_CREDENTIALS``.
    Raises :class:`CredentialsError` for an unusable file or a server that answers 401.
    """
    if not uri.startswith(("http://", "https://")):
        return
    path = credentials_path(configured)
    username = os.environ.get("MLFLOW_TRACKING_USERNAME") if from_environment() else None
    if username is None and path is not None:
        username, password = read(path)
        install(uri, username, password)
        os.environ[PATH_ENV] = str(path)  # the path (not the secret) for the processes this one starts
    key = (uri, str(path) if path else None)
    if key not in _PROBED:
        probe(uri, username, path)
        _PROBED.add(key)


def probe(uri: str, username: str | None = None, path: Path | None = None) -> None:
    """One authenticated request to the server (no retries): 401 raises :class:`CredentialsError`;
    a server that cannot be reached is left to the store's own error (it names the fix)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), PROBE_ENDPOINT, "GET", max_retries=0,
                                backoff_factor=0, params={"max_results": 1})
    except Exception:  # noqa: BLE001 - unreachable: tracking.ensure_experiment reports it with the fix
        return
    if response.status_code == 401:
        raise CredentialsError(refused(uri, username, path))


def refused(uri: str, username: str | None, path: Path | None) -> str:
    """The one line for a login the server refused."""
    if username is None:
        why = ("no credentials were given: set tracking.credentials=/path/to/file (mode 0600, from "
               "`python -m sweeper server user add NAME`) or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
    else:
        source = "MLFLOW_TRACKING_USERNAME/PASSWORD" if from_environment() else f"the file {path}"
        why = f"the login of user {username!r} from {source} was refused (wrong password or unknown user)"
    return f"401 from {uri}: check tracking.credentials ({why})"
