"""Cityscapes fine: `leftImg8bit` + `gtFine`, labelIds -> 19 trainIds (official table), 255 ignore.

Splits: `train` (2,975), `val` (500), `test` (1,525; its public labels are all void).
Label files `*_gtFine_labelIds.png` are mapped with the official table; precomputed
`*_gtFine_labelTrainIds.png` (cityscapesScripts) are used as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.base import PairListDataset
from data.errors import DatasetError
from data.layout import Pair, split_pairs

TREE = """\
<dataset.root>/                       (= $SEGSWEEP_DATA/cityscapes)
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (or _gtFine_labelTrainIds.png)
  train.txt val.txt test.txt   (optional; lines "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png
                                gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png";
                                also searched: dataset.list_dir; without a list the folders are scanned)"""

# labelId -> trainId, cityscapesScripts `labels.py` (ignoreInEval classes -> 255).
LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def label_lut() -> np.ndarray:
    """A 256-entry lookup table labelId -> trainId (255 for void / ignored ids)."""
    lut = np.full(256, 255, dtype=np.int64)
    for label_id, train_id in LABEL_TO_TRAIN.items():
        lut[label_id] = train_id
    return lut


class CityscapesDataset(PairListDataset):
    """Maps labelIds through the table; labelTrainIds files pass through."""

    def map_label(self, raw: np.ndarray, j: int) -> np.ndarray:
        path = self.pairs[j][1]
        if path.name.endswith("labelTrainIds.png"):
            return raw
        if path.name.endswith("labelIds.png"):
            if raw.min() < 0 or raw.max() > 255:
                raise DatasetError(f"labelIds file {path} has values outside [0, 255]")
            return self.label_lut[raw]
        raise DatasetError(
            f"Cityscapes label {path} is neither *_gtFine_labelIds.png nor *_gtFine_labelTrainIds.png"
        )


def _scan(root: Path, split: str) -> list[Pair] | None:
    img_root = root / "leftImg8bit" / split
    if not img_root.is_dir() or not (root / "gtFine" / split).is_dir():
        return None
    pairs: list[Pair] = []
    missing: list[str] = []
    for img in sorted(img_root.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        gt_dir = root / "gtFine" / split / img.parent.name
        lab = gt_dir / f"{stem}_gtFine_labelIds.png"
        if not lab.is_file():
            lab = gt_dir / f"{stem}_gtFine_labelTrainIds.png"
        if lab.is_file():
            pairs.append((img, lab))
        else:
            missing.append(str(lab))
    if missing:
        raise DatasetError(f"{len(missing)} Cityscapes image(s) have no gtFine label, e.g. {missing[:3]}")
    return pairs or None


def build_cityscapes(cfg, split: str, train: bool) -> CityscapesDataset:
    """The Cityscapes reader for `split`."""
    pairs = split_pairs(cfg, "cityscapes", split, TREE, _scan)
    return CityscapesDataset(cfg, split, train, pairs, label_lut=label_lut())
