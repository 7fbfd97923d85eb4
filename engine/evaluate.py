"""Evaluation: multi-scale (+ optional flip) sliding-window inference and dataset-level mIoU.

Protocol (TOKENS §3, ``tensorpack/utils/segmentation/segmentation.py``):

* for each scale ``s`` in ``cfg.eval.scales`` the whole image is resized bilinearly to
  ``int(s·H) × int(s·W)`` (truncated, as the original code; :func:`scaled_size`) and predicted with
  sliding tiles of ``cfg.eval.tile`` (the training crop) overlapping by ``cfg.eval.overlap`` (1/3):
  stride ``ceil(tile·(1-overlap))`` per axis, border tiles shifted inward, tiles larger than the
  image padded bottom/right with raw black (``-mean_bgr`` after mean subtraction, i.e. zeros
  before it), softmax probabilities averaged where tiles overlap;
* each scale's probabilities are resized back to ``H × W`` and added to one running sum, so only
  one scale is held at a time; ``cfg.eval.flip`` adds the left-right mirrored pass (the notes
  claim flip, the original code never flipped);
* the argmax goes into one confusion matrix over the split (:class:`engine.metrics.ConfusionMatrix`,
  absent classes excluded from the mean and reported as ``None``).

Deviation from the original: the original used the tile *height* as the stride on both axes and
could produce zero tiles for images much smaller than the tile; here each axis uses its own tile
side and there is always at least one tile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.distributed import (
    DistContext,
    all_reduce_confusion,
    autocast_context,
    to_channels_last,
    unwrap_model,
)
from engine.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix", "EvalSettings", "evaluate", "predict", "predict_tiles"]


def _get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    if isinstance(node, Mapping) or hasattr(node, "get"):
        return node.get(key, default)
    return getattr(node, key, default)


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol read from a run config (``cfg.eval`` and ``cfg.dataset``)."""

    scales: tuple[float, ...]
    flip: bool
    tile: tuple[int, int]
    overlap: float
    num_classes: int
    ignore_index: int
    class_names: tuple[str, ...] | None
    pad_value: tuple[float, ...]
    tile_batch: int = 4
    amp: bool = True

    @classmethod
    def from_cfg(cls, cfg: Any) -> EvalSettings:
        """Validate and collect the fields; a wrong field raises one error naming it."""
        ev, ds = _get(cfg, "eval"), _get(cfg, "dataset")
        if ev is None or ds is None:
            raise ValueError("config needs `eval` and `dataset` groups (e.g. eval=single dataset=camvid)")
        scales = tuple(float(s) for s in (_get(ev, "scales") or [1.0]))
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"eval.scales must be positive numbers, got {list(scales)}")
        tile = _get(ev, "tile", None)
        if tile is None:
            tile = _get(cfg, "imagesize", None)
        if tile is None:
            raise ValueError("eval.tile is missing; set it to the training crop (int or [h, w])")
        tile_hw = (int(tile), int(tile)) if isinstance(tile, int | float) else tuple(int(t) for t in tile)
        if len(tile_hw) != 2 or min(tile_hw) < 1:
            raise ValueError(f"eval.tile must be a positive int or [h, w], got {tile!r}")
        overlap = float(_get(ev, "overlap", 1.0 / 3.0))
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"eval.overlap must lie in [0, 1), got {overlap}")
        num_classes = int(_get(ds, "num_classes", 0))
        if num_classes < 1:
            raise ValueError("dataset.num_classes must be a positive integer")
        names = _get(ds, "class_names", None)
        names_t = tuple(str(n) for n in names) if names is not None else None
        if names_t is not None and len(names_t) != num_classes:
            raise ValueError(f"dataset.class_names has {len(names_t)} names for num_classes={num_classes}")
        mean = _get(ds, "mean_bgr", None)
        pad = tuple(-float(m) for m in mean) if mean is not None else (0.0, 0.0, 0.0)
        tile_batch = int(_get(ev, "tile_batch", 4))
        if tile_batch < 1:
            raise ValueError(f"eval.tile_batch must be >= 1, got {tile_batch}")
        return cls(scales, bool(_get(ev, "flip", False)), tile_hw, overlap, num_classes,
                   int(_get(ds, "ignore_index", 255)), names_t, pad, tile_batch, bool(_get(ev, "amp", True)))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, list | tuple):
        if not out:
            raise ValueError("model returned an empty list; it must return a list of logits [N,C,H,W]")
        out = out[-1]
    if out.dim() != 4 or out.shape[0] != x.shape[0] or out.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"model output {tuple(out.shape)} for input {tuple(x.shape)}: "
                         "logits must be [N, C, H, W] at the input size")
    return out


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    n = max(math.ceil((size - tile) / stride), 0) + 1
    starts = []
    for i in range(n):
        end = min(i * stride + tile, size)
        starts.append(max(end - tile, 0))
    return starts


def predict_tiles(model: nn.Module, image: torch.Tensor, tile: tuple[int, int], overlap: float,
                  pad_value: Sequence[float], tile_batch: int = 4, amp: bool = True) -> torch.Tensor:
    """Softmax probabilities ``[C,h,w]`` of one ``[3,h,w]`` image from overlapping padded tiles.

    ``amp``: bf16 autocast for the forward pass on CUDA (ignored on CPU); the softmax is float32.
    """
    _, h, w = image.shape
    th, tw = tile
    sh, sw = math.ceil(th * (1 - overlap)), math.ceil(tw * (1 - overlap))
    boxes = [(y, x) for y in _tile_starts(h, th, sh) for x in _tile_starts(w, tw, sw)]
    pad = torch.as_tensor(pad_value, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    probs: torch.Tensor | None = None
    count = torch.zeros((h, w), dtype=torch.float32, device=image.device)
    for i in range(0, len(boxes), tile_batch):
        chunk = boxes[i:i + tile_batch]
        batch = pad.expand(image.shape[0], th, tw).repeat(len(chunk), 1, 1, 1)
        for j, (y, x) in enumerate(chunk):
            crop = image[:, y:y + th, x:x + tw]
            batch[j, :, :crop.shape[1], :crop.shape[2]] = crop
        batch = to_channels_last(batch, image.device)
        with autocast_context(image.device, enabled=amp):
            logits = _logits(model, batch)
        p = torch.softmax(logits.float(), dim=1)
        if probs is None:
            probs = torch.zeros((p.shape[1], h, w), dtype=torch.float32, device=image.device)
        for j, (y, x) in enumerate(chunk):
            ch, cw = min(th, h - y), min(tw, w - x)
            probs[:, y:y + ch, x:x + cw] += p[j, :, :ch, :cw]
            count[y:y + ch, x:x + cw] += 1
    assert probs is not None
    return probs / count


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """The size an ``h x w`` image is resized to at ``scale``: truncated, ``int(s*H) x int(s*W)``, as the
    original code (375 rows at 0.5 -> 187, where ``round`` gives 188), and at least 1 pixel."""
    return max(1, int(h * scale)), max(1, int(w * scale))


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == size:
        return t
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]


def predict(model: nn.Module, image: torch.Tensor, cfg: Any, device: torch.device | str | None = None,
            settings: EvalSettings | None = None) -> torch.Tensor:
    """Class probabilities ``[C,H,W]`` (float32) for one ``[3,H,W]`` image under ``cfg.eval``'s protocol.

    The mean of the softmax over scales (and mirror passes when ``cfg.eval.flip``), accumulated one
    scale at a time at the original resolution. Call under ``torch.inference_mode()`` with the
    model in eval mode (:func:`evaluate` does both).
    """
    st = settings or EvalSettings.from_cfg(cfg)
    image = torch.as_tensor(image)
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {tuple(image.shape)}")
    if device is None:
        device = next(iter(model.parameters()), image).device
    image = image.to(device=device, dtype=torch.float32)
    h, w = image.shape[-2:]
    total: torch.Tensor | None = None
    for s in st.scales:
        size = scaled_size(h, w, s)
        scaled = _resize(image, size)
        p = predict_tiles(model, scaled, st.tile, st.overlap, st.pad_value, st.tile_batch, st.amp)
        if st.flip:
            p += predict_tiles(model, scaled.flip(-1), st.tile, st.overlap, st.pad_value,
                               st.tile_batch, st.amp).flip(-1)
        p = _resize(p, (h, w))
        total = p if total is None else total.add_(p)
        del p, scaled
    assert total is not None
    if total.shape[0] != st.num_classes:
        raise ValueError(f"model predicts {total.shape[0]} classes but dataset.num_classes={st.num_classes}")
    return total / (len(st.scales) * (2 if st.flip else 1))


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(model: nn.Module, dataset: Any, cfg: Any, limit: int | None = None,
             device: torch.device | str | None = None, ctx: DistContext | None = None) -> dict:
    """mIoU (percent), per-class IoU, pixel and mean class accuracy over the first ``limit`` images.

    ``limit=None`` evaluates the whole split. With a distributed ``ctx`` each rank predicts every
    ``world_size``-th image and the confusion matrices are summed, so every rank gets the result.
    Returns ``{"mIoU", "pixel_acc", "mean_class_acc", "iou": {name: percent | None}, "n_images",
    "scales", "flip", "tile"}``.
    """
    st = EvalSettings.from_cfg(cfg)
    size = len(dataset)
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images or None, got {limit}")
    n = size if limit is None else min(int(limit), size)
    if n == 0:
        raise ValueError("the evaluation dataset is empty")
    net = unwrap_model(model)
    device = torch.device(device) if device is not None else _model_device(net)
    cm = ConfusionMatrix(st.num_classes, st.ignore_index, device="cpu")
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for i in range(rank, n, world):
                sample = dataset[i]
                image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
                if label.shape != image.shape[-2:]:
                    raise ValueError(f"sample {i} ({sample.get('name', '?')}): label {tuple(label.shape)} "
                                     f"does not match image {tuple(image.shape)}")
                probs = predict(net, image, cfg, device=device, settings=st)
                cm.update(probs.argmax(0), label.to(probs.device))
    finally:
        net.train(was_training)
    if ctx is not None:
        all_reduce_confusion(cm, ctx)
    if cm.total == 0:
        raise ValueError(f"no labelled pixel in the {n} evaluated images (all labels are ignore_index="
                         f"{st.ignore_index} or >= num_classes={st.num_classes}); check the label mapping")
    result = cm.summary(st.class_names)
    result.update({"n_images": n, "scales": list(st.scales), "flip": st.flip, "tile": list(st.tile)})
    return result
