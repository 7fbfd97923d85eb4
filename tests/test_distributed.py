"""engine.distributed: 2 real gloo processes on CPU against one process on the full batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.distributed import (
    DistContext,
    _slurm_layout,
    all_reduce_confusion,
    all_reduce_mean,
    autocast_context,
    distributed_sampler,
    init_distributed,
    launch_local,
    launched_rank,
    resolve_device,
    to_channels_last,
    unwrap_model,
    wrap_model,
)
from engine.evaluate import ConfusionMatrix, evaluate

WORLD = 2
BATCH = 4  # full batch; each of the 2 ranks takes 2 samples
CLASSES = 3


class TinyNet(nn.Module):
    """Two convs, no BatchNorm (SyncBatchNorm has no CPU kernel), deep-supervision style output."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = torch.relu(self.a(x))
        return [self.b(h)]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(BATCH, 3, 10, 12, generator=g)
    y = torch.randint(0, CLASSES, (BATCH, 10, 12), generator=g)
    y[:, 0, :4] = 255
    return x, y


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x)[-1], y, ignore_index=255)


def eval_cfg():
    return OmegaConf.create({
        "eval": {"scales": [0.75, 1.0], "flip": True, "tile": 8, "overlap": 0.3333333333},
        "dataset": {"num_classes": CLASSES, "class_names": ["a", "b", "c"], "ignore_index": 255,
                    "mean_bgr": [104.0, 116.0, 122.0]},
    })


def eval_dataset() -> list[dict]:
    x, y = batch()
    return [{"image": x[i], "label": y[i], "name": str(i)} for i in range(3)]  # 3: uneven shards


def worker(out_dir: str) -> None:
    """One rank: DDP backward on its half batch, sampler shard, reduced confusion matrix and evaluation."""
    torch.set_num_threads(1)
    ctx = init_distributed({"device": "cpu", "gpus": WORLD})
    assert ctx.world_size == WORLD and ctx.backend == "gloo"
    model = wrap_model(make_model(), ctx, sync_bn=False)
    assert isinstance(model, nn.parallel.DistributedDataParallel)
    x, y = batch()
    half = BATCH // WORLD
    lo = ctx.rank * half
    loss = loss_fn(model, x[lo:lo + half], y[lo:lo + half])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in unwrap_model(model).named_parameters()}
    mean_loss = all_reduce_mean(loss.detach(), ctx)
    cm = ConfusionMatrix(CLASSES)
    cm.update(y[lo:lo + half].clamp(max=CLASSES - 1), y[lo:lo + half])
    all_reduce_confusion(cm, ctx)
    shard = list(distributed_sampler(list(range(10)), ctx, seed=3, epoch=1))
    result = evaluate(model, eval_dataset(), eval_cfg(), ctx=ctx)
    torch.save({"grads": grads, "loss": mean_loss, "cm": cm.mat, "shard": shard, "eval": result,
                "is_main": ctx.is_main}, Path(out_dir) / f"rank{ctx.rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    launch_local(worker, WORLD, args=(str(out),))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_ddp_gradients_equal_single_process_full_batch(ranks):
    model = make_model()
    x, y = batch()
    # the mean of the per-rank mean losses = the full-batch loss only with equal valid-pixel counts
    halves = [loss_fn(model, x[i:i + 2], y[i:i + 2]) for i in (0, 2)]
    sum(halves).div(WORLD).backward()
    for rank in ranks:
        for name, p in model.named_parameters():
            assert torch.allclose(rank["grads"][name], p.grad, atol=1e-6), name
    assert ranks[0]["loss"] == pytest.approx(float(sum(halves).detach() / WORLD), rel=1e-6)


def test_ddp_gradients_match_full_batch_when_pixels_are_balanced(ranks):
    """Each half has the same number of ignored pixels, so the rank mean equals the full-batch mean."""
    model = make_model()
    x, y = batch()
    loss_fn(model, x, y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(ranks[1]["grads"][name], p.grad, atol=1e-6), name


def test_all_reduce_confusion_sums_all_ranks(ranks):
    _, y = batch()
    ref = ConfusionMatrix(CLASSES)
    ref.update(y.clamp(max=CLASSES - 1), y)
    for rank in ranks:
        assert torch.equal(rank["cm"], ref.mat)


def test_sampler_shards_are_disjoint_and_cover_the_set(ranks):
    a, b = ranks[0]["shard"], ranks[1]["shard"]
    assert not set(a) & set(b) and sorted(a + b) == list(range(10))
    assert [r["is_main"] for r in ranks] == [True, False]


def test_sharded_evaluation_equals_one_process(ranks):
    single = evaluate(make_model(), eval_dataset(), eval_cfg())
    for rank in ranks:
        assert rank["eval"]["n_images"] == 3
        assert rank["eval"]["mIoU"] == pytest.approx(single["mIoU"], abs=1e-9)
        assert rank["eval"]["iou"] == pytest.approx(single["iou"])


# ---------------------------------------------------------------- single process and helpers
def test_single_process_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed({"device": "cpu"})
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    model = make_model()
    assert wrap_model(model, ctx, sync_bn=True) is model  # nothing to sync with one process
    assert all_reduce_mean(torch.tensor(2.5), ctx) == 2.5
    sampler = distributed_sampler(list(range(5)), ctx, seed=0, epoch=0)
    assert sorted(sampler) == list(range(5))
    assert list(distributed_sampler(list(range(5)), ctx, seed=0, epoch=1)) != list(sampler)


def test_sync_bn_on_cpu_is_a_clear_error():
    ctx = DistContext(rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        wrap_model(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), ctx, sync_bn=True)


def test_gpus_above_one_in_a_single_process_is_a_clear_error(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=2"):
        init_distributed({"device": "cpu", "gpus": 2})


def test_missing_master_address_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        init_distributed({"device": "cpu"})


def test_slurm_task_layout(monkeypatch):
    env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
           "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "node7", "SLURM_NNODES": "1", "SLURM_NODEID": "0"}
    # _slurm_layout sets MASTER_ADDR/PORT in os.environ: a copy, so they do not outlive the test (a sweep
    # started later by this worker would hand them to its SLURM jobs through sbatch's exported environment)
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _slurm_layout() == (1, 2, 1)
    assert os.environ["MASTER_ADDR"] == "node7" and 20000 <= int(os.environ["MASTER_PORT"]) < 40000


def test_launched_rank_reads_torchrun_and_slurm_steps(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert launched_rank() is None  # a plain process
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert launched_rank() is None  # a one-task SLURM job is one process
    for key, value in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "7",
                       "SLURM_JOB_NODELIST": "vm,vm2"}.items():
        monkeypatch.setenv(key, value)
    assert launched_rank() == 1 and os.environ["MASTER_ADDR"] == "vm"  # the first node of the job
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert launched_rank() == 3  # torchrun's variables win


def _job_worker(cfg_yaml: str, out_dir: str) -> None:
    """One rank of a run launched as several processes: sweeper.task.run_job, as a SLURM task runs it."""
    from sweeper.task import run_job

    result = run_job(OmegaConf.create(cfg_yaml))
    Path(out_dir, f"job-{os.environ['RANK']}.json").write_text(json.dumps(result))


@pytest.mark.slow
def test_run_job_in_two_processes_tracks_one_run_from_rank_0(tmp_path: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sweeper import naming
    from tests.conftest import FAST

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = naming.compose_config([*FAST, "train.epochs=1", "device=cpu", f"output_root={tmp_path / 'out'}"])
    text = OmegaConf.to_yaml(cfg, resolve=True)

    def launch(name: str) -> list[dict]:
        (tmp_path / name).mkdir()
        launch_local(_job_worker, WORLD, (text, str(tmp_path / name)))
        return [json.loads((tmp_path / name / f"job-{r}.json").read_text()) for r in range(WORLD)]

    lead, other = launch("first")
    assert lead["status"] == "FINISHED" and other["status"] == "FINISHED"
    assert other["run_id"] == lead["run_id"] and other["rank"] == 1
    assert other["value"] == lead["value"]  # one model, one evaluation (reduced over the ranks)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.run_id == lead["run_id"] and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mIoU")] == [1]

    lead, other = launch("again")  # FINISHED: rank 0 skips it and tells the other rank, which stops too
    assert lead["status"] == "SKIPPED" and lead["run_id"] == run.info.run_id
    assert other["status"] == "SKIPPED" and other["reason"] == "rank 0"
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_engine_does_not_import_submitit_at_module_level():
    code = "import sys, engine.distributed, engine.evaluate; assert 'submitit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_device_helpers_are_no_ops_on_cpu():
    auto = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == auto
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with autocast_context("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    x = torch.randn(1, 3, 4, 4)
    assert to_channels_last(x, "cpu") is x
    assert to_channels_last(x, "cuda").is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_is_bf16_on_cuda():
    with autocast_context("cuda"):
        assert (torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")).dtype == torch.bfloat16
