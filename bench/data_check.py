"""The cost of ``python -m data check`` per 1,000 pairs: header check vs full decode (CPU, local disk).

Writes ``--pairs`` VOC-sized pairs (500x375 JPEG image + single-channel PNG label, as SegmentationClassAug)
into a temporary VOC tree, then times, with the cache off, ``check_split`` at depth ``headers`` (what
training runs before its first step) and at depth ``full`` (decode and label values), and the cached
re-check (what a re-run pays). The OS file cache is warm for both depths (the files were just written).

Prints its figures, then LAST one JSON line whose last key ``ratio`` = full seconds / header seconds.
``--quick``: 200 pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from data.build import build_dataset
from data.check import check_split
from data.config import dataset_config

H, W = 375, 500


def write_voc_tree(root: Path, pairs: int) -> None:
    """``pairs`` JPEG + PNG pairs with smooth images (JPEG sizes like photos) and blocky labels."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    lines = []
    for i in range(pairs):
        base = (np.sin(xx / (20 + i % 7)) * 60 + np.cos(yy / 15) * 60 + 128).astype(np.uint8)
        image = np.stack([base, np.roll(base, i, 1), base[::-1]], -1) + rng.integers(0, 20, (H, W, 3), dtype=np.uint8)
        label = ((xx // 50 + yy // 50 + i) % 21).astype(np.uint8)
        label[yy % 50 == 0] = 255
        name = f"2007_{i:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        Image.fromarray(label).save(root / "SegmentationClassAug" / f"{name}.png")
        lines.append(f"JPEGImages/{name}.jpg SegmentationClassAug/{name}.png\n")
    (root / "train_aug.txt").write_text("".join(lines))


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pairs = 200 if args.quick else args.pairs
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEGSWEEP_CACHE"] = str(Path(tmp) / "cache")  # the bench's own cache, removed with it
        root = Path(tmp) / "VOC2012"
        write_voc_tree(root, pairs)
        dataset = build_dataset(dataset_config(["dataset=voc", f"dataset.root={root}"]), "train_aug", train=False)
        for mode in ("headers", "full"):  # one warm-up round (imports, OS cache)
            assert not check_split(dataset, "train_aug", mode, use_cache=False).problems
        header_s = timed(lambda: check_split(dataset, "train_aug", "headers", use_cache=False))
        full_s = timed(lambda: check_split(dataset, "train_aug", "full", use_cache=False))
        check_split(dataset, "train_aug", "headers")  # remembers the pass
        cached_s = timed(lambda: check_split(dataset, "train_aug", "headers"))
    per_k = 1000 / pairs
    result = {"pairs": pairs, "image": f"{W}x{H} JPEG + PNG label", "cpus": os.cpu_count(),
              "headers_s_per_1000": round(header_s * per_k, 3), "full_s_per_1000": round(full_s * per_k, 3),
              "cached_s_per_1000": round(cached_s * per_k, 3), "ratio": round(full_s / header_s, 2)}
    print(f"check of {pairs} pairs: headers {header_s:.2f} s, full decode {full_s:.2f} s, cached {cached_s:.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
