"""Image and label file I/O with Pillow (no cv2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.errors import CorruptFileError, DatasetError

Image.MAX_IMAGE_PIXELS = 200_000_000  # Inria tiles are 5000x5000; keep a bound against bombs

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
#: image modes with colour channels: never a label map
COLOUR_MODES = ("RGB", "RGBA", "CMYK", "YCbCr", "LA")


def sbd_mat_hint() -> str:
    """What to say about a listed SBD ``.mat`` label (Pillow cannot read it)."""
    return ("is an SBD .mat file, not a label image: convert SBD with `python -m data prepare voc --sbd "
            "SBD_DIR --voc VOC2012_DIR --out DIR` (docs/data.md) and use DIR as dataset.root")


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}")
    if path.suffix.lower() == ".mat":
        raise DatasetError(f"{what} file {path} {sbd_mat_hint()}")
    try:
        img = Image.open(path)
        img.load()  # decode now: truncated files raise here (never a partial image or a hang)
    except Image.DecompressionBombError as e:
        raise DatasetError(f"{what} file {path} is too large for Pillow's limit: {e}") from e
    except _DECODE_ERRORS as e:
        raise CorruptFileError(f"corrupt or truncated {what} file {path}: {e}") from e
    return img


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 HWC RGB."""
    img = _open(Path(path), "image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """A single-channel label map (L, P, I;16, I) as int64 HW; palette images give their indices."""
    img = _open(Path(path), "label")
    if img.mode in COLOUR_MODES:
        raise DatasetError(
            f"label file {path} has {img.mode} colour channels; expected a single-channel map of class "
            "ids (mode L or P), e.g. SegmentationClassAug / CamVid *annot / gtFine_labelIds"
        )
    return np.asarray(img).astype(np.int64)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name next to ``path``, then rename: ``path`` is complete or absent,
    and an interrupted write leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
