"""Atomic training checkpoints: model, optimizer, scheduler, RNG states, epoch and metric history."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """The states of every random generator the loop uses."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(workdir: Path, state: dict[str, Any]) -> Path:
    """Write the checkpoint atomically (write to a temporary file, then rename over the old one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CHECKPOINT_NAME
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(workdir: Path | None) -> dict[str, Any] | None:
    """The last checkpoint in ``workdir``, or None."""
    if workdir is None or not (workdir / CHECKPOINT_NAME).exists():
        return None
    return torch.load(workdir / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
