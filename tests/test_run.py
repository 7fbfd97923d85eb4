"""Real runs on the synthetic set, tracked in a temporary sqlite MLflow store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from engine.callbacks import ConfigError, NonFiniteLossError
from engine.train import validate_config
from sweeper import naming
from sweeper.errors import JobFailed
from sweeper.task import main, run_dirname, run_job
from tests.conftest import FAST, REPO, subprocess_env


def _runs(uri: str, experiment: str = "synthetic", kind: str | None = None) -> list:
    """The job runs (``kind=None``) or the sweeps' parent runs (``kind="sweep"``)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    return [r for r in runs if r.data.tags.get("segsweep.kind") == kind]


@pytest.mark.slow
def test_one_epoch_run_is_tracked_under_its_canonical_name(store: str, tmp_path: Path):
    cfg = naming.compose_config([*FAST, "train.epochs=1", "seed=7", f"output_root={tmp_path / 'out'}"])
    result = run_job(cfg)
    assert result["status"] == "FINISHED" and result["seed"] == 7
    client = MlflowClient(store)
    run = client.get_run(result["run_id"])
    name = naming.compose(cfg)
    assert run.info.status == "FINISHED" and run.info.run_name == f"{name} seed=7"  # the seed is visible
    tags = run.data.tags
    assert tags["segsweep.name"] == name and tags["segsweep.dataset"] == "synthetic"
    assert tags["segsweep.config_hash"] == naming.config_hash(cfg)
    assert len(tags["segsweep.git_commit"]) == 40 and tags["segsweep.git_dirty"] in ("true", "false")
    params = run.data.params
    assert params["dataset.name"] == "synthetic" and params["scale"] == "1" and params["lr"] == "0.001"
    assert "train.base_lr" not in params and "dataset.scale" not in params and "tracking.uri" not in params
    metrics = run.data.metrics
    for key in ("train_loss", "lr_epoch", "val_mIoU", "val_pixel_acc", "params_M", "final_val_mIoU"):
        assert key in metrics, key
    assert "lr" not in metrics and result["value"] == metrics["final_val_mIoU"]
    assert any(k.startswith("val_IoU/") for k in metrics)
    assert 0 <= metrics["val_mIoU"] <= 100 and metrics["params_M"] > 0.1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mIoU")] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts


@pytest.mark.slow
def test_rerun_of_a_finished_run_is_skipped_and_force_reruns(store: str, tmp_path: Path):
    # evaluated on test (as CamVid's protocol): its metrics say test, and its result is the test score
    overrides = [*FAST, "train.epochs=1", "dataset.eval_split=test", f"output_root={tmp_path / 'out'}"]
    first = run_job(naming.compose_config(overrides))
    metrics = MlflowClient(store).get_run(first["run_id"]).data.metrics
    assert {"test_mIoU", "test_pixel_acc", "final_test_mIoU"} <= set(metrics)
    assert any(k.startswith("test_IoU/") for k in metrics) and not [k for k in metrics if "val_" in k]
    assert first["value"] == metrics["final_test_mIoU"] and first["split"] == "test"
    again = run_job(naming.compose_config(overrides))
    assert again["status"] == "SKIPPED" and again["run_id"] == first["run_id"]
    assert again["value"] == first["value"]
    forced = run_job(naming.compose_config([*overrides, "+force=true"]))
    assert forced["status"] == "FINISHED" and forced["run_id"] != first["run_id"]
    assert len(_runs(store)) == 2


@pytest.mark.slow
def test_resume_continues_the_same_run_without_duplicate_steps(store: str, tmp_path: Path):
    overrides = [*FAST, "train.epochs=2", f"output_root={tmp_path / 'out'}"]
    first = run_job(naming.compose_config([*overrides, "train.epochs=1"]))
    # the same recipe with more epochs is another run key, so interrupt a 2-epoch run by hand:
    cfg = naming.compose_config(overrides)
    client = MlflowClient(store)
    result = run_job(cfg)
    run_id = result["run_id"]
    assert run_id != first["run_id"]
    client.update_run(run_id, status="FAILED")  # as a killed job leaves it
    workdir = tmp_path / "out" / "runs" / "synthetic" / run_dirname(naming.compose(cfg), naming.config_hash(cfg))
    import torch
    state = torch.load(workdir / "checkpoint.pt", weights_only=False)
    state["epoch"], state["history"] = 1, state["history"][:1]  # as if killed during epoch 2
    torch.save(state, workdir / "checkpoint.pt")
    resumed = run_job(cfg)
    assert resumed["status"] == "FINISHED" and resumed["run_id"] == run_id
    steps = [m.step for m in client.get_metric_history(run_id, "val_mIoU")]
    assert sorted(steps) == [1, 2] and len(steps) == len(set(steps))
    assert len(client.get_metric_history(run_id, "params_M")) == 1  # once, however often it resumes


@pytest.mark.slow
def test_a_failed_training_names_its_run(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = naming.compose_config([*FAST, "train.epochs=1", "lr=1e30", f"output_root={tmp_path / 'out'}"])
    with pytest.raises(JobFailed) as failed:
        run_job(cfg)
    assert isinstance(failed.value.cause, NonFiniteLossError)
    run = MlflowClient(store).get_run(failed.value.run_id)
    assert run.info.status == "FAILED" and "NonFiniteLossError" in run.data.tags["segsweep.error"]
    assert not hasattr(failed.value.cause, "segsweep_run_id")
    with pytest.raises(SystemExit) as exited:  # a single run: not bad input, so exit 1 with one line
        main(cfg)
    assert exited.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: NonFiniteLossError: training loss became")


def test_bad_input_exits_2_before_any_run(store: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(naming.compose_config(["lr=abc"]))
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: lr=abc must be a positive number (e.g. `lr=1e-3`)"]
    assert not Path(store.removeprefix("sqlite:///")).exists()  # refused before the store was opened


def _sweep(*args: str, cwd: Path, uri: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweep.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(MLFLOW_TRACKING_URI=uri))


@pytest.mark.slow
def test_everyday_multirun_command(store: str, tmp_path: Path):
    result = _sweep("-m", "backbone=dense30k12,dense30k36", "scale=1,2", *FAST, "train.epochs=1",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, uri=store)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(store)
    test_settings = ".dataset-crop_size-32.dataset-image_size-32.dataset-num_train-16.dataset-num_val-4" \
                    ".train-epochs-1.train-max_steps_per_epoch-2"  # what the tests changed shows in the name
    assert sorted(r.data.tags["segsweep.name"] for r in runs) == [
        f"synthetic.scratch.imagesize32.dense30k12.scale1.batchsize4{test_settings}",
        f"synthetic.scratch.imagesize32.dense30k12.scale2.batchsize4{test_settings}",
        f"synthetic.scratch.imagesize32.dense30k36.scale1.batchsize4{test_settings}",
        f"synthetic.scratch.imagesize32.dense30k36.scale2.batchsize4{test_settings}",
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    (parent,) = _runs(store, kind="sweep")  # the sweep is the parent run of its jobs
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and "0 failed" not in result.stdout and "4 finished" in result.stdout
    readme = (tmp_path / "outputs" / "results" / "README.md").read_text()  # the sweep ended by refreshing it
    assert all(name in readme for name in [r.data.tags["segsweep.name"] for r in runs])
    assert f"| {parent.info.run_name}" not in readme  # the parent run is not a result row (only a sweep link)
    assert f"[{parent.info.run_name}](sweeps/" in readme


@pytest.mark.slow
def test_a_run_from_a_seed_name(store: str, tmp_path: Path):
    result = _sweep("name=synthetic.scratch.imagesize32.dense30k12.scale1.batchsize4", "dataset.num_train=16",
                    "dataset.num_val=4", "dataset.image_size=32", "train.epochs=1", "train.max_steps_per_epoch=1",
                    cwd=tmp_path, uri=store)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = _runs(store)
    assert run.data.tags["segsweep.name"] == (  # the seed name plus the explicit overrides, as escape tokens
        "synthetic.scratch.imagesize32.dense30k12.scale1.batchsize4.dataset-image_size-32.dataset-num_train-16"
        ".dataset-num_val-4.train-epochs-1.train-max_steps_per_epoch-1")
    assert run.data.params["train.epochs"] == "1"  # explicit overrides win over the name


@pytest.mark.parametrize(("override", "needle"), [
    ("scale=0", "scale=0 must be a positive integer"),
    ("batch_size=-2", "batch_size=-2 must be a positive integer"),
    ("imagesize=0", "imagesize=0 must be a positive integer"),
    ("gpus=0", "gpus=0 must be a positive integer"),
    ("train.epochs=0", "train.epochs=0 must be a positive integer"),
    ("lr=abc", "lr=abc must be a positive number"),
    ("lr=0", "lr=0 must be a positive number"),
    ("train.milestones=[4]", "train.milestones and train.lr_factors must have the same length"),
])
def test_values_that_cannot_train_are_config_errors(override: str, needle: str):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate_config(naming.compose_config([override]))


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), [  # a codec error and an engine ConfigError (the rules: above)
    (["name=camvid.scratch.imagesize321.dense30k48.newdid7"], "'newdid7'"),
    (["scale=0"], "scale=0 must be a positive integer"),
])
def test_bad_input_ends_with_one_line_and_no_run(store: str, tmp_path: Path, args: list[str], needle: str):
    result = _sweep(*args, cwd=tmp_path, uri=store)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "ConfigError" not in errors[0]  # the problem, not a type
    assert _runs(store) == []


@pytest.mark.slow
def test_unwritable_store_is_named(tmp_path: Path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    uri = f"sqlite:///{not_a_dir / 'mlflow.db'}"
    result = _sweep("train.epochs=1", cwd=tmp_path, uri=uri)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and uri in errors[0], result.stderr[-2000:]


@pytest.mark.slow
def test_unknown_config_group_option_is_rejected(tmp_path: Path, store: str):
    result = _sweep("backbone=dense99k12", cwd=tmp_path, uri=store)  # no depth 99 (any growth K is an option)
    assert result.returncode == 2 and "dense99k12" in result.stderr
    assert _runs(store) == []
