"""Many writers at once: 8 job processes writing into one sqlite store, directly and through
`python -m sweeper server`. Real processes, real stores: 0 lost runs, 0 lock errors, every metric."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper import server, tracking
from tests.checks import stop
from tests.conftest import REPO, subprocess_env

WRITERS, EPOCHS = 8, 10
WRITER = """
import sys, time
from omegaconf import OmegaConf
from sweeper import tracking
uri, experiment_id, i = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = tracking.client_for(uri)
cfg = OmegaConf.create({"writer": i, "group": {f"p{k}": k * i for k in range(60)}})
tags = {"mlflow.runName": f"w{i}", "segsweep.run_key": f"w{i}@x", "segsweep.name": f"w{i}"}
run_id = tracking.create_run(client, experiment_id, cfg, tags)
cb = tracking.MlflowCallback(client, run_id)
with tracking.Heartbeat(uri, run_id, 0.05):
    cb.on_train_start({"params_M": 1.0, "steps_per_epoch": 3, "device": "cpu"})
    for epoch in range(1, __EPOCHS__ + 1):
        cb.on_epoch_end(epoch, {"train_loss": 1.0 / epoch, "lr": 0.1, "val_mIoU": epoch + i,
                                **{f"val_IoU/c{c}": float(c) for c in range(8)}})
    cb.on_train_end({"final_val_mIoU": 50.0 + i})
client.set_terminated(run_id, "FINISHED")
print(run_id)
""".replace("__EPOCHS__", str(EPOCHS))


def _writers(uri: str, experiment_id: str, cwd: Path) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, experiment_id, str(i)], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(MLFLOW_TRACKING_URI=uri)) for i in range(WRITERS)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def _check(uri: str, results: list[subprocess.CompletedProcess]) -> None:
    errors = [r.stderr[-1500:] for r in results if r.returncode != 0]
    assert not errors, errors[0]
    assert not any("database is locked" in r.stderr for r in results)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("writers").experiment_id])
    assert len(runs) == WRITERS and {r.info.status for r in runs} == {"FINISHED"}  # 0 lost runs
    assert {r.info.run_id for r in runs} == {r.stdout.strip().splitlines()[-1] for r in results}
    for run in runs:
        assert len(run.data.params) == 61
        for key in ("train_loss", "val_mIoU", "val_IoU/c7", "epoch"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)
        assert run.data.metrics["final_val_mIoU"] >= 50 and tracking.HEARTBEAT_TAG in run.data.tags


def test_8_writers_at_once_into_one_sqlite_store(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "writers")  # store created once, before the jobs
    _check(uri, _writers(uri, experiment_id, tmp_path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(store: str, tmp_path: Path) -> Iterator[str]:
    """`scripts/mlflow-server.sh` on a free port over ``store``; yields its URL, stops it afterwards."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(REPO / "scripts" / "mlflow-server.sh"), "--port", str(port), "--store", store,
                             "--artifacts", str(tmp_path / "artifacts")],
                            stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(url, timeout_s=180)
        yield url
    finally:
        stop(proc)
        log.close()


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    with serving(f"sqlite:///{tmp_path / 'server.db'}", tmp_path) as url:
        yield url


def test_8_writers_at_once_through_the_server(mlflow_server: str, tmp_path: Path):
    experiment_id = tracking.ensure_experiment(mlflow_server, "writers")
    _check(mlflow_server, _writers(mlflow_server, experiment_id, tmp_path))
    client = MlflowClient(mlflow_server)
    run = client.search_runs([experiment_id], max_results=1)[0]
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}  # served artifacts


def test_server_refuses_an_unusable_store(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = subprocess.run([sys.executable, "-m", "sweeper", "server", "--store",
                             f"sqlite:///{not_a_dir / 'x.db'}"], capture_output=True, text=True, timeout=120,
                            env=subprocess_env())
    assert result.returncode == 2 and result.stderr.startswith("error: cannot use the backend store")


def test_a_pool_sweep_tracked_through_the_server(mlflow_server: str, tmp_path: Path):
    from tests.conftest import FAST

    result = subprocess.run([sys.executable, str(REPO / "sweep.py"), "-m", "tracking=server", "launcher=gpus",
                             "hydra.launcher.workers=2", "scale=1,2", *FAST, "train.epochs=1",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_server,
                                                                       CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    jobs = [r for r in runs if r.data.tags.get("segsweep.kind") != "sweep"]
    assert len(jobs) == 2 and {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 3
    for run in jobs:
        assert "traceback.txt" not in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mIoU")] == [1]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow
def test_kill_of_the_server_pid_stops_the_whole_server_and_frees_the_port(tmp_path: Path):
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeper", "server", "--port", str(port), "--store",
                                 f"sqlite:///{tmp_path / 'server.db'}", "--artifacts", str(tmp_path / "artifacts")],
                                stdout=out, stderr=subprocess.STDOUT, env=subprocess_env())
    try:
        server.wait_ready(f"http://127.0.0.1:{port}", timeout_s=180)
        below = _children(proc.pid)
        assert below, "mlflow server runs below `python -m sweeper server`"
        os.kill(proc.pid, signal.SIGTERM)  # `kill <pid>`, as the start line says
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 10
    while [pid for pid in below if _alive(pid)] and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in below if _alive(pid)]  # no uvicorn worker left holding the port
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    text = log.read_text()
    assert f"stop it with Ctrl-C or `kill {proc.pid}`" in text and "MLflow server stopped (SIGTERM)" in text


def test_default_workers_fit_the_machine():
    assert [server.default_workers(n) for n in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 4]


def test_a_database_store_gets_a_connection_pool_for_many_writers():
    """MLflow's default pool (5 + 10 a worker) refused 64 writers (HTTP 400 QueuePool limit); the server
    sizes it for a database store within PostgreSQL's default 100 connections, never for sqlite, and a
    setting of the user's own wins."""
    from sweeper import server

    for workers in (1, 2, 4):
        env = server.pool_env("postgresql://u@h/db", workers, environ={})
        size, overflow = int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]), int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"])
        assert size + overflow >= 16 and workers * (size + overflow) <= server.DB_CONNECTIONS < 100
    assert int(server.pool_env("postgresql://u@h/db", 1, environ={})["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) >= 32
    assert server.pool_env("sqlite:////tmp/m.db", 1, environ={}) == {}
    mine = server.pool_env("postgresql://u@h/db", 1, environ={"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "3"})
    assert set(mine) == {"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"}
