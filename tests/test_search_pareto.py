"""Multi-objective searches end to end: a real two-objective study of segsweep's DenseNets on the
synthetic set (sweep.py, real MLflow and Optuna stores), its front by hand, a constraint that refuses
trials before they train, ``python -m results pareto``; the latency measure against torch; the pruner's
own settings reaching the pruner the trial's job rebuilds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.conftest import FAST

REPO = Path(__file__).resolve().parents[1]
LIMIT = 0.2  # params_M: the synthetic smoke space's dense42k8 variants (~0.27M) are above it


def _dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """q dominates p: mIoU (maximised) and #params (minimised)."""
    return q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])


@pytest.mark.slow
def test_two_objective_study_front_equals_the_front_by_hand(tmp_path: Path) -> None:
    """6 trials of +search=densenet_pareto_smoke (NSGA-II, val_mIoU up, params_M down) under
    params_M<=0.2: trials above it are refused before training (PRUNED with the reason, no run); the
    front the search tags, writes (pareto.csv, optimization_results.yaml) and `results pareto` prints
    is the non-dominated set of the finished runs' recorded values; the parent is a readable sweep."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEGSWEEP_LAUNCH_DIR")}
    cmd = [sys.executable, str(REPO / "sweep.py"), "-m", "+search=densenet_pareto_smoke", *FAST,
           f"output_root={tmp_path / 'out'}", "hydra.callbacks.results_readme.enabled=false",
           f'hydra.sweeper.constraints=["params_M<={LIMIT}","latency_ms<=1e6"]']
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    (name,) = optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 6 and [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    refused = [t for t in study.trials if t.user_attrs.get("segsweep.refused")]
    assert refused, "the seeded smoke study should draw a model above the limit"
    for t in refused:
        assert t.state == TrialState.PRUNED and t.user_attrs["segsweep.measures"]["params_M"] > LIMIT
        assert f"breaks params_M<={LIMIT:g}" in t.user_attrs["segsweep.refused"]
        assert t.user_attrs["segsweep.refused"] in proc.stdout
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["segsweep.measures"]["params_M"] <= LIMIT and t.values[1] <= LIMIT

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("segsweep.kind") == "search"]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert kids and all(r.info.status == "FINISHED" for r in kids)
    assert not {t.number for t in refused} & {int(r.data.tags["segsweep.trial"]) for r in kids}  # never trained
    from engine.distributed import resolve_device
    from engine.latency import device_name

    for r in kids:  # measured before training, recorded on the trial's run, with where it was timed
        assert r.data.metrics["latency_ms"] > 0
        assert r.data.tags["segsweep.latency_device"].split(" (")[0] == device_name(resolve_device("auto")).split(" (")[0]
    values = {r.info.run_id: (r.data.metrics["final_val_mIoU"], r.data.metrics["params_M"]) for r in kids}
    by_hand = {rid for rid, p in values.items() if not any(_dominated(p, q) for q in values.values())}
    assert {r.info.run_id for r in kids if r.data.tags.get("segsweep.pareto") == "true"} == by_hand
    sweep_dir = Path(parent.data.tags["segsweep.sweep_dir"])
    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert {s["run_id"] for s in results["solutions"]} == by_hand
    csv_runs = {line.split(",")[4] for line in (sweep_dir / "pareto.csv").read_text().splitlines()[1:]}
    assert csv_runs == by_hand
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png", "optimization_results.yaml"} <= artifacts

    # a sweep's record: a readable name (not a hash, not nan), counters as curves (one value a step)
    title = parent.data.tags["segsweep.sweep"]
    assert title.startswith("search max val_mIoU & min params_M over backbone={") and name in title
    assert parent.info.run_name == title
    for key in ("n_complete", "n_pruned", "jobs_total"):
        steps = [m.step for m in client.get_metric_history(parent.info.run_id, key)]
        assert len(steps) == len(set(steps)) and steps == sorted(steps), (key, steps)
    assert len(client.get_metric_history(parent.info.run_id, "n_complete")) == 6

    shown = subprocess.run([sys.executable, "-m", "results", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                            "pareto", "--study", name], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert {rid[:8] for rid in values if rid[:8] in shown.stdout} == {rid[:8] for rid in by_hand}
    assert "val_mIoU ↑" in shown.stdout and "params_M ↓" in shown.stdout
    from results.pareto import readme_section
    from results.readme import refresh

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    readme = refresh(uri, tmp_path / "readme" / "README.md").read_text()
    assert f"- [{title}](sweeps/" in readme and "- [nan]" not in readme  # the search's entry: its name
    section = readme_section(uri, tmp_path / "readme")
    assert (tmp_path / "readme" / f"pareto_{name}.png").is_file() and f"pareto_{name}.png" in section
    assert {rid[:8] for rid in values if rid[:8] in section} == {rid[:8] for rid in by_hand}

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "6 of 6 trials done, 0 to run" in again.stdout  # resumed, nothing owed
    assert len(optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 6


def test_latency_is_a_median_of_timed_forwards_on_a_named_device() -> None:
    from engine.latency import crop_hw, device_name, forward_gflops, forward_latency_ms

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).train()
    lat = forward_latency_ms(model, [16, 24], "cpu", warmup=1, repeats=5)
    assert len(lat.times_ms) == 5 and lat.median_ms == sorted(lat.times_ms)[2] and lat.device == device_name("cpu")
    assert model.training  # put back as it was
    assert crop_hw(32) == (32, 32) and crop_hw([16, 24]) == (16, 24)
    # 8 x 16 x 24 outputs, each 3 x 3 x 3 multiply-adds (2 FLOPs each)
    assert forward_gflops(model, [16, 24]) == pytest.approx(8 * 16 * 24 * 27 * 2 / 1e9)
    with pytest.raises(ValueError, match="repeats"):
        forward_latency_ms(model, 8, repeats=0)


def test_a_pruners_own_settings_reach_the_pruner_the_job_rebuilds(hydra_sweep_runner, tmp_path: Path) -> None:
    """hydra.sweeper.pruner.n_startup_trials / n_warmup_steps / kwargs -> the study's pruner spec -> the
    MedianPruner that a trial's PruningCallback builds (dropping any of them fails here)."""
    from sweeper.optuna_trial import PRUNER_ATTR, PruningCallback
    from tests.test_search import sphere

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    sweep = hydra_sweep_runner(calling_file=str(REPO / "tests" / "apps" / "objective.py"), calling_module=None,
                               task_function=sphere, config_path="conf", config_name="sphere",
                               temp_dir=str(tmp_path / "sweep"), overrides=[
                                   f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1",
                                   "hydra.sweeper.pruner.name=median", "hydra.sweeper.pruner.n_startup_trials=7",
                                   "hydra.sweeper.pruner.n_warmup_steps=2",
                                   "+hydra.sweeper.pruner.kwargs.interval_steps=3"])
    with sweep:
        pass
    spec = optuna.load_study(study_name="sphere", storage=storage).user_attrs[PRUNER_ATTR]
    assert spec["n_startup_trials"] == 7 and spec["kwargs"] == {"interval_steps": 3}
    callback = PruningCallback({"storage": storage, "study_name": "sphere", "trial_number": 0})
    callback.on_train_start({})
    pruner = callback.trial.study.pruner
    assert type(pruner).__name__ == "MedianPruner"
    assert (pruner._n_startup_trials, pruner._n_warmup_steps, pruner._interval_steps) == (7, 2, 3)
