"""Shared fixtures: a private MLflow store per test, configs composed from the repo's conf/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "tests" / "data" / "deeplab-notes.md"

#: Overrides that make a synthetic run take seconds: tiny data, two epochs of two steps.
FAST = ["dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32", "dataset.crop_size=32",
        "batch_size=4", "train.epochs=2", "train.max_steps_per_epoch=2"]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite MLflow store; also the default for code that reads MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def notes_names() -> list[str]:
    """Every experiment name in the first column of the notes' tables (dotted, no spaces)."""
    pattern = re.compile(r"^([A-Za-z][\w.()=-]*\.[\w.()=-]+) *\|", re.MULTILINE)
    return pattern.findall(NOTES.read_text())


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    return env
