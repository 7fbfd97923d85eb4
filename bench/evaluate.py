"""Evaluation benchmarks (CPU).

1. Confusion-matrix update throughput (pixels/s) of ``engine.metrics.ConfusionMatrix.update``
   against the plain numpy baseline ``np.bincount(C*label[mask] + pred[mask])`` in the same run
   (goal: ratio ours / numpy >= 1).
2. Wall time of multi-scale (0.5..1.5) + flip sliding-window inference of one Cityscapes-sized
   1024x2048 image with 1024 tiles against single-scale, for a small fully convolutional model.

Prints its figures, then LAST one JSON line with the key ``ratio`` (confusion-matrix speed-up).
``--quick`` uses a 512x1024 image, 512 tiles and fewer repeats.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.evaluate import predict
from engine.metrics import ConfusionMatrix

CLASSES = 19


class SmallNet(nn.Module):
    """A ~10k-parameter stride-4 FCN with bilinear upsampling to the input size."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.body(x)
        return [nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_confusion(h: int, w: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, CLASSES, (h, w), generator=g)
    label[: h // 20] = 255  # 5% ignored rows
    pred = torch.randint(0, CLASSES, (h, w), generator=g)
    lab_np, pred_np = label.numpy(), pred.numpy()

    def numpy_baseline() -> np.ndarray:
        mask = (lab_np >= 0) & (lab_np < CLASSES)
        return np.bincount(CLASSES * lab_np[mask] + pred_np[mask], minlength=CLASSES**2)

    cm = ConfusionMatrix(CLASSES)

    def ours() -> None:
        cm.update(pred, label)

    ref = numpy_baseline().reshape(CLASSES, CLASSES)
    cm.reset()
    ours()
    assert np.array_equal(cm.mat.numpy(), ref), "confusion matrices differ"
    t_np, t_ours = best_time(numpy_baseline, repeats), best_time(ours, repeats)
    px = h * w
    return {"numpy_px_s": px / t_np, "ours_px_s": px / t_ours, "ratio": t_np / t_ours}


def bench_multiscale(h: int, w: int, tile: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SmallNet().eval()
    image = torch.randn(3, h, w)

    def cfg(scales: list[float], flip: bool):
        return OmegaConf.create({
            "eval": {"scales": scales, "flip": flip, "tile": tile, "overlap": 0.3333333333, "tile_batch": 1},
            "dataset": {"num_classes": CLASSES, "class_names": [str(i) for i in range(CLASSES)],
                        "ignore_index": 255, "mean_bgr": [104.0, 116.0, 122.0]},
        })

    single, multi = cfg([1.0], False), cfg([0.5, 0.75, 1.0, 1.25, 1.5], True)
    with torch.inference_mode():
        t_single = best_time(lambda: predict(model, image, single), repeats)
        t_multi = best_time(lambda: predict(model, image, multi), max(1, repeats // 2))
    return {"single_s": t_single, "multiscale_flip_s": t_multi, "factor": t_multi / t_single}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller image and fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w, tile, reps = (512, 1024, 512, 3) if args.quick else (1024, 2048, 1024, 5)

    cm = bench_confusion(1024, 2048, 5 if args.quick else 20)
    print(f"confusion matrix, 1024x2048 labels, {CLASSES} classes:")
    print(f"  numpy np.bincount (masked)   {cm['numpy_px_s'] / 1e6:8.1f} Mpx/s")
    print(f"  ConfusionMatrix.update       {cm['ours_px_s'] / 1e6:8.1f} Mpx/s   ratio {cm['ratio']:.2f}x")

    ms = bench_multiscale(h, w, tile, reps)
    print(f"sliding-window inference, one {h}x{w} image, tile {tile}, SmallNet, {args.threads} thread(s):")
    print(f"  single scale                 {ms['single_s']:8.2f} s")
    print(f"  5 scales + flip              {ms['multiscale_flip_s']:8.2f} s   factor {ms['factor']:.1f}x")
    print(json.dumps({
        "ratio": round(cm["ratio"], 3),
        "cm_ours_mpx_s": round(cm["ours_px_s"] / 1e6, 1),
        "cm_numpy_mpx_s": round(cm["numpy_px_s"] / 1e6, 1),
        "image": [h, w], "tile": tile,
        "single_scale_s": round(ms["single_s"], 3),
        "multiscale_flip_s": round(ms["multiscale_flip_s"], 3),
        "multiscale_factor": round(ms["factor"], 2),
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
