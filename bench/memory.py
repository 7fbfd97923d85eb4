"""Peak memory and step time of dense30k48.newdid6 (CamVid) with and without gradient checkpointing.

Each configuration runs in a fresh subprocess (CPU, fp32, fixed batch, Adam). Two memory figures:

- peak RSS of one training step above the RSS right before it: Linux `VmHWM` from
  /proc/self/status, reset with `echo 5 > /proc/self/clear_refs` after two warm-up steps (so the
  weights, gradients and Adam state already exist and are not counted). glibc's mmap threshold is
  pinned at 64 KiB (`MALLOC_MMAP_THRESHOLD_`) so that freed tensors go back to the OS and RSS
  follows live memory instead of the allocator's cache;
- bytes saved for backward (`torch.autograd.graph.saved_tensors_hooks`, unique non-weight storages): the
  activation memory that checkpointing targets, independent of the allocator.

    python bench/memory.py [--quick] [--batch N] [--size N]

Prints both configurations and, last, one JSON line; `ratio` = peak RSS with / without.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["dataset=camvid", "backbone=dense30k48", "backbone.stem=true", "backbone.compression=1.0",
             "backbone.latter_pooling=false", "model.decoder=newdid6"]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(checkpointing: bool, batch: int, size: int, steps: int) -> dict:
    """Measure one configuration in this process."""
    import torch
    import torch.nn.functional as F

    from models.build import build_model
    from sweeper.naming import compose_config

    torch.manual_seed(0)
    cfg = compose_config([*OVERRIDES, f"model.checkpointing={str(checkpointing).lower()}"])
    model = build_model(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, int(cfg.dataset.num_classes), (batch, size, size))

    saved: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in weights:  # weights are saved by reference, not activation memory
            saved[st.data_ptr()] = st.nbytes()
        return t

    def step(track: bool = False) -> None:
        opt.zero_grad(set_to_none=False)  # keep gradient buffers: they are not activation memory
        if track:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                outs = model(x)
        else:
            outs = model(x)
        loss = torch.stack([F.cross_entropy(o, y, ignore_index=255) for o in outs]).mean()
        loss.backward()
        opt.step()

    step()
    step()
    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    peak = _status_kib("VmHWM")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step(track=True)
    return {"checkpointing": checkpointing, "peak_mib": (peak - base) / 1024, "saved_mib": sum(saved.values()) / 2**20,
            "step_s": sorted(times)[len(times) // 2]}


def run(checkpointing: bool, batch: int, size: int, steps: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--child", "--batch", str(batch), "--size", str(size), "--steps", str(steps)]
    if checkpointing:
        cmd.append("--checkpointing")
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: batch 2 at 65x65, one timed step")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = args.batch or 2
    size = args.size or (65 if args.quick else 321)
    steps = args.steps or (1 if args.quick else 3)
    if args.child:
        print(json.dumps(child(args.checkpointing, batch, size, steps)))
        return
    print(f"dense30k48.newdid6, CPU fp32, batch {batch} at {size}x{size}, median of {steps} step(s)")
    plain = run(False, batch, size, steps)
    ckpt = run(True, batch, size, steps)
    for r in (plain, ckpt):
        print(f"  checkpointing={str(r['checkpointing']):5s}  peak step RSS {r['peak_mib']:8.1f} MiB  "
              f"saved for backward {r['saved_mib']:8.1f} MiB  step {r['step_s']:6.2f} s")
    result = {"ratio": round(ckpt["peak_mib"] / plain["peak_mib"], 3),
              "saved_ratio": round(ckpt["saved_mib"] / plain["saved_mib"], 3),
              "time_ratio": round(ckpt["step_s"] / plain["step_s"], 3), "batch": batch, "size": size}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
