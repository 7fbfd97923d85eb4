"""One run across two SLURM nodes: ``hydra.launcher.nodes=2 hydra.launcher.tasks_per_node=1``, gloo on CPU.

Needs the local cluster's 2-node partition (``LOCAL_SLURM_NODES=2 scripts/local-slurm-start.sh``: node
``<host>2`` in a network namespace, partition ``multi``). Without it the test skips with the reason; with
``REQUIRE_SLURM=1`` and ``SEGSWEEP_SLURM_MULTI_PARTITION`` set (as in ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper.slurm import read_manifest, sacct_states
from tests import conftest
from tests.checks import duplicate_rows
from tests.slurm.cluster import cancel_jobs_under, jobs_under, release_requeued, why_unreachable

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
MULTI_ENV = "SEGSWEEP_SLURM_MULTI_PARTITION"
START_HINT = "start it as root with: LOCAL_SLURM_NODES=2 LOCAL_SLURM_CPUS=4 scripts/local-slurm-start.sh"
#: epochs long enough that the job still trains when SLURM kills it (KillWait=5 s after SIGTERM)
EPOCHS = 12
TINY = ["dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32", "dataset.crop_size=32",
        "batch_size=4", f"train.epochs={EPOCHS}", "train.max_steps_per_epoch=4", "device=cpu"]


def why_no_multi(partition: str) -> str | None:
    """None when ``partition`` has two nodes that take jobs, else the reason in one line."""
    reason = why_unreachable()
    if reason is not None:
        return reason
    out = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N %t"], capture_output=True, text=True,
                         timeout=10, check=False).stdout.split("\n")
    usable = {line.split()[0] for line in out if line.strip() and line.split()[1].rstrip("*") in
              {"idle", "mix", "alloc", "comp"}}
    if len(usable) < 2:
        return f"no 2-node SLURM partition {partition!r} (sinfo: {' '.join(out).strip() or 'none'}); {START_HINT}"
    return None


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[str]:
    """The 2-node partition; skip (fail under REQUIRE_SLURM=1 with $SEGSWEEP_SLURM_MULTI_PARTITION set) without
    it. The test's jobs are cancelled after."""
    partition = os.environ.get(MULTI_ENV) or "multi"
    reason = why_no_multi(partition)
    if reason is not None:
        if os.environ.get("REQUIRE_SLURM") == "1" and os.environ.get(MULTI_ENV):
            pytest.fail(f"REQUIRE_SLURM=1 and {MULTI_ENV}={partition} but {reason}", pytrace=False)
        pytest.skip(reason)
    yield partition
    left = cancel_jobs_under(tmp_path)
    assert not jobs_under(tmp_path), f"jobs still alive after scancel: {left}"


def sweep(cwd: Path, partition: str, *args: str) -> None:
    """``python sweep.py -m launcher=slurm`` with one cell of 2 nodes x 1 task, detached."""
    cmd = [sys.executable, str(REPO / "sweep.py"), "-m", "launcher=slurm", *TINY, f"output_root={cwd / 'out'}",
           f"hydra.sweep.dir={cwd / 'sweep'}", f"hydra.launcher.partition={partition}",
           "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=1", "hydra.launcher.gpus_per_node=null",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", "hydra.launcher.detach=true", *args]
    env = conftest.subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}")
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):  # SLURM's, not the caller's
        env.pop(var, None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def task_result(stdout: Path, task: int) -> dict:
    """What task ``task`` of the job returned (submitit's ``<job>_<task>_result.pkl`` beside its log)."""
    path = stdout.with_name(stdout.name.replace("_0_log.out", f"_{task}_result.pkl"))
    outcome, ret = pickle.loads(path.read_bytes())
    assert outcome == "success", ret
    return ret.return_value


def test_two_node_run_trains_logs_once_and_resumes_after_requeue(multi: str, tmp_path: Path) -> None:
    sweep(tmp_path, multi)
    (cell,) = read_manifest(tmp_path / "sweep")
    job = cell["slurm_job_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = lambda: client.get_experiment_by_name("synthetic")  # noqa: E731 - rank 0 creates it
    cells = lambda: [r for r in client.search_runs([experiment().experiment_id])  # noqa: E731
                     if r.data.tags.get("segsweep.kind") is None] if experiment() else []

    conftest.wait_until(lambda: any(client.get_metric_history(r.info.run_id, "val_mIoU") for r in cells()),
                        "the first epoch in MLflow", timeout=240, poll=1)
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    (before,) = cells()
    assert before.info.status == "RUNNING", "the run ended before the requeue: make its epochs longer"
    release_requeued(job)
    conftest.wait_until(lambda: sacct_states([job]).get(job) == "COMPLETED", "the requeued job to complete",
                        timeout=240, poll=1)

    (after,) = cells()  # one run for the two ranks and the two attempts
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["segsweep.slurm_requeues"] == "1"
    steps = [m.step for m in client.get_metric_history(after.info.run_id, "val_mIoU")]
    assert sorted(steps) == list(range(1, EPOCHS + 1))
    assert duplicate_rows(f"sqlite:///{tmp_path / 'mlflow.db'}") == []
    lead, other = (task_result(Path(cell["stdout"]), task) for task in (0, 1))
    assert lead["run_id"] == other["run_id"] == after.info.run_id and other["rank"] == 1
    assert other["value"] == lead["value"]  # the ranks ended on one model (same epochs, same checkpoint)
    nodes = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "NodeList"], capture_output=True,
                           text=True, check=True).stdout.split()
    host = os.uname().nodename
    assert other["node"] == f"{host}2" and nodes == [f"{host},{host}2"]  # rank 1 on the other node
    log = Path(cell["stdout"]).read_text()
    assert f"rank 0 of 2 on {host} (gloo)" in log and "[segsweep] skipped" not in log
    assert f"resuming {cell['name']} seed={cell['seed']} into run {before.info.run_id}" in log
    rank1 = Path(cell["stdout"].replace("_0_log.out", "_1_log.out")).read_text()
    assert f"rank 1 of 2 on {host}2 trains" in rank1 and f"into run {before.info.run_id}" in rank1
