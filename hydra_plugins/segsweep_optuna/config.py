"""Structured configs of the ``segsweep_optuna`` sweeper: ``hydra/sweeper=segsweep_optuna`` and its
sampler group ``hydra/sweeper/sampler={tpe,random,grid,cmaes,gp,nsgaii}`` (as hydra-optuna-sweeper's)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sweeper.optuna_trial import SAMPLERS


@dataclass
class SamplerConf:
    """One entry of ``hydra/sweeper/sampler``; ``kwargs`` go to the Optuna sampler."""

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
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    # one word, or one per objective for a multi-objective study: [maximize, minimize]
    direction: Any = "maximize"
    # What each direction optimises, by the names a trial records: [val_mIoU, params_M]. null: the task's
    # value (a sequence of values for several directions, as Hydra's upstream sweeper). params_M, flops_G
    # and latency_ms are measured before the trial trains; a <split>_mIoU is the trial's final mIoU.
    objectives: list[str] | None = None
    # Bounds on what is measured before training ('hydra.sweeper.constraints=["params_M<=6"]'): a trial
    # that breaks one is refused (PRUNED, never trained) and the sampler is told (constraints_func).
    constraints: list[str] = field(default_factory=list)
    # latency_ms: forward passes at the run's crop size (batch 1) on the run's device; the median is kept.
    latency_warmup: int = 3
    latency_repeats: int = 10
    # The intermediate metric each trial reports per epoch (pruning); the objective is the job's value.
    metric: str = "val_mIoU"
    # null: "search-<hash of the app, its config, the fixed overrides, space, direction, metric and
    # sampler>", so the same command resumes its study and any other command starts its own.
    study_name: str | None = None
    # null: sqlite file "optuna.db" next to the MLflow sqlite store (or in the launch dir).
    storage: str | None = None
    n_trials: int = 20
    timeout: float | None = None  # seconds; no new trial starts after it, running ones finish
    n_jobs: int = 1  # trials in flight at once (asynchronous: a new one starts when one ends)
    # Stop starting trials once more than max_failure_rate * n_trials trials have failed.
    max_failure_rate: float = 0.5
    # A sampled float (without a step) is rounded to this many significant digits before its trial
    # runs, and the trial trains exactly that value (lr=0.00161, not 0.001605191...); null: as sampled.
    float_digits: int | None = 3
    sampler: SamplerConf = MISSING
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # Search space: key -> override grammar (choice(...), range(...), interval(...), tag(log, ...)).
    params: dict[str, str] | None = None
    # The MLflow parent run of the search: its store and experiment. null: taken from the launcher's
    # cell_info (segsweep's sweep.py: tracking.uri / tracking.experiment), else no parent run.
    tracking_uri: str | None = None
    experiment: str | None = None
    mlflow_parent: bool = True


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="segsweep_optuna", node=SegsweepOptunaSweeperConf, provider="segsweep")
for _name in SAMPLERS:
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=SamplerConf(name=_name), provider="segsweep")
