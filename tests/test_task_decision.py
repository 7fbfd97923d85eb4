"""The job policy as a table: every (previous run, heartbeat, checkpoint, force, claim) case, no training."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from data.errors import DatasetError
from engine.callbacks import ConfigError
from sweeper import errors, naming
from sweeper.task import KeyState, Outcome, claim, claim_path, decide

SKIP, LEAVE, TAKE, RESUME, NEW = (Outcome.SKIP, Outcome.LEAVE_ALONE, Outcome.TAKE_OVER, Outcome.RESUME,
                                  Outcome.NEW)
STATUSES = (None, "FINISHED", "RUNNING", "FAILED", "KILLED", "SCHEDULED")

#: (previous status, heartbeat alive, checkpoint exists, force) -> outcome, claim free
TABLE = [
    (None, False, False, False, NEW),
    (None, False, True, False, NEW),        # a checkpoint without a run: a new run (the engine resumes it)
    (None, False, False, True, NEW),
    ("FINISHED", False, False, False, SKIP),
    ("FINISHED", False, True, False, SKIP),
    ("FINISHED", False, True, True, NEW),   # force: from scratch, even with a checkpoint
    ("RUNNING", True, False, False, LEAVE),
    ("RUNNING", True, True, False, LEAVE),
    ("RUNNING", True, True, True, LEAVE),   # force never disturbs a live run
    ("RUNNING", False, True, False, RESUME),  # its process is gone: taken over, from its checkpoint
    ("RUNNING", False, False, False, TAKE),
    ("RUNNING", False, True, True, TAKE),
    ("FAILED", False, True, False, RESUME),
    ("FAILED", False, False, False, NEW),
    ("FAILED", False, True, True, NEW),
    ("KILLED", False, True, False, RESUME),
    ("KILLED", False, False, False, NEW),
    ("KILLED", False, True, True, NEW),
]


@pytest.mark.parametrize(("previous", "alive", "checkpoint", "force", "outcome"), TABLE,
                         ids=[f"{p}-alive{a:d}-ckpt{c:d}-force{f:d}" for p, a, c, f, _ in TABLE])
def test_decision_table(previous: str | None, alive: bool, checkpoint: bool, force: bool, outcome: Outcome):
    assert decide(KeyState(previous, alive, checkpoint, force)) is outcome


@pytest.mark.parametrize("previous", STATUSES)
def test_a_claim_held_elsewhere_leaves_the_key_alone_whatever_else(previous: str | None):
    for alive, checkpoint, force in itertools.product((False, True), repeat=3):
        assert decide(KeyState(previous, alive, checkpoint, force, claimed_elsewhere=True)) is LEAVE


def test_rules_over_every_state():
    for previous, alive, checkpoint, force in itertools.product(STATUSES, *[(False, True)] * 3):
        state = KeyState(previous, alive, checkpoint, force)
        outcome = decide(state)
        live = previous == "RUNNING" and alive
        assert (outcome is LEAVE) == live, state
        assert (outcome is SKIP) == (previous == "FINISHED" and not force and not live), state
        if outcome is RESUME:  # only an unfinished run with its checkpoint, never forced
            assert checkpoint and not force and previous not in (None, "FINISHED"), state
        if outcome is TAKE:  # only a RUNNING run whose process is gone
            assert previous == "RUNNING" and not alive, state


def test_exit_codes_follow_the_user_error_family():
    cause = ConfigError("scale=0 must be a positive integer")
    assert errors.exit_code(cause) == 2 and errors.exit_code(DatasetError("no root")) == 2
    assert errors.exit_code(errors.StoreError("store")) == 2 and errors.exit_code(errors.UserError("x")) == 2
    assert errors.exit_code(ValueError("deep in torch")) == 1 and errors.exit_code(RuntimeError("x")) == 1
    failed = errors.JobFailed("r1", cause)
    assert failed.run_id == "r1" and failed.cause is cause and errors.exit_code(failed) == 2
    assert errors.exit_code(errors.JobFailed("r2", ValueError("nan"))) == 1
    assert errors.exit_code(naming.UnknownTokenError("'x'")) == 2


def test_a_claim_is_exclusive_and_released(tmp_path: Path):
    workdir = tmp_path / "runs" / "synthetic" / "a--b"
    with claim(workdir) as mine:
        assert mine is None and claim_path(workdir).exists() and not workdir.exists()
        with claim(workdir) as theirs:  # a second open file description: as another process sees it
            assert theirs == f"process {os.getpid()} on {os.uname().nodename}"
    with claim(workdir) as again:
        assert again is None


def test_run_dirs_of_long_names_stay_one_path_component():
    from sweeper.task import MAX_DIRNAME, run_dirname

    short = run_dirname("synthetic.scratch.imagesize64.dense30k12.scale1", "0123456789abcdef")
    assert short == "synthetic.scratch.imagesize64.dense30k12.scale1--0123456789abcdef"
    long_a = "synthetic.scratch." + ".".join(f"train-k{i}-{i}" for i in range(40))
    long_b = long_a.replace("k39-39", "k39-40")
    dir_a, dir_b = run_dirname(long_a, "0123456789abcdef"), run_dirname(long_b, "0123456789abcdef")
    assert len(dir_a.encode()) <= MAX_DIRNAME and dir_a != dir_b  # distinct names, distinct dirs
    assert dir_a.startswith("synthetic.scratch.train-k0-0") and dir_a.endswith("--0123456789abcdef")
    assert "/" not in dir_a and dir_a == run_dirname(long_a, "0123456789abcdef")
