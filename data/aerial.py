"""Inria Aerial Image Labeling: building (1) vs. not (0).

Training patches are 1000x1000, validation tiles 5000x5000. Ground truth is 0/255 (the original
tiles) or 0/1 (the patches written by the notes' `crop.py`, gt/255): 255 is read as 1, so the
aerial set has no ignore pixels. Lists hold absolute paths (the notes' metadata/aerial); relative
paths are resolved against the root.
Splits: `train` (4,050 patches), `val` (18 tiles), or any `<split>.txt` present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.base import PairListDataset
from data.errors import DatasetError
from data.layout import Pair, split_pairs

TREE = """\
<dataset.root>/                       (= $SEGSWEEP_DATA/aerial)
  train/images/austin34_patch0_2.tif ...    train/gt/austin34_patch0_2.tif ...   (1000x1000 patches)
  val/images/<tile>.tif ...                 val/gt/<tile>.tif ...                (5000x5000 tiles)
  train.txt val.txt   (optional; lines "<abs or root-relative image> <abs or root-relative gt>";
                       also searched: dataset.list_dir; without a list <split>/images + <split>/gt are scanned)"""

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg")


class AerialDataset(PairListDataset):
    """gt 255 -> 1 (other values outside {0, 1} are reported by the base class)."""

    def map_label(self, raw: np.ndarray, j: int) -> np.ndarray:
        return np.where(raw == 255, 1, raw)


def _scan(root: Path, split: str) -> list[Pair] | None:
    img_dir, gt_dir = root / split / "images", root / split / "gt"
    if not (img_dir.is_dir() and gt_dir.is_dir()):
        return None
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    missing = [p.name for p in images if not (gt_dir / p.name).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} aerial image(s) in {img_dir} have no gt in {gt_dir}, e.g. {missing[:3]}")
    return [(p, gt_dir / p.name) for p in images] or None


def build_aerial(cfg, split: str, train: bool) -> AerialDataset:
    """The Inria aerial reader for `split`."""
    return AerialDataset(cfg, split, train, split_pairs(cfg, "aerial", split, TREE, _scan))
