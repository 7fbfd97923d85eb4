"""Credentials files, the login a process sends, the server's host rule and its admin (no processes:
the server itself is tested in tests/test_server_auth.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import requests

from sweeper import credentials, server, server_auth
from sweeper.credentials import CredentialsError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_written_credentials_file_is_0600_and_reads_back(tmp_path: Path):
    path = credentials.write(tmp_path / "new" / "alice.credentials", "alice", "s3cret-s3cret-s3cret")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert credentials.read(path) == ("alice", "s3cret-s3cret-s3cret")
    assert "[mlflow]" in path.read_text()  # MLflow's ~/.mlflow/credentials format


def test_a_file_others_may_read_is_refused_in_one_line(tmp_path: Path):
    path = credentials.write(tmp_path / "c", "alice", "s3cret-s3cret-s3cret")
    path.chmod(0o640)
    with pytest.raises(CredentialsError) as error:
        credentials.read(path)
    message = str(error.value)
    assert "readable by group/others (mode 0640)" in message and f"chmod 600 {path}" in message
    assert "s3cret" not in message and "\n" not in message


def test_missing_and_malformed_files_name_the_fix(tmp_path: Path):
    with pytest.raises(CredentialsError, match="no such file: create it with `python -m sweeper server user add"):
        credentials.read(tmp_path / "absent")
    bad = tmp_path / "bad"
    bad.write_text("password = x\n")
    bad.chmod(0o600)
    with pytest.raises(CredentialsError, match=r"needs a \[mlflow\] section"):
        credentials.read(bad)


def test_the_login_goes_only_to_its_own_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(credentials, "_LOGINS", {})
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "")  # install() sets it: restored after the test
    credentials.install("http://127.0.0.2:5000", "alice", "s3cret-s3cret-s3cret")
    auth = credentials._auth_object()
    ours = auth(requests.Request("GET", "http://127.0.0.2:5000/api/2.0/mlflow/experiments/search").prepare())
    other = auth(requests.Request("GET", "http://127.0.0.2:50001/api").prepare())
    assert ours.headers["Authorization"] == credentials._basic("alice", "s3cret-s3cret-s3cret")
    assert "Authorization" not in other.headers


def test_a_store_that_is_not_a_server_needs_no_login(tmp_path: Path):
    credentials.authenticate(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "absent"))  # no error


def test_the_refusal_names_the_server_and_the_setting():
    line = credentials.refused("http://h:5000", None, None)
    assert line.startswith("401 from http://h:5000: check tracking.credentials")
    line = credentials.refused("http://h:5000", "bob", Path("/x/bob.credentials"))
    assert "user 'bob'" in line and "/x/bob.credentials" in line


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.2", "10.1.2.3", "login1", "::"])
def test_an_open_host_needs_auth(host: str):
    refusal = server.refuse_open_host(host, auth=False)
    assert refusal is not None and f"--host {host}" in refusal and "--auth" in refusal
    assert server.refuse_open_host(host, auth=True) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_this_machine_alone_needs_no_auth(host: str):
    assert server.refuse_open_host(host, auth=False) is None


def test_the_auth_directory_is_beside_a_sqlite_store(tmp_path: Path):
    assert server_auth.auth_dir_for(f"sqlite:///{tmp_path / 'mlflow.db'}") == tmp_path / "mlflow-auth"


def test_the_server_accepts_its_own_address_and_names():
    hosts = server.allowed_hosts("127.0.0.2", 5123)
    assert {"127.0.0.2", "127.0.0.2:5123", "localhost:*"} <= set(hosts)


def test_the_admin_gets_a_generated_password_and_the_old_default_is_replaced(tmp_path: Path):
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{tmp_path / 'auth.db'}"
    store = SqlAlchemyStore()
    store.init_db(uri)
    store.create_user("admin", server_auth.LEGACY_PASSWORD, is_admin=True)  # as older MLflow shipped it
    path = server_auth.ensure_admin(uri, tmp_path)
    username, password = credentials.read(path)
    assert mode(path) == 0o600 and username == "admin" and len(password) >= 30
    assert store.authenticate_user("admin", password)
    assert not store.authenticate_user("admin", server_auth.LEGACY_PASSWORD)
    assert server_auth.ensure_admin(uri, tmp_path) == path and credentials.read(path) == (username, password)


def test_a_child_process_finds_the_login_by_its_inherited_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = credentials.write(tmp_path / "c", "alice", "s3cret-s3cret-s3cret")
    monkeypatch.setattr(credentials, "_LOGINS", {})
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "")  # install() sets it: restored after the test
    monkeypatch.setenv(credentials.PATH_ENV, str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    credentials.login_for("http://127.0.0.2:5000")
    assert credentials._LOGINS == {"http://127.0.0.2:5000": ("alice", "s3cret-s3cret-s3cret")}
    credentials.login_for(f"sqlite:///{tmp_path / 'm.db'}")  # not a server: nothing more
    assert len(credentials._LOGINS) == 1
