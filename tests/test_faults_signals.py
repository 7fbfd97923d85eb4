"""SIGTERM and SIGINT to real runs and sweeps (local, pool, detached): every process ends within
seconds, the cut runs are KILLED (a re-run resumes them), the parent run is closed, the sweep lock is
released and the command prints one line. Real processes, real signals, a real sqlite store."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper import shutdown, tracking
from tests.checks import duplicate_rows, read_line, wait_exit
from tests.conftest import FAST, REPO, subprocess_env, wait_until

LONG = [*FAST, "train.epochs=1", "train.max_steps_per_epoch=null"]  # with scale=1000+: mid-training when signalled


def _start(*args: str, tmp_path: Path, store: str, **env: str) -> subprocess.Popen:
    """``sweep.py`` in its own process group (as a terminal runs a command), output to files."""
    out, err = (tmp_path / "stdout").open("w"), (tmp_path / "stderr").open("w")
    return subprocess.Popen([sys.executable, str(REPO / "sweep.py"), *args, f"output_root={tmp_path / 'out'}"],
                            cwd=tmp_path, stdout=out, stderr=err, start_new_session=True,
                            env=subprocess_env(MLFLOW_TRACKING_URI=store, **env))


def _runs(store: str, kind: str | None = None) -> list:
    """The store's job runs (``kind=None``) or parent runs; none before the sweep has created the store
    (an MlflowClient here would create it too, racing the sweep's own creation)."""
    if not Path(store.removeprefix("sqlite:///")).exists():
        return []
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("synthetic")
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    return [r for r in runs if r.data.tags.get("segsweep.kind") == kind]


def _wait(condition, what: str, timeout: float = 120.0) -> None:
    wait_until(condition, what, timeout=timeout, poll=0.1)  # signals are timed: look often


def _wait_running(store: str, count: int) -> list[int]:
    """Wait until ``count`` job runs are RUNNING with a heartbeat; returns their processes' pids."""
    def running() -> list:
        return [r for r in _runs(store) if r.info.status == "RUNNING" and "segsweep.steps_per_epoch" in r.data.tags]
    _wait(lambda: len(running()) >= count, f"{count} RUNNING run(s)")
    return [int(r.data.tags["segsweep.heartbeat"].split(":")[1].split("@")[0]) for r in running()]


def _alive(pid: int) -> bool:
    """Alive until every thread has exited (a main thread reads "Z" while the others still finish)."""
    return Path(f"/proc/{pid}").exists() and tracking.pid_alive(pid)


def _stderr(tmp_path: Path) -> str:
    return (tmp_path / "stderr").read_text()


def _assert_one_stopped_line(tmp_path: Path, signame: str) -> None:
    stderr = _stderr(tmp_path)
    assert "Traceback" not in stderr, stderr[-3000:]
    stopped = [line for line in stderr.splitlines() if line.startswith("[segsweep] stopped by")]
    assert stopped == [f"[segsweep] stopped by {signame}: the runs it cut are KILLED; run the same command "
                       f"again to resume them"], stderr[-3000:]


def _assert_lock_free(sweep_dir: Path) -> None:
    with (sweep_dir / ".lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError while still held


@pytest.mark.slow
def test_sigterm_to_a_single_run_marks_it_killed_with_one_line(store: str, tmp_path: Path):
    proc = _start(*LONG, "scale=1000", tmp_path=tmp_path, store=store)
    (pid,) = _wait_running(store, 1)
    assert pid == proc.pid
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    _assert_one_stopped_line(tmp_path, "SIGTERM")
    (run,) = _runs(store)
    assert run.info.status == "KILLED" and run.data.tags["segsweep.stopped"] == "SIGTERM"
    assert duplicate_rows(store) == []


@pytest.mark.slow
def test_ctrl_c_of_a_local_sweep_then_the_rerun_resumes_into_the_same_run(store: str, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0", *FAST, "train.max_steps_per_epoch=6", f"hydra.sweep.dir={sweep_dir}"]
    proc = _start(*args, tmp_path=tmp_path, store=store)
    _wait(lambda: any((tmp_path / "out").rglob("checkpoint.pt")), "the checkpoint of epoch 1")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    _assert_one_stopped_line(tmp_path, "SIGINT")
    (cut,) = _runs(store)
    (parent,) = _runs(store, kind="sweep")
    assert cut.info.status == "KILLED" and parent.info.status == "KILLED"
    _assert_lock_free(sweep_dir)
    assert duplicate_rows(store) == []

    rerun = subprocess.run([sys.executable, str(REPO / "sweep.py"), *args, f"output_root={tmp_path / 'out'}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (run,) = _runs(store)
    assert run.info.run_id == cut.info.run_id and run.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, "val_mIoU")]
    assert sorted(steps) == [1, 2]  # resumed after epoch 1: no step twice
    assert _runs(store, kind="sweep")[0].info.status == "FINISHED"
    assert duplicate_rows(store) == []  # SIGINT and the re-run: every curve, the parent's counters too


@pytest.mark.slow
def test_ctrl_c_of_a_pool_sweep_ends_its_workers_and_kills_every_run(store: str, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    proc = _start("-m", "launcher=gpus", "hydra.launcher.workers=2", "scale=1000,1001", *LONG, f"hydra.sweep.dir={sweep_dir}",
                  tmp_path=tmp_path, store=store, CUDA_VISIBLE_DEVICES="")
    workers = _wait_running(store, 2)
    assert proc.pid not in workers
    os.killpg(proc.pid, signal.SIGINT)  # the whole foreground group, as a terminal sends it
    assert proc.wait(timeout=40) == 128 + signal.SIGINT
    _assert_one_stopped_line(tmp_path, "SIGINT")
    assert not [pid for pid in workers if _alive(pid)]  # no orphan keeps training
    runs = _runs(store)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}
    assert {r.data.tags["segsweep.stopped"] for r in runs} == {"SIGTERM"}  # the launcher stopped them
    assert _runs(store, kind="sweep")[0].info.status == "KILLED"
    _assert_lock_free(sweep_dir)
    assert duplicate_rows(store) == []


WATCHED = """
import os, subprocess, sys, time
if sys.argv[1] == "parent":  # starts the worker, prints its pid, waits to be killed -9
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], "child"], stdout=subprocess.PIPE, text=True)
    print(child.stdout.readline().strip(), flush=True)
    time.sleep(60)
else:
    import signal
    from sweeper import shutdown, tracking
    shutdown.install()
    shutdown.watch_parent(interval_s=0.1)
    print(os.getpid(), flush=True)
    try:
        time.sleep(60)
    except KeyboardInterrupt as stop:  # where a pool worker marks its run KILLED
        sys.exit(shutdown.exit_code(stop))
"""


def test_a_worker_whose_launcher_is_killed_9_stops_instead_of_training_on():
    parent = subprocess.Popen([sys.executable, "-c", WATCHED, "parent", WATCHED], stdout=subprocess.PIPE, text=True,
                              env=subprocess_env(PYTHONPATH=str(REPO)))
    worker = int(read_line(parent, "the worker's pid", timeout=60))
    parent.kill()
    wait_exit(parent, "the killed launcher", timeout=10)
    _wait(lambda: not _alive(worker), "the orphaned worker to stop", timeout=20)


def test_a_signal_while_stopping_is_ignored_and_slurm_jobs_keep_their_handlers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(shutdown._received, "signum", None)
    with pytest.raises(shutdown.Interrupted) as first:
        shutdown._on_signal(signal.SIGTERM, None)
    assert first.value.signum == signal.SIGTERM and isinstance(first.value, KeyboardInterrupt)
    assert shutdown._on_signal(signal.SIGINT, None) is None  # the first stop goes on
    assert shutdown.requested() == signal.SIGTERM
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    before = signal.getsignal(signal.SIGTERM)
    assert shutdown.install() is False and signal.getsignal(signal.SIGTERM) is before  # submitit's to requeue


def test_workers_that_ignore_sigterm_are_killed_after_the_grace_period():
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print(flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                                start_new_session=True)
    read_line(stubborn, "the stubborn worker", timeout=60)  # its handler is in place
    started = time.monotonic()
    shutdown.stop_processes([stubborn], grace_s=1.0)
    assert stubborn.poll() == -signal.SIGKILL and time.monotonic() - started < 10


@pytest.mark.slow
def test_sigterm_to_a_detached_sweep(store: str, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    started = subprocess.run([sys.executable, str(REPO / "sweep.py"), "-m", "scale=1000,1001", *LONG,
                              "hydra.launcher.detach=true", f"hydra.sweep.dir={sweep_dir}",
                              f"output_root={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300, env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert started.returncode == 0, started.stderr[-3000:]
    pid = int((sweep_dir / "detached.pid").read_text())
    assert _wait_running(store, 1) == [pid]
    os.kill(pid, signal.SIGTERM)
    _wait(lambda: not _alive(pid), "the detached process to end", timeout=30)
    log = (sweep_dir / "detached.log").read_text()
    assert "Traceback" not in log and shutdown.stopped_line(shutdown.Interrupted(signal.SIGTERM)) in log
    (run,) = _runs(store)  # the second cell never started
    assert run.info.status == "KILLED" and _runs(store, kind="sweep")[0].info.status == "KILLED"
    assert "segsweep.error" not in run.data.tags  # closed by its own process, not by status
    _assert_lock_free(sweep_dir)
    assert duplicate_rows(store) == []
    # a watched status of it ends, with its final table and exit 1: the second cell was left PENDING
    watched = subprocess.run([sys.executable, "-m", "sweeper", "status", str(sweep_dir), "--watch", "0.5"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert watched.returncode == 1, watched.stdout[-2000:] + watched.stderr[-2000:]
    assert "1 KILLED, 1 PENDING" in watched.stdout and "the sweep's process is gone" in watched.stdout
