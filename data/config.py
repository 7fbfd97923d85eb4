"""The dataset part of a run config from ``dataset=NAME dataset.KEY=VALUE`` overrides, for ``python -m data``.

Built with OmegaConf from ``conf/dataset/<name>.yaml`` (the same file Hydra composes for a run), not
with Hydra's compose API: composing the run config would discover the Hydra plugins, and they import
``sweeper`` (``data/`` never does).
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.errors import DatasetError
from data.registry import CONF_DATASET_DIR, names


def parse_overrides(overrides: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the dataset name of ``dataset=NAME``, the ``KEY=VALUE`` items of ``dataset.KEY=VALUE``)."""
    name: str | None = None
    items: list[str] = []
    for override in overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if not sep:
            raise DatasetError(f"{override!r} is not KEY=VALUE; e.g. `dataset=voc dataset.root=/data/voc/VOC2012`")
        if key == "dataset":
            name = value
        elif key.startswith("dataset."):
            items.append(f"{key[len('dataset.'):]}={value}")
        else:
            raise DatasetError(f"{override!r}: `python -m data check` takes only dataset=NAME and "
                               "dataset.KEY=VALUE overrides (the rest of a run config does not change the data)")
    return name, items


def dataset_config(overrides: Sequence[str]) -> DictConfig:
    """``{dataset: <conf/dataset/NAME.yaml with the overrides>, seed: 0}``, interpolations resolved."""
    name, items = parse_overrides(overrides)
    if name is None:
        raise DatasetError(f"name the dataset: `dataset=NAME` with NAME one of {', '.join(names())}")
    if name not in names():
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(names())} (conf/dataset/<name>.yaml)")
    try:
        dataset = OmegaConf.merge(OmegaConf.load(CONF_DATASET_DIR / f"{name}.yaml"), OmegaConf.from_dotlist(items))
        cfg = OmegaConf.create({"dataset": dataset, "seed": 0})
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise DatasetError(f"bad dataset override: {str(e).splitlines()[0]}") from None
    return cfg
