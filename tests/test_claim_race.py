"""Two processes started at the same instant on one run key: exactly one trains it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST


def _race(overrides: list[str], start: Any, results: Any) -> None:
    """One contender: compose the cell, wait for the other, then run it."""
    from sweeper import naming
    from sweeper.task import run_job

    cfg = naming.compose_config(overrides)
    start.wait(timeout=120)
    results.put(run_job(cfg))


@pytest.mark.slow
def test_two_processes_racing_on_one_key_train_it_once(store: str, tmp_path: Path):
    overrides = [*FAST, "train.epochs=1", f"output_root={tmp_path / 'out'}"]
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(2), spawn.Queue()
    racers = [spawn.Process(target=_race, args=(overrides, start, results)) for _ in range(2)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=300) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    (trained,) = [o for o in outcomes if o["status"] == "FINISHED"]
    (other,) = [o for o in outcomes if o["status"] != "FINISHED"]
    assert other["status"] == "SKIPPED" and other["reason"] == "running"  # it reports the cell running
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.run_id == trained["run_id"] and run.info.status == "FINISHED"
