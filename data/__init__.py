"""Dataset readers, the synthetic set and the training transforms (pure numpy/torch/Pillow).

``build_dataset`` and ``DatasetError`` are imported on first use, so that ``data.registry`` (read by
the name codec, which must not import torch) stays light.
"""

from typing import Any

__all__ = ["DatasetError", "build_dataset"]


def __getattr__(name: str) -> Any:
    if name == "build_dataset":
        from data.build import build_dataset

        return build_dataset
    if name == "DatasetError":
        from data.errors import DatasetError

        return DatasetError
    raise AttributeError(f"module 'data' has no attribute {name!r}")
