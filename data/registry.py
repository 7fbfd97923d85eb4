"""The dataset registry: one declaration per dataset, its ``conf/dataset/<name>.yaml``.

Each dataset is declared once, in its config group file, which names (besides the reader's settings)

- ``name``: the config group option and ``dataset.name``;
- ``reader``: ``module:function`` that builds a split, ``fn(cfg, split, train) -> Dataset``
  (imported only when a dataset is built);
- ``tokens``: the name tokens of the dataset in experiment names; the first is canonical, the others
  are legacy spellings (``pascal``, ``cs``);
- ``order``: its place in listings (results tables, the variant x dataset matrix).

The codec (``sweeper.naming``), the readers (``data.build``) and the results module read this module;
it imports neither torch nor Hydra (the naming CLI stays fast). Adding a dataset: a reader plus one
``conf/dataset/<name>.yaml``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CONF_DATASET_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
#: keys of a dataset declaration that identify it, not what a run computes (left out of the config hash)
DECLARATION_KEYS = ("reader", "tokens", "order")


@dataclass(frozen=True)
class DatasetSpec:
    """What one ``conf/dataset/<name>.yaml`` declares about its dataset."""

    name: str
    reader: str
    tokens: tuple[str, ...]
    order: int
    num_classes: int
    train_split: str
    eval_split: str

    @property
    def token(self) -> str:
        """The canonical name token."""
        return self.tokens[0]

    def build(self, cfg: Any, split: str, train: bool) -> Any:
        """The reader's dataset for ``split`` (imports the reader module now)."""
        return load_reader(self.reader)(cfg, split, train)


def load_reader(path: str) -> Callable[..., Any]:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def _spec(path: Path) -> DatasetSpec:
    raw = yaml.safe_load(path.read_text()) or {}
    name = str(raw.get("name") or path.stem)
    if name != path.stem:
        raise ValueError(f"{path}: name {name!r} differs from the file name {path.stem!r}")
    for key in ("reader", "tokens"):
        if not raw.get(key):
            raise ValueError(f"{path}: the dataset declaration needs `{key}:` (see data/registry.py)")
    return DatasetSpec(name=name, reader=str(raw["reader"]), tokens=tuple(str(t) for t in raw["tokens"]),
                       order=int(raw.get("order", 100)), num_classes=int(raw["num_classes"]),
                       train_split=str(raw["train_split"]), eval_split=str(raw["eval_split"]))


@lru_cache(maxsize=1)
def datasets() -> dict[str, DatasetSpec]:
    """Every declared dataset by name, in listing order."""
    specs = sorted((_spec(p) for p in CONF_DATASET_DIR.glob("*.yaml")), key=lambda s: (s.order, s.name))
    return {s.name: s for s in specs}


def names() -> tuple[str, ...]:
    """Dataset names in listing order."""
    return tuple(datasets())


@lru_cache(maxsize=1)
def dataset_of_token() -> dict[str, str]:
    """Every dataset name token (canonical and legacy) -> its dataset name."""
    table: dict[str, str] = {}
    for spec in datasets().values():
        for token in spec.tokens:
            if token in table:
                raise ValueError(f"name token {token!r} is declared by datasets {table[token]!r} and {spec.name!r}")
            table[token] = spec.name
    return table
