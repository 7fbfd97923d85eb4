"""segsweep entry point: `python sweep.py [-m] key=value ...` (`python sweep.py --help`, README.md).

Only Hydra is imported up front: torch and MLflow come with the task, so `--help`, `--cfg` and
`--info` answer at Hydra's own speed.
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sweeper import LAUNCH_DIR_ENV, cli_help
from sweeper.shutdown import run_cli

os.environ.setdefault(LAUNCH_DIR_ENV, os.getcwd())
cli_help.register()  # the resolvers of conf/hydra/help/segsweep.yaml
if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
    cli_help.skip_hydras_group_listing()


@hydra.main(config_path="conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    print(f"[segsweep] starting {' '.join(HydraConfig.get().overrides.task) or '(defaults)'}", flush=True)
    from sweeper.task import main as run_task  # torch, MLflow: only when a job runs (seconds to import)

    return run_task(cfg)


if __name__ == "__main__":
    run_cli(main)  # SIGTERM/SIGINT and input errors end with one line
