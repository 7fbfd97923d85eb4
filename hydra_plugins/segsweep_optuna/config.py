"""Structured config of the ``segsweep_optuna`` sweeper, registered as ``hydra/sweeper=segsweep_optuna``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    """``name``: tpe (default) | random | grid | cmaes | gp. ``kwargs`` go to the Optuna sampler."""

    name: str = "tpe"
    seed: int | None = 0
    n_startup_trials: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerConf:
    """``name``: median (default) | percentile | hyperband | successive_halving | threshold | patient | none.

    ``kwargs`` go to the Optuna pruner (e.g. ``lower`` for threshold, ``min_resource`` for hyperband).
    """

    name: str = "median"
    n_startup_trials: int | None = 5
    n_warmup_steps: int | None = 0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegsweepOptunaSweeperConf:
    _target_: str = "hydra_plugins.segsweep_optuna.sweeper.SegsweepOptunaSweeper"
    direction: str = "maximize"
    # The intermediate metric each trial reports per epoch (pruning); the objective is the job's value.
    metric: str = "val_mIoU"
    # null: "search-<hash of the search space and fixed overrides>", so the same command resumes.
    study_name: str | None = None
    # null: sqlite file "optuna.db" next to the MLflow sqlite store (or in the launch dir).
    storage: str | None = None
    n_trials: int = 20
    timeout: float | None = None  # seconds; no new trial starts after it, running ones finish
    n_jobs: int = 1  # trials in flight at once (asynchronous: a new one starts when one ends)
    # Stop starting trials once more than max_failure_rate * n_trials trials have failed.
    max_failure_rate: float = 0.5
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # Search space: key -> override grammar (choice(...), range(...), interval(...), tag(log, ...)).
    params: dict[str, str] | None = None
    # Open an MLflow parent run for the search (tracking.uri / tracking.experiment of the config).
    mlflow_parent: bool = True


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="segsweep_optuna",
    node=SegsweepOptunaSweeperConf,
    provider="segsweep",
)
