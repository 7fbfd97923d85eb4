"""What a trial's model costs, measured by the search before the trial trains: ``params_M``,
``flops_G`` and ``latency_ms`` (with the device it was timed on). Objectives and constraints read them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LATENCY_DEVICE = "latency_device"  # the measures' key (and the run's tag segsweep.latency_device)


def measure(cfg: Any, names: Iterable[str], warmup: int = 3, repeats: int = 10) -> dict[str, Any]:
    """Build the model of a resolved run config and measure ``names`` (of ``sweeper.pareto.PRE_TRAINING``):
    #params (M), GFLOPs of one forward and the median forward latency (ms) at the run's crop size
    (``imagesize``), batch 1, on the device the run would train on (``device``)."""
    from engine.distributed import resolve_device
    from engine.latency import forward_gflops, forward_latency_ms
    from models.build import build_model, count_params_m

    names = set(names)
    model = build_model(cfg)
    out: dict[str, Any] = {"params_M": count_params_m(model)}
    size = cfg.get("imagesize") or cfg.dataset.crop_size
    size = int(size) if isinstance(size, int) else [int(v) for v in size]
    if "flops_G" in names:
        out["flops_G"] = forward_gflops(model, size)
    if "latency_ms" in names:
        lat = forward_latency_ms(model, size, resolve_device(str(cfg.get("device") or "auto")), warmup, repeats)
        out["latency_ms"], out[LATENCY_DEVICE] = lat.median_ms, lat.device
    return out
