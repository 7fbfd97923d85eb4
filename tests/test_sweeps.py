"""Sweeps that survive real life: parent/child runs, skip/take-over rules, failure isolation with a
summary and exit status, the local pool launcher. Real `sweep.py` processes, real sqlite stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from sweeper import naming, pool, tracking
from sweeper.task import run_dirname, run_job
from tests.checks import duplicate_rows, wait_exit
from tests.conftest import FAST, REPO, subprocess_env, wait_until

ONE_EPOCH = [*FAST, "train.epochs=1"]


def _sweep(*args: str, cwd: Path, uri: str, timeout: int = 600, env: dict | None = None):
    return subprocess.run([sys.executable, str(REPO / "sweep.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(MLFLOW_TRACKING_URI=uri, **(env or {})))


def _runs(uri: str) -> tuple[list, list]:
    """(job runs, sweep parent runs) of the synthetic experiment."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("synthetic")
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    return ([r for r in runs if r.data.tags.get("segsweep.kind") != "sweep"],
            [r for r in runs if r.data.tags.get("segsweep.kind") == "sweep"])


def test_failing_job_is_isolated_summarised_and_rerun_reopens_the_sweep(store: str, tmp_path: Path):
    args = ["-m", "lr=1e-3,1e30", *ONE_EPOCH, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = _sweep(*args, cwd=tmp_path, uri=store)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "sweep summary" in first.stdout and "1 failed, 1 finished" in first.stdout, first.stdout[-2000:]
    jobs, (parent,) = _runs(store)
    assert parent.info.status == "FAILED" and parent.info.run_name.startswith("sweep lr=1e-3,1e30 ")
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {r.data.tags["segsweep.sweep_id"] for r in jobs} == {parent.data.tags["segsweep.sweep_id"]}
    by_status = {r.info.status: r for r in jobs}
    assert set(by_status) == {"FINISHED", "FAILED"}
    failed = by_status["FAILED"]
    assert failed.data.tags["segsweep.error"].startswith("NonFiniteLossError: training loss became nan")
    client = MlflowClient(store)
    assert "traceback.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    text = Path(client.download_artifacts(failed.info.run_id, "traceback.txt", str(tmp_path / "a"))).read_text()
    assert "Traceback" in text and "NonFiniteLossError" in text
    assert failed.info.run_id in first.stdout and by_status["FINISHED"].info.run_id in first.stdout
    assert duplicate_rows(store) == []  # no (run, key, step) twice: the parent's counters, the jobs' curves

    again = _sweep(*args, cwd=tmp_path, uri=store)  # the same command: finished skipped, failed re-run
    assert again.returncode == 1
    assert "1 failed, 1 skipped" in again.stdout, again.stdout[-2000:]
    jobs, (parent2,) = _runs(store)
    assert parent2.info.run_id == parent.info.run_id  # re-opened, not duplicated
    assert sorted(r.info.status for r in jobs) == ["FAILED", "FAILED", "FINISHED"]
    assert duplicate_rows(store) == []  # the re-opened parent's counters go on at later steps
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "jobs_total")]
    assert steps == sorted(set(steps)) and len(steps) >= 5, steps  # a curve: a point per record


def test_rerun_of_a_finished_2x2_sweep_trains_nothing(store: str, tmp_path: Path):
    args = ["-m", "backbone=dense30k12,dense30k36", "scale=1,2", *ONE_EPOCH, f"hydra.sweep.dir={tmp_path / 's'}"]
    first = _sweep(*args, cwd=tmp_path, uri=store)
    assert first.returncode == 0, first.stderr[-3000:]
    started = time.perf_counter()
    again = _sweep(*args, cwd=tmp_path, uri=store)
    wall = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 skipped" in again.stdout and "[segsweep] run " not in again.stdout, again.stdout[-2000:]
    jobs, parents = _runs(store)
    assert len(jobs) == 4 and len(parents) == 1
    print(f"re-run of a finished 2x2 sweep: {wall:.1f} s (process start included)")


def _cfg(tmp_path: Path, *extra: str):
    return naming.compose_config([*FAST, "train.epochs=2", f"output_root={tmp_path / 'out'}", *extra])


def _as_running(client: MlflowClient, run_id: str, beat: str) -> None:
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, tracking.HEARTBEAT_TAG, beat)


def test_running_runs_are_left_alone_or_taken_over_by_heartbeat(store: str, tmp_path: Path):
    cfg = _cfg(tmp_path)
    client = MlflowClient(store)
    run_id = run_job(cfg)["run_id"]
    host = os.uname().nodename
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _as_running(client, run_id, f"{time.time():.0f}:{sleeper.pid}@{host}")  # live process here
        left = run_job(cfg)
        assert left["status"] == "SKIPPED" and left["reason"] == "running" and left["run_id"] == run_id
        _as_running(client, run_id, f"{time.time():.0f}:1234@another-node")  # fresh beat elsewhere
        assert run_job(cfg)["status"] == "SKIPPED"
    finally:
        sleeper.kill()
        wait_exit(sleeper, "the killed sleeper", timeout=10)
    _as_running(client, run_id, f"{time.time():.0f}:{sleeper.pid}@{host}")  # its process is gone
    taken = run_job(cfg)
    assert taken["status"] == "FINISHED" and taken["run_id"] == run_id  # resumed from its checkpoint
    _as_running(client, run_id, f"{time.time() - 3600:.0f}:1234@another-node")  # stale elsewhere
    assert run_job(cfg)["status"] == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "val_mIoU")]
    assert sorted(steps) == [1, 2]
    assert client.get_run(run_id).data.tags[tracking.HEARTBEAT_TAG].endswith(f":{os.getpid()}@{host}")


def test_pool_slots_per_gpu_and_cpu_workers():
    opts = OmegaConf.create({"gpus_per_job": 2, "workers": 3})
    assert pool.slots(opts, gpus=["0", "1", "2", "3", "4"]) == [["0", "1"], ["2", "3"]]
    assert pool.slots(OmegaConf.create({"gpus_per_job": 1}), gpus=["3", "5"]) == [["3"], ["5"]]
    assert pool.slots(opts, gpus=[]) == [None, None, None]
    try:
        pool.slots(OmegaConf.create({"gpus_per_job": 4}), gpus=["0", "1"])
    except ValueError as error:
        assert "gpus_per_job=4" in str(error) and "2 GPU(s)" in str(error)
    else:
        raise AssertionError("gpus_per_job above the visible GPUs must be refused")


def test_gpus_pool_runs_jobs_in_workers_one_gpu_each(store: str, tmp_path: Path):
    # no GPU here: CUDA_VISIBLE_DEVICES=0,1 makes the pool hand out two slots; torch is CPU-only, so the
    # jobs train on the CPU while each sees its own CUDA_VISIBLE_DEVICES (recorded as a tag)
    result = _sweep("-m", "launcher=gpus", "scale=1,2", "lr=1e-3,1e30", *ONE_EPOCH,
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, uri=store,
                    env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert "2 failed, 2 finished" in result.stdout, result.stdout[-3000:]
    jobs, (parent,) = _runs(store)
    assert len(jobs) == 4 and {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {r.data.tags["segsweep.cuda_visible_devices"] for r in jobs} == {"0", "1"}
    assert sorted(r.info.status for r in jobs) == ["FAILED"] * 2 + ["FINISHED"] * 2
    assert len(list((tmp_path / "sweep" / ".pool").glob("*.log"))) == 4


def test_kill_9_mid_epoch_then_rerun_resumes_to_the_uninterrupted_result(store: str, tmp_path: Path):
    overrides = [*FAST, "train.epochs=2", "train.max_steps_per_epoch=4"]
    cfg = naming.compose_config([*overrides, f"output_root={tmp_path / 'out'}"])
    checkpoint = (tmp_path / "out" / "runs" / "synthetic" /
                  run_dirname(naming.compose(cfg), naming.config_hash(cfg)) / "checkpoint.pt")
    args = [str(REPO / "sweep.py"), "-m", "seed=0", *overrides, f"output_root={tmp_path / 'out'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = subprocess_env(MLFLOW_TRACKING_URI=store)
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, 9)  # kill -9 during epoch 2 (epoch 1 is checkpointed)
    wait_exit(proc, "the sweep killed -9", timeout=30)
    assert checkpoint.exists() and proc.returncode == -9
    (killed,) = _runs(store)[0]
    assert killed.info.status == "RUNNING"  # what kill -9 leaves behind

    rerun = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "taking over" in rerun.stdout and "resuming" in rerun.stdout, rerun.stdout[-2000:]
    (run,) = _runs(store)[0]
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    client = MlflowClient(store)
    for key in ("val_mIoU", "train_loss", "lr_epoch"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2], (key, steps)
    assert duplicate_rows(store) == []  # kill -9 and the re-run: the child's curve continues, the parent's too

    reference_uri = f"sqlite:///{tmp_path / 'ref.db'}"  # the same command, never interrupted
    ref = subprocess.run([sys.executable, *args[:-2], f"output_root={tmp_path / 'ref'}",
                          f"hydra.sweep.dir={tmp_path / 'ref-sweep'}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=subprocess_env(MLFLOW_TRACKING_URI=reference_uri))
    assert ref.returncode == 0, ref.stderr[-3000:]
    (uninterrupted,) = _runs(reference_uri)[0]
    for key in ("train_loss", "val_mIoU", "final_val_mIoU"):  # bit-exact on CPU with the same threads
        assert run.data.metrics[key] == uninterrupted.data.metrics[key], key


def _status(*args: str, cwd: Path, uri: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper", "status", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(MLFLOW_TRACKING_URI=uri))


def test_detached_sweep_returns_at_once_and_status_follows_it(store: str, tmp_path: Path):
    sweep_dir = tmp_path / "outputs" / "sweeps" / "d"
    result = _sweep("-m", "lr=1e-3,1e30", *ONE_EPOCH, "hydra.launcher.detach=true", f"hydra.sweep.dir={sweep_dir}",
                    cwd=tmp_path, uri=store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "detached: 2 jobs run in process" in result.stdout
    pid = int((sweep_dir / "detached.pid").read_text())
    watched = _status("--watch", "0.5", cwd=tmp_path, uri=store, timeout=300)  # the newest sweep under outputs/
    assert watched.returncode == 0, watched.stderr[-2000:]
    final = _status(str(sweep_dir), cwd=tmp_path, uri=store)
    assert final.returncode == 0, final.stderr[-2000:]
    lines = final.stdout.splitlines()
    assert f"detached process {pid}: " in final.stdout
    failed = next(line for line in lines if " FAILED " in line)
    finished = next(line for line in lines if " FINISHED " in line)
    assert "NonFiniteLossError: training loss became nan" in failed and "lr1e30" in failed
    assert " 1/1 " in finished
    jobs, (parent,) = _runs(store)
    assert {r.info.run_id for r in jobs} <= set(final.stdout.split())
    by_id = _status(parent.data.tags["segsweep.sweep_id"], cwd=tmp_path, uri=store)
    assert by_id.stdout.splitlines()[2:] == final.stdout.splitlines()[2:]  # the table
    missing = _status("nope", cwd=tmp_path, uri=store)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no sweep 'nope'")


def test_a_bad_cell_fails_the_sweep_before_any_job_with_either_launcher(store: str, tmp_path: Path):
    """segsweep_basic leaves validation to segsweep's launcher (it composes every cell first); with
    Hydra's basic launcher it validates as Hydra does. Either way nothing runs."""
    for launcher in ([], ["hydra/launcher=basic"]):
        result = _sweep("-m", "backbone=dense30k12,dense99k12", *ONE_EPOCH, *launcher,
                        f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, uri=store)
        assert result.returncode != 0 and "Could not find 'backbone/dense99k12'" in result.stderr, result.stderr
        assert "[segsweep] run " not in result.stdout
        assert _runs(store) == ([], [])


def test_segsweep_basic_validates_only_for_launchers_that_do_not_compose_first():
    from types import SimpleNamespace

    from hydra_plugins.segsweep_pool import SegsweepLocalLauncher
    from hydra_plugins.segsweep_pool.sweeper import SegsweepBasicSweeper

    sweeper = SegsweepBasicSweeper(max_batch_size=None)
    sweeper.launcher, sweeper.config = SegsweepLocalLauncher(), None
    sweeper.validate_batch_is_legal([["backbone=dense99k12"]])  # left to the launcher: no loader needed
    sweeper.launcher = SimpleNamespace()
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    with pytest.raises(AssertionError):  # Hydra's own validation ran (and found no loader)
        sweeper.validate_batch_is_legal([["backbone=dense99k12"]])


def test_the_sweep_dir_derives_from_the_sweep_and_one_runs_at_a_time(store: str, tmp_path: Path):
    """No timestamps: the jobs of a sweep share one dir named after its overrides, a re-run reuses it,
    another sweep gets another; the same sweep started while it runs (detached) is refused."""
    args = ["-m", "scale=1,2", *ONE_EPOCH, f"output_root={tmp_path / 'out'}"]
    first = _sweep(*args, cwd=tmp_path, uri=store)
    assert first.returncode == 0, first.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "out" / "sweeps").iterdir()
    assert sweep_dir.name.startswith("batch_size=4_dataset.crop_size=32_")
    assert sweep_dir.name.endswith(parent_sweep_id(store)) and {"0", "1"} <= {p.name for p in sweep_dir.iterdir()}
    assert _sweep(*args, cwd=tmp_path, uri=store).returncode == 0
    assert list((tmp_path / "out" / "sweeps").iterdir()) == [sweep_dir]

    # an epoch of hours: the detached process still holds its sweep when the same command comes again,
    # however loaded the machine; it is stopped (SIGSTOP: no CPU meanwhile) once its run trains, and
    # SIGTERM then ends it (its run KILLED)
    other = ["-m", "seed=7", *ONE_EPOCH, "dataset.num_train=1000000", "train.max_steps_per_epoch=null",
             f"output_root={tmp_path / 'out'}", "hydra.launcher.detach=true"]
    detached = _sweep(*other, cwd=tmp_path, uri=store)
    assert detached.returncode == 0 and "detached: 1 jobs" in detached.stdout, detached.stderr[-3000:]
    other_dir = next(p for p in (tmp_path / "out" / "sweeps").iterdir() if p != sweep_dir)
    pid = int((other_dir / "detached.pid").read_text())
    wait_until(lambda: any(r.info.status == "RUNNING" and "params_M" in r.data.metrics  # logged as it trains
                           for r in _runs(store)[0]), "the detached run training", timeout=300)
    os.kill(pid, signal.SIGSTOP)
    again = _sweep(*other, cwd=tmp_path, uri=store)  # while the detached process holds the sweep
    assert again.returncode == 2 and "error: this sweep is already running (detached process" in again.stderr
    assert len(list((tmp_path / "out" / "sweeps").iterdir())) == 2
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)
    # --watch ends (its deadline fails the test, never a hang); 0: the sweep closed its own run, status had
    # nothing to close (a job left RUNNING by its SIGTERMed sweep would be closed by status, exit 1)
    watched = _status(str(other_dir), "--watch", "0.5", cwd=tmp_path, uri=store, timeout=240)
    assert watched.returncode == 0, watched.stdout[-2000:] + watched.stderr[-2000:]
    jobs, parents = _runs(store)
    assert len(parents) == 2 and len(jobs) == 3
    assert sorted(r.info.status for r in jobs) == ["FINISHED", "FINISHED", "KILLED"]
    (killed,) = [r for r in jobs if r.info.status == "KILLED"]
    assert killed.data.tags["segsweep.stopped"] == "SIGTERM" and "segsweep.error" not in killed.data.tags


def parent_sweep_id(uri: str) -> str:
    _, (parent,) = _runs(uri)
    return parent.data.tags["segsweep.sweep_id"]


def test_sweep_dirname_is_stable_readable_and_ignores_launch_details():
    from sweeper.resolvers import sweep_dirname, sweep_id_of

    a = sweep_dirname(["backbone=dense30k36,dense30k48", "scale=12,16,20"])
    assert a == f"backbone=dense30k36,dense30k48_scale=12,16,20-{sweep_id_of(['scale=12,16,20', 'backbone=dense30k36,dense30k48'])}"
    assert sweep_dirname(["scale=12,16,20", "backbone=dense30k36,dense30k48", "hydra.launcher.detach=true",
                          "hydra.verbose=true", "+force=true"]) == a
    assert sweep_dirname(["scale=12,16"]) != sweep_dirname(["scale=12,16,20"])
    assert sweep_dirname([]).startswith("defaults-")
    odd = sweep_dirname(["name=camvid.scratch.imagesize321.dense30k48", "output_root=/a b/c", "x='y'"])
    assert "/" not in odd and " " not in odd and "'" not in odd
    assert len(sweep_dirname([f"k{i}=v" for i in range(100)])) <= 80 + 13
