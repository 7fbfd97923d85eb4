"""The ``segsweep_optuna`` Hydra sweeper (thin: the search itself lives in ``sweeper/optuna_search.py``).

Hydra imports this module during plugin discovery, so it imports nothing heavy at module level.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class SegsweepOptunaSweeper(Sweeper):
    """Optuna 5 ask/tell sweeper: asynchronous trials through any Hydra launcher, pruning, resume."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        # Plain containers: the settings travel into the search and the MLflow parent run.
        self.settings: dict[str, Any] = {
            k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
            for k, v in settings.items()
        }
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.task_function = task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Run (or resume) the study; returns the optimization results dict."""
        from sweeper.optuna_search import Search, SearchError

        try:
            return Search(self, arguments).run()
        except (ValueError, SearchError) as e:  # bad settings or too many failures: one clear line
            raise SearchStopped(f"segsweep_optuna: {e}") from e


class SearchStopped(CompactHydraException):
    """A search that could not start or was stopped; Hydra prints just this message."""
