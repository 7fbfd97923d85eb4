"""``python -m data prepare voc``: SBD + VOC2012 downloads -> the ``SegmentationClassAug`` tree.

As the DeepLab release (and mmsegmentation's ``tools/dataset_converters/voc_aug.py``) build it:

- labels: VOC's own ``SegmentationClass`` palette PNGs for the images VOC annotates (their palette
  indices, 255 on object boundaries), SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``) for the others,
  all written as single-channel class-id PNGs to ``<out>/SegmentationClassAug/<id>.png``;
- ``train_aug.txt`` = SBD train + SBD val + VOC train, minus VOC val (10,582 ids), ``train.txt``
  (VOC train, 1,464) and ``val.txt`` (VOC val, 1,449), lines ``JPEGImages/<id>.jpg SegmentationClassAug/<id>.png``;
- ``<out>/JPEGImages/<id>.jpg``: symbolic links to VOC's JPEGs (SBD's ``img/`` for any VOC lacks).

Idempotent and resumable: every file is written to a temporary name and renamed, files already
present are kept, the lists are rewritten last. ``<out>`` may be the VOC2012 folder itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data.errors import DatasetError
from data.io import write_atomic

LABEL_DIR = "SegmentationClassAug"


@dataclass(frozen=True)
class VocSources:
    """The two downloads, located."""

    sbd: Path  # benchmark_RELEASE/dataset: cls/, img/, train.txt, val.txt
    voc: Path  # VOCdevkit/VOC2012: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/


def _find(base: Path, candidates: Iterable[str], marker: str, what: str, expected: str) -> Path:
    for sub in candidates:
        if (base / sub / marker).exists():
            return base / sub
    raise DatasetError(f"{what} {base} does not hold {expected}; pass the folder of the unpacked download")


def locate(sbd: Path, voc: Path) -> VocSources:
    """The SBD ``dataset`` folder and the VOC2012 folder from what the user passed (or a parent)."""
    sbd_dir = _find(sbd, (".", "dataset", "benchmark_RELEASE/dataset"), "cls", "--sbd",
                    "benchmark_RELEASE/dataset/cls/*.mat")
    voc_dir = _find(voc, (".", "VOC2012", "VOCdevkit/VOC2012"), "ImageSets/Segmentation", "--voc",
                    "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}")
    return VocSources(sbd_dir, voc_dir)


def read_ids(path: Path) -> list[str]:
    """Image ids of a list file (one per line; blank lines skipped)."""
    if not path.is_file():
        raise DatasetError(f"list file {path} not found (is the download complete?)")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def train_aug_ids(sbd_train: list[str], sbd_val: list[str], voc_train: list[str], voc_val: list[str]) -> list[str]:
    """SBD train + SBD val + VOC train, minus VOC val: the DeepLab ``train_aug`` split, sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def sbd_label(mat_path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/*.mat`` file as uint8 class ids."""
    from scipy.io import loadmat

    try:
        gt = loadmat(str(mat_path), squeeze_me=True, struct_as_record=False)["GTcls"]
        label = np.asarray(gt.Segmentation)
    except (KeyError, AttributeError, ValueError, OSError, TypeError) as e:
        raise DatasetError(f"{mat_path}: not an SBD cls file with GTcls.Segmentation ({type(e).__name__}: {e})") from e
    if label.ndim != 2 or label.size == 0 or label.min() < 0 or label.max() > 255:
        raise DatasetError(f"{mat_path}: GTcls.Segmentation is not a 2-D map of class ids (shape {label.shape})")
    return label.astype(np.uint8)


def voc_label(png_path: Path) -> np.ndarray:
    """A VOC ``SegmentationClass`` palette PNG as its indices (class ids, 255 boundaries)."""
    with Image.open(png_path) as img:
        if img.mode != "P":
            raise DatasetError(f"{png_path}: expected a VOC palette PNG (mode P), got mode {img.mode}")
        return np.asarray(img)


def label_source(image_id: str, src: VocSources, voc_annotated: set[str]) -> Path:
    """VOC's own annotation when it has one, else SBD's."""
    if image_id in voc_annotated:
        return src.voc / "SegmentationClass" / f"{image_id}.png"
    return src.sbd / "cls" / f"{image_id}.mat"


def image_source(image_id: str, src: VocSources) -> Path:
    voc_jpg = src.voc / "JPEGImages" / f"{image_id}.jpg"
    return voc_jpg if voc_jpg.is_file() else src.sbd / "img" / f"{image_id}.jpg"


def pair_line(image_id: str) -> str:
    return f"JPEGImages/{image_id}.jpg {LABEL_DIR}/{image_id}.png"


@dataclass
class Tally:
    written: int = 0
    kept: int = 0


def prepare_voc(sbd: Path, voc: Path, out: Path, progress: bool = True) -> dict[str, int]:
    """Build (or complete) the tree at ``out``; return the list sizes and how many labels were written/kept."""
    src = locate(Path(sbd), Path(voc))
    sbd_train, sbd_val = read_ids(src.sbd / "train.txt"), read_ids(src.sbd / "val.txt")
    seg = src.voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_ids(seg / "train.txt"), read_ids(seg / "val.txt")
    lists = {"train_aug": train_aug_ids(sbd_train, sbd_val, voc_train, voc_val), "train": sorted(voc_train),
             "val": sorted(voc_val)}
    ids = sorted(set(lists["train_aug"]) | set(voc_val) | set(voc_train))
    missing = [i for i in ids if not label_source(i, src, set(voc_train) | set(voc_val)).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} listed id(s) have no label in SBD cls/ or VOC SegmentationClass/, "
                           f"e.g. {missing[:3]}: is a download incomplete?")
    out = Path(out)
    (out / LABEL_DIR).mkdir(parents=True, exist_ok=True)
    (out / "JPEGImages").mkdir(exist_ok=True)
    tally = _convert(ids, src, out, set(voc_train) | set(voc_val), progress)
    for split, split_ids in lists.items():
        text = "".join(pair_line(i) + "\n" for i in split_ids)
        write_atomic(out / f"{split}.txt", lambda tmp, text=text: tmp.write_text(text))
    return {**{split: len(v) for split, v in lists.items()}, "written": tally.written, "kept": tally.kept}


def _convert(ids: list[str], src: VocSources, out: Path, voc_annotated: set[str], progress: bool) -> Tally:
    from tqdm import tqdm

    tally = Tally()
    for image_id in tqdm(ids, desc="voc labels", unit="img", disable=None if progress else True):
        _link_image(image_id, src, out)
        target = out / LABEL_DIR / f"{image_id}.png"
        if target.is_file():
            tally.kept += 1
            continue
        source = label_source(image_id, src, voc_annotated)
        label = voc_label(source) if source.suffix == ".png" else sbd_label(source)
        write_atomic(target, lambda tmp, label=label: Image.fromarray(label).save(tmp, format="PNG"))
        tally.written += 1
    return tally


def _link_image(image_id: str, src: VocSources, out: Path) -> None:
    link = out / "JPEGImages" / f"{image_id}.jpg"
    if link.exists():
        return
    source = image_source(image_id, src)
    if not source.is_file():
        raise DatasetError(f"no image for id {image_id}: neither {src.voc / 'JPEGImages'} nor {src.sbd / 'img'} "
                           "has it")
    if link.is_symlink():  # dangling: the source moved
        link.unlink()
    link.symlink_to(source.resolve())
