"""`build_dataset(cfg, split, train)`: the reader that ``conf/dataset/<name>.yaml`` declares."""

from __future__ import annotations

from torch.utils.data import Dataset

from data.errors import DatasetError
from data.registry import datasets, load_reader


def build_dataset(cfg, split: str, train: bool) -> Dataset:
    """The dataset `cfg.dataset.name` for `split`; augmented (and cropped to `cfg.imagesize`) if `train`.

    Samples are dicts: `image` float32 [3,H,W] (BGR minus `dataset.mean_bgr`), `label` int64 [H,W]
    (ignore = `dataset.ignore_index`), `name` str. Training datasets expose `set_epoch(epoch)`.
    """
    name = str(cfg.dataset.name)
    spec = datasets().get(name)
    if spec is None:
        raise DatasetError(f"unknown dataset.name {name!r}; known: {sorted(datasets())}")
    return load_reader(spec.reader)(cfg, str(split), bool(train))
