"""Guards of a run: config values that cannot train, devices that are not there, a loss that explodes.

Pure checks raising :class:`ConfigValueError` (one line naming the key and the fix; segsweep's CLI
exits 2 on it) and :class:`LossWatch`, which notices a training loss that grows without bound while
staying finite (NaN/inf already stop a run: ``NonFiniteLossError``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from engine.callbacks import ConfigError

log = logging.getLogger(__name__)

#: a loss this many times its first value counts as exploding (``train.explode_factor`` overrides it)
EXPLODE_FACTOR = 1e6
POSITIVE_INT_KEYS = ("scale", "batch_size", "train.epochs", "gpus")


class ConfigValueError(ConfigError):
    """A config value that cannot train; the message names the key and the fix."""


def _select(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, Mapping) or hasattr(cfg, "get") else None
    return cfg


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(key: str, value: Any) -> int:
    if not _is_int(value) or value <= 0:
        raise ConfigValueError(f"{key}={value} must be a positive integer (e.g. `{key}=1`)")
    return value


def imagesize(value: Any) -> None:
    sizes = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) else [value]
    if len(sizes) not in (1, 2) or not all(_is_int(v) and v > 0 for v in sizes):
        raise ConfigValueError(f"imagesize={value} must be a positive integer or [height, width] "
                               f"(e.g. `imagesize=321`)")


def positive_number(key: str, value: Any, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigValueError(f"{key}={value} must be a positive number (e.g. `{key}={example}`)")
    return float(value)


def check_config(cfg: Any) -> None:
    """Reject values that cannot train (types included: ``lr=abc``, ``seed=x``), naming key and fix."""
    for key in POSITIVE_INT_KEYS:
        positive_int(key, _select(cfg, key))
    imagesize(_select(cfg, "imagesize"))
    positive_number("lr", _select(cfg, "lr"), "1e-3")
    seed = _select(cfg, "seed")
    if not _is_int(seed) or seed < 0:
        raise ConfigValueError(f"seed={seed} must be a non-negative integer (e.g. `seed=1`)")
    milestones, factors = _select(cfg, "train.milestones"), _select(cfg, "train.lr_factors")
    if len(milestones or []) != len(factors or []):
        raise ConfigValueError("train.milestones and train.lr_factors must have the same length")


def check_devices(cfg: Any, cuda_available: bool | None = None, cuda_count: int | None = None) -> None:
    """Where the job runs: ``device=cuda`` / ``gpus=N`` need that many visible GPUs (a multi-process
    launch — torchrun, a SLURM step — sees its own)."""
    import torch

    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    count = (torch.cuda.device_count() if available else 0) if cuda_count is None else cuda_count
    device = str(_select(cfg, "device") or "auto")
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigValueError(f"device={device} is not a device: use device=auto, device=cpu or device=cuda")
    if device.startswith("cuda") and not available:
        raise ConfigValueError(f"device={device} but CUDA is not available here: use device=cpu or device=auto "
                               f"(or run where a GPU is)")
    gpus = int(_select(cfg, "gpus") or 1)
    launched = "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    if gpus > 1 and not launched and count < gpus:
        raise ConfigValueError(f"gpus={gpus} but {count} GPU(s) are visible here: set gpus={max(count, 1)} "
                               f"(or run where {gpus} GPUs are)")


class LossWatch:
    """Warns once (log + ``warning`` returned to the loop) when the training loss exceeds
    ``factor`` x its first value while staying finite."""

    def __init__(self, factor: float = EXPLODE_FACTOR, first: float | None = None):
        self.factor, self.first, self.warned = float(factor), first, False

    def check(self, loss: float, epoch: int, step: int) -> str | None:
        """The warning text the first time ``loss`` explodes, else None."""
        if self.first is None:
            self.first = abs(loss) or 1e-12
            return None
        if self.warned or abs(loss) <= self.factor * self.first:
            return None
        self.warned = True
        message = (f"training loss {loss:.3g} at epoch {epoch}, step {step} is more than {self.factor:g} x its "
                   f"first value {self.first:.3g}: the run is diverging (lower lr or check the data)")
        log.warning(message)
        return message
