"""A synthetic segmentation set generated on the fly, deterministic by `dataset.data_seed`.

Each image has a textured background (class 0) and one to three large shapes: disc (1),
square (2), bar (3), each colour-coded with per-image jitter and pixel noise, plus (in about half
the images) a noise patch labelled ignore (255). Shapes are >= 1/4 of the image side, so the
classes stay distinguishable at output stride 16. Item i of a split is drawn from
`np.random.default_rng([data_seed, split_id, i])`: same seed -> same images, any access order.
"""

from __future__ import annotations

import numpy as np

from data.base import SegDataset
from data.errors import DatasetError

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
CLASS_COLOURS = {1: (215.0, 70.0, 60.0), 2: (70.0, 195.0, 80.0), 3: (70.0, 90.0, 215.0)}  # RGB


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    base = rng.uniform(95, 145) + rng.uniform(-12, 12, size=3)
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi)
    stripes = 18.0 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    blk = 8
    coarse = rng.normal(0, 12, size=(-(-s // blk), -(-s // blk), 3))
    coarse = np.kron(coarse, np.ones((blk, blk, 1)))[:s, :s]
    return base + stripes[..., None] + coarse + rng.normal(0, 6, size=(s, s, 3))


def _shape_mask(rng: np.random.Generator, cls: int, s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s]
    if cls == 1:  # disc, diameter 0.4-0.6 s
        r = rng.uniform(0.2, 0.3) * s
        cy, cx = rng.uniform(r * 0.7, s - r * 0.7, size=2)
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if cls == 2:  # square, side 0.4-0.6 s
        a = rng.uniform(0.4, 0.6) * s
        y0, x0 = rng.uniform(-0.15 * a, s - 0.85 * a, size=2)
        return (yy >= y0) & (yy < y0 + a) & (xx >= x0) & (xx < x0 + a)
    # bar: 0.7-0.95 s long, 0.22-0.32 s thick, horizontal or vertical
    long_, thick = rng.uniform(0.7, 0.95) * s, rng.uniform(0.22, 0.32) * s
    y0, x0 = rng.uniform(0, s - thick), rng.uniform(0, s - long_)
    mask = (yy >= y0) & (yy < y0 + thick) & (xx >= x0) & (xx < x0 + long_)
    return mask.T if rng.random() < 0.5 else mask


def generate(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 HWC RGB image, int64 HW label) pair."""
    img = _background(rng, size)
    label = np.zeros((size, size), dtype=np.int64)
    k = int(rng.integers(1, 4))
    for cls in rng.permutation([1, 2, 3])[:k]:
        mask = _shape_mask(rng, int(cls), size)
        colour = np.asarray(CLASS_COLOURS[int(cls)]) + rng.uniform(-25, 25, size=3)
        img[mask] = colour + rng.normal(0, 12, size=(int(mask.sum()), 3))
        label[mask] = cls
    if rng.random() < 0.5:  # an ignore region of pure noise
        a, b = (rng.uniform(0.1, 0.2, size=2) * size).astype(int) + 1
        y0, x0 = int(rng.integers(0, size - a + 1)), int(rng.integers(0, size - b + 1))
        img[y0 : y0 + a, x0 : x0 + b] = rng.uniform(0, 255, size=(a, b, 3))
        label[y0 : y0 + a, x0 : x0 + b] = 255
    return np.clip(img, 0, 255).astype(np.uint8), label


class SyntheticDataset(SegDataset):
    """`num_train` (train) or `num_val` (val / test) generated images of `image_size`²."""

    def __init__(self, cfg, split: str, train: bool):
        super().__init__(cfg, split, train)
        if split not in SPLIT_IDS:
            raise DatasetError(f"synthetic dataset has splits {sorted(SPLIT_IDS)}, got {split!r}")
        ds = cfg.dataset
        if int(ds.num_classes) != 4:
            raise DatasetError(f"synthetic dataset has 4 classes, dataset.num_classes={ds.num_classes}")
        self.size = int(ds.get("image_size", 64))
        if self.size < 16:
            raise DatasetError(f"dataset.image_size must be >= 16, got {self.size}")
        self.n = int(ds.num_train if split == "train" else ds.num_val)
        self.data_seed = int(ds.get("data_seed", 0))
        self.split_id = SPLIT_IDS[split]

    def __len__(self) -> int:
        return self.n

    def name_of(self, j: int) -> str:
        return f"synthetic_{self.split}_{j:05d}"

    def load(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        return generate(np.random.default_rng([self.data_seed, self.split_id, j]), self.size)


def build_synthetic(cfg, split: str, train: bool) -> SyntheticDataset:
    """The registry's reader entry point (``conf/dataset/synthetic.yaml``)."""
    return SyntheticDataset(cfg, split, train)
