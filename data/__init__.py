"""Dataset readers, the synthetic set and the training transforms (pure numpy/torch/Pillow).

``build_dataset`` is imported lazily, so ``python -m data prepare`` does not pay for torch.
"""

from typing import Any

from data.errors import DatasetError

__all__ = ["DatasetError", "build_dataset"]


def __getattr__(name: str) -> Any:
    if name == "build_dataset":
        from data.build import build_dataset

        return build_dataset
    raise AttributeError(f"module 'data' has no attribute {name!r}")
