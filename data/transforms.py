"""Training augmentation (the notes' recipe, TOKENS.md §2) and normalisation.

Order, as the original `AugmentImageComponents(ds, shape_aug, (0, 1))`:
1. random resize: independent x/y factors in `resize_range`, rejection-sampled so the aspect ratio
   changes by at most `aspect_ratio_thres` (50 failures -> no resize), image bilinear, label
   nearest by default. The original resized labels **bilinearly** too (TOKENS §5.7); set
   `train.label_interp: bilinear` to reproduce that (intermediate ids appear at boundaries).
2. crop with padding: if smaller than the crop, centre-pad image AND label with the ignore value
   (255; the image pad is white, before mean subtraction, as the original), then a uniform crop.
3. horizontal flip with p = 0.5.
All randomness comes from the `numpy.random.Generator` passed in, so a sample is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MAX_RESIZE_TRIES = 50


def crop_hw(imagesize: int | Sequence[int]) -> tuple[int, int]:
    """`cfg.imagesize` (int or [h, w]) as (h, w)."""
    if isinstance(imagesize, int | np.integer):
        return int(imagesize), int(imagesize)
    vals = [int(v) for v in imagesize]
    if len(vals) != 2 or min(vals) <= 0:
        from data.errors import DatasetError

        raise DatasetError(f"imagesize must be an int or [h, w] of positive ints, got {imagesize!r}")
    return vals[0], vals[1]


def sample_resize(
    rng: np.random.Generator, h: int, w: int, resize_range: Sequence[float], aspect_ratio_thres: float
) -> tuple[int, int]:
    """Target (h, w) of tensorpack's `imgaug.RandomResize(xrange=yrange=resize_range, thres)`."""
    lo, hi = float(resize_range[0]), float(resize_range[1])
    for _ in range(MAX_RESIZE_TRIES + 1):
        sx = rng.uniform(lo, hi)
        sy = sx if aspect_ratio_thres == 0 else rng.uniform(lo, hi)
        dest_w, dest_h = max(sx * w, 1.0), max(sy * h, 1.0)
        old_r, new_r = w / h, dest_w / dest_h
        if abs(new_r - old_r) / old_r < aspect_ratio_thres + 1e-5:
            return max(int(dest_h + 0.5), 1), max(int(dest_w + 0.5), 1)
    return h, w


def _linear_coords(n_in: int, n_out: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel bilinear source indices and weights of output positions `idx` (cv2 INTER_LINEAR)."""
    src = (idx.astype(np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _nearest_coords(n_in: int, n_out: int, idx: np.ndarray) -> np.ndarray:
    """Nearest source indices sampling pixel centres (torch `nearest-exact`, PIL NEAREST)."""
    return np.minimum(((idx + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def _bilinear_at(a: np.ndarray, size: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Rows/cols `rows`, `cols` of `a` (HW or HWC) resized bilinearly to `size`, as float32.

    Pure numpy, elementwise: bit-identical in any process and for any subset of positions.
    """
    y0, y1, wy = _linear_coords(a.shape[0], size[0], rows)
    x0, x1, wx = _linear_coords(a.shape[1], size[1], cols)
    wy = wy.reshape((-1,) + (1,) * (a.ndim - 1))
    top, bottom = a[y0].astype(np.float32), a[y1].astype(np.float32)
    r = top * (1 - wy) + bottom * wy
    wx = wx.reshape((1, -1) + (1,) * (a.ndim - 2))
    return r[:, x0] * (1 - wx) + r[:, x1] * wx


def _bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return _bilinear_at(a, size, np.arange(size[0]), np.arange(size[1]))


def _nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return a[_nearest_coords(a.shape[0], size[0], np.arange(size[0]))][
        :, _nearest_coords(a.shape[1], size[1], np.arange(size[1]))
    ]


def _resample_label(
    label: np.ndarray, size: tuple[int, int], rows: np.ndarray, cols: np.ndarray, interp: str
) -> np.ndarray:
    if interp == "nearest":
        yi = _nearest_coords(label.shape[0], size[0], rows)
        xi = _nearest_coords(label.shape[1], size[1], cols)
        return label[yi][:, xi]
    if interp == "bilinear":
        return np.rint(_bilinear_at(label, size, rows, cols)).astype(label.dtype)
    from data.errors import DatasetError

    raise DatasetError(f"train.label_interp must be 'nearest' or 'bilinear', got {interp!r}")


def resize_pair(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int], label_interp: str = "nearest"
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an HWC image bilinearly (float32) and an HW label (nearest, or bilinear then rounded)."""
    rows, cols = np.arange(size[0]), np.arange(size[1])
    lab = _resample_label(label, size, rows, cols, label_interp)
    return _bilinear_at(image, size, rows, cols), lab


def crop_with_padding(
    rng: np.random.Generator, image: np.ndarray, label: np.ndarray, crop: tuple[int, int], pad_value: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centre-pad to at least `crop` with `pad_value` (image and label), then a uniform random crop."""
    ch, cw = crop
    h, w = label.shape
    if h < ch or w < cw:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        top, left = ph // 2, pw // 2
        pads = ((top, ph - top), (left, pw - left))
        image = np.pad(image, (*pads, (0, 0)), constant_values=pad_value)
        label = np.pad(label, pads, constant_values=pad_value)
        h, w = label.shape
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return image[y0 : y0 + ch, x0 : x0 + cw], label[y0 : y0 + ch, x0 : x0 + cw]


@dataclass(frozen=True)
class TrainAugment:
    """The training augmentation; call with (image HWC, label HW, rng)."""

    crop: tuple[int, int]
    resize_range: tuple[float, float] = (0.7, 1.5)
    aspect_ratio_thres: float = 0.15
    flip: bool = True
    pad_value: int = 255
    label_interp: str = "nearest"

    @classmethod
    def from_cfg(cls, cfg) -> TrainAugment:
        """From the whole run config (`imagesize`, `train.*`, `dataset.ignore_index`)."""
        train = cfg.get("train") or {}
        rr = train.get("resize_range", (0.7, 1.5))
        return cls(
            crop=crop_hw(cfg.get("imagesize", cfg.dataset.get("crop_size"))),
            resize_range=(float(rr[0]), float(rr[1])),
            aspect_ratio_thres=float(train.get("aspect_ratio_thres", 0.15)),
            flip=bool(train.get("flip", True)),
            pad_value=int(cfg.dataset.get("ignore_index", 255)),
            label_interp=str(train.get("label_interp", "nearest")),
        )

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Resize -> pad/crop -> flip, computing only the output window (same result as doing the
        three steps in full with `resize_pair` and `crop_with_padding`, several times faster)."""
        h, w = label.shape
        size = sample_resize(rng, h, w, self.resize_range, self.aspect_ratio_thres)
        (ch, cw), (nh, nw) = self.crop, size
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        y0 = int(rng.integers(0, nh + ph - ch + 1))
        x0 = int(rng.integers(0, nw + pw - cw + 1))
        flip = self.flip and rng.random() < 0.5
        rows = np.arange(y0, y0 + ch) - ph // 2  # positions in the resized (unpadded) frame
        cols = np.arange(x0, x0 + cw) - pw // 2
        if flip:
            cols = cols[::-1]
        rv, cv = (rows >= 0) & (rows < nh), (cols >= 0) & (cols < nw)
        out_img = np.full((ch, cw, image.shape[2]), float(self.pad_value), dtype=np.float32)
        out_lab = np.full((ch, cw), self.pad_value, dtype=label.dtype)
        out_img[np.ix_(rv, cv)] = _bilinear_at(image, size, rows[rv], cols[cv])
        out_lab[np.ix_(rv, cv)] = _resample_label(label, size, rows[rv], cols[cv], self.label_interp)
        return out_img, out_lab

    def reference(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """The three steps done in full, one after the other (for tests)."""
        size = sample_resize(rng, *label.shape, self.resize_range, self.aspect_ratio_thres)
        image, label = resize_pair(image, label, size, self.label_interp)
        image, label = crop_with_padding(rng, image, label, self.crop, self.pad_value)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label


def to_sample(image_rgb: np.ndarray, label: np.ndarray, mean_bgr: Sequence[float], name: str) -> dict:
    """HWC RGB image + HW label -> the sample dict (image float32 [3,H,W] BGR minus mean, label int64)."""
    bgr = np.asarray(image_rgb, dtype=np.float32)[:, :, ::-1] - np.asarray(mean_bgr, dtype=np.float32)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))),
        "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
        "name": name,
    }
