"""PASCAL VOC 2012 + SBD (`SegmentationClassAug`): 21 classes, 255 ignore.

Splits: `train_aug` (10,582), `train` (1,464), `val` (1,449), or any `<split>.txt` present.
"""

from __future__ import annotations

from data.base import PairListDataset
from data.layout import dataset_root, find_list, list_dir, missing_list_error, read_pairs

TREE = """\
<dataset.root>/                       (= $SEGSWEEP_DATA/voc/VOC2012, i.e. VOCdevkit/VOC2012)
  JPEGImages/2007_000032.jpg ...
  SegmentationClassAug/2007_000032.png ...   (single-channel class ids, 255 = ignore; SBD + VOC)
  train_aug.txt  train.txt  val.txt          (lines "JPEGImages/<id>.jpg SegmentationClassAug/<id>.png",
                                              or "/JPEGImages/... /SegmentationClassAug/...", or bare ids;
                                              also searched: dataset.list_dir, ImageSets/SegmentationAug/,
                                              ImageSets/Segmentation/)"""


def build_voc(cfg, split: str, train: bool) -> PairListDataset:
    """The VOC reader for `split`."""
    root = dataset_root(cfg, TREE)
    label_dir = "SegmentationClassAug" if (root / "SegmentationClassAug").is_dir() else "SegmentationClass"
    candidates = [
        (list_dir(cfg, root) / f"{split}.txt") if list_dir(cfg, root) else None,
        root / f"{split}.txt",
        root / "ImageSets" / "SegmentationAug" / f"{split}.txt",
        root / "ImageSets" / "Segmentation" / f"{split}.txt",
    ]
    list_file = find_list(candidates)
    if list_file is None:
        raise missing_list_error("voc", split, candidates, TREE)

    def from_id(image_id: str) -> tuple[str, str]:
        return f"JPEGImages/{image_id}.jpg", f"{label_dir}/{image_id}.png"

    return PairListDataset(cfg, split, train, read_pairs(list_file, root, from_id))
