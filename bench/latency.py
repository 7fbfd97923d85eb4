"""The search's ``latency_ms`` objective against a direct torch timing of the same forward, same run.

The measure (``sweeper.trial_measures.measure`` -> ``engine.latency.forward_latency_ms``: warm-up, the
median of N timed forwards, batch 1, at the run's crop size) and torch's own ``torch.utils.benchmark``
``Timer`` (its median over timed blocks) time one built segsweep model on one device, in alternating
rounds so that a busy machine slows both alike. ``ratio`` = measure / torch: 1.0 is the goal
(0.8-1.25 passes; the measure neither adds its own overhead nor misses the device's sync).

    python bench/latency.py [--quick] [--device cpu|cuda] [--size 64] [--growth 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from omegaconf import OmegaConf


def model_config(size: int, growth: int, device: str) -> object:
    """A DenseNet-30 DeepLabv2 of the notes (synthetic's 4 classes) at crop ``size`` on ``device``."""
    backbone = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "backbone" / "_densenet.yaml")
    backbone.growth = growth
    return OmegaConf.create({"backbone": backbone, "model": {"name": "deeplabv2", "decoder": "none"},
                             "dataset": {"num_classes": 4, "crop_size": size}, "imagesize": size,
                             "init": "scratch", "device": device})


def torch_median_ms(model: torch.nn.Module, size: int, device: torch.device, min_run_time: float) -> float:
    """torch.utils.benchmark's median of one eval forward (batch 1), in ms."""
    from torch.utils.benchmark import Timer

    x = torch.randn(1, 3, size, size, device=device)
    model.eval().to(device)
    with torch.inference_mode():
        timer = Timer("model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 rounds of 5 forwards (CI), instead of 7 of 20")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=64, help="crop size (h = w)")
    p.add_argument("--growth", type=int, default=12)
    args = p.parse_args()
    from models.build import build_model
    from sweeper.trial_measures import LATENCY_DEVICE, measure

    torch.manual_seed(0)
    rounds, repeats = (3, 5) if args.quick else (7, 20)
    cfg = model_config(args.size, args.growth, args.device)
    model = build_model(cfg)
    device = torch.device(args.device)
    ours, theirs, where = [], [], ""
    for _ in range(rounds):  # alternating: both see the same machine
        got = measure(cfg, ["latency_ms"], warmup=3, repeats=repeats)
        ours.append(got["latency_ms"])
        where = got[LATENCY_DEVICE]
        theirs.append(torch_median_ms(model, args.size, device, 0.05 if args.quick else 0.3))
    segsweep_ms, torch_ms = statistics.median(ours), statistics.median(theirs)
    print(f"model: dense30k{args.growth} deeplabv2 at {args.size}x{args.size}, batch 1, on {where}")
    print(f"segsweep latency_ms (median of {repeats} after 3 warm-up, {rounds} rounds): {segsweep_ms:.3f} ms")
    print(f"torch.utils.benchmark Timer median ({rounds} rounds):                 {torch_ms:.3f} ms")
    print(json.dumps({"bench": "latency", "device": where, "size": args.size, "segsweep_ms": round(segsweep_ms, 4),
                      "torch_ms": round(torch_ms, 4), "goal": [0.8, 1.25], "ratio": round(segsweep_ms / torch_ms, 3)}))


if __name__ == "__main__":
    main()
