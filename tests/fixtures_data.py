"""Helpers for the data tests: compose run configs, write tiny datasets in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(overrides: list[str] | None = None):
    """The run config `sweep` composed with `overrides` (hydra compose API)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="sweep", overrides=list(overrides or []))


def write_png(path: Path, array: np.ndarray, mode: str | None = None, palette: bool = False) -> Path:
    """Write a uint8 array as PNG (palette mode 'P' when `palette`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode)
    if palette:
        img = img.convert("L").convert("P")
        img.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, i)])
        img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").convert("P")
    img.save(path)
    return path


def rand_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path
