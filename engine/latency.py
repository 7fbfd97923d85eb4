"""A built model's cost before it trains: forward latency on a device, FLOPs of one forward.

Pure torch (no tracking): the search measures a trial's model with these before it trains, and
``bench/latency.py`` checks :func:`forward_latency_ms` against a direct timing.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    """The median forward time of ``repeats`` timed passes (after ``warmup``), and where it ran."""

    median_ms: float
    device: str  # a readable device name: "NVIDIA H200" or "cpu (x86_64, 2 threads)"
    times_ms: tuple[float, ...]


def crop_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """A crop size (``imagesize``: an int, or [h, w]) as (h, w)."""
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def device_name(device: torch.device | str) -> str:
    """The name of a device as a researcher reads it (the GPU's model, or the CPU and its threads)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def forward_latency_ms(model: nn.Module, size: int | Sequence[int], device: torch.device | str = "cpu",
                       warmup: int = 3, repeats: int = 10, channels: int = 3) -> Latency:
    """Median wall time (ms) of ``model``'s forward pass on one ``channels`` x h x w image (batch 1)
    on ``device``, in eval mode; the model is moved there and back to where it was."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, warmup={warmup}: give repeats >= 1 and warmup >= 0")
    device = torch.device(device)
    h, w = crop_hw(size)
    was_training = model.training
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    model.eval().to(device)
    x = torch.randn(1, channels, h, w, device=device)
    try:
        for _ in range(warmup):
            model(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.to(home).train(was_training)
    return Latency(statistics.median(times), device_name(device), tuple(times))


@torch.inference_mode()
def forward_gflops(model: nn.Module, size: int | Sequence[int], channels: int = 3) -> float:
    """GFLOPs of one forward pass on one image (batch 1), counted by ``torch.utils.flop_counter``
    (a multiply-add counts 2), on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = crop_hw(size)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.randn(1, channels, h, w))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
