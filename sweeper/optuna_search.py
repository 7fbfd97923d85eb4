"""The search loop of the ``segsweep_optuna`` sweeper: Optuna ask/tell around Hydra's launcher,
n_jobs trials in flight at once, the study resumed by the same command.

A trial's study coordinates reach its job through ``hydra.job.env_set`` (``sweeper.optuna_trial``), never
through the job's config or overrides; a sampled float is rounded to ``float_digits`` significant
digits before the trial runs, so the trial trains (and its run's name holds) exactly that value.

Several directions make a multi-objective study (``objectives`` names what each one reads); what a
model costs (``params_M``, ``flops_G``, ``latency_ms``) is measured before its trial trains, and a
trial that breaks a ``constraints`` bound is refused there (PRUNED, never launched). The MLflow writes
are the ``_track_*`` methods at the end of :class:`Search` (through ``SearchParentRun``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState

from sweeper import pareto
from sweeper.bookkeeping import sweep_lock
from sweeper.errors import SettingsError
from sweeper.optuna_trial import (
    METRIC_ATTR,
    PRUNER_ATTR,
    SAMPLERS,
    SearchParentRun,
    build_pruner,
    default_storage,
    open_storage,
    resolve_sqlite_uri,
    trial_env_overrides,
)
from sweeper.search_space import SearchSpace, grid_search_space, parse_search_space, trial_overrides
from sweeper.tracking import finite

log = logging.getLogger(__name__)

INTERRUPTED_ATTR = "segsweep.interrupted"
OBJECTIVE_METRIC = "final_val_mIoU"  # read from MLflow when a SKIPPED job returns no value
PARAMS_ATTR = "segsweep.params"  # the values a trial trained (its sampled floats rounded)
MEASURES_ATTR = "segsweep.measures"  # what its model costs, measured before it trained (params_M, ...)
REFUSED_ATTR = "segsweep.refused"  # why a trial was refused before training (a broken constraint)


def runs_in_process(launcher: Any) -> bool:
    """Whether the launcher runs its jobs in this process, one at a time (trials cannot overlap)."""
    return type(launcher).__name__ == "BasicLauncher" or getattr(launcher, "pool", True) is False


def round_sampled(value: Any, dist: Any, digits: int | None) -> Any:
    """A sampled float rounded to ``digits`` significant digits (kept inside the distribution's
    bounds); other values, stepped floats and ``digits=None`` unchanged."""
    if digits is None or not isinstance(value, float) or not isinstance(dist, optuna.distributions.FloatDistribution):
        return value
    if dist.step is not None or value == 0 or not math.isfinite(value):
        return value
    rounded = float(f"{value:.{int(digits)}g}")
    return min(max(rounded, dist.low), dist.high)


def _pop_dotted(data: dict[str, Any], key: str) -> None:
    head, _, rest = key.partition(".")
    if rest and isinstance(data.get(head), dict):
        _pop_dotted(data[head], rest)
    elif not rest:
        data.pop(head, None)


class SearchError(RuntimeError):
    """The search stopped because too many trials failed."""


@dataclass
class Outcome:
    """How one trial ended, as the sweeper tells it to Optuna."""

    state: TrialState
    value: float | None = None
    run_id: str | None = None
    name: str | None = None
    error: str | None = None
    skipped: bool = False  # SKIPPED (a finished run of the same key exists): value may come from MLflow
    values: list[float] | None = None  # a task that returned one value per objective (a sequence)
    returned: Mapping[str, Any] | None = None  # the task's result dict (objectives are read from it)
    measures: dict[str, Any] = field(default_factory=dict)  # the trial's pre-training measures


def outcome_from_return(ret: JobReturn) -> Outcome:
    """Map a Hydra JobReturn (the task's result dict, or a bare number) to an Outcome."""
    if ret.status == JobStatus.FAILED:
        return Outcome(TrialState.FAIL, error=_first_line(ret._return_value))
    rv = ret.return_value
    if isinstance(rv, Mapping):
        status = str(rv.get("status") or "FINISHED").upper()
        value = finite(rv.get("value"))
        run_id, name = rv.get("run_id"), rv.get("name")
        if status == "PRUNED":
            return Outcome(TrialState.PRUNED, None, run_id, name, returned=rv)
        if status in ("FINISHED", "COMPLETE", "SKIPPED") and value is not None:
            return Outcome(TrialState.COMPLETE, value, run_id, name, returned=rv)
        if status == "SKIPPED" and run_id:
            return Outcome(TrialState.FAIL, None, run_id, name, "skipped: no objective value", skipped=True,
                           returned=rv)
        error = rv.get("error") or f"job ended {status} without a finite objective value"
        return Outcome(TrialState.FAIL, None, run_id, name, _first_line(error), returned=rv)
    if isinstance(rv, (int, float)) and not isinstance(rv, bool) and finite(rv) is not None:
        return Outcome(TrialState.COMPLETE, float(rv))
    values = [finite(v) for v in rv] if isinstance(rv, (list, tuple)) and rv else None
    if values and all(v is not None for v in values) and not any(isinstance(v, bool) for v in rv):
        return Outcome(TrialState.COMPLETE, values[0], values=[float(v) for v in values if v is not None])
    return Outcome(
        TrialState.FAIL, error=f"task returned {rv!r}: return a number (a sequence of numbers, one per "
                               "objective) or the segsweep result dict"
    )


def _first_line(x: Any) -> str:
    text = f"{type(x).__name__}: {x}" if isinstance(x, BaseException) else str(x)
    return (text.strip().splitlines() or [""])[0][:500]


def build_sampler(spec: Mapping[str, Any], space: SearchSpace, n_jobs: int, seed_offset: int,
                  constraints_func: Any = None) -> Any:
    """The Optuna sampler named by ``spec['name']``; the seed is shifted by the trials already run.
    ``constraints_func`` goes to the samplers that take one (tpe, gp, nsgaii)."""
    name = str(spec.get("name") or "tpe").lower()
    kwargs = dict(spec.get("kwargs") or {})
    if constraints_func is not None and name in ("tpe", "gp", "nsgaii"):
        kwargs.setdefault("constraints_func", constraints_func)
    seed = spec.get("seed")
    seed = None if seed is None else int(seed) + seed_offset
    startup = (
        {"n_startup_trials": spec["n_startup_trials"]} if spec.get("n_startup_trials") is not None else {}
    )
    s = optuna.samplers
    try:
        if name == "tpe":
            kwargs.setdefault("constant_liar", n_jobs > 1)  # spread the trials in flight
            return s.TPESampler(seed=seed, **startup, **kwargs)
        if name == "random":
            return s.RandomSampler(seed=seed, **kwargs)
        if name == "grid":
            return s.GridSampler(grid_search_space(space), seed=seed, **kwargs)
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError as e:
                raise SettingsError("sampler=cmaes needs the 'cmaes' package: pip install cmaes") from e
            return s.CmaEsSampler(seed=seed, **startup, **kwargs)
        if name == "gp":
            return s.GPSampler(seed=seed, **startup, **kwargs)
        if name == "nsgaii":
            return s.NSGAIISampler(seed=seed, **kwargs)
    except TypeError as e:
        raise SettingsError(f"hydra.sweeper.sampler: bad settings for sampler {name!r}: {e}") from e
    raise SettingsError(f"hydra.sweeper.sampler.name={name!r} is unknown; use one of {', '.join(SAMPLERS)}")


class Search:
    """One run (or resume) of a study driven by the ``segsweep_optuna`` sweeper."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        self.sw = sweeper
        self.cfg = sweeper.config
        self.s: dict[str, Any] = sweeper.settings
        self._validate_settings()
        self.directions = pareto.directions_of(self.s.get("direction", "maximize"))
        self.multi = len(self.directions) > 1
        self.objectives = pareto.check_objectives(self.s.get("objectives"), self.directions)
        self.constraints = pareto.parse_constraints(self.s.get("constraints"))
        #: measured before a trial trains: what the objectives and constraints read of PRE_TRAINING
        self.pre_training = sorted({*(self.objectives or ()), *(c.name for c in self.constraints)}
                                   & set(pareto.PRE_TRAINING))
        self.space = parse_search_space(self.s.get("params"), arguments)
        if not self.space.distributions:
            raise SettingsError(
                "segsweep_optuna: nothing to search; give hydra.sweeper.params (a search/ config) or "
                "sweep overrides such as lr='tag(log, interval(1e-4, 1e-1))'"
            )
        options = dict(getattr(sweeper.launcher, "options", None) or {})
        if options.get("detach"):
            raise SettingsError("hydra.launcher.detach=true cannot drive a search (trials must report back): drop it")
        if self.pre_training and not options.get("cell_info"):
            raise SettingsError(f"hydra.sweeper: {', '.join(self.pre_training)} is measured on segsweep's model "
                                "before a trial trains; this app is not segsweep's sweep.py: drop it from "
                                "hydra.sweeper.objectives / constraints, or return it from the task")
        self.tracking_uri, self.experiment = self._tracking(options.get("cell_info"))
        self.storage_url = resolve_sqlite_uri(self.s.get("storage") or default_storage(self.tracking_uri))
        self.study_name = self.s.get("study_name") or self._default_study_name()
        self.n_jobs = int(self.s.get("n_jobs") or 1)
        if runs_in_process(sweeper.launcher) and self.n_jobs > 1:
            log.warning("%s runs jobs in this process, one at a time: n_jobs=%d -> 1",
                        type(sweeper.launcher).__name__, self.n_jobs)
            self.n_jobs = 1
        self.parent: SearchParentRun | None = None
        self.grid_done = False

    # ------------------------------------------------------------------ setup

    def _validate_settings(self) -> None:
        s = self.s
        if int(s.get("n_trials") or 0) < 1:
            raise SettingsError(
                f"hydra.sweeper.n_trials={s.get('n_trials')!r}: give a positive number of trials"
            )
        if int(s.get("n_jobs") or 1) < 1:
            raise SettingsError(f"hydra.sweeper.n_jobs={s.get('n_jobs')!r}: give at least 1 trial in flight")
        rate = float(s.get("max_failure_rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise SettingsError(f"hydra.sweeper.max_failure_rate={rate}: give a fraction in [0, 1]")

    def _tracking(self, cell_info: str | None) -> tuple[str | None, str]:
        """The parent run's store and experiment: ``hydra.sweeper.tracking_uri`` / ``experiment``,
        else what the launcher's ``cell_info`` says of the search's base config (segsweep's sweep.py),
        else none (an app of its own: nothing of its config is read)."""
        uri, experiment = self.s.get("tracking_uri"), self.s.get("experiment")
        if not uri and not experiment and cell_info and self.cfg is not None:
            from sweeper.bookkeeping import import_function

            describe = import_function(cell_info, "hydra.launcher.cell_info")
            assert describe is not None
            cell = describe(self._base_config())
            uri, experiment = cell.get("uri"), cell.get("experiment")
        if not experiment and not uri:
            return None, "Default"
        from sweeper.tracking import resolve_uri

        return resolve_uri(str(uri) if uri else None), str(experiment or "Default")

    def _base_config(self) -> Any:
        """The job config every trial shares: the sweep's config with the fixed overrides (cached)."""
        assert self.cfg is not None and self.sw.hydra_context is not None
        if getattr(self, "_base", None) is None:
            self._base = self.sw.hydra_context.config_loader.load_sweep_config(self.cfg, list(self.space.fixed))
        return self._base

    def _default_study_name(self) -> str:
        """``search-<hash>`` of everything that changes the objective: the app (its job name and its
        config with the fixed overrides, sampled keys left out), the space, direction, metric and sampler."""
        key = json.dumps(
            {
                "app": self._app_identity(),
                "space": self.space.describe(),
                "fixed": sorted(self.space.fixed),
                "direction": self.s.get("direction"),
                "metric": self.s.get("metric"),
                **({"objectives": self.objectives} if self.objectives else {}),
                **({"constraints": [str(c) for c in self.constraints]} if self.constraints else {}),
                "sampler": self.s.get("sampler"),
                "float_digits": self.s.get("float_digits"),
            },
            sort_keys=True,
            default=str,
        )
        return "search-" + hashlib.sha1(key.encode()).hexdigest()[:10]

    def _app_identity(self) -> dict[str, Any]:
        if self.cfg is None or self.sw.hydra_context is None:
            return {}
        base = self._base_config()
        job = OmegaConf.to_container(base, resolve=False)
        assert isinstance(job, dict)
        hydra = job.pop("hydra", {}) or {}
        for key in self.space.distributions:  # the sampled keys are the study's, not its identity
            _pop_dotted(job, key.lstrip("+~"))
        return {"job": (hydra.get("job") or {}).get("name"), "config": job}

    def _open_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url)
        self.storage = storage
        try:
            study_id = storage.get_study_id_from_name(self.study_name)
            n_before = len(storage.get_all_trials(study_id, deepcopy=False))
        except KeyError:
            n_before = 0
        self.resumed = n_before > 0
        # a multi-objective study does not prune on the curve (docs/search.md): its trials never report
        pruner_spec = {"name": "none"} if self.multi else dict(self.s.get("pruner") or {})
        sampler = build_sampler(self.s.get("sampler") or {}, self.space, self.n_jobs, n_before,
                                self._constraints_func if self.constraints else None)
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=sampler,
            pruner=build_pruner(pruner_spec),
            directions=self.directions,
            load_if_exists=True,
        )
        have = [d.name.lower() for d in study.directions]
        if have != self.directions:
            raise SettingsError(
                f"study {self.study_name!r} in {self.storage_url} was created with direction="
                f"{have[0] if len(have) == 1 else have}; use that direction or another hydra.sweeper.study_name"
            )
        study.set_user_attr(PRUNER_ATTR, pruner_spec)
        study.set_user_attr(METRIC_ATTR, str(self.s.get("metric") or "val_mIoU"))
        return study

    def _recover_interrupted(self, study: optuna.Study) -> None:
        """Trials left RUNNING by a killed sweeper: FAIL (marked interrupted) and queue them again."""
        study_id = self.storage.get_study_id_from_name(self.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            self.storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"segsweep.retry_of": t.number})
            log.warning("trial %d was left running by an earlier search: queued again", t.number)

    @staticmethod
    def counts(study: optuna.Study) -> dict[str, int]:
        """Finished trials by state (interrupted trials are not counted: they are run again)."""
        out = {"complete": 0, "pruned": 0, "fail": 0}
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE:
                out["complete"] += 1
            elif t.state == TrialState.PRUNED:
                out["pruned"] += 1
            elif t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED_ATTR):
                out["fail"] += 1
        return out

    # ------------------------------------------------------------------ trials

    def trained_params(self, trial: Trial) -> dict[str, Any]:
        """The values the trial trains: its sampled params, floats rounded to ``float_digits``."""
        digits = self.s.get("float_digits")
        return {k: round_sampled(v, self.space.distributions.get(k), digits) for k, v in trial.params.items()}

    def overrides_for(self, trial: Trial) -> list[str]:
        """Everything one trial's job gets: fixed overrides, its params, and (in Hydra's
        ``hydra.job.env_set``, not in the job's config) its study coordinates."""
        params = self.trained_params(trial)
        trial.set_user_attr(PARAMS_ATTR, params)
        return [*self.space.fixed, *trial_overrides(params),
                *trial_env_overrides(self.storage_url, self.study_name, trial.number)]

    def _launch(self, overrides: list[str], idx: int) -> Outcome:
        try:
            rets = self.sw.launcher.launch([overrides], initial_job_idx=idx)
        except Exception as e:  # noqa: BLE001 - a job the launcher lost (killed process, cluster error)
            return Outcome(TrialState.FAIL, error=_first_line(e))
        return outcome_from_return(rets[0])

    def _ask(self, study: optuna.Study) -> tuple[Trial, list[str]] | None:
        """A new trial and its overrides; None when it was refused before training (already told)."""
        trial = study.ask(self.space.distributions)
        overrides = self.overrides_for(trial)
        try:
            self.sw.validate_batch_is_legal([overrides])
        except Exception as e:
            self._tell(study, trial, Outcome(TrialState.FAIL, error=_first_line(e)))
            raise SettingsError(
                f"trial {trial.number}: the config does not compose with {overrides}: {e}"
            ) from e
        if self.pre_training:
            measured = self._measure(overrides)
            trial.set_user_attr(MEASURES_ATTR, measured)
            reasons = pareto.broken(self.constraints, measured)
            if reasons:
                why = "refused before training: " + "; ".join(reasons)
                trial.set_user_attr(REFUSED_ATTR, why)
                print(f"[segsweep] trial {trial.number} {why} {self.trained_params(trial)}", flush=True)
                self._tell(study, trial, Outcome(TrialState.PRUNED, error=why))
                return None
        return trial, overrides

    def trial_config(self, overrides: list[str]) -> Any:
        """The resolved run config one trial's job would train (segsweep's task: sweep.py)."""
        from omegaconf import open_dict

        from sweeper.task import resolve_config

        assert self.cfg is not None and self.sw.hydra_context is not None
        cfg = self.sw.hydra_context.config_loader.load_sweep_config(self.cfg, list(overrides))
        task_overrides = list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return resolve_config(cfg, task_overrides)

    def _measure(self, overrides: list[str]) -> dict[str, Any]:
        """What the trial's model costs (``self.pre_training``), measured here before it trains."""
        from sweeper.trial_measures import measure

        try:
            return measure(self.trial_config(overrides), self.pre_training,
                           int(self.s.get("latency_warmup", 3)), int(self.s.get("latency_repeats", 10)))
        except Exception as e:  # noqa: BLE001 - a config that does not build: the job says why, as any failure
            log.warning("could not measure the trial's model before training: %s", _first_line(e))
            return {}

    def _constraints_func(self, trial: optuna.trial.FrozenTrial) -> list[float]:
        """Optuna's constraints_func: each constraint's violation (<= 0: kept) from the trial's measures."""
        measured = trial.user_attrs.get(MEASURES_ATTR) or {}
        return [c.violation(float(measured[c.name])) if c.name in measured else 0.0 for c in self.constraints]

    def objective_values(self, out: Outcome) -> Outcome:
        """A COMPLETE outcome with one value per direction: the task's value(s), or the named objectives
        (a ``<split>_mIoU`` is the task's final mIoU; params_M & co. are the trial's pre-training measures,
        else the task's result dict, else its run's metric). An objective without a value fails the trial."""
        if out.state != TrialState.COMPLETE:
            return out
        if self.objectives is None:
            values = out.values or [out.value]
        else:
            values = [self._objective(name, out) for name in self.objectives]
        if len(values) != len(self.directions) or any(v is None for v in values):
            names = self.objectives or [f"value {i}" for i in range(len(self.directions))]
            missing = [n for n, v in zip(names, values, strict=False) if v is None] or names[len(values):]
            return Outcome(TrialState.FAIL, None, out.run_id, out.name,
                           f"trial has no value for objective(s) {missing} (directions {self.directions})")
        out.values = [float(v) for v in values if v is not None]
        out.value = out.values[0]
        return out

    def _objective(self, name: str, out: Outcome) -> float | None:
        measured = out.measures
        if name in measured:
            return finite(measured[name])
        split, _, measure = name.removeprefix("final_").partition("_")
        if measure == "mIoU" and split in ("val", "test"):
            return out.value  # the task's value: its final mIoU on the split it evaluates on
        rv = out.returned or {}
        if name in rv:
            return finite(rv[name])
        return self._run_metric(out.run_id, name)

    def _value_from_mlflow(self, out: Outcome) -> Outcome:
        """A SKIPPED trial without a value: take the finished run's objective from MLflow."""
        if not (out.skipped and out.run_id and self.tracking_uri):
            return out
        try:
            from sweeper import tracking

            run = tracking.client_for(self.tracking_uri).get_run(out.run_id)
        except Exception as e:  # noqa: BLE001 - the run may be gone or the store unreachable
            out.error = f"skipped: cannot read run {out.run_id} ({_first_line(e)})"
            return out
        value = finite(tracking.result_value(run))
        if value is None:
            objective = run.data.tags.get(tracking.OBJECTIVE_TAG, OBJECTIVE_METRIC)
            out.error = f"skipped: run {out.run_id} has no {objective}"
            return out
        return Outcome(TrialState.COMPLETE, value, out.run_id, out.name)

    def _tell(self, study: optuna.Study, trial: Trial, out: Outcome) -> None:
        out.measures = dict(trial.user_attrs.get(MEASURES_ATTR) or {})
        out = self.objective_values(out)
        for k, v in (("mlflow_run_id", out.run_id), ("name", out.name), ("error", out.error)):
            if v is not None:
                trial.set_user_attr(k, v)
        values = (out.values if self.multi else out.value) if out.state == TrialState.COMPLETE else None
        try:
            study.tell(trial, values, state=out.state)
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is covered
            if "Study.stop" not in str(e):
                raise
            self.grid_done = True
        shown = "" if out.value is None else (
            f" values={[float(f'{v:.4g}') for v in out.values or []]}" if self.multi else f" value={out.value:.4g}")
        why = f" ({out.error})" if out.error else ""
        log.info("trial %d %s%s%s %s", trial.number, out.state.name, shown, why, self.trained_params(trial))
        if out.state == TrialState.FAIL and out.error:
            print(f"[segsweep] trial {trial.number} failed: {out.error}", file=sys.stderr, flush=True)
        self._track_trial(study, trial.number, out)

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, Any]:
        """Resume or start the study, run the trials still owed, write the results."""
        study = self._open_study()
        self._recover_interrupted(study)
        n_trials = int(self.s["n_trials"])
        counts = self.counts(study)
        owed = n_trials - sum(counts.values())
        print(f"[segsweep] {'resuming' if self.resumed else 'new'} study {self.study_name} ({self.storage_url}): "
              f"{n_trials - max(owed, 0)} of {n_trials} trials done, {max(owed, 0)} to run, {self.n_jobs} at once",
              flush=True)
        sweep_dir = Path(str(self.cfg.hydra.sweep.dir))
        with sweep_lock(sweep_dir):  # the same search started twice: the second exits 2 (its trials take none)
            return self._run(study, n_trials, owed, counts, sweep_dir)

    def _run(self, study: optuna.Study, n_trials: int, owed: int, counts: dict[str, int],
             sweep_dir: Path) -> dict[str, Any]:
        self._open_parent()
        OmegaConf.save(self.cfg, sweep_dir / "multirun.yaml")
        try:
            failed_out = self._loop(study, owed, counts["fail"])
        except KeyboardInterrupt:
            log.warning("interrupted: re-run the same command to resume study %s", self.study_name)
            if self.parent is not None:
                self.parent.finish("KILLED")
            raise
        results = self._results(study, sweep_dir)
        if self.parent is not None:
            self.parent.finish("FAILED" if failed_out else "FINISHED")
        if failed_out:
            raise SearchError(
                f"search {self.study_name} stopped: {self.counts(study)['fail']} trials failed, more than "
                f"max_failure_rate={self.s.get('max_failure_rate')} x n_trials={n_trials}; see the trials' "
                "errors (optuna user attr 'error', MLflow tag segsweep.error) and fix the cause"
            )
        return results

    def _loop(self, study: optuna.Study, owed: int, failed: int) -> bool:
        """Keep n_jobs trials in flight until ``owed`` are done; True if stopped for failures."""
        budget = float(self.s.get("max_failure_rate", 1.0)) * int(self.s["n_trials"])
        timeout = self.s.get("timeout")
        t0 = time.monotonic()
        launched = 0
        running: dict[Future[Outcome], Trial] = {}
        too_many_failures = failed > budget
        pool = ThreadPoolExecutor(max_workers=self.n_jobs, thread_name_prefix="trial")
        try:
            while True:
                while (
                    len(running) < self.n_jobs
                    and launched < owed
                    and not too_many_failures
                    and not self.grid_done
                    and (timeout is None or time.monotonic() - t0 < float(timeout))
                ):
                    asked = self._ask(study)
                    launched += 1
                    if asked is None:  # refused before training: told already, nothing to launch
                        continue
                    trial, overrides = asked
                    running[pool.submit(self._launch, overrides, trial.number)] = trial
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    out = self._value_from_mlflow(fut.result())
                    self._tell(study, running.pop(fut), out)
                    if out.state == TrialState.FAIL:
                        failed += 1
                        too_many_failures = too_many_failures or failed > budget
        finally:  # on Ctrl-C do not wait for running trials: they stay RUNNING and are re-run on resume
            pool.shutdown(wait=not running, cancel_futures=True)
        if timeout is not None and launched < owed and not too_many_failures and not self.grid_done:
            log.info("timeout of %ss reached: %d trials not started", timeout, owed - launched)
        return too_many_failures

    def _results(self, study: optuna.Study, sweep_dir: Path) -> dict[str, Any]:
        """``optimization_results.yaml``: the best trial (one objective) or the front's ``solutions``
        (several, as Hydra's upstream sweeper), the params as trained; tracked on the parent run."""
        results: dict[str, Any] = {
            "name": "segsweep_optuna",
            "study_name": self.study_name,
            "storage": self.storage_url,
            "direction": list(self.directions) if self.multi else self.directions[0],
            "trials": self.counts(study),
            "best_trial": None,
            "best_value": None,
            "best_params": {},
            "best_run_id": None,
        }
        front: list[dict[str, Any]] = []
        if self.multi:
            front = self.front(study)
            results.update(objectives=self.objective_names(), solutions=front)
            log.info("front: %d trial(s) of %d complete", len(front), results["trials"]["complete"])
        else:
            best = self._best(study)
            if best is not None:
                trained = dict(best.user_attrs.get(PARAMS_ATTR) or best.params)
                results.update(best_trial=best.number, best_value=best.value, best_params=trained,
                               best_run_id=best.user_attrs.get("mlflow_run_id"))
                log.info("best: trial %d value=%.4g %s", best.number, best.value, trained)
        path = sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        files = [path, *(self._write_front(study, front, sweep_dir) if self.multi else [])]
        if self.parent is not None:
            try:
                self._track_results(study, results, front, files)
            except Exception as e:  # noqa: BLE001 - the results file is written; tracking is extra
                log.warning("MLflow: could not record the search results: %s", e)
        return results

    def _best(self, study: optuna.Study) -> optuna.trial.FrozenTrial | None:
        try:
            return study.best_trial
        except ValueError:
            log.warning("study %s has no completed trial yet", self.study_name)
            return None

    def objective_names(self) -> list[str]:
        """The objectives' names: as configured, else ``value_0``, ``value_1``, ... (the task's values)."""
        return list(self.objectives or [f"value_{i}" for i in range(len(self.directions))])

    def front(self, study: optuna.Study) -> list[dict[str, Any]]:
        """The study's Pareto front (Optuna's ``best_trials``), by trial number: params as trained."""
        return [{"number": t.number, "params": dict(t.user_attrs.get(PARAMS_ATTR) or t.params),
                 "values": list(t.values), "run_id": t.user_attrs.get("mlflow_run_id"), "name": t.user_attrs.get("name")}
                for t in sorted(study.best_trials, key=lambda t: t.number)]

    def _front_points(self, study: optuna.Study, front: list[dict[str, Any]]) -> list[dict[str, Any]]:
        on = {row["number"] for row in front}
        names = self.objective_names()
        return [{"trial": t.number, "run_id": t.user_attrs.get("mlflow_run_id") or "", "name": t.user_attrs.get("name") or "",
                 **dict(zip(names, t.values, strict=True)), "front": t.number in on,
                 "label": f"#{t.number}", **{f"param.{k}": v for k, v in (t.user_attrs.get(PARAMS_ATTR) or t.params).items()}}
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]

    def _write_front(self, study: optuna.Study, front: list[dict[str, Any]], sweep_dir: Path) -> list[Path]:
        """``pareto.csv`` (the front's trials) and ``pareto.png`` (every trial, the front highlighted;
        the first objective against the second) in the sweep dir."""
        points = self._front_points(study, front)
        names = self.objective_names()
        columns = ["trial", *names, "name", "run_id", *sorted({k for p in points for k in p if k.startswith("param.")})]
        rows = sorted((p for p in points if p["front"]), key=lambda p: p[names[0]], reverse=self.directions[0] == "maximize")
        csv_path = sweep_dir / "pareto.csv"
        csv_path.write_text(pareto.front_csv(rows, columns))
        if not points:
            return [csv_path]
        png = pareto.draw_front(points, names[1], names[0], [self.directions[1], self.directions[0]],
                                sweep_dir / "pareto.png", f"{self.title()}: {len(rows)} of {len(points)} trials on the front")
        return [csv_path, png]

    def title(self) -> str:
        """The search as a researcher reads it: its objectives, its space and its study."""
        space = self.space.short()
        if self.multi:
            objectives = " & ".join(f"{d[:3]} {n}" for d, n in zip(self.directions, self.objective_names(), strict=True))
            return f"search {objectives} over {space} ({self.study_name})"
        return f"search {space} ({self.study_name})"

    # ------------------------------------------------------------------ MLflow (the search's only writes)

    def _open_parent(self) -> None:
        """Open (or re-open) the parent run: a sweep's record (its tags, name, params) plus the search's."""
        if not self.s.get("mlflow_parent", True) or not self.tracking_uri:
            return
        title = self.title()
        self.parent = SearchParentRun(self.tracking_uri, self.experiment, self.study_name, title)
        setup = {f"search.{k}": v for k, v in self.space.describe().items()}
        setup.update(
            {
                "search.direction": self.s.get("direction"),
                "search.metric": self.s.get("metric"),
                "search.n_trials": self.s.get("n_trials"),
                "search.n_jobs": self.n_jobs,
                "search.sampler": json.dumps(self.s.get("sampler"), sort_keys=True),
                "search.pruner": json.dumps(self.s.get("pruner"), sort_keys=True),
                "search.fixed": " ".join(self.space.fixed),
                **({"search.objectives": ",".join(self.objective_names())} if self.multi or self.objectives else {}),
                **({"search.constraints": ",".join(str(c) for c in self.constraints)} if self.constraints else {}),
            }
        )
        setup.update(self._sweep_params())
        self.parent.record_setup(setup)
        self.parent.tag({"segsweep.study": self.study_name, "segsweep.storage": self.storage_url,
                              "segsweep.sweep": title, "mlflow.runName": title[:250],
                              "segsweep.objectives": ",".join(self.objective_names()),
                              "segsweep.directions": ",".join(self.directions),
                              "segsweep.sweep_dir": str(self.cfg.hydra.sweep.dir) if self.cfg is not None else ""})
        # the trials' runs find their parent where the launchers' jobs find theirs (sweeper.task.sweep_tags)
        from sweeper import PARENTS_ENV, SWEEP_ID_ENV

        os.environ[PARENTS_ENV] = json.dumps({f"{self.tracking_uri}|{self.experiment}": self.parent.run_id})
        os.environ[SWEEP_ID_ENV] = self.study_name

    def _sweep_params(self) -> dict[str, str]:
        """As a sweep parent's: each fixed override and each searched key under its own key, ``sweep.axes``."""
        from sweeper.sweep_record import split_overrides

        try:
            fixed = split_overrides(list(self.space.fixed))[1]
        except Exception:  # noqa: BLE001 - an override the record cannot split stays in search.fixed
            fixed = {}
        axes = {k.lstrip("+~"): v for k, v in self.space.describe().items()}
        return {**fixed, **axes, "sweep.axes": ",".join(axes) or "(none)"}

    def _track_trial(self, study: optuna.Study, number: int, out: Outcome) -> None:
        """Link the trial's run to the parent, log its value(s), the counters and the best so far as
        curves (counters at step = trials ended, values at step = trial number: a step never repeats),
        its pre-training measures on its run, and refresh the parent's summary."""
        if self.parent is None:
            return
        try:
            run_id = out.run_id or self.parent.find_trial_run(number)
            if run_id:
                self.parent.tag_child(run_id, number)
                self._track_measures(run_id, out.measures)
            counts = self.counts(study)
            metrics: dict[str, float] = {f"n_{k}": float(v) for k, v in counts.items()}
            if self.multi:
                metrics["pareto_size"] = float(len(study.best_trials))
                if out.values and out.state == TrialState.COMPLETE:
                    names = self.objective_names()
                    self.parent.record_metrics({f"trial_{n}": v for n, v in zip(names, out.values, strict=True)},
                                            step=number)
            else:
                best = self._best(study) if counts["complete"] else None
                if best is not None:
                    metrics["best_value"] = float(best.value)
                if out.value is not None and out.state == TrialState.COMPLETE:
                    self.parent.record_metrics({"trial_value": out.value}, step=number)
            self.parent.record_metrics(metrics, step=sum(counts.values()))
            self.parent.refresh_summary()
        except Exception as e:  # noqa: BLE001 - tracking trouble must not stop the search
            log.warning("MLflow: could not record trial %d on the parent run: %s", number, e)

    def _track_measures(self, run_id: str, measures: Mapping[str, Any]) -> None:
        """A trial run's pre-training measures: ``latency_ms`` / ``flops_G`` as metrics (``params_M``
        is the run's own), the device the latency was timed on as tag ``segsweep.latency_device``."""
        from sweeper.trial_measures import LATENCY_DEVICE

        assert self.parent is not None
        metrics = {k: float(v) for k, v in measures.items() if k in ("latency_ms", "flops_G")}
        if metrics:
            self.parent.record_run_metrics(run_id, metrics)
        if measures.get(LATENCY_DEVICE):
            self.parent.tag_run(run_id, {"segsweep." + LATENCY_DEVICE: str(measures[LATENCY_DEVICE])})

    def _run_metric(self, run_id: str | None, name: str) -> float | None:
        """A trial run's metric ``name`` (its last value), read from MLflow; None without it."""
        if not (run_id and self.tracking_uri):
            return None
        from sweeper import tracking

        try:
            return finite(tracking.client_for(self.tracking_uri).get_run(run_id).data.metrics.get(name))
        except Exception as e:  # noqa: BLE001 - the run may be gone or the store unreachable
            log.warning("MLflow: could not read %s of run %s: %s", name, run_id, e)
            return None

    def _track_results(self, study: optuna.Study, results: dict[str, Any], front: list[dict[str, Any]],
                       files: list[Path]) -> None:
        """The parent's best (one objective) or front (several: tag ``segsweep.pareto`` on every
        complete trial's run, true on the front), and the files as artifacts."""
        assert self.parent is not None
        tags = {f"best.{k}": v for k, v in results["best_params"].items()}
        if results["best_trial"] is not None:
            tags.update(
                {"segsweep.best_trial": results["best_trial"], "segsweep.best_run_id": results["best_run_id"]}
            )
        if self.multi:
            tags["segsweep.pareto_trials"] = ",".join(str(row["number"]) for row in front)
            on = {row["number"] for row in front}
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if t.user_attrs.get("mlflow_run_id"):
                    self.parent.tag_run(t.user_attrs["mlflow_run_id"],
                                             {pareto.FRONT_TAG: str(t.number in on).lower()})
        self.parent.tag({k: v for k, v in tags.items() if v is not None})
        for path in files:
            self.parent.attach(path)
