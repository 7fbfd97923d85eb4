"""A tiny Hydra app of its own (not segsweep's sweep.py) for the plugin tests: no MLflow, no torch.

It owns top-level ``launcher`` and ``tracking`` keys of its own, which segsweep's plugins must never
read as theirs; it returns ``x**2 + y**2`` (or ``cfg.result`` when set, e.g. a string), raises when
``error=true``, and with ``record=<file>`` appends its config and its Optuna trial environment there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="objective")
def main(cfg: DictConfig) -> Any:
    if cfg.record:
        trial = {k: v for k, v in os.environ.items() if k.startswith("SEGSWEEP_OPTUNA_")}
        line = {"cfg": OmegaConf.to_container(cfg), "env": trial, "cwd": os.getcwd()}
        with Path(str(cfg.record)).open("a") as out:
            out.write(json.dumps(line) + "\n")
    if cfg.error:
        raise RuntimeError("cfg.error is True")
    if cfg.result is not None:
        return cfg.result
    return float(cfg.x) ** 2 + float(cfg.y) ** 2


if __name__ == "__main__":
    main()
