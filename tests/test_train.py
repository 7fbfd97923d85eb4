"""The training loop itself: the lr schedule, the epoch sampler, NaN losses, DDP on 2 CPU processes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from engine.callbacks import Callback, NonFiniteLossError
from engine.distributed import launch_local
from engine.train import EpochSampler, lr_factor, train
from sweeper import naming
from tests.conftest import FAST


def test_lr_steps_after_the_milestone_epochs():
    # [(4, 1e-4), (8, 1e-5)] over 10 epochs: epochs 1-4 at 1e-3, 5-8 at 1e-4, 9-10 at 1e-5 (0-based here)
    factors = [lr_factor(e, [4, 8], [0.1, 0.01]) for e in range(10)]
    assert factors == [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]


def test_epoch_is_floor_n_over_batch_times_scale_with_fresh_passes():
    sampler = EpochSampler(size=10, batch_size=3, scale=4, seed=0)
    indices = list(sampler)
    assert len(indices) == (10 // 3) * 3 * 4
    passes = [sorted(i // 10 for i in indices[p * 9:(p + 1) * 9]) for p in range(4)]
    assert passes == [[p] * 9 for p in range(4)]  # pass p offsets its indices by p * size
    assert len({i % 10 for i in indices[:9]}) == 9  # no image twice within one pass
    sampler.set_epoch(1)
    assert list(sampler) != indices and list(EpochSampler(10, 3, 4, seed=0)) == indices


class _Recorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.info: dict = {}

    def on_train_start(self, info):
        self.info = info

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(epoch)


def test_nan_loss_stops_the_run_with_the_reason():
    cfg = naming.compose_config([*FAST, "lr=1e30"])
    with pytest.raises(NonFiniteLossError, match="lower lr"):
        train(cfg, [_Recorder()])


def test_same_seed_same_result(tmp_path: Path):
    cfg = naming.compose_config([*FAST, "train.epochs=1"])
    first, second = train(cfg), train(cfg)
    assert first["train_loss"] == second["train_loss"] and first["val_mIoU"] == second["val_mIoU"]


def _ddp_worker(cfg_yaml: str, out_dir: str) -> None:
    import engine.train as engine_train

    built: list[torch.nn.Module] = []
    original = engine_train.build_model
    engine_train.build_model = lambda cfg: built.append(original(cfg)) or built[-1]  # keep a handle
    recorder = _Recorder()
    metrics = train(OmegaConf.create(cfg_yaml), [recorder])
    rank = int(os.environ["RANK"])
    if recorder.epochs:
        Path(out_dir, f"reported-{rank}.json").write_text(json.dumps({"metrics": metrics, "info": {
            "world_size": recorder.info["world_size"]}}))
    total = sum(float(p.double().sum()) for p in built[0].parameters())
    Path(out_dir, f"params-{rank}.txt").write_text(repr(total))


def test_ddp_two_cpu_processes_train_one_run(tmp_path: Path):
    cfg = naming.compose_config([*FAST, "train.epochs=1", "gpus=2", "device=cpu"])
    launch_local(_ddp_worker, 2, (OmegaConf.to_yaml(cfg, resolve=True), str(tmp_path)))
    reported = sorted(p.name for p in tmp_path.glob("reported-*.json"))
    assert reported == ["reported-0.json"]  # only rank 0 reports
    result = json.loads((tmp_path / "reported-0.json").read_text())
    assert result["info"]["world_size"] == 2 and math.isfinite(result["metrics"]["val_mIoU"])
    sums = [float(p.read_text()) for p in sorted(tmp_path.glob("params-*.txt"))]
    assert len(sums) == 2 and sums[0] != 0.0 and sums[0] == sums[1]  # replicas stay identical
