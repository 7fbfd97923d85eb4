"""segsweep entry point: `python sweep.py [-m] key=value ...` (see README.md)."""

import os

import hydra
from omegaconf import DictConfig

from sweeper.naming import register_backbones
from sweeper.shutdown import run_cli
from sweeper.task import LAUNCH_DIR_ENV
from sweeper.task import main as run_task

os.environ.setdefault(LAUNCH_DIR_ENV, os.getcwd())
register_backbones()  # the backbone=dense{L}k{K} options, before Hydra composes


@hydra.main(config_path="conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return run_task(cfg)


if __name__ == "__main__":
    run_cli(main)  # SIGTERM/SIGINT and input errors end with one line
