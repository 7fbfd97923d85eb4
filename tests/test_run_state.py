"""Run state on a real sqlite store, no training: the parent's record (steps that only grow, full
precision), runs closed whatever cuts them, and `sweeper status` over a sweep whose process is gone
(stale runs closed KILLED, `--watch` ends) or over the newest search."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweeper import naming, shutdown, status, sweep_record, tracking
from sweeper.sweep_record import JobRow
from sweeper.task import Outcome, decide, observe, prepare
from tests.checks import duplicate_rows
from tests.conftest import FAST

HOST = os.uname().nodename
DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it


@pytest.fixture()
def exp(store: str) -> str:
    return tracking.ensure_experiment(store, "synthetic")


def test_the_parent_record_steps_only_grow_and_keep_full_precision(store: str, exp: str):
    client = MlflowClient(store)
    parent = tracking.open_parent_run(client, exp, {"segsweep.kind": "sweep"}, "sweep x")
    jobs = [JobRow("a", "0", "FINISHED", "r0", val=34.2187654), JobRow("b", "1")]
    for _ in range(3):  # the first record, a job's end, the closing record: the same jobs ended each time
        sweep_record.write_summary(client, parent, "sweep x", jobs)
    sweep_record.write_summary(client, parent, "sweep x", [jobs[0], JobRow("b", "1", "FAILED", "r1")], skipped=1)
    assert duplicate_rows(store) == []
    for key in ("jobs_total", "jobs_finished", "best_final_val_mIoU"):
        assert [m.step for m in client.get_metric_history(parent, key)] == [1, 2, 3, 4], key
    metrics = client.get_run(parent).data.metrics
    assert metrics["best_final_val_mIoU"] == 34.2187654 and metrics["jobs_failed"] == 1  # the latest point
    assert sweep_record.parent_metrics(jobs)["best_final_val_mIoU"] == 34.2187654  # rounded only when shown
    assert "Best final val mIoU: **34.22**" in sweep_record.summary_markdown("t", jobs)


def test_the_step_follows_the_jobs_ended_when_that_is_more(store: str, exp: str):
    client = MlflowClient(store)
    parent = tracking.open_parent_run(client, exp, {"segsweep.kind": "sweep"}, "s")
    sweep_record.write_summary(client, parent, "s", [JobRow("a"), JobRow("b")])
    sweep_record.write_summary(client, parent, "s", [JobRow("a", status="FINISHED"), JobRow("b", status="KILLED")])
    assert [m.step for m in client.get_metric_history(parent, "jobs_total")] == [0, 2]


class _CutClient(MlflowClient):
    """A real client whose config artifact write is cut by a signal (as SIGTERM does mid-write)."""

    def log_text(self, *args, **kwargs):
        raise shutdown.Interrupted(signal.SIGTERM)


def test_a_run_cut_while_it_is_created_is_closed_killed(store: str, exp: str, tmp_path: Path):
    cfg = naming.compose_config([*FAST, f"output_root={tmp_path}"])
    client = _CutClient(store)
    with pytest.raises(KeyboardInterrupt):
        tracking.create_run(client, exp, cfg, {"mlflow.runName": "cut", "segsweep.run_key": "k"})
    (run,) = client.search_runs([exp])
    assert run.info.status == "KILLED" and run.data.tags["segsweep.stopped"] == "SIGTERM"  # as one cut training


def test_close_run_sets_the_reason_before_the_status(store: str, exp: str):
    client = MlflowClient(store)
    run_id = tracking.open_parent_run(client, exp, {}, "r")
    tracking.close_run(client, run_id, "KILLED", {"segsweep.stopped": "SIGTERM"})
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["segsweep.stopped"] == "SIGTERM"
    tracking.reopen_run(client, run_id, {"segsweep.host": HOST})
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["segsweep.host"] == HOST


def _key_run(client: MlflowClient, exp: str, key: str, status_: str, start_ms: int, value: float | None = None) -> str:
    run_id = client.create_run(exp, start_time=start_ms, tags={tracking.TAG + "run_key": key}).info.run_id
    if value is not None:
        client.log_batch(run_id, metrics=[Metric("final_val_mIoU", value, start_ms, 1)])
    client.set_terminated(run_id, status_)
    return run_id


@pytest.mark.parametrize("newest", ["FINISHED", "FAILED"])
def test_a_rerun_reads_the_newest_run_of_its_key(store: str, exp: str, tmp_path: Path, newest: str):
    """An old FAILED and a newer FINISHED run of a key: the newer FINISHED counts (skip); an old FINISHED
    and a newer FAILED: the newer FAILED counts (run again). Whichever is created first in the store."""
    job = prepare(naming.compose_config([*FAST, f"output_root={tmp_path}"]), [])
    client = MlflowClient(store)
    now = int(time.time() * 1000)
    older = "FAILED" if newest == "FINISHED" else "FINISHED"
    new_id = _key_run(client, exp, job.key, newest, now, 50.0 if newest == "FINISHED" else None)  # created first
    _key_run(client, exp, job.key, older, now - 60_000, 40.0 if older == "FINISHED" else None)
    previous = tracking.find_runs(client, exp, job.key)[0]
    assert previous.info.run_id == new_id
    outcome = decide(observe(job, previous, None))
    assert outcome is (Outcome.SKIP if newest == "FINISHED" else Outcome.NEW)


# --------------------------------------------------------------------------- status of a gone sweep


def _sweep_dir(tmp_path: Path, store: str, exp: str, cells: int = 1, holder: int = DEAD_PID) -> Path:
    sweep_dir = tmp_path / "outputs" / "sweeps" / "s"
    sweep_dir.mkdir(parents=True)
    rows = [{"name": f"n{i}", "run_key": f"k{i}", "uri": store, "experiment": "synthetic", "experiment_id": exp,
             "seed": 0, "epochs": 2} for i in range(cells)]
    (sweep_dir / sweep_record.MANIFEST).write_text(json.dumps({"sweep": "sweep seed=0", "sweep_id": "sid",
                                                               "parents": {}, "cells": rows}))
    (sweep_dir / ".lock").write_text(f"process {holder} on {HOST}")
    return sweep_dir


def _running(client: MlflowClient, exp: str, key: str, pid: int = DEAD_PID) -> str:
    run_id = client.create_run(exp, tags={tracking.TAG + "run_key": key, tracking.TAG + "name": key,
                                          tracking.HEARTBEAT_TAG: f"{time.time():.0f}:{pid}@{HOST}"}).info.run_id
    return run_id


def test_watch_ends_when_the_sweep_is_gone_closing_its_stale_runs(store: str, exp: str, tmp_path: Path, capsys):
    sweep_dir = _sweep_dir(tmp_path, store, exp, cells=2)
    client = MlflowClient(store)
    run_id = _running(client, exp, "k0")  # its process is gone, and so is the sweep's; k1 never started
    _, over, unfinished = status.render_state(sweep_dir)  # checked once first: a watch that cannot end fails here
    assert over and unfinished
    assert status.main([str(sweep_dir), "--watch", "0.01"]) == status.EXIT_UNFINISHED
    out = capsys.readouterr().out
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["segsweep.error"].startswith("its process is gone (last heartbeat ")
    assert "1 KILLED, 1 PENDING" in out and "the sweep's process is gone" in out and run_id in out


def test_a_stale_run_of_a_live_sweep_is_left_to_its_sweep(store: str, exp: str, tmp_path: Path, capsys):
    sweep_dir = _sweep_dir(tmp_path, store, exp, holder=os.getppid())  # the sweep's process is alive
    client = MlflowClient(store)
    run_id = _running(client, exp, "k0")
    assert status.main([str(sweep_dir)]) == 0
    assert "RUNNING (stale)" in capsys.readouterr().out and client.get_run(run_id).info.status == "RUNNING"
    assert status.sweep_process_alive(sweep_dir) is True
    (sweep_dir / ".lock").write_text(f"detached process {DEAD_PID} on {HOST}")
    assert status.sweep_process_alive(sweep_dir) is False
    (sweep_dir / ".lock").write_text(f"process {DEAD_PID} on another-host")
    assert status.sweep_process_alive(sweep_dir) is None  # cannot be told here: heartbeats decide


def test_watch_of_a_sweep_that_ended_every_cell_exits_0(store: str, exp: str, tmp_path: Path, capsys):
    sweep_dir = _sweep_dir(tmp_path, store, exp, holder=os.getppid())
    client = MlflowClient(store)
    client.set_terminated(_running(client, exp, "k0"), "FAILED")
    assert status.render_state(sweep_dir)[1:] == (True, False)
    assert status.main([str(sweep_dir), "--watch", "0.01"]) == 0


def test_clip_cuts_at_a_word_boundary():
    text = "FileNotFoundError: no data under /data/voc: run python -m data prepare voc or check the dataset root"
    assert sweep_record.clip(text, 60) == "FileNotFoundError: no data under /data/voc: run python -m …"
    assert sweep_record.clip(text, 200) == text and sweep_record.clip("a\nb", 10) == "a"
    assert sweep_record.clip("x" * 30, 10) == "x" * 30  # one word: kept whole, never cut mid-word
    assert sweep_record.clip(text, 5) == "FileNotFoundError: …"
    for width in range(len("FileNotFoundError: …"), len(text)):
        cut = sweep_record.clip(text, width)
        assert len(cut) <= width and (cut == text or text.startswith(cut[:-2] + " ")), (width, cut)


def test_status_markdown_shows_the_newest_sweep_searches_included(store: str, exp: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep_dir = _sweep_dir(tmp_path, store, exp, holder=os.getppid())
    os.utime(sweep_dir / sweep_record.MANIFEST, (time.time() - 3600,) * 2)  # the sweep started an hour ago
    client = MlflowClient(store)
    search = tracking.open_parent_run(client, exp, {"segsweep.kind": "search", "segsweep.sweep_id": "study-1",
                                                    "segsweep.sweep": "lr in [1e-4, 1e-2]"}, "search study-1")
    long_error = "RuntimeError: " + "the trial could not start because the dataset root is missing " * 4
    trial = client.create_run(exp, tags={"mlflow.parentRunId": search, "segsweep.name": "synthetic.trial",
                                         "segsweep.run_key": "t0", "segsweep.seed": "0",
                                         "segsweep.error": long_error}).info.run_id
    client.set_terminated(trial, "FAILED")
    assert status.main(["--markdown"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("# search lr in [1e-4, 1e-2]") and trial in page and "| `synthetic.trial` |" in page
    cell = next(line for line in page.splitlines() if trial in line).split("|")[-2].strip()
    assert cell.endswith(" …") and long_error.startswith(cell[:-2] + " ")  # cut at a word boundary
    assert status.main(["study-1", "--markdown"]) == 0 and trial in capsys.readouterr().out
    os.utime(sweep_dir / sweep_record.MANIFEST)  # the sweep run again now: newer than the search
    assert status.main(["--markdown"]) == 0
    assert capsys.readouterr().out.startswith("# sweep seed=0")


@pytest.mark.parametrize("overrides", [["seed=0,1", *(f"a{i}.x=long-value-{i}" for i in range(40))],
                                       ["output_root=/" + "d" * 400]])
def test_a_sweep_parent_name_fits_the_run_name_column(overrides: list[str]):
    """PostgreSQL's run-name column holds 250 characters: a longer name failed the sweep with a traceback."""
    from omegaconf import OmegaConf

    from sweeper import bookkeeping

    config = OmegaConf.create({"hydra": {"overrides": {"task": overrides}}})
    name = bookkeeping.sweep_name(config)
    assert name.startswith("sweep ") and len(name) <= bookkeeping.RUN_NAME_MAX
    short = bookkeeping.sweep_name(OmegaConf.create({"hydra": {"overrides": {"task": ["seed=0,1"]}}}))
    assert short == "sweep seed=0,1"
