"""Hydra's upstream multi-objective example (plugins/hydra_optuna_sweeper/example/multi-objective.py,
the Binh and Korn function) for segsweep's sweeper: its config (conf/multi-objective.yaml) differs from
upstream's only in the sweeper's name."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


def binh_and_korn(cfg: DictConfig) -> tuple[float, float]:
    """Two objectives to minimise; their front is known (x = y in [0, 3], then y = 3)."""
    x: float = cfg.x
    y: float = cfg.y
    v0 = 4 * x**2 + 4 * y**2
    v1 = (x - 5) ** 2 + (y - 5) ** 2
    return v0, v1


main = hydra.main(version_base=None, config_path="conf", config_name="multi-objective")(binh_and_korn)

if __name__ == "__main__":
    main()
