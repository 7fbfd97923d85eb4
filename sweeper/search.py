"""Optuna search, the parts shared by the sweeper process and the trial jobs.

- ``open_storage`` / ``default_storage``: the study's RDB storage (sqlite next to the MLflow store
  by default; a server DB when trials run on other nodes).
- ``build_pruner``: pruner from its spec (the sweeper stores the spec in the study, jobs rebuild it).
- ``PruningCallback``: the in-job engine callback that reports the per-epoch metric to the trial
  and stops training when the pruner says so.
- ``SearchParentRun``: the MLflow parent run of a search (opened again on resume).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRUNER_ATTR = "segsweep.pruner"
METRIC_ATTR = "segsweep.metric"
PRUNED_REASON = "pruned"

try:  # the engine's callback contract (engine/callbacks.py)
    from engine.callbacks import Callback, StopTraining
except ImportError:  # pragma: no cover - until engine/callbacks.py lands

    class Callback:  # type: ignore[no-redef]
        """No-op engine callback (stand-in for engine.callbacks.Callback)."""

        def on_train_start(self, info: Mapping[str, Any]) -> None: ...

        def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None: ...

        def on_train_end(self, metrics: Mapping[str, float]) -> None: ...

    class StopTraining(Exception):  # type: ignore[no-redef]
        """Raised by a callback to stop training early (stand-in for engine.callbacks.StopTraining)."""

        def __init__(self, reason: str) -> None:
            super().__init__(reason)
            self.reason = reason


# --------------------------------------------------------------------------- storage


def resolve_sqlite_uri(uri: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """Make a relative ``sqlite:///rel.db`` URI absolute against ``base_dir`` (default: cwd)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = uri[len(prefix) :]
    if path.startswith("/") or path == ":memory:" or path == "":
        return uri
    return prefix + str((Path(base_dir or os.getcwd()) / path).resolve())


def default_storage(tracking_uri: str | None, base_dir: str | os.PathLike[str] | None = None) -> str:
    """``optuna.db`` next to a sqlite MLflow store, else in ``base_dir`` (default: cwd)."""
    uri = resolve_sqlite_uri(tracking_uri or "", base_dir)
    if uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).with_name("optuna.db"))
    return "sqlite:///" + str((Path(base_dir or os.getcwd()) / "optuna.db").resolve())


def open_storage(url: str) -> Any:
    """An Optuna RDB storage; sqlite gets a long lock timeout (several trial processes write to it)."""
    import optuna

    url = resolve_sqlite_uri(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, **kwargs)


# --------------------------------------------------------------------------- pruners

PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "threshold", "patient", "none")


def build_pruner(spec: Mapping[str, Any] | None) -> Any:
    """An Optuna pruner from ``{"name", "n_startup_trials", "n_warmup_steps", "kwargs"}``."""
    import optuna.pruners as P

    spec = dict(spec or {})
    name = str(spec.get("name") or "none").lower()
    kwargs = dict(spec.get("kwargs") or {})
    startup = {k: spec[k] for k in ("n_startup_trials", "n_warmup_steps") if spec.get(k) is not None}
    try:
        if name == "median":
            return P.MedianPruner(**startup, **kwargs)
        if name == "percentile":
            return P.PercentilePruner(kwargs.pop("percentile", 25.0), **startup, **kwargs)
        if name == "hyperband":
            return P.HyperbandPruner(**kwargs)
        if name == "successive_halving":
            return P.SuccessiveHalvingPruner(**kwargs)
        if name == "threshold":
            warm = {"n_warmup_steps": startup["n_warmup_steps"]} if "n_warmup_steps" in startup else {}
            return P.ThresholdPruner(**warm, **kwargs)
        if name == "patient":
            patience = kwargs.pop("patience", 2)
            return P.PatientPruner(P.MedianPruner(**startup, **kwargs), patience=patience)
        if name in ("none", "nop", "null"):
            return P.NopPruner()
    except TypeError as e:
        raise ValueError(f"hydra.sweeper.pruner: bad settings for pruner {name!r}: {e}") from e
    raise ValueError(f"hydra.sweeper.pruner.name={name!r} is unknown; use one of {', '.join(PRUNERS)}")


# --------------------------------------------------------------------------- in-job callback


class PruningCallback(Callback):
    """Reports ``metric`` at each epoch to the trial; raises ``StopTraining("pruned")`` when pruned.

    ``cfg`` is the job's ``optuna`` node: ``storage``, ``study_name``, ``trial_number`` and
    optionally ``metric`` (default: the study's ``segsweep.metric`` attribute, else ``val_mIoU``).
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        missing = [k for k in ("storage", "study_name", "trial_number") if cfg.get(k) is None]
        if missing:
            raise ValueError(
                f"optuna.{missing[0]} is not set: trials get it from the segsweep_optuna sweeper"
            )
        self.storage_url = str(cfg["storage"])
        self.study_name = str(cfg["study_name"])
        self.trial_number = int(cfg["trial_number"])
        self.metric: str | None = cfg.get("metric")
        self.trial: Any = None
        self.last_step: int | None = None
        self.pruned = False

    def _open(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self.study_name)
        attrs = storage.get_study_user_attrs(study_id)
        self.metric = self.metric or attrs.get(METRIC_ATTR) or "val_mIoU"
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=build_pruner(attrs.get(PRUNER_ATTR)),
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        """Open the study and the trial (fails early if the trial does not exist)."""
        self._open()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Report ``metrics[metric]`` at step ``epoch``; stop training if the pruner says so."""
        if self.trial is None:
            self._open()
        value = metrics.get(self.metric) if self.metric else None
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=int(epoch))
        self.last_step = int(epoch)
        if self.trial.should_prune():
            self.pruned = True
            raise StopTraining(PRUNED_REASON)

    def on_train_end(self, metrics: Mapping[str, float]) -> None:
        """Nothing to do: the sweeper tells the trial's final state and value."""


# --------------------------------------------------------------------------- MLflow parent run


class SearchParentRun:
    """The MLflow parent run of one search, keyed by tag ``segsweep.sweep_id`` (= the study name)."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.sweep_id = sweep_id
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.run_id = self._find_or_create()

    def _find_or_create(self) -> str:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`segsweep.sweep_id` = '{self.sweep_id}' and tags.`segsweep.kind` = 'search'",
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        from sweeper import sweep_record

        tags = {"segsweep.sweep_id": self.sweep_id, "segsweep.kind": "search", "segsweep.source": "segsweep",
                "segsweep.command": sweep_record.command_line()}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"search.{self.sweep_id}")
        return run.info.run_id

    def log_setup(self, params: Mapping[str, Any]) -> None:
        """Search settings as params (logged once: a resumed search keeps the first values)."""
        existing = self.client.get_run(self.run_id).data.params
        todo = {k: str(v)[:6000] for k, v in params.items() if k not in existing}
        from mlflow.entities import Param

        if todo:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in todo.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (mutable) tags on the parent run."""
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics on the parent run."""
        for k, v in metrics.items():
            if v is not None and math.isfinite(float(v)):
                self.client.log_metric(self.run_id, k, float(v), step=step)

    def tag_child(self, run_id: str, trial_number: int) -> None:
        """Make sure a trial's run is a child of this run and carries ``segsweep.trial``."""
        tags = self.client.get_run(run_id).data.tags
        if tags.get("mlflow.parentRunId") != self.run_id:
            self.client.set_tag(run_id, "mlflow.parentRunId", self.run_id)
        if tags.get("segsweep.trial") != str(trial_number):
            self.client.set_tag(run_id, "segsweep.trial", str(trial_number))
        if tags.get("segsweep.sweep_id") != self.sweep_id:
            self.client.set_tag(run_id, "segsweep.sweep_id", self.sweep_id)

    def find_trial_run(self, study_name: str, trial_number: int) -> str | None:
        """The run of a trial whose job did not return its run id (e.g. it crashed): by its params."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"params.`optuna.study_name` = '{study_name}' and params.`optuna.trial_number` = '{trial_number}'"
            ),
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Attach a file to the parent run."""
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED") -> None:
        """Close the parent run (FINISHED or FAILED), its description the trials' summary table."""
        from sweeper import sweep_record

        sweep_record.close_record({f"{self.tracking_uri}|": self.run_id}, [])
        self.client.set_terminated(self.run_id, status=status)
