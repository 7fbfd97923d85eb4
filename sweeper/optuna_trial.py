"""Optuna search, the parts shared by the sweeper process and the trial jobs (the trial's side of a study).

- ``open_storage`` / ``default_storage``: the study's RDB storage (sqlite next to the MLflow store
  by default; a server DB when trials run on other nodes).
- ``build_pruner``: pruner from its spec (the sweeper stores the spec in the study, jobs rebuild it).
- ``trial_env_overrides`` / ``trial_of_env``: a trial's study coordinates, handed to its job
  through Hydra's ``hydra.job.env_set`` (never through the job's config).
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

from engine.callbacks import Callback, StopTraining
from sweeper.errors import SettingsError

PRUNER_ATTR = "segsweep.pruner"
METRIC_ATTR = "segsweep.metric"
PRUNED_REASON = "pruned"

#: a trial's coordinates, in its job's environment (``hydra.job.env_set``: never in the job's config)
STORAGE_ENV = "SEGSWEEP_OPTUNA_STORAGE"
STUDY_ENV = "SEGSWEEP_OPTUNA_STUDY"
TRIAL_ENV = "SEGSWEEP_OPTUNA_TRIAL"


def trial_env_overrides(storage: str, study_name: str, trial_number: int) -> list[str]:
    """The Hydra overrides that hand a trial its study coordinates through ``hydra.job.env_set``
    (Hydra's job metadata: not in the job's config, its overrides or ``override_dirname``)."""
    values = {STORAGE_ENV: storage, STUDY_ENV: study_name, TRIAL_ENV: str(trial_number)}
    return [f"++hydra.job.env_set.{key}={quote(value)}" for key, value in values.items()]


def is_trial_override(override: str) -> bool:
    """Whether a job override is the trial marker of :func:`trial_env_overrides`."""
    return str(override).lstrip("+").startswith(f"hydra.job.env_set.{TRIAL_ENV}=")


def trial_of_env(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``{"storage", "study_name", "trial_number"}`` of the trial this job is, or None outside a search."""
    env = os.environ if env is None else env
    if not env.get(TRIAL_ENV):
        return None
    return {"storage": env.get(STORAGE_ENV), "study_name": env.get(STUDY_ENV),
            "trial_number": int(env[TRIAL_ENV])}


def quote(text: str) -> str:
    """Single-quote a string for Hydra's override grammar."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "nsgaii")
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
        raise SettingsError(f"hydra.sweeper.pruner: bad settings for pruner {name!r}: {e}") from e
    raise SettingsError(f"hydra.sweeper.pruner.name={name!r} is unknown; use one of {', '.join(PRUNERS)}")


# --------------------------------------------------------------------------- in-job callback


def on_split(metric: str, eval_split: str) -> str:
    """A per-split metric of the search (``val_mIoU``) named for the split the trial evaluates on
    (``test_mIoU`` for CamVid's protocol): a run logs only what it measured, so pruning reads that."""
    split, sep, measure = metric.partition("_")
    return f"{eval_split}_{measure}" if sep and split in ("val", "test") else metric


class PruningCallback(Callback):
    """Reports ``metric`` at each epoch to the trial; raises ``StopTraining("pruned")`` when pruned.

    ``cfg`` is :func:`trial_of_env`'s dict: ``storage``, ``study_name``, ``trial_number`` and
    optionally ``metric`` (default: the study's ``segsweep.metric`` attribute, else ``val_mIoU``).
    """

    def __init__(self, cfg: Mapping[str, Any], eval_split: str = "val") -> None:
        missing = [k for k in ("storage", "study_name", "trial_number") if cfg.get(k) is None]
        if missing:
            raise SettingsError(
                f"{missing[0]} of the trial is not set: trials get it from the segsweep_optuna sweeper"
            )
        self.storage_url = str(cfg["storage"])
        self.study_name = str(cfg["study_name"])
        self.trial_number = int(cfg["trial_number"])
        self.metric: str | None = cfg.get("metric")
        self.eval_split = eval_split
        self.trial: Any = None
        self.last_step: int | None = None
        self.pruned = False

    def _open(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self.study_name)
        attrs = storage.get_study_user_attrs(study_id)
        self.metric = on_split(self.metric or attrs.get(METRIC_ATTR) or "val_mIoU", self.eval_split)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=build_pruner(attrs.get(PRUNER_ATTR)),
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        self.trial = optuna.trial.Trial(study, trial_id)
        if len(study.directions) > 1:  # a multi-objective trial reports nothing (docs/search.md)
            self.metric = None

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
    """The MLflow parent run of one search, keyed by tag ``segsweep.sweep_id`` (= the study name), named
    ``title`` (tags ``segsweep.sweep`` and ``mlflow.runName``, as a sweep's parent).

    Every write of the search goes through here, and through ``sweeper.tracking`` (its client,
    experiment and tag helpers) and ``sweeper.sweep_record`` (the summary a sweep's parent holds).
    """

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, title: str | None = None) -> None:
        from sweeper import tracking

        self.tracking = tracking
        self.client = tracking.client_for(tracking_uri)
        self.tracking_uri = tracking_uri
        self.sweep_id = sweep_id
        self.title = title or f"search {sweep_id}"
        self.experiment_id = tracking.ensure_experiment(tracking_uri, experiment)
        self.run_id, self.resumed = self._find_or_create()
        self.refreshed = False  # the summary was rewritten by this process (once a trial ended)
        # the step of the parent's jobs_* counters is the number of its ended trial runs: never logged twice
        history = self.client.get_metric_history(self.run_id, "jobs_total") if self.resumed else []
        self.summary_step = max((m.step for m in history), default=-1)

    def _find_or_create(self) -> tuple[str, bool]:
        tag = self.tracking.TAG
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}sweep_id` = '{self.sweep_id}' and tags.`{tag}kind` = 'search'",
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
            self.tracking.reopen_run(self.client, run_id)
            return run_id, True
        from sweeper import sweep_record

        name = self.title[:250]
        tags = {tag + "sweep_id": self.sweep_id, tag + "kind": "search", tag + "source": "segsweep",
                tag + "sweep": self.title, tag + "command": sweep_record.command_line(), "mlflow.runName": name}
        return self.tracking.open_parent_run(self.client, self.experiment_id, tags, name), False

    def record_setup(self, params: Mapping[str, Any]) -> None:
        """Search settings as params (logged once: a resumed search keeps the first values)."""
        self.tracking.log_new_params(self.client, self.run_id, params)

    def tag(self, tags: Mapping[str, Any]) -> None:
        """Set (mutable) tags on the parent run."""
        self.tracking.set_tags(self.client, self.run_id, {k: str(v)[:5000] for k, v in tags.items()})

    def record_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics on the parent run (the finite ones, full precision)."""
        self.tracking.log_metrics(self.client, self.run_id, metrics, step)

    def tag_child(self, run_id: str, trial_number: int) -> None:
        """Make sure a trial's run is a child of this run and carries ``segsweep.trial``."""
        tag = self.tracking.TAG
        want = {"mlflow.parentRunId": self.run_id, tag + "trial": str(trial_number), tag + "sweep_id": self.sweep_id}
        have = self.client.get_run(run_id).data.tags
        todo = {k: v for k, v in want.items() if have.get(k) != v}
        if todo:
            self.tracking.set_tags(self.client, run_id, todo)

    def find_trial_run(self, trial_number: int) -> str | None:
        """The run of a trial whose job did not return its run id (e.g. it crashed): by its tags."""
        tag = self.tracking.TAG
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}sweep_id` = '{self.sweep_id}' and tags.`{tag}trial` = '{trial_number}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def record_run_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Log metrics (step 0, once: a value already there is kept) on one trial's run."""
        have = self.client.get_run(run_id).data.metrics
        self.tracking.log_metrics(self.client, run_id, {k: v for k, v in metrics.items() if k not in have}, 0)

    def tag_run(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on one trial's run (those that differ)."""
        have = self.client.get_run(run_id).data.tags
        todo = {k: str(v) for k, v in tags.items() if have.get(k) != str(v)}
        if todo:
            self.tracking.set_tags(self.client, run_id, todo)

    def attach(self, path: str | os.PathLike[str]) -> None:
        """Attach a file to the parent run."""
        self.tracking.log_artifact(self.client, self.run_id, path)

    def refresh_summary(self) -> None:
        """Rewrite the parent's counts (``jobs_*``, step = trial runs ended), best and summary table from
        its trial runs, as a sweep's parent is rewritten when one of its jobs ends; not when no run
        ended since (a trial that reused a finished run): a step is never logged twice."""
        from sweeper import sweep_record

        kids = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.run_id}'",
                                       order_by=["attributes.start_time ASC"], max_results=10000)
        jobs = [sweep_record.job_row(r) for r in kids]
        step = sum(j.status in sweep_record.ENDED for j in jobs)
        if step > self.summary_step:
            sweep_record.write_summary(self.client, self.run_id, self.title, jobs)
            self.summary_step = step
        self.refreshed = True

    def finish(self, status: str = "FINISHED") -> None:
        """Close the parent run (FINISHED, FAILED or KILLED). Its summary is the one the last trial
        wrote; a search that ran no trial (a resume with none owed) keeps its record as it is, and a
        new one without a trial writes the empty summary: no counter is logged twice at one step."""
        from sweeper import sweep_record

        if not self.refreshed and not self.resumed:
            sweep_record.close_record({f"{self.tracking_uri}|": self.run_id}, [])
        self.tracking.close_run(self.client, self.run_id, status)
