"""One run key trains once: its claim (an exclusive flock on ``<run dir>.claim``) against real processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweeper import naming, tracking
from sweeper.task import claim, claim_path, run_dir, run_job
from tests.checks import read_line, wait_exit
from tests.conftest import FAST

HOLDER = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.write(f"process {os.getpid()} on {os.uname().nodename}")
handle.flush()
print("held", flush=True)
time.sleep(300)
"""


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("synthetic")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_key_claimed_by_another_process_is_left_alone_until_that_process_dies(store: str, tmp_path: Path):
    cfg = naming.compose_config([*FAST, "train.epochs=1", f"output_root={tmp_path / 'out'}"])
    workdir = run_dir(cfg, naming.compose(cfg), naming.config_hash(cfg))
    path = claim_path(workdir)
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(holder, "the claim holder", timeout=120).strip() == "held"
        left = run_job(cfg)  # no run of the key exists: only the claim can say it is running elsewhere
        assert left["status"] == "SKIPPED" and left["reason"] == "running"
        assert left["claimed_by"] == f"process {holder.pid} on {os.uname().nodename}"
        assert _runs(store) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        wait_exit(holder, "the killed claim holder", timeout=10)
    with claim(workdir) as mine:  # a killed holder leaves the claim free
        assert mine is None


def _race(overrides: list[str], start: Any, results: Any) -> None:
    """One contender: compose the cell and open the store, wait for the other, then run it."""
    cfg = naming.compose_config(overrides)
    tracking.ensure_experiment(tracking.tracking_uri(cfg), "synthetic")
    start.wait(timeout=300)
    results.put(run_job(cfg))


@pytest.mark.slow
def test_two_processes_racing_on_one_key_train_it_once(store: str, tmp_path: Path):
    overrides = [*FAST, "train.epochs=1", f"output_root={tmp_path / 'out'}"]
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(2), spawn.Queue()
    racers = [spawn.Process(target=_race, args=(overrides, start, results)) for _ in range(2)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=600) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    (trained,) = [o for o in outcomes if o["status"] == "FINISHED"]
    (other,) = [o for o in outcomes if o["status"] != "FINISHED"]
    assert other["status"] == "SKIPPED"
    # it found the claim held (not just a heartbeat), or came after the other had finished
    assert other.get("claimed_by") or other.get("reason") is None, other
    (run,) = _runs(store)
    assert run.info.run_id == trained["run_id"] and run.info.status == "FINISHED"
