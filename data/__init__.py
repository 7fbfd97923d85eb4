"""Dataset readers, the synthetic set and the training transforms (pure numpy/torch/Pillow)."""

from data.build import build_dataset
from data.errors import DatasetError

__all__ = ["DatasetError", "build_dataset"]
