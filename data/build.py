"""`build_dataset(cfg, split, train)`: the dataset registry keyed by `cfg.dataset.name`."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from data.errors import DatasetError


def _synthetic(cfg, split: str, train: bool) -> Dataset:
    from data.synthetic import SyntheticDataset

    return SyntheticDataset(cfg, split, train)


def _voc(cfg, split: str, train: bool) -> Dataset:
    from data.voc import build_voc

    return build_voc(cfg, split, train)


def _camvid(cfg, split: str, train: bool) -> Dataset:
    from data.camvid import build_camvid

    return build_camvid(cfg, split, train)


def _cityscapes(cfg, split: str, train: bool) -> Dataset:
    from data.cityscapes import build_cityscapes

    return build_cityscapes(cfg, split, train)


def _aerial(cfg, split: str, train: bool) -> Dataset:
    from data.aerial import build_aerial

    return build_aerial(cfg, split, train)


REGISTRY: dict[str, Callable[..., Dataset]] = {
    "synthetic": _synthetic,
    "voc": _voc,
    "camvid": _camvid,
    "cityscapes": _cityscapes,
    "aerial": _aerial,
}


def build_dataset(cfg, split: str, train: bool) -> Dataset:
    """The dataset `cfg.dataset.name` for `split`; augmented (and cropped to `cfg.imagesize`) if `train`.

    Samples are dicts: `image` float32 [3,H,W] (BGR minus `dataset.mean_bgr`), `label` int64 [H,W]
    (ignore = `dataset.ignore_index`), `name` str. Training datasets expose `set_epoch(epoch)`.
    """
    name = cfg.dataset.name
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset.name {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](cfg, str(split), bool(train))
