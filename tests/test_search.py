"""The segsweep_optuna sweeper: real Optuna studies on sqlite, real Hydra processes, real MLflow stores.

A toy Hydra app (written to tmp_path) stands for the training task: it reports a per-epoch metric
through ``sweeper.optuna_trial.PruningCallback``, records an MLflow child run like the real task, and
returns the task's result dict.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweeper.optuna_search import outcome_from_return, round_sampled
from sweeper.optuna_trial import build_pruner, default_storage, resolve_sqlite_uri
from sweeper.search_space import (
    SearchSpaceError,
    distribution_from_override,
    format_value,
    grid_search_space,
    parse_search_space,
)

REPO = Path(__file__).resolve().parents[1]

TOY_APP = """
import json, os, sys, time, math
import hydra, mlflow
from omegaconf import DictConfig
from sweeper.optuna_trial import PruningCallback, StopTraining, trial_of_env


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig):
    assert "optuna" not in cfg and "sweep" not in cfg, "trial bookkeeping leaked into the job config"
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    tags = {"segsweep.name": f"toy.x{cfg.x:.3f}.y{cfg.y}"}
    parents = json.loads(os.environ.get("SEGSWEEP_PARENT_RUNS") or "{}")
    if parents:
        tags["mlflow.parentRunId"] = next(iter(parents.values()))
    trial = trial_of_env()
    if trial is not None:
        tags["segsweep.trial"] = str(trial["trial_number"])
    cb = PruningCallback(trial) if trial is not None else None
    if cfg.skip_as_finished:  # like the task finding a FINISHED run of the same key (value left out)
        with mlflow.start_run(run_name="earlier") as earlier:
            mlflow.log_metric("final_val_mIoU", 42.0)
        return {"status": "SKIPPED", "value": None, "run_id": earlier.info.run_id, "name": "earlier"}
    run = mlflow.start_run(run_name=tags["segsweep.name"], tags=tags)
    try:
        if cfg.crash_y is not None and cfg.y == cfg.crash_y:
            raise RuntimeError("toy crash")
        if cb: cb.on_train_start({})
        value = 0.0
        for epoch in range(1, cfg.epochs + 1):
            time.sleep(cfg.sleep)
            value = 100.0 * cfg.x * epoch / cfg.epochs
            mlflow.log_metric("val_mIoU", value, step=epoch)
            if cb: cb.on_epoch_end(epoch, {"val_mIoU": value})
        mlflow.log_metric("epochs_run", epoch)
        mlflow.end_run("FINISHED")
        print(f"toy trial done; torch imported: {'torch' in sys.modules}", flush=True)
        return {"status": "FINISHED", "value": value, "run_id": run.info.run_id, "name": tags["segsweep.name"]}
    except StopTraining as e:
        mlflow.log_metric("epochs_run", epoch)
        mlflow.set_tag("segsweep.pruned", "true")
        mlflow.end_run("KILLED")
        return {"status": "PRUNED", "value": None, "run_id": run.info.run_id, "name": tags["segsweep.name"]}
    except Exception as e:
        mlflow.set_tag("segsweep.error", str(e))
        mlflow.end_run("FAILED")
        raise


if __name__ == "__main__":
    main()
"""

TOY_CONFIG = """
defaults:
  - override hydra/sweeper: segsweep_optuna
  - _self_
x: 0.5
y: 1
epochs: 3
sleep: 0.05
crash_y: null
skip_as_finished: false
tracking:
  uri: sqlite:///mlflow.db
  experiment: toy
hydra:
  job:
    chdir: false
  sweep:
    dir: multirun/${now:%H-%M-%S-%f}
  sweeper:
    n_trials: 6
    tracking_uri: ${tracking.uri}      # an app of its own names the search's MLflow store
    experiment: ${tracking.experiment}
    pruner:
      name: none
    params:
      x: interval(0.0, 1.0)
      y: choice(1, 2, 3)
"""


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "app.py").write_text(TOY_APP)
    (tmp_path / "conf" / "config.yaml").write_text(TOY_CONFIG)
    return tmp_path


def run_toy(
    app_dir: Path, *args: str, ok: bool = True, timeout: int = 400
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", *args],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if ok and proc.returncode != 0:
        raise AssertionError(f"toy search failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_study(app_dir: Path) -> optuna.Study:
    names = optuna.get_all_study_names(storage=f"sqlite:///{app_dir / 'optuna.db'}")
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=f"sqlite:///{app_dir / 'optuna.db'}")


def mlflow_runs(app_dir: Path) -> tuple[object, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{app_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("toy")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("segsweep.kind") == "search"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


def results_file(app_dir: Path) -> dict:
    files = sorted(app_dir.glob("multirun/*/optimization_results.yaml"))
    assert files, "no optimization_results.yaml"
    return OmegaConf.to_container(OmegaConf.load(files[-1]))


# ---------------------------------------------------------------- search space and helpers


def test_grammar_to_distributions() -> None:
    space = parse_search_space(
        {"lr": "tag(log, interval(1e-4, 1e-1))", "scale": "choice(8, 12, 16)", "wd": "interval(0, 1e-3)"},
        [
            "growth=range(12, 49, 12)",
            "k=int(interval(1, 8))",
            "bb=dense30k36,dense30k48",
            "train.epochs=3",
            "scale=choice(4,6)",
        ],
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["scale"] == CategoricalDistribution([4, 6])  # the command line wins over params
    assert d["wd"] == FloatDistribution(0.0, 1e-3)
    assert d["growth"] == IntDistribution(12, 48, step=12)  # Hydra's range end is exclusive
    assert d["k"] == IntDistribution(1, 8)
    assert d["bb"] == CategoricalDistribution(["dense30k36", "dense30k48"])
    assert space.fixed == ["train.epochs=3"]
    assert grid_search_space(parse_search_space({"a": "range(1,4)", "b": "choice(x,y)"}, [])) == {
        "a": [1, 2, 3],
        "b": ["x", "y"],
    }


@pytest.mark.parametrize(
    "entry, message",
    [
        ("lr=interval(1, 0.1)", "lo < hi"),
        ("lr=tag(log, interval(0, 1))", "lo > 0"),
        ("g=range(5, 1)", "empty"),
        ("lr=glob(*)", "not supported"),
    ],
)
def test_bad_search_entries_name_the_problem(entry: str, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space({}, [entry])


def test_grid_refuses_continuous_params() -> None:
    with pytest.raises(SearchSpaceError, match="sampler=grid"):
        grid_search_space(parse_search_space({"lr": "interval(0.1, 1)"}, []))


@pytest.mark.parametrize("value", ["dense30k36", "a b", "3", "true", "it's", 0.001, 12, True, None, "x=y"])
def test_format_value_round_trips(value: object) -> None:
    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_storage_next_to_mlflow_store(tmp_path: Path) -> None:
    assert default_storage(f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert default_storage("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/optuna.db"
    assert default_storage("http://127.0.0.1:5000", tmp_path) == f"sqlite:///{tmp_path.resolve()}/optuna.db"
    assert resolve_sqlite_uri("postgresql://h/db") == "postgresql://h/db"


def test_pruner_specs() -> None:
    assert type(build_pruner({"name": "median"})).__name__ == "MedianPruner"
    assert (
        type(build_pruner({"name": "hyperband", "kwargs": {"min_resource": 1}})).__name__ == "HyperbandPruner"
    )
    assert type(build_pruner({"name": "successive_halving"})).__name__ == "SuccessiveHalvingPruner"
    assert type(build_pruner({"name": "threshold", "kwargs": {"lower": 1.0}})).__name__ == "ThresholdPruner"
    assert type(build_pruner(None)).__name__ == "NopPruner"
    with pytest.raises(ValueError, match="unknown"):
        build_pruner({"name": "medain"})
    with pytest.raises(ValueError, match="bad settings"):
        build_pruner({"name": "threshold", "kwargs": {"lowr": 1}})


# ---------------------------------------------------------------- real searches


@pytest.mark.slow  # the same checks run end to end in test_e2e_async_search_through_the_pool
def test_async_search_pool_tracks_trials_and_resumes(toy: Path) -> None:
    run_toy(toy, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2")
    study = load_study(toy)
    assert len(study.trials) == 6
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    parent, children = mlflow_runs(toy)
    assert len(children) == 6
    assert sorted(int(c.data.tags["segsweep.trial"]) for c in children) == list(range(6))
    best = study.best_trial
    trained = best.user_attrs["segsweep.params"]
    assert trained["x"] == float(f"{best.params['x']:.3g}")  # the value the trial trained
    assert parent.data.tags["best.x"] == str(trained["x"])
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.tags["segsweep.best_run_id"] == best.user_attrs["mlflow_run_id"]
    res = results_file(toy)
    assert res["best_params"] == trained and res["trials"]["complete"] == 6
    # The same command again: the study is resumed, nothing is owed, no new trial or run.
    run_toy(toy, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2")
    assert len(load_study(toy).trials) == 6
    assert len(mlflow_runs(toy)[1]) == 6


def test_pruning_marks_trials_pruned_in_optuna_and_mlflow(toy: Path) -> None:
    run_toy(
        toy,
        "hydra.sweeper.pruner.name=threshold",
        "+hydra.sweeper.pruner.kwargs.lower=20.0",
        "x=choice(0.1,0.2,0.9)",
        "y=choice(1)",
        "hydra.sweeper.n_trials=4",
        "hydra/sweeper/sampler=grid",
    )
    study = load_study(toy)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert {t.params["x"] for t in pruned} == {0.1, 0.2} and [t.params["x"] for t in done] == [0.9]
    assert len(study.trials) == 3  # the grid has 3 points: n_trials=4 stops at the grid's end
    assert all(max(t.intermediate_values) == 1 for t in pruned)  # stopped after the first epoch
    _, children = mlflow_runs(toy)
    by_status = {c.info.status: c for c in children}
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(killed) == 2 and all(c.data.tags.get("segsweep.pruned") == "true" for c in killed)
    assert all(c.data.metrics["epochs_run"] == 1 for c in killed)
    assert by_status["FINISHED"].data.metrics["epochs_run"] == 3


def test_crashing_trials_fail_and_the_search_goes_on(toy: Path) -> None:
    run_toy(
        toy,
        "crash_y=2",
        "y=choice(1,2)",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_failure_rate=0.9",
    )
    study = load_study(toy)
    states = {t.number: t.state for t in study.trials}
    assert len(states) == 6
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["y"] == 2 for t in failed)
    assert all(t.state == TrialState.COMPLETE for t in study.trials if t.params["y"] == 1)
    assert "toy crash" in failed[0].user_attrs["error"]


def test_too_many_failures_stop_the_search(toy: Path) -> None:
    proc = run_toy(
        toy,
        "crash_y=1",
        "y=choice(1)",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_failure_rate=0.3",
        ok=False,
    )
    assert proc.returncode != 0
    assert "max_failure_rate" in proc.stderr
    study = load_study(toy)
    assert len(study.trials) == 2  # the budget is 0.3 x 6 = 1.8 failures: the second one stops it
    assert mlflow_runs(toy)[0].info.status == "FAILED"


def test_interrupted_trials_are_run_again_on_resume(toy: Path) -> None:
    run_toy(toy, "hydra.sweeper.n_trials=2")
    study = load_study(toy)
    stale = study.ask({"x": FloatDistribution(0.0, 1.0), "y": CategoricalDistribution([1, 2, 3])})
    stale_params = dict(stale.params)
    run_toy(toy, "hydra.sweeper.n_trials=3")
    trials = load_study(toy).trials
    assert (
        trials[stale.number].state == TrialState.FAIL
        and trials[stale.number].user_attrs["segsweep.interrupted"]
    )
    assert trials[-1].params == stale_params and trials[-1].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


def test_bad_settings_give_one_clear_error(toy: Path) -> None:
    proc = run_toy(toy, "hydra.sweeper.sampler.name=bayes", ok=False)
    assert "hydra.sweeper.sampler.name='bayes' is unknown" in proc.stderr
    proc = run_toy(toy, "x=interval(2, 1)", ok=False)
    assert "lo < hi" in proc.stderr
    proc = run_toy(toy, "nosuchkey=choice(1,2)", ok=False)
    assert "does not compose" in proc.stderr


@pytest.mark.parametrize("sampler", ["random", "gp", "cmaes"])
def test_other_samplers_run(toy: Path, sampler: str) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes")
    proc = run_toy(
        toy,
        f"hydra/sweeper/sampler={sampler}",
        "y=choice(1)",
        "hydra.sweeper.n_trials=3",
        "sleep=0",
        "epochs=1",
    )
    assert [t.state for t in load_study(toy).trials] == [TrialState.COMPLETE] * 3
    # the search's own process (sweeper, study, parent run) never needs torch: seconds per search
    assert proc.stdout.count("toy trial done; torch imported: False") == 3, proc.stdout[-2000:]


def test_plugin_is_discovered() -> None:
    code = textwrap.dedent(
        """
        from hydra.core.plugins import Plugins
        from hydra.plugins.sweeper import Sweeper
        print([p.__name__ for p in Plugins.instance().discover(Sweeper)])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    ).stdout
    assert "SegsweepOptunaSweeper" in out


# ---------------------------------------------------------------- end to end through sweep.py

E2E_ARGS = (
    "+search=smoke",
    "train.epochs=3",
    "train.max_steps_per_epoch=2",
    "dataset.num_train=16",
    "dataset.num_val=4",
)


def run_sweep(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key in ("MLFLOW_TRACKING_URI", "SEGSWEEP_LAUNCH_DIR"):
        env.pop(key, None)
    cmd = [sys.executable, str(REPO / "sweep.py"), "-m", *E2E_ARGS, f"output_root={workdir / 'out'}", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def sweep_runs(workdir: Path) -> tuple[object, list, MlflowClient]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("segsweep.kind") == "search"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children, client


def test_e2e_async_search_through_the_pool(tmp_path: Path) -> None:
    """4 trials, 2 at a time through the local pool (2 CPU workers), then the same command again."""
    args = ("launcher=gpus", "hydra.launcher.workers=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4")
    run_sweep(tmp_path, *args)
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    parent, children, _ = sweep_runs(tmp_path)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.data.tags["segsweep.trial"] for c in children) == [str(i) for i in range(4)]
    best_lr = study.best_trial.user_attrs["segsweep.params"]["lr"]
    assert best_lr == float(f"{study.best_params['lr']:.3g}")  # trained as rounded (12.4)
    assert parent.data.tags["best.lr"] == str(best_lr)
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    best_run = next(c for c in children if c.info.run_id == parent.data.tags["segsweep.best_run_id"])
    assert best_run.data.metrics["final_val_mIoU"] == pytest.approx(study.best_value)
    run_sweep(tmp_path, *args)  # resumes the study: nothing is owed
    assert len(load_study(tmp_path).trials) == 4 and len(sweep_runs(tmp_path)[1]) == 4


def test_e2e_pruned_trial_stops_early_and_shows_in_mlflow(tmp_path: Path) -> None:
    """A threshold pruner on a deliberately bad region: the reported metric is the epoch's lr and
    any lr above 1e-3 is pruned at its first report."""
    run_sweep(
        tmp_path,
        "lr=choice(1e-4,5e-3)",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.metric=lr_epoch",
        "hydra.sweeper.pruner.name=threshold",
        "+hydra.sweeper.pruner.kwargs.upper=1e-3",
    )
    trials = {t.params["lr"]: t for t in load_study(tmp_path).trials}
    assert trials[5e-3].state == TrialState.PRUNED and list(trials[5e-3].intermediate_values) == [1]
    assert trials[1e-4].state == TrialState.COMPLETE and list(trials[1e-4].intermediate_values) == [1, 2, 3]
    _, children, client = sweep_runs(tmp_path)
    status = {c.data.tags["segsweep.trial"]: c for c in children}
    pruned, done = status[str(trials[5e-3].number)], status[str(trials[1e-4].number)]
    assert pruned.info.status == "KILLED" and pruned.data.tags["segsweep.pruned"] == "true"
    assert done.info.status == "FINISHED"
    assert len(client.get_metric_history(pruned.info.run_id, "val_mIoU")) == 1
    assert len(client.get_metric_history(done.info.run_id, "val_mIoU")) == 3


def test_e2e_crashed_trial_fails_and_rerun_adds_nothing(tmp_path: Path) -> None:
    """Adam with a negative eps crashes inside training: FAIL in Optuna, FAILED in MLflow."""
    args = ("lr=0.002", "train.adam_eps=choice(2.5e-4,-1.0)", "hydra/sweeper/sampler=grid")
    args += ("hydra.sweeper.n_trials=2", "train.epochs=2")
    run_sweep(tmp_path, *args)
    trials = {t.params["train.adam_eps"]: t for t in load_study(tmp_path).trials}
    assert trials[-1.0].state == TrialState.FAIL and "epsilon" in trials[-1.0].user_attrs["error"]
    assert trials[2.5e-4].state == TrialState.COMPLETE
    _, children, _ = sweep_runs(tmp_path)
    by_trial = {c.data.tags["segsweep.trial"]: c.info.status for c in children}
    assert by_trial == {str(trials[-1.0].number): "FAILED", str(trials[2.5e-4].number): "FINISHED"}
    run_sweep(tmp_path, *args)
    assert len(load_study(tmp_path).trials) == 2 and len(sweep_runs(tmp_path)[1]) == 2


def test_timeout_stops_starting_trials(toy: Path) -> None:
    run_toy(toy, "hydra.sweeper.timeout=0.5", "sleep=0.3", "hydra.sweeper.n_trials=6")
    assert [t.state for t in load_study(toy).trials] == [TrialState.COMPLETE]  # 0.9 s > 0.5 s


def test_median_pruner_prunes_in_the_job(toy: Path) -> None:
    run_toy(
        toy,
        "x=choice(0.1,0.2,0.8,0.9)",
        "y=1",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "sleep=0",
    )
    trials = load_study(toy).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    best = max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert len(trials) == 4 and pruned
    assert all(len(t.intermediate_values) < 3 and t.params["x"] * 100 < best for t in pruned)


def _job_return(value: object, status: JobStatus = JobStatus.COMPLETED) -> JobReturn:
    ret = JobReturn(overrides=[], status=status)
    ret.return_value = value
    return ret


def test_job_returns_map_to_trial_states() -> None:
    def state(value: object, status: JobStatus = JobStatus.COMPLETED) -> tuple:
        out = outcome_from_return(_job_return(value, status))
        return out.state, out.value

    assert state({"status": "FINISHED", "value": 12.5, "run_id": "r"}) == (TrialState.COMPLETE, 12.5)
    assert state({"status": "SKIPPED", "value": 3.0, "run_id": "r"}) == (TrialState.COMPLETE, 3.0)
    assert state({"status": "PRUNED", "value": None, "run_id": "r"}) == (TrialState.PRUNED, None)
    assert state({"status": "FAILED", "value": None, "error": "boom"}) == (TrialState.FAIL, None)
    assert state({"status": "FINISHED", "value": float("nan")}) == (TrialState.FAIL, None)
    assert state(0.5) == (TrialState.COMPLETE, 0.5)
    assert state(None) == (TrialState.FAIL, None)
    assert state(RuntimeError("job raised"), JobStatus.FAILED) == (TrialState.FAIL, None)
    assert outcome_from_return(_job_return(RuntimeError("x\ny"), JobStatus.FAILED)).error == "RuntimeError: x"
    assert outcome_from_return(_job_return({"status": "SKIPPED", "value": None, "run_id": "r"})).skipped


def test_skipped_trial_takes_the_finished_runs_value(toy: Path) -> None:
    run_toy(toy, "skip_as_finished=true", "hydra.sweeper.n_trials=1")
    (trial,) = load_study(toy).trials
    assert trial.state == TrialState.COMPLETE and trial.value == 42.0


# ---------------------------------------------------------------- ported from hydra-optuna-sweeper
# (plugins/hydra_optuna_sweeper/tests/test_optuna_sweeper_plugin.py). They run in this process
# through Hydra's sweep runner and the basic launcher; the deviations that stay are in docs/search.md.


def sphere(cfg: DictConfig) -> float:
    """upstream's example/sphere.py"""
    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")
    return float(cfg.x) ** 2 + float(cfg.y) ** 2


def _optuna_sweep(hydra_sweep_runner, tmp_path: Path, config_name: str, *overrides: str, task=sphere):
    storage = f"sqlite:///{tmp_path / 'test.db'}"
    return hydra_sweep_runner(calling_file=str(REPO / "tests" / "apps" / "objective.py"), calling_module=None,
                              task_function=task,
                              config_path="conf", config_name=config_name, temp_dir=str(tmp_path / "sweep"),
                              overrides=[f"hydra.sweeper.storage={storage}", *overrides]), storage


@pytest.mark.parametrize(
    "text, expected",
    [
        ("key=choice(1,2)", CategoricalDistribution([1, 2])),
        ("key=choice(true, false)", CategoricalDistribution([True, False])),
        ("key=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
        ("key=shuffle(range(1,3))", CategoricalDistribution((1, 2))),
        ("key=range(1,3)", IntDistribution(1, 2)),  # deviation: Hydra's range excludes its end (upstream: 1..3)
        ("key=interval(1, 5)", FloatDistribution(1, 5)),
        ("key=int(interval(1, 5))", IntDistribution(1, 5)),
        ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
        ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 4.5, step=1)),  # deviation: end excluded
    ],
)
def test_create_optuna_distribution_from_override(text: str, expected: object) -> None:
    actual = distribution_from_override(OverridesParser.create().parse_overrides([text])[0])
    if isinstance(expected, CategoricalDistribution):
        assert isinstance(actual, CategoricalDistribution) and set(actual.choices) == set(expected.choices)
    else:
        assert actual == expected


@pytest.mark.parametrize(
    "given, distributions, fixed",
    [
        (["key=choice(1,2)"], {"key": CategoricalDistribution([1, 2])}, []),
        (["key=5"], {}, ["key=5"]),
        (["key1=choice(1,2)", "key2=5"], {"key1": CategoricalDistribution([1, 2])}, ["key2=5"]),
        (["key1=choice(1,2)", "key2=5", "key3=range(1,3)"],
         {"key1": CategoricalDistribution([1, 2]), "key3": IntDistribution(1, 2)}, ["key2=5"]),
        (["~z"], {}, ["~z"]),
        (["~z=10"], {}, ["~z=10"]),
        (["+w=interval(0, 1)", "+v=3"], {"+w": FloatDistribution(0, 1)}, ["+v=3"]),  # kept addable
    ],
)
def test_create_params_from_overrides(given: list[str], distributions: dict, fixed: list[str]) -> None:
    space = parse_search_space(None, given)
    assert space.distributions == distributions and space.fixed == fixed


def test_launch_jobs(hydra_sweep_runner, tmp_path: Path) -> None:
    """upstream: 8 trials, n_jobs=3 with the basic launcher (segsweep runs them one at a time)."""
    sweep = hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module",
                               config_path="configs", config_name="compose.yaml", task_function=lambda c: c.bar,
                               temp_dir=str(tmp_path), overrides=[
                                   "hydra/sweeper=segsweep_optuna", "hydra/launcher=basic",
                                   "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=3",
                                   f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}",
                                   "bar=choice(100, 200)"])  # deviation: an empty search space is refused
    with sweep:
        assert sweep.returns["trials"] == {"complete": 8, "pruned": 0, "fail": 0}


@pytest.mark.slow  # 2 x 20 trials in this process: upstream's example, run with Hydra's suites (-m conformance)
@pytest.mark.conformance
@pytest.mark.parametrize("with_commandline", [True, False])
def test_optuna_example(hydra_sweep_runner, tmp_path: Path, with_commandline: bool) -> None:
    cmd = ["hydra.sweeper.n_trials=20", "hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.seed=123", "~z"]
    if with_commandline:
        cmd += ["x=choice(0, 1, 2)", "y=0"]
    sweep, storage = _optuna_sweep(hydra_sweep_runner, tmp_path, "sphere", *cmd)
    with sweep:
        returns = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    best = optuna.load_study(storage=storage, study_name="sphere").best_trial
    assert returns.name == "segsweep_optuna"  # upstream: "optuna"
    assert returns.best_params.x == best.params["x"] and returns.best_value == best.value
    assert ("y" in returns.best_params) is not with_commandline
    assert returns.best_value <= 2.27  # upstream's bound for TPE (95th percentile over 1000 seeds)


@pytest.mark.slow  # 31 trials in this process: upstream's example, run with Hydra's suites (-m conformance)
@pytest.mark.conformance
@pytest.mark.parametrize("num_trials", [20, 10, 1])
def test_example_with_grid_sampler(hydra_sweep_runner, tmp_path: Path, num_trials: int) -> None:
    """The grid is covered whole: with n_trials >= 12 every point runs once (and only once)."""
    sweep, storage = _optuna_sweep(hydra_sweep_runner, tmp_path, "grid", f"hydra.sweeper.n_trials={num_trials}")
    with sweep:
        returns = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    trials = optuna.load_study(storage=storage, study_name="sphere").trials
    points = {(t.params["x"], t.params["y"], t.params["z"]) for t in trials}
    assert len(trials) == len(points) == min(num_trials, 12)
    bv, bx, by = returns.best_value, returns.best_params.x, returns.best_params.y
    if num_trials >= 12:
        assert bv == 1 and abs(bx) == 1 and by == 0
    else:
        assert bx in [-1, 1] and by in [-1, 0, 1]
    assert returns.best_params.z in ["foo", "bar"]


def _dominates(a: list[float], b: list[float]) -> bool:
    """upstream's helper (both objectives minimised)"""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


@pytest.mark.slow  # 2 x 20 trials in this process: upstream's example, run with Hydra's suites (-m conformance)
@pytest.mark.conformance
@pytest.mark.parametrize("with_commandline", [True, False])
def test_optuna_multi_objective_example(hydra_sweep_runner, tmp_path: Path, with_commandline: bool) -> None:
    """upstream's test_optuna_multi_objective_example: the Binh-and-Korn app and its config (only the
    sweeper's name changed) through segsweep's sweeper; its `solutions` are the front, none dominates
    another, and the front is the non-dominated set of all the study's trials."""
    from tests.apps.multi_objective import binh_and_korn

    cmd = ["hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1", "hydra/sweeper/sampler=random",
           "hydra.sweeper.sampler.seed=123"]
    if with_commandline:
        cmd += ["x=range(0, 5)", "y=range(0, 3)"]
    sweep, storage = _optuna_sweep(hydra_sweep_runner, tmp_path, "multi-objective", *cmd, task=binh_and_korn)
    with sweep:
        returns = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
        front_csv = (tmp_path / "sweep" / "pareto.csv").read_text()
    assert returns.name == "segsweep_optuna" and list(returns.direction) == ["minimize", "minimize"]
    solutions = [OmegaConf.to_container(s) for s in returns.solutions]
    for sx in solutions:
        steps = {0} if with_commandline else {0, 0.5}
        assert sx["params"]["x"] % 1 in steps and sx["params"]["y"] % 1 in steps
        assert not any(_dominates(sy["values"], sx["values"]) for sy in solutions)
    trials = optuna.load_study(storage=storage, study_name="multi-objective").trials
    by_hand = [t.number for t in trials if not any(_dominates(o.values, t.values) for o in trials)]
    assert sorted(s["number"] for s in solutions) == by_hand
    assert front_csv.startswith("trial,value_0,value_1,") and front_csv.count("\n") == len(solutions) + 1


def test_upstream_multi_objective_config_runs_with_nsgaii(hydra_sweep_runner, tmp_path: Path) -> None:
    """The example's own sampler (nsgaii, seeded) and space, as upstream's config has them."""
    from tests.apps.multi_objective import binh_and_korn

    sweep, storage = _optuna_sweep(hydra_sweep_runner, tmp_path, "multi-objective", "hydra.sweeper.n_trials=6",
                                   task=binh_and_korn)
    with sweep:
        returns = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    study = optuna.load_study(storage=storage, study_name="multi-objective")
    assert all(any("generation" in k for k in t.system_attrs) for t in study.trials)  # NSGA-II's marks
    assert returns.trials.complete == 6 and len(returns.solutions) >= 1
    assert {s.number for s in returns.solutions} == {t.number for t in study.best_trials}


def test_bad_directions_and_objectives_are_refused_in_one_line(hydra_sweep_runner, tmp_path: Path) -> None:
    for bad, message in (("hydra.sweeper.direction=both", "use maximize or minimize"),
                         ("hydra.sweeper.direction=[minimize,upward]", "use maximize or minimize"),
                         ("hydra.sweeper.objectives=[a,b,c]", "3 objective\\(s\\) for 1 direction"),
                         ("hydra.sweeper.objectives=[params_M]", "not segsweep's sweep.py"),
                         ('hydra.sweeper.constraints=["val_mIoU>=3"]', "can bound only params_M"),
                         ('hydra.sweeper.constraints=["params_M~6"]', "cannot read")):
        sweep, _ = _optuna_sweep(hydra_sweep_runner, tmp_path, "sphere", bad)
        with pytest.raises(Exception, match=message), sweep:
            pass


def test_the_front_and_constraints_by_hand() -> None:
    """non_dominated against a brute force on random points (ties and both directions); a constraint's
    violation is Optuna's (<= 0: kept) and names what it broke."""
    import random

    from sweeper.pareto import broken, dominates, non_dominated, parse_constraints

    rng = random.Random(0)
    for directions in (["maximize", "minimize"], ["minimize", "minimize"], ["maximize", "maximize", "minimize"]):
        pts = [[float(rng.randint(0, 5)) for _ in directions] for _ in range(30)]
        signs = [1 if d == "maximize" else -1 for d in directions]
        brute = [i for i, p in enumerate(pts) if not any(
            all(s * q[k] >= s * p[k] for k, s in enumerate(signs)) and any(s * q[k] > s * p[k] for k, s in enumerate(signs))
            for q in pts)]
        assert non_dominated(pts, directions) == brute
    assert dominates([50, 2], [40, 3], ["maximize", "minimize"]) and not dominates([50, 2], [50, 2], ["maximize", "minimize"])
    assert non_dominated([[1.0, float("nan")], [0.0, 1.0]], ["maximize", "minimize"]) == [1]
    (c,) = parse_constraints(['params_M<=6'])
    assert c.violation(5.0) == -1.0 and c.violation(7.5) == 1.5 and c.kept(6.0)
    (lt,) = parse_constraints("latency_ms<20")
    assert not lt.kept(20.0) and lt.kept(19.9)
    assert broken([c], {"params_M": 7.25}) == ["params_M=7.25 breaks params_M<=6"] and broken([c], {}) == []


@pytest.mark.parametrize("max_failure_rate", [0.5, 1.0])
def test_failure_rate(hydra_sweep_runner, tmp_path: Path, capsys, max_failure_rate: float) -> None:
    """A failed trial's error is on stderr (deviation: also when max_failure_rate=1.0 lets the search
    finish; upstream is silent then); above the rate the search stops with an error."""
    sweep, _ = _optuna_sweep(hydra_sweep_runner, tmp_path, "sphere", "hydra.sweeper.n_trials=4",
                             "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123",
                             f"hydra.sweeper.max_failure_rate={max_failure_rate}", "error=true")
    if max_failure_rate < 1.0:
        with pytest.raises(Exception, match="max_failure_rate"), sweep:
            pass
    else:
        with sweep:
            assert sweep.returns["trials"]["fail"] == 4
    assert "RuntimeError: cfg.error is True" in capsys.readouterr().err


def test_the_default_study_is_the_commands_own_and_a_resumed_one_says_so(hydra_sweep_runner, tmp_path: Path,
                                                                        capsys) -> None:
    """The default study name covers the app's config and fixed overrides, not only the space:
    another fixed value is another study (it runs its trials); the same command resumes its own
    and says so in one line."""
    def search(*fixed: str) -> str:
        sweep, _ = _optuna_sweep(hydra_sweep_runner, tmp_path, "objective", "hydra/sweeper=segsweep_optuna",
                                 "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=2",
                                 "hydra/sweeper/sampler=random", "x=choice(1, 2, 3)", *fixed)
        with sweep:
            pass
        return capsys.readouterr().out

    assert "new study" in search("y=0")
    assert "new study" in (other := search("y=5")) and "0 of 2 trials done, 2 to run" in other
    again = [line for line in search("y=0").splitlines() if "study" in line]
    assert len(again) == 1 and "resuming study" in again[0] and "2 of 2 trials done, 0 to run" in again[0]


@pytest.mark.parametrize("value, digits, rounded", [(0.001605191, 3, 0.00161), (0.001605191, 2, 0.0016),
                                                     (123.456, 3, 123.0), (0.001605191, None, 0.001605191)])
def test_a_sampled_float_is_trained_rounded(value: float, digits: int | None, rounded: float) -> None:
    dist = FloatDistribution(1e-4, 1e3, log=True)
    assert round_sampled(value, dist, digits) == rounded
    assert round_sampled(1.00049e-4, dist, 3) == 1e-4 and round_sampled(5, IntDistribution(1, 9), 3) == 5
    assert round_sampled(1.2344e-4, FloatDistribution(1.2344e-4, 1.0), 3) == 1.2344e-4  # kept inside the bounds
    assert round_sampled(0.25, FloatDistribution(0.0, 1.0, step=0.25), 1) == 0.25  # a stepped float is exact


def test_the_best_params_are_printed_and_recorded_as_trained(hydra_sweep_runner, tmp_path: Path, capsys) -> None:
    """best: ... shows the values the trial trained (3 significant digits), not Optuna's sampled float."""
    sweep, storage = _optuna_sweep(hydra_sweep_runner, tmp_path, "sphere", "hydra.sweeper.n_trials=2",
                                   "hydra/sweeper/sampler=random", "x=interval(-1.0, 1.0)", "y=0", "~z")
    with sweep:
        returns = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    best = optuna.load_study(storage=storage, study_name="sphere").best_trial
    trained = float(f"{best.params['x']:.3g}")
    assert trained != best.params["x"] and returns.best_params.x == trained
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "best: trial" in x]
    assert line.endswith(f"{{'x': {trained!r}}}") and repr(best.params["x"]) not in line


def test_a_trials_study_travels_in_hydra_job_env_set_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial's overrides are Hydra overrides of hydra.job.env_set (a storage URI with slashes and
    quotes survives the grammar); the job reads them back from its environment; the launchers
    recognise them as a search's trials (no lock, no parent of their own)."""
    from sweeper.bookkeeping import LAST, managed
    from sweeper.optuna_trial import is_trial_override, trial_env_overrides, trial_of_env

    monkeypatch.setitem(LAST, "managed", False)  # managed() remembers what it saw: undone after the test

    storage, study = "sqlite:////tmp/it's here/optuna.db", "search-0123456789"
    overrides = trial_env_overrides(storage, study, 7)
    parsed = OverridesParser.create().parse_overrides(overrides)
    env = {o.key_or_group.rpartition(".")[2]: o.value() for o in parsed}
    assert all(o.key_or_group.startswith("hydra.job.env_set.") for o in parsed)
    assert trial_of_env(env) == {"storage": storage, "study_name": study, "trial_number": 7}
    assert trial_of_env({}) is None
    assert [is_trial_override(o) for o in overrides] == [False, False, True]
    assert managed([["x=1", *overrides]]) and not managed([["x=1"], ["hydra.job.env_set.OTHER=1"]])


def test_the_pruning_metric_is_named_for_the_split_the_trial_evaluates_on():
    """A CamVid trial logs test_mIoU: a search on val_mIoU prunes on it instead of never pruning."""
    from sweeper.optuna_trial import on_split

    assert on_split("val_mIoU", "test") == "test_mIoU" and on_split("val_mIoU", "val") == "val_mIoU"
    assert on_split("test_pixel_acc", "val") == "val_pixel_acc"
    assert on_split("train_loss", "test") == "train_loss" and on_split("lr_epoch", "test") == "lr_epoch"
