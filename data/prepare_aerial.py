"""``python -m data prepare aerial``: the Inria download -> training patches, validation tiles, lists.

From ``AerialImageDataset/train/{images,gt}/<city><n>.tif`` (180 tiles of 5000x5000, gt 0/255):

- validation: the first ``val_per_city`` tiles of each city (default 5: austin1-5, chicago1-5,
  kitsap1-5, tyrol-w1-5, vienna1-5), or the tiles a ``val_list`` names (the notes' own
  ``metadata/aerial/val.txt``, or bare tile names), linked whole into ``<out>/val/{images,gt}``;
- training: every other tile cut into ``size`` x ``size`` patches every ``stride`` pixels (the last
  row/column of patches is moved inward to reach the border), ``<out>/train/{images,gt}/<tile>_patch<i>_<j>.tif``
  (row i, column j, as the notes' ``crop.py`` named them); gt values are kept (0/255, read as 0/1);
- ``<out>/train.txt`` and ``<out>/val.txt`` with root-relative paths, for ``dataset.root=<out>``.

Each tile is decoded once and its patches are cropped from that one copy (a 5000x5000 tile is never
in memory twice; Pillow's TIFF reader cannot decode a window). Every patch is written to a temporary
name and renamed; a tile whose patches all exist is skipped without opening it: re-running resumes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from PIL import Image

from data.errors import DatasetError
from data.io import write_atomic

TILE_NAME = re.compile(r"^(?P<city>.*?)(?P<number>\d+)$")
SUFFIXES = (".tif",)


def locate(inria: Path) -> Path:
    """The folder holding ``images/`` and ``gt/`` of the Inria training tiles."""
    for sub in (".", "train", "AerialImageDataset/train"):
        base = inria / sub
        if (base / "images").is_dir() and (base / "gt").is_dir():
            return base
    raise DatasetError(f"--inria {inria} does not hold AerialImageDataset/train/{{images,gt}}/*.tif; "
                       "pass the folder of the unpacked download")


def tile_names(base: Path) -> list[str]:
    """Names (stems) of the tiles that have both an image and a gt file."""
    images = {p.stem: p for p in (base / "images").iterdir() if p.suffix.lower() in SUFFIXES}
    missing = sorted(n for n in images if not (base / "gt" / images[n].name).is_file())
    if missing:
        raise DatasetError(f"{len(missing)} Inria tile(s) have no gt in {base / 'gt'}, e.g. {missing[:3]}")
    if not images:
        raise DatasetError(f"no .tif tiles in {base / 'images'}")
    return sorted(images, key=_tile_key)


def _tile_key(name: str) -> tuple[str, int]:
    m = TILE_NAME.match(name)
    return (m["city"], int(m["number"])) if m else (name, 0)


def first_per_city(names: list[str], per_city: int) -> list[str]:
    """The ``per_city`` lowest-numbered tiles of every city (``austin1`` .. ``austin5``, ...)."""
    by_city: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names, key=_tile_key):
        by_city[_tile_key(name)[0]].append(name)
    return sorted((n for tiles in by_city.values() for n in tiles[:per_city]), key=_tile_key)


def names_from_list(path: Path, available: list[str]) -> list[str]:
    """Tile names of a list file: the stem of each line's first path (``/data1/.../val/images/austin1.tif
    ...`` or ``austin1``); every one must be a tile of the download."""
    if not path.is_file():
        raise DatasetError(f"--val-list {path} not found")
    names = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise DatasetError(f"--val-list {path} names {len(unknown)} tile(s) not in the download, e.g. {unknown[:3]}")
    if not names:
        raise DatasetError(f"--val-list {path} is empty")
    return sorted(set(names), key=_tile_key)


def starts(length: int, size: int, stride: int) -> list[int]:
    """Patch offsets along one axis: every ``stride``, the last one moved inward to end at the border."""
    if size <= 0 or stride <= 0:
        raise DatasetError(f"patch size and stride must be positive, got size={size} stride={stride}")
    if size > length:
        raise DatasetError(f"patch size {size} is larger than the tile side {length}")
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] + size < length:
        offsets.append(length - size)
    return offsets


def patch_boxes(width: int, height: int, size: int, stride: int) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """(row, column, (left, top, right, bottom)) of every patch of a ``width`` x ``height`` tile."""
    return [(i, j, (x, y, x + size, y + size))
            for i, y in enumerate(starts(height, size, stride)) for j, x in enumerate(starts(width, size, stride))]


def patch_name(tile: str, row: int, column: int) -> str:
    return f"{tile}_patch{row}_{column}.tif"


def _tile_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def cut_tile(base: Path, tile: str, out: Path, size: int, stride: int) -> list[str]:
    """Write the patches of one tile into ``out/{images,gt}`` (those not there yet); return all its patch names."""
    image_path, gt_path = base / "images" / f"{tile}.tif", base / "gt" / f"{tile}.tif"
    width, height = _tile_size(image_path)
    if _tile_size(gt_path) != (width, height):
        raise DatasetError(f"Inria tile {tile}: gt {gt_path} is {_tile_size(gt_path)}, its image {(width, height)}")
    boxes = patch_boxes(width, height, size, stride)
    names = [patch_name(tile, i, j) for i, j, _ in boxes]
    for kind, source in (("images", image_path), ("gt", gt_path)):
        todo = [(n, box) for n, (_, _, box) in zip(names, boxes, strict=True) if not (out / kind / n).is_file()]
        if not todo:
            continue
        with Image.open(source) as whole:
            whole.load()  # the one decoded copy of this tile; patches are cropped from it
            for name, box in todo:
                patch = whole.crop(box)
                write_atomic(out / kind / name, lambda tmp, patch=patch: patch.save(tmp, format="TIFF"))
    return names


def _link(source: Path, link: Path) -> None:
    if link.is_symlink() and not link.exists():
        link.unlink()
    if not link.exists():
        link.symlink_to(source.resolve())


def _write_list(path: Path, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def prepare_aerial(inria: Path, out: Path, size: int = 1000, stride: int | None = None, val_per_city: int = 5,
                   val_list: Path | None = None, progress: bool = True) -> dict[str, int]:
    """Build (or complete) the tree at ``out``; return the number of training patches and validation tiles."""
    from tqdm import tqdm

    base = locate(Path(inria))
    stride = size if stride is None else stride
    starts(size, size, stride)  # validate size and stride before any work
    names = tile_names(base)
    val = names_from_list(Path(val_list), names) if val_list else first_per_city(names, val_per_city)
    train = [n for n in names if n not in set(val)]
    if not train:
        raise DatasetError(f"every one of the {len(names)} tiles is a validation tile; lower --val-per-city")
    out = Path(out)
    for kind in ("images", "gt"):
        (out / "train" / kind).mkdir(parents=True, exist_ok=True)
        (out / "val" / kind).mkdir(parents=True, exist_ok=True)
    for tile in val:
        for kind in ("images", "gt"):
            _link(base / kind / f"{tile}.tif", out / "val" / kind / f"{tile}.tif")
    patches: list[str] = []
    for tile in tqdm(train, desc="aerial tiles", unit="tile", disable=None if progress else True):
        patches += cut_tile(base, tile, out / "train", size, stride)
    _write_list(out / "train.txt", [f"train/images/{p} train/gt/{p}" for p in patches])
    _write_list(out / "val.txt", [f"val/images/{t}.tif val/gt/{t}.tif" for t in val])
    return {"train": len(patches), "val": len(val), "train_tiles": len(train)}
