"""MLflow's basic-auth app for ``python -m sweeper server --auth``, and ``server user add``.

The auth state lives in a directory of its own beside the store (mode 0700; :func:`auth_dir_for`)::

    <store>-auth/
      basic_auth.ini       MLflow's auth config: database_uri, admin_username, default_permission (no secret)
      basic_auth.db        the users, their password hashes and grants (unless --auth-db names another)
      admin.credentials    0600: the admin's login (generated with `secrets`; never printed or logged)
      server.secret        0600: the Flask secret key of the auth app's CSRF protection
      users/NAME.credentials   0600: what `user add NAME` wrote (unless --out put it elsewhere)

The admin is created (or its password reset to the file's) before the server starts, so the server's
own environment holds no admin password, and MLflow's old default admin password (``password1234``)
is never left in place. Users who are not granted an experiment get ``NO_PERMISSIONS`` on it: a lab's
server holds unpublished results, and a member sees what ``user add`` granted (by default every
experiment of the server, present and future: a grant on ``*``).
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from sweeper import credentials
from sweeper.credentials import CredentialsError

ADMIN = "admin"
DEFAULT_PERMISSION = "NO_PERMISSIONS"
LEGACY_PASSWORD = "password1234"  # the admin password older MLflow versions shipped in basic_auth.ini
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE")
#: MLflow checks a login's password hash (PBKDF2, deliberately slow) on every request unless it caches
#: good logins: without the cache a busy server times its jobs out. A password change or deletion made
#: through one worker reaches the others' caches within this many seconds.
AUTH_CACHE_S = 60


def auth_dir_for(store: str) -> Path:
    """The auth directory of a store: ``<db without .db>-auth`` beside a sqlite file, else ``./mlflow-auth``."""
    if store.startswith("sqlite:///"):
        db = Path(store[len("sqlite:///"):])
        return db.with_name(db.stem + "-auth")
    return Path("mlflow-auth").resolve()


def admin_file(auth_dir: Path) -> Path:
    return auth_dir / "admin.credentials"


def require_auth_extra() -> None:
    """MLflow's basic-auth app needs Flask-WTF (the ``mlflow[auth]`` extra)."""
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        raise CredentialsError("--auth needs MLflow's auth extra (Flask-WTF): install it with "
                               "`pip install \"mlflow[auth]\"` (or `pip install -e .`)") from None


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _secret(path: Path) -> str:
    """A 0600 file's secret, created with a fresh random value when missing."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(credentials.generate_password() + "\n")
    credentials.check_private(path, "the server secret")
    return path.read_text().strip()


def write_config(auth_dir: Path, database_uri: str) -> Path:
    """MLflow's basic_auth.ini for this server (no password in it: the admin exists before the start)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser["mlflow"] = {"default_permission": DEFAULT_PERMISSION, "database_uri": database_uri,
                        "admin_username": ADMIN,
                        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
                        "auth_cache_ttl_seconds": str(AUTH_CACHE_S)}
    path = auth_dir / "basic_auth.ini"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    return path


def ensure_admin(database_uri: str, auth_dir: Path) -> Path:
    """Create the auth database and its admin; the admin's password is the one of ``admin.credentials``
    (generated when the file is missing), set in the database whenever it differs (so a lost file is
    replaced, and MLflow's old default password never stays)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    path = admin_file(auth_dir)
    if path.exists():
        username, password = credentials.read(path, "the admin credentials")
    else:
        username, password = ADMIN, credentials.generate_password()
    store = SqlAlchemyStore()
    store.init_db(database_uri)
    if not store.has_user(username):
        store.create_user(username, password, is_admin=True)
    elif not store.authenticate_user(username, password):
        store.update_user(username, password=password, is_admin=True)
    if username != ADMIN and store.has_user(ADMIN) and store.authenticate_user(ADMIN, LEGACY_PASSWORD):
        store.update_user(ADMIN, password=credentials.generate_password())  # locked: nobody knows it
    if not path.exists():
        credentials.write(path, username, password)
    return path


def prepare(auth_dir: Path, database_uri: str | None = None) -> dict[str, str]:
    """Set up the auth directory, database and admin; the environment the auth server runs with."""
    require_auth_extra()
    auth_dir = _private_dir(auth_dir.resolve())
    database_uri = database_uri or f"sqlite:///{auth_dir / 'basic_auth.db'}"
    ensure_admin(database_uri, auth_dir)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(write_config(auth_dir, database_uri)),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(auth_dir / "server.secret")}


# --------------------------------------------------------------------------- python -m sweeper server user add


def read_password(source: str | None) -> str | None:
    """The password of ``--password-file``: ``-`` reads standard input; None: generate one."""
    if source is None:
        return None
    text = sys.stdin.read() if source == "-" else Path(source).expanduser().read_text()
    password = text.rstrip("\r\n")
    if len(password) < 12:
        raise CredentialsError(f"the password from {'standard input' if source == '-' else source} is shorter "
                               f"than 12 characters (MLflow's minimum): give a longer one, or none to generate one")
    return password


def admin_login(server: str, auth_dir: Path) -> None:
    """Log this process in to ``server`` as the admin of ``auth_dir`` (environment logins set aside)."""
    path = admin_file(auth_dir)
    if not path.exists():
        raise CredentialsError(f"no admin credentials at {path}: start the server with `python -m sweeper server "
                               f"--auth` first (or give --auth-dir / --store of the running server)")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)  # this command acts as the admin of the file, whoever runs it
    credentials.install(server, *credentials.read(path, "the admin credentials"))
    credentials.probe(server, ADMIN, path)


def experiment_ids(server: str, names: list[str]) -> list[str]:
    """The ids of the named experiments (created when missing); ``["*"]`` for none named: every experiment."""
    if not names:
        return ["*"]
    from sweeper import tracking

    return [tracking.ensure_experiment(server, name) for name in names]


def add_user(server: str, auth_dir: Path, name: str, out: Path | None, password_source: str | None,
             experiments: list[str], permission: str) -> Path:
    """Create user ``name`` on the running auth server, grant it ``permission`` on the experiments
    (every one when none is named) and write its 0600 credentials file; returns the file."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    password = read_password(password_source) or credentials.generate_password()
    out = (out or auth_dir / "users" / f"{name}.credentials").expanduser()
    if out.exists():
        raise CredentialsError(f"{out} exists: remove it first, or write the new user's file elsewhere with --out")
    admin_login(server, auth_dir)
    client = AuthServiceClient(server)
    try:
        client.create_user(name, password)
    except MlflowException as error:
        if "already exists" in str(error):
            raise CredentialsError(f"user {name!r} already exists on {server}: choose another name") from None
        raise CredentialsError(f"cannot create user {name!r} on {server}: {error.message.splitlines()[0]}") from None
    for experiment_id in experiment_ids(server, experiments):
        client.grant_user_permission(name, "experiment", experiment_id, permission)
    return credentials.write(out, name, password)
