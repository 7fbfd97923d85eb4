"""A lab's tracking server: `python -m sweeper server --auth` on 127.0.0.2 (standing in for the login
node's interface) over PostgreSQL, its users (`server user add`), and pool and SLURM sweeps through it.
One server per module. Every test that writes ends by grepping everything the module wrote for the
secrets: only the 0600 credentials files may hold them.

Without PostgreSQL the module skips (fails under REQUIRE_POSTGRES=1); without SLURM the SLURM test
skips (fails under REQUIRE_SLURM=1).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from sweeper import credentials, server
from tests.checks import stop
from tests.conftest import FAST, REPO, subprocess_env
from tests.test_postgres import DEFAULT_URI, _admin, _drop

HOST = "127.0.0.2"
pytestmark = pytest.mark.postgres


@dataclass
class Lab:
    """The running server and where the module writes."""

    url: str
    root: Path  # everything the module writes: store artifacts, auth dir, sweeps, outputs, logs
    auth_dir: Path
    store: str
    proc: subprocess.Popen

    def admin(self) -> tuple[str, str]:
        return credentials.read(self.auth_dir / "admin.credentials")

    def add_user(self, name: str, *args: str, password: str | None = None) -> Path:
        """``python -m sweeper server user add NAME`` (a given password goes in on standard input)."""
        cmd = [sys.executable, "-m", "sweeper", "server", "user", "add", name, "--server", self.url,
               "--auth-dir", str(self.auth_dir), *args] + (["--password-file", "-"] if password else [])
        result = subprocess.run(cmd, input=password or "", capture_output=True, text=True, timeout=120,
                                env=subprocess_env(), cwd=self.root)
        assert result.returncode == 0, result.stderr[-2000:]
        path = self.auth_dir / "users" / f"{name}.credentials"
        secret = credentials.read(path)[1]
        assert str(path) in result.stdout and secret not in result.stdout + result.stderr
        assert password is None or secret == password
        return path


def _free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _database() -> tuple[str, str]:
    """(base URI, name) of a fresh database on the local PostgreSQL (skip or fail without one)."""
    base = os.environ.get("SEGSWEEP_POSTGRES_URI", DEFAULT_URI)
    try:
        _admin(base, "SELECT 1")
    except Exception as error:  # noqa: BLE001 - ImportError or OperationalError: say which
        reason = f"no PostgreSQL at {base} ({str(error).strip().splitlines()[0]}): scripts/local-postgres-start.sh"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin(base, f"CREATE DATABASE {name}")
    return base, name


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    base, name = _database()
    store = base.rsplit("/", 1)[0] + "/" + name
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "server", "--auth", "--host", HOST, "--port", str(port),
                             "--store", store, "--artifacts", str(root / "mlartifacts"), "--auth-dir",
                             str(root / "auth"), "--workers", "1"], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env=subprocess_env(), start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        server.wait_ready(url, timeout_s=180)
        yield Lab(url, root, root / "auth", store, proc)
    finally:
        stop(proc)
        log.close()
        _drop(base, name)


def secrets_of(lab: Lab) -> dict[str, Path]:
    """Every secret the lab holds -> the 0600 file that holds it."""
    found = {(lab.auth_dir / "server.secret").read_text().strip(): lab.auth_dir / "server.secret"}
    for path in [lab.auth_dir / "admin.credentials", *sorted((lab.auth_dir / "users").glob("*.credentials"))]:
        username, password = credentials.read(path)
        found[password] = path
        found[base64.b64encode(f"{username}:{password}".encode()).decode()] = path  # as an Authorization header
    return found


def assert_no_secret_outside_its_file(lab: Lab, *more_roots: Path) -> None:
    """Grep every file the module wrote (sweeps, outputs, artifacts, SLURM logs, the server's log) and the
    store's params and tags: a secret is only in its own 0600 file."""
    held = secrets_of(lab)
    for path in set(held.values()):
        assert (os.stat(path).st_mode & 0o077) == 0, f"{path} is readable by others"
    leaks = []
    files = [p for root in (lab.root, *more_roots) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10  # the sweeps' outputs are there to be searched
    for path in files:
        data = path.read_bytes()
        leaks += [(path, held[s]) for s in held if s.encode() in data and path != held[s]]
    assert not leaks, f"a secret is outside its file: {leaks[:3]}"
    admin = MlflowClient(lab.store)  # straight from PostgreSQL: params, tags, experiment tags
    for experiment in admin.search_experiments():
        text = repr(experiment.tags)
        for run in admin.search_runs([experiment.experiment_id]):
            text += repr(run.data.params) + repr(run.data.tags)
        assert not [s for s in held if s in text]


def test_a_host_other_machines_reach_is_refused_without_auth(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "sweeper", "server", "--host", HOST, "--store",
                             f"sqlite:///{tmp_path / 'mlflow.db'}"], capture_output=True, text=True, timeout=120,
                            env=subprocess_env(), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: --host {HOST}") and "--auth" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started or created


def test_an_unauthenticated_client_gets_401_on_read_and_write(lab: Lab):
    read = f"{lab.url}/api/2.0/mlflow/experiments/search"
    write = f"{lab.url}/api/2.0/mlflow/experiments/create"
    assert requests.get(read, params={"max_results": 1}, timeout=30).status_code == 401
    assert requests.post(write, json={"name": "intruder"}, timeout=30).status_code == 401
    wrong = ("admin", "not-the-password-at-all")
    assert requests.get(read, params={"max_results": 1}, auth=wrong, timeout=30).status_code == 401
    assert requests.post(write, json={"name": "intruder"}, auth=wrong, timeout=30).status_code == 401
    assert requests.get(read, params={"max_results": 1}, auth=lab.admin(), timeout=30).status_code == 200
    assert requests.get(f"{lab.url}/health", timeout=30).status_code == 200  # the health check stays open


def test_a_user_without_permission_on_an_experiment_cannot_write_to_it(lab: Lab):
    admin = requests.Session()
    admin.auth = lab.admin()
    api = f"{lab.url}/api/2.0/mlflow"
    made = admin.post(f"{api}/experiments/create", json={"name": "not-bobs"}, timeout=30)
    assert made.status_code == 200, made.text
    theirs = made.json()["experiment_id"]
    bob = lab.add_user("bob", "--experiment", "bobs", password="bob-chose-this-passphrase")
    assert credentials.read(bob) == ("bob", "bob-chose-this-passphrase") and (os.stat(bob).st_mode & 0o777) == 0o600
    login = credentials.read(bob)
    denied = requests.post(f"{api}/runs/create", json={"experiment_id": theirs}, auth=login, timeout=30)
    assert denied.status_code == 403
    assert requests.get(f"{api}/experiments/get", params={"experiment_id": theirs}, auth=login,
                        timeout=30).status_code == 403  # NO_PERMISSIONS: not even read
    own = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": "bobs"}, auth=login, timeout=30)
    assert own.status_code == 200  # the login works: it is the grant that is missing
    created = requests.post(f"{api}/runs/create", json={"experiment_id": own.json()["experiment"]["experiment_id"]},
                            auth=login, timeout=30)
    assert created.status_code == 200, created.text


def _sweep(lab: Lab, cwd: Path, creds: Path, *args: str) -> subprocess.CompletedProcess:
    """A 2-job sweep; the login's path comes from SEGSWEEP_TRACKING_CREDENTIALS (the single-run test passes
    tracking.credentials): the sweep's parent run is named by its overrides, at most 250 characters."""
    fast = [o for o in FAST if not o.startswith("train.epochs=")]
    cmd = [sys.executable, str(REPO / "sweep.py"), "-m", "tracking=server", "scale=1,2", *fast, "train.epochs=1",
           f"hydra.sweep.dir={cwd / 'sweep'}", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(MLFLOW_TRACKING_URI=lab.url, CUDA_VISIBLE_DEVICES="",
                                             SEGSWEEP_TRACKING_CREDENTIALS=str(creds)))


def test_a_pool_sweep_runs_through_the_authenticated_server(lab: Lab):
    alice = lab.add_user("alice")  # EDIT on every experiment, present and future
    cwd = lab.root / "pool"
    cwd.mkdir()
    result = _sweep(lab, cwd, alice, "launcher=gpus", "hydra.launcher.workers=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(lab.store)
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    jobs = [r for r in runs if r.data.tags.get("segsweep.workdir", "").startswith(str(cwd))]
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
    assert_no_secret_outside_its_file(lab)


def test_a_wrong_password_fails_the_job_in_one_line_before_training(lab: Lab):
    wrong = credentials.write(lab.root / "wrong" / "alice.credentials", "alice", "a-wrong-password-for-alice")
    result = subprocess.run([sys.executable, str(REPO / "sweep.py"), "tracking=server",
                             f"tracking.credentials={wrong}", *FAST], cwd=wrong.parent, capture_output=True,
                            text=True, timeout=300, env=subprocess_env(MLFLOW_TRACKING_URI=lab.url))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0].startswith(f"error: 401 from {lab.url}: check tracking.credentials")
    assert "a-wrong-password" not in result.stdout + result.stderr
    assert not list((wrong.parent / "outputs").rglob("checkpoint*"))  # it never trained
    sweep = _sweep(lab, wrong.parent, wrong, "launcher=gpus", "hydra.launcher.workers=2")  # a sweep: the same line
    errors = [line for line in sweep.stderr.splitlines() if line.startswith("error:")]
    assert sweep.returncode == 2 and len(errors) == 1 and "Traceback" not in sweep.stderr, sweep.stderr[-3000:]
    assert errors[0].startswith(f"error: 401 from {lab.url}: check tracking.credentials")


def test_a_slurm_sweep_runs_through_the_authenticated_server(lab: Lab):
    from tests.slurm.cluster import cancel_jobs_under, find_partition, why_unreachable

    reason = why_unreachable()
    if reason is not None:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    carol = lab.add_user("carol", "--experiment", "synthetic")  # seed=7 below: not the pool test's run keys
    cwd = lab.root / "slurm"
    cwd.mkdir()
    try:
        result = _sweep(lab, cwd, carol, "seed=7", "launcher=slurm", f"hydra.launcher.partition={find_partition()}",
                        "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
                        "hydra.launcher.timeout_min=10")
    finally:
        cancel_jobs_under(cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(lab.store)
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    jobs = [r for r in runs if r.data.tags.get("segsweep.workdir", "").startswith(str(cwd))]
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}, [r.info.status for r in jobs]
    assert all("segsweep.slurm_job_id" in r.data.tags for r in jobs)
    logs = list((cwd / "sweep" / ".submitit").rglob("*.out"))
    assert logs, "the SLURM logs are there to be searched"
    assert_no_secret_outside_its_file(lab)
