"""The search loop: Optuna ask/tell around Hydra's launcher, n_jobs trials in flight at once."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState

from sweeper.search import (
    METRIC_ATTR,
    PRUNER_ATTR,
    SearchParentRun,
    build_pruner,
    default_storage,
    open_storage,
    resolve_sqlite_uri,
)

from sweeper.search_space import SearchSpace, grid_search_space, parse_search_space, quote, trial_overrides

log = logging.getLogger(__name__)

INTERRUPTED_ATTR = "segsweep.interrupted"
OBJECTIVE_METRIC = "final_val_mIoU"  # read from MLflow when a SKIPPED job returns no value
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")


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


def outcome_from_return(ret: JobReturn) -> Outcome:
    """Map a Hydra JobReturn (the task's result dict, or a bare number) to an Outcome."""
    if ret.status == JobStatus.FAILED:
        return Outcome(TrialState.FAIL, error=_first_line(ret._return_value))
    rv = ret.return_value
    if isinstance(rv, Mapping):
        status = str(rv.get("status") or "FINISHED").upper()
        value = _finite(rv.get("value"))
        run_id, name = rv.get("run_id"), rv.get("name")
        if status == "PRUNED":
            return Outcome(TrialState.PRUNED, None, run_id, name)
        if status in ("FINISHED", "COMPLETE", "SKIPPED") and value is not None:
            return Outcome(TrialState.COMPLETE, value, run_id, name)
        if status == "SKIPPED" and run_id:
            return Outcome(TrialState.FAIL, None, run_id, name, "skipped: no objective value", skipped=True)
        error = rv.get("error") or f"job ended {status} without a finite objective value"
        return Outcome(TrialState.FAIL, None, run_id, name, _first_line(error))
    if isinstance(rv, (int, float)) and not isinstance(rv, bool) and _finite(rv) is not None:
        return Outcome(TrialState.COMPLETE, float(rv))
    return Outcome(
        TrialState.FAIL, error=f"task returned {rv!r}: return a number or the segsweep result dict"
    )


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _first_line(x: Any) -> str:
    text = f"{type(x).__name__}: {x}" if isinstance(x, BaseException) else str(x)
    return (text.strip().splitlines() or [""])[0][:500]


def build_sampler(spec: Mapping[str, Any], space: SearchSpace, n_jobs: int, seed_offset: int) -> Any:
    """The Optuna sampler named by ``spec['name']``; the seed is shifted by the trials already run."""
    name = str(spec.get("name") or "tpe").lower()
    kwargs = dict(spec.get("kwargs") or {})
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
                raise ValueError("sampler=cmaes needs the 'cmaes' package: pip install cmaes") from e
            return s.CmaEsSampler(seed=seed, **startup, **kwargs)
        if name == "gp":
            return s.GPSampler(seed=seed, **startup, **kwargs)
    except TypeError as e:
        raise ValueError(f"hydra.sweeper.sampler: bad settings for sampler {name!r}: {e}") from e
    raise ValueError(f"hydra.sweeper.sampler.name={name!r} is unknown; use one of {', '.join(SAMPLERS)}")


class Search:
    """One run (or resume) of a study driven by the ``segsweep_optuna`` sweeper."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        self.sw = sweeper
        self.cfg = sweeper.config
        self.s: dict[str, Any] = sweeper.settings
        self._validate_settings()
        self.space = parse_search_space(self.s.get("params"), arguments)
        if not self.space.distributions:
            raise ValueError(
                "segsweep_optuna: nothing to search; give hydra.sweeper.params (a search/ config) or "
                "sweep overrides such as lr='tag(log, interval(1e-4, 1e-1))'"
            )
        self.tracking_uri, self.experiment = self._tracking()
        self.storage_url = resolve_sqlite_uri(self.s.get("storage") or default_storage(self.tracking_uri))
        self.study_name = self.s.get("study_name") or self._default_study_name()
        self.n_jobs = int(self.s.get("n_jobs") or 1)
        if type(sweeper.launcher).__name__ == "BasicLauncher" and self.n_jobs > 1:
            log.warning(
                "The basic launcher runs jobs in this process, one at a time: n_jobs=%d -> 1", self.n_jobs
            )
            self.n_jobs = 1
        launcher_cfg = self.cfg.get("launcher") if self.cfg is not None else None
        if launcher_cfg is not None and launcher_cfg.get("detach"):
            raise ValueError("launcher.detach=true cannot drive a search (trials must report back): drop it")
        self.parent: SearchParentRun | None = None
        self.grid_done = False

    # ------------------------------------------------------------------ setup

    def _validate_settings(self) -> None:
        s = self.s
        if str(s.get("direction", "maximize")).lower() not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={s.get('direction')!r}: use maximize or minimize")
        if int(s.get("n_trials") or 0) < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials={s.get('n_trials')!r}: give a positive number of trials"
            )
        if int(s.get("n_jobs") or 1) < 1:
            raise ValueError(f"hydra.sweeper.n_jobs={s.get('n_jobs')!r}: give at least 1 trial in flight")
        rate = float(s.get("max_failure_rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={rate}: give a fraction in [0, 1]")

    def _tracking(self) -> tuple[str | None, str]:
        tracking = self.cfg.get("tracking") if self.cfg is not None else None
        uri = tracking.get("uri") if tracking is not None else None
        experiment = tracking.get("experiment") if tracking is not None else None
        uri = resolve_sqlite_uri(str(uri)) if uri else None
        return uri, str(experiment or "Default")

    def _default_study_name(self) -> str:
        key = json.dumps(
            {
                "space": self.space.describe(),
                "fixed": sorted(self.space.fixed),
                "direction": self.s.get("direction"),
                "sampler": self.s.get("sampler", {}).get("name"),
            },
            sort_keys=True,
        )
        return "search-" + hashlib.sha1(key.encode()).hexdigest()[:10]

    def _open_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url)
        self.storage = storage
        try:
            study_id = storage.get_study_id_from_name(self.study_name)
            n_before = len(storage.get_all_trials(study_id, deepcopy=False))
        except KeyError:
            n_before = 0
        pruner_spec = dict(self.s.get("pruner") or {})
        sampler = build_sampler(self.s.get("sampler") or {}, self.space, self.n_jobs, n_before)
        direction = str(self.s.get("direction", "maximize")).lower()
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=sampler,
            pruner=build_pruner(pruner_spec),
            direction=direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != direction:
            raise ValueError(
                f"study {self.study_name!r} in {self.storage_url} was created with direction="
                f"{study.direction.name.lower()}; use that direction or another hydra.sweeper.study_name"
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

    def _open_parent(self) -> None:
        if not self.s.get("mlflow_parent", True) or not self.tracking_uri:
            return
        self.parent = SearchParentRun(self.tracking_uri, self.experiment, self.study_name)
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
            }
        )
        self.parent.log_setup(setup)
        self.parent.set_tags({"segsweep.study": self.study_name, "segsweep.storage": self.storage_url})

    # ------------------------------------------------------------------ trials

    def overrides_for(self, trial: Trial) -> list[str]:
        """Everything one trial's job gets: fixed overrides, sampled params, study coordinates."""
        ov = list(self.space.fixed) + trial_overrides(trial.params)
        ov += [
            f"++optuna.storage={quote(self.storage_url)}",
            f"++optuna.study_name={quote(self.study_name)}",
            f"++optuna.trial_number={trial.number}",
        ]
        if self.parent is not None:
            ov += [f"++sweep.parent_run_id={self.parent.run_id}", f"++sweep.id={quote(self.study_name)}"]
        return ov

    def _launch(self, overrides: list[str], idx: int) -> Outcome:
        try:
            rets = self.sw.launcher.launch([overrides], initial_job_idx=idx)
        except Exception as e:  # a job the launcher lost (killed process, cluster error)
            return Outcome(TrialState.FAIL, error=_first_line(e))
        return outcome_from_return(rets[0])

    def _ask(self, study: optuna.Study) -> tuple[Trial, list[str]] | None:
        trial = study.ask(self.space.distributions)
        overrides = self.overrides_for(trial)
        try:
            self.sw.validate_batch_is_legal([overrides])
        except Exception as e:
            self._tell(study, trial, Outcome(TrialState.FAIL, error=_first_line(e)))
            raise ValueError(
                f"trial {trial.number}: the config does not compose with {overrides}: {e}"
            ) from e
        return trial, overrides

    def _value_from_mlflow(self, out: Outcome) -> Outcome:
        """A SKIPPED trial without a value: take the finished run's objective from MLflow."""
        if not (out.skipped and out.run_id and self.tracking_uri):
            return out
        try:
            from mlflow.tracking import MlflowClient

            metrics = MlflowClient(tracking_uri=self.tracking_uri).get_run(out.run_id).data.metrics
        except Exception as e:
            out.error = f"skipped: cannot read run {out.run_id} ({_first_line(e)})"
            return out
        value = _finite(metrics.get(OBJECTIVE_METRIC))
        if value is None:
            out.error = f"skipped: run {out.run_id} has no {OBJECTIVE_METRIC}"
            return out
        return Outcome(TrialState.COMPLETE, value, out.run_id, out.name)

    def _tell(self, study: optuna.Study, trial: Trial, out: Outcome) -> None:
        for k, v in (("mlflow_run_id", out.run_id), ("name", out.name), ("error", out.error)):
            if v is not None:
                trial.set_user_attr(k, v)
        values = out.value if out.state == TrialState.COMPLETE else None
        try:
            study.tell(trial, values, state=out.state)
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is covered
            if "Study.stop" not in str(e):
                raise
            self.grid_done = True
        shown = "" if out.value is None else f" value={out.value:.4g}"
        why = f" ({out.error})" if out.error else ""
        log.info("trial %d %s%s%s %s", trial.number, out.state.name, shown, why, trial.params)
        self._track_trial(trial.number, out)

    def _track_trial(self, number: int, out: Outcome) -> None:
        if self.parent is None:
            return
        try:
            run_id = out.run_id or self.parent.find_trial_run(self.study_name, number)
            if run_id:
                self.parent.tag_child(run_id, number)
            if out.value is not None:
                self.parent.log_metrics({"trial_value": out.value}, step=number)
        except Exception as e:  # tracking trouble must not stop the search
            log.warning("MLflow: could not record trial %d on the parent run: %s", number, e)

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, Any]:
        """Resume or start the study, run the trials still owed, write the results."""
        study = self._open_study()
        self._recover_interrupted(study)
        n_trials = int(self.s["n_trials"])
        counts = self.counts(study)
        owed = n_trials - sum(counts.values())
        log.info(
            "study %s (%s): %d of %d trials done, %d to run, %d at once",
            self.study_name,
            self.storage_url,
            n_trials - max(owed, 0),
            n_trials,
            max(owed, 0),
            self.n_jobs,
        )
        self._open_parent()
        sweep_dir = Path(str(self.cfg.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
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
                    trial, overrides = self._ask(study)
                    running[pool.submit(self._launch, overrides, trial.number)] = trial
                    launched += 1
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
        counts = self.counts(study)
        results: dict[str, Any] = {
            "name": "segsweep_optuna",
            "study_name": self.study_name,
            "storage": self.storage_url,
            "direction": study.direction.name.lower(),
            "trials": counts,
            "best_trial": None,
            "best_value": None,
            "best_params": {},
            "best_run_id": None,
        }
        try:
            best = study.best_trial
        except ValueError:
            log.warning("study %s has no completed trial yet", self.study_name)
            best = None
        if best is not None:
            results.update(
                best_trial=best.number,
                best_value=best.value,
                best_params=dict(best.params),
                best_run_id=best.user_attrs.get("mlflow_run_id"),
            )
            log.info("best: trial %d value=%.4g %s", best.number, best.value, best.params)
        path = sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        if self.parent is not None:
            try:
                self._track_results(results, path)
            except Exception as e:
                log.warning("MLflow: could not record the search results: %s", e)
        return results

    def _track_results(self, results: dict[str, Any], path: Path) -> None:
        assert self.parent is not None
        tags = {f"best.{k}": v for k, v in results["best_params"].items()}
        if results["best_trial"] is not None:
            tags.update(
                {"segsweep.best_trial": results["best_trial"], "segsweep.best_run_id": results["best_run_id"]}
            )
        self.parent.set_tags({k: v for k, v in tags.items() if v is not None})
        metrics = {f"n_{k}": float(v) for k, v in results["trials"].items()}
        if results["best_value"] is not None:
            metrics["best_value"] = results["best_value"]
        self.parent.log_metrics(metrics)
        self.parent.log_artifact(path)
