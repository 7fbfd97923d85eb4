"""Multi-process helpers for one run: DDP through torchrun, submitit tasks or a local spawn.

The train loop calls :func:`init_distributed` once, wraps its model with :func:`wrap_model`, draws
batches through :func:`distributed_sampler`, sums confusion matrices with
:func:`all_reduce_confusion` and ends with :func:`cleanup`. With one process every helper is a
cheap no-op, so the same loop serves 1 and N GPUs.

Device helpers (:func:`resolve_device`, :func:`autocast_context`, :func:`to_channels_last`) turn
bf16 autocast and channels_last on for CUDA only; on CPU they do nothing.

submitit is never imported: multi-task SLURM steps are read from SLURM's environment variables.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

__all__ = [
    "DistContext",
    "init_distributed",
    "launched_rank",
    "broadcast_from_main",
    "wrap_model",
    "unwrap_model",
    "distributed_sampler",
    "all_reduce_confusion",
    "all_reduce_mean",
    "cleanup",
    "launch_local",
    "resolve_device",
    "autocast_context",
    "to_channels_last",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on the process that logs, checkpoints and reports (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part (a process group is initialised)."""
        return self.world_size > 1


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda``/``cpu`` as asked."""
    if isinstance(spec, torch.device):
        return spec
    spec = "auto" if spec is None else str(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device=cuda but CUDA is not available here; use device=cpu or device=auto")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    try:
        return torch.device(spec)
    except RuntimeError as err:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu or cuda") from err


def _env_layout() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's environment, or None when absent."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[03-05,7]`` -> ``node03``)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    match = re.match(r"([^\[,]+)(?:\[(\d+))?", nodelist)
    return (match.group(1) + (match.group(2) or "")) if match else nodelist


def _slurm_layout() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) of a multi-task SLURM step (submitit tasks, srun); sets MASTER_*.

    Read from SLURM's own variables, so the engine needs no submitit import.
    """
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if tasks <= 1 or "SLURM_PROCID" not in os.environ:
        return None
    os.environ.setdefault("MASTER_ADDR", _first_host(os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")))
    digits = "".join(ch for ch in os.environ.get("SLURM_JOB_ID", "0") if ch.isdigit()) or "0"
    os.environ.setdefault("MASTER_PORT", str(20000 + int(digits[-6:]) % 20000))
    return int(os.environ["SLURM_PROCID"]), tasks, int(os.environ.get("SLURM_LOCALID", "0"))


def launched_rank() -> int | None:
    """This process's rank among the several its launch started (torchrun's ``RANK``, a multi-task SLURM
    step's ``SLURM_PROCID``); None for a single process. Reads the environment only: no group is joined."""
    layout = _env_layout() or _slurm_layout()
    return layout[0] if layout and layout[1] > 1 else None


def init_distributed(cfg: Any = None) -> DistContext:
    """Join the run's process group if launched with several processes, else return a 1-process context.

    Reads torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``, or
    SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` in a multi-task SLURM step (submitit). ``cfg.device`` (auto|cpu|cuda)
    picks the device; the backend is NCCL on CUDA and gloo on CPU. ``cfg.gpus > 1`` in a single
    process is an error (it would silently train on one device).
    """
    layout = _env_layout() or _slurm_layout()
    rank, world, local = layout if layout else (0, 1, 0)
    gpus = int(_cfg_get(cfg, "gpus", 1) or 1)
    if gpus > 1 and world == 1:
        raise RuntimeError(f"gpus={gpus} but this is a single process: start one process per GPU "
                           f"(torchrun --nproc_per_node={gpus}, a submitit job with tasks_per_node={gpus}, "
                           "or engine.distributed.launch_local), or set gpus=1")
    device = resolve_device(_cfg_get(cfg, "device", "auto"), local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return DistContext(0, 1, 0, device, None)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun or submitit")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local, device, dist.get_backend())


def wrap_model(model: nn.Module, ctx: DistContext, sync_bn: bool = False) -> nn.Module:
    """Move ``model`` to ``ctx.device`` (channels_last on CUDA) and wrap it in DDP when distributed.

    ``sync_bn`` converts BatchNorm layers to SyncBatchNorm; PyTorch implements it for GPUs only,
    so asking for it on a multi-process CPU run is an error.
    """
    if sync_bn and ctx.distributed:
        if ctx.device.type == "cpu":
            raise ValueError("sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                             "set sync_bn=false for CPU runs")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = to_channels_last(model.to(ctx.device), ctx.device)
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (for evaluation and checkpoints)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def distributed_sampler(dataset: Dataset, ctx: DistContext, seed: int, epoch: int,
                        shuffle: bool = True, drop_last: bool = False) -> DistributedSampler:
    """A shuffling sampler that gives each rank a disjoint shard; the order depends on (seed, epoch)."""
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return sampler


def all_reduce_confusion(cm: Any, ctx: DistContext) -> Any:
    """Sum a confusion matrix (``ConfusionMatrix`` or int64 tensor) over all ranks, in place."""
    if not ctx.distributed:
        return cm
    mat = cm.mat if hasattr(cm, "mat") else cm
    buf = mat if ctx.backend != "nccl" else mat.to(ctx.device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    if buf is not mat:
        mat.copy_(buf.to(mat.device))
    return cm


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> float:
    """The mean of a scalar over all ranks (e.g. the epoch's training loss)."""
    if not ctx.distributed:
        return float(value)
    device = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    buf = torch.as_tensor(value, dtype=torch.float64, device=device).detach().clone().reshape(1)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return float(buf.item()) / ctx.world_size


def broadcast_from_main(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object; the others' ``value`` is ignored)."""
    if not ctx.distributed:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Leave the process group (safe to call when none was initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn_entry(local_rank: int, fn: Callable[..., Any], world_size: int, port: int,
                 args: tuple[Any, ...]) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank),
                       "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    try:
        fn(*args)
    finally:
        cleanup()


def launch_local(fn: Callable[..., Any], world_size: int, args: tuple[Any, ...] = ()) -> None:
    """Run ``fn(*args)`` in ``world_size`` spawned processes on this machine, torchrun-style.

    Each process sees RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, so ``fn`` calls
    :func:`init_distributed` as it would under torchrun. ``fn`` must be importable (module level).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    mp.spawn(_spawn_entry, args=(fn, world_size, _free_port(), args), nprocs=world_size, join=True)


def autocast_context(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op context on CPU (CPU runs stay float32)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(obj: Any, device: torch.device | str, enabled: bool = True) -> Any:
    """A module or 4-D tensor in channels_last memory format on CUDA; unchanged on CPU."""
    if not enabled or torch.device(device).type != "cuda":
        return obj
    if isinstance(obj, torch.Tensor) and obj.dim() != 4:
        return obj
    return obj.to(memory_format=torch.channels_last)

