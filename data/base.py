"""The dataset base: label cleaning, reproducible augmentation, the sample dict."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from data.errors import CorruptFileError, DatasetError
from data.io import read_image, read_label
from data.transforms import TrainAugment, to_sample


class SegDataset(Dataset):
    """Map-style segmentation dataset; subclasses implement `__len__`, `load(j)` and `name_of(j)`.

    Training datasets augment sample i of epoch e with `np.random.default_rng([seed, e, i])`, so the
    result depends neither on worker count nor on order. Indices >= len wrap (file i % len) while the
    augmentation is still drawn from i: an engine may index range(k * len) for k distinct passes.
    """

    def __init__(self, cfg, split: str, train: bool):
        ds = cfg.dataset
        self.split = split
        self.train = train
        self.num_classes = int(ds.num_classes)
        self.ignore_index = int(ds.get("ignore_index", 255))
        self.void_labels = [int(v) for v in (ds.get("void_labels") or [])]
        self.mean_bgr = [float(v) for v in ds.get("mean_bgr", (104.0, 116.0, 122.0))]
        self.skip_corrupt = bool(ds.get("skip_corrupt", False))
        seed = cfg.get("seed", 0)
        self.seed = int(seed) if seed is not None else 0
        if self.seed < 0:
            raise DatasetError(f"seed must be >= 0 for the augmentation RNG, got {self.seed}")
        self.augment = TrainAugment.from_cfg(cfg) if train else None
        self.epoch = 0
        self.skipped = 0
        self.out_of_range_pixels = 0

    # -- subclass API -------------------------------------------------------------------------
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, j: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """Raw (uint8 HWC RGB image, int64 HW label) of item j."""
        raise NotImplementedError

    def name_of(self, j: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (call before each epoch, resume included)."""
        self.epoch = int(epoch)

    def clean_label(self, label: np.ndarray, name: str) -> np.ndarray:
        """Void labels -> ignore; other values outside [0, classes) -> ignore, with a warning."""
        ign = self.ignore_index
        for v in self.void_labels:
            label[label == v] = ign
        bad = ((label < 0) | (label >= self.num_classes)) & (label != ign)
        n_bad = int(bad.sum())
        if n_bad:
            self.out_of_range_pixels += n_bad
            values = np.unique(label[bad])[:10].tolist()
            warnings.warn(
                f"{name}: {n_bad} label pixels outside [0, {self.num_classes}) and != {ign} "
                f"(values {values}) set to ignore ({ign})",
                stacklevel=3,
            )
            label[bad] = ign
        return label

    def _load_checked(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.load(j)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"image/label size mismatch for {self.describe(j)}: image {image.shape[1]}x{image.shape[0]}"
                f" vs label {label.shape[1]}x{label.shape[0]} (WxH)"
            )
        return image, label

    def describe(self, j: int) -> str:
        """Human-readable identity of item j (file names for file datasets)."""
        return self.name_of(j)

    def _load_skipping(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        n = len(self)
        j = i % n
        for _ in range(n):
            try:
                return (j, *self._load_checked(j))
            except CorruptFileError as e:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                warnings.warn(f"skipping ({self.skipped} so far in this process): {e}", stacklevel=3)
                j = (j + 1) % n
        raise DatasetError(f"every item of split {self.split!r} is corrupt ({n} files)")

    def __getitem__(self, i: int) -> dict:
        if len(self) == 0:
            raise IndexError("empty dataset")
        j, image, label = self._load_skipping(int(i))
        name = self.name_of(j)
        label = self.clean_label(label, name)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            image, label = self.augment(image, label, rng)
        return to_sample(image, label, self.mean_bgr, name)


class PairListDataset(SegDataset):
    """Items are (image path, label path) pairs; `label_lut` (256 entries) maps raw label values."""

    def __init__(self, cfg, split: str, train: bool, pairs: Sequence[tuple[Path, Path]],
                 label_lut: np.ndarray | None = None):
        super().__init__(cfg, split, train)
        self.pairs = [(Path(a), Path(b)) for a, b in pairs]
        self.label_lut = label_lut

    def __len__(self) -> int:
        return len(self.pairs)

    def name_of(self, j: int) -> str:
        return self.pairs[j][0].stem

    def describe(self, j: int) -> str:
        img, lab = self.pairs[j]
        return f"pair ({img}, {lab})"

    def map_label(self, raw: np.ndarray, j: int) -> np.ndarray:
        """Raw label values -> class ids (override per dataset)."""
        if self.label_lut is None:
            return raw
        if raw.min() < 0 or raw.max() >= len(self.label_lut):
            raise DatasetError(f"label {self.pairs[j][1]} has values outside [0, {len(self.label_lut)})")
        return self.label_lut[raw]

    def load(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, lab_path = self.pairs[j]
        return read_image(img_path), self.map_label(read_label(lab_path), j)
