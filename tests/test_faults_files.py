"""Checkpoints under faults: a real full tmpfs, real truncated/empty files, a hostile pickle."""

from __future__ import annotations

import contextlib
import pickle
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import checkpoint
from engine.callbacks import Callback
from engine.checkpoint import CheckpointReadError, CheckpointWriteError


def _state(n: int, epoch: int = 1) -> dict:
    return {"model": {"w": torch.arange(n, dtype=torch.float32)}, "optimizer": {"state": {}, "param_groups": []},
            "rng": checkpoint.rng_state(), "epoch": epoch, "history": [{"train_loss": 1.0}] * epoch}


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (skips the test when mounting is refused)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_names_the_path_leaves_no_temp_file_and_keeps_the_last_checkpoint(tmp_path: Path):
    with tmpfs(tmp_path / "small", "400k") as disk:
        run = disk / "run"
        checkpoint.save(run, _state(10_000, epoch=1))  # 40 kB: fits, twice
        checkpoint.save(run, _state(10_000, epoch=2))
        with pytest.raises(CheckpointWriteError) as caught:
            checkpoint.save(run, _state(200_000, epoch=3))  # 800 kB: does not fit
        message = str(caught.value)
        assert message.startswith(f"no space left on {run} ") and "is kept" in message, message
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]
        assert checkpoint.load(run)["epoch"] == 2  # the last good one, whole
        assert checkpoint.read(run / "checkpoint.prev.pt")["epoch"] == 1


def test_the_last_two_checkpoints_are_kept(tmp_path: Path):
    for epoch in (1, 2, 3):
        checkpoint.save(tmp_path, _state(10, epoch))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]
    assert checkpoint.load(tmp_path)["epoch"] == 3
    assert checkpoint.read(tmp_path / "checkpoint.prev.pt")["epoch"] == 2


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_an_unreadable_checkpoint_is_named_with_the_way_out(tmp_path: Path, damage: str):
    checkpoint.save(tmp_path, _state(1000, 1))
    checkpoint.save(tmp_path, _state(1000, 2))
    path = tmp_path / "checkpoint.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointReadError) as caught:
        checkpoint.load(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"cannot read the checkpoint {path} (") and "+force=true" in message
    assert f"mv {tmp_path / 'checkpoint.prev.pt'} {path}" in message
    assert len(message.splitlines()) == 1


class _Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_checkpoint_that_carries_code_is_refused_without_running_it(tmp_path: Path):
    marker = tmp_path / "marker"
    torch.save({**_state(4), "extra": _Hostile(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointReadError, match="cannot read the checkpoint"):
        checkpoint.load(tmp_path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Hostile(marker)))  # the object does run code when unpickled for real
    assert marker.exists()


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.standard_normal()  # a cached gaussian is part of the numpy state
    checkpoint.save(tmp_path, _state(4))
    expected = (random.random(), float(np.random.standard_normal()), float(torch.rand(1)))
    checkpoint.set_rng_state(checkpoint.load(tmp_path)["rng"])
    assert (random.random(), float(np.random.standard_normal()), float(torch.rand(1))) == expected


def test_training_over_a_truncated_checkpoint_stops_naming_it_before_any_step(tmp_path: Path):
    from engine.train import train
    from sweeper import naming
    from tests.conftest import FAST

    checkpoint.save(tmp_path, _state(4))
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    calls: list[str] = []

    class Seen(Callback):
        def on_train_start(self, info: dict) -> None:
            calls.append("start")

    with pytest.raises(CheckpointReadError, match=f"cannot read the checkpoint {path} "):
        train(naming.compose_config([*FAST, "train.epochs=1"]), [Seen()], tmp_path)
    assert calls == []  # never a silent fresh start over a checkpoint it could not read
