"""What a run records: params once each with the effective values, metrics named by their split,
params_M once however often a run resumes (a real sqlite MLflow store, no training)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from engine.callbacks import LR_METRIC, split_metric
from sweeper import naming, tracking


@pytest.fixture(scope="module")
def params() -> dict[str, str]:
    cfg = naming.compose_config(["lr=1e30", "scale=3", "dataset.scale=5", "batch_size=2", "dataset.crop_size=48"])
    return tracking.run_params(cfg)


def test_short_keys_come_from_the_sweep_config():
    assert tracking.short_keys() == {"scale": "dataset.scale", "imagesize": "dataset.crop_size",
                                     "lr": "train.base_lr", "batch_size": "dataset.batch_size"}


def test_params_hold_the_effective_values_once(params: dict[str, str]):
    assert params["lr"] == "1e+30" and params["scale"] == "3" and params["batch_size"] == "2"
    assert params["imagesize"] == "48"
    for default_only in ("train.base_lr", "dataset.scale", "dataset.batch_size", "dataset.crop_size"):
        assert default_only not in params, default_only
    assert params["dataset.name"] == "synthetic" and params["train.epochs"] == "10" and params["seed"] == "0"


def test_bookkeeping_is_no_param(params: dict[str, str]):
    for key in params:
        head = key.split(".", 1)[0]
        assert head not in ("tracking", "launcher", "optuna", "sweep", "hydra"), key
        assert key not in ("name", "output_root", "force", "annotations"), key
        assert key not in ("dataset.reader", "dataset.tokens", "dataset.order"), key
    cfg = naming.compose_config(["+optuna.storage=sqlite:///x.db", "+sweep.id=abc", "+force=true"])
    assert not [k for k in tracking.run_params(cfg) if k.startswith(("optuna", "sweep", "force"))]


def test_run_name_shows_the_seed_and_tags_the_split():
    cfg = naming.compose_config(["seed=3", "dataset=camvid"])
    name = naming.compose(cfg)
    tags = tracking.run_tags(cfg, name, "h", "k")
    assert tags["mlflow.runName"] == f"{name} seed=3" and tags["segsweep.name"] == name
    assert tags[tracking.EVAL_SPLIT_TAG] == "test" and tags[tracking.OBJECTIVE_TAG] == "final_test_mIoU"


def test_metric_names_say_the_split():
    assert split_metric("test") == "test_mIoU" and split_metric("val", "IoU/road") == "val_IoU/road"
    assert split_metric("test", final=True) == "final_test_mIoU" and LR_METRIC != "lr"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    """One sqlite store for the module's tests: (client, experiment id)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    return MlflowClient(uri), tracking.ensure_experiment(uri, "t")


def test_callback_logs_params_m_once_and_each_epoch_once(store: tuple[MlflowClient, str]):
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    info = {"params_M": 1.23456, "steps_per_epoch": 2, "device": "cpu", "history": []}
    epoch_1 = {"train_loss": 1.0, LR_METRIC: 1e-3, "test_mIoU": 10.0}
    callback = tracking.MlflowCallback(client, run_id)
    callback.on_train_start(info)
    callback.on_epoch_end(1, epoch_1)
    resumed = tracking.MlflowCallback(client, run_id)  # a re-run resuming after epoch 1
    resumed.on_train_start({**info, "history": [epoch_1]})
    resumed.on_epoch_end(1, epoch_1)
    resumed.on_epoch_end(2, {**epoch_1, "test_mIoU": 20.0})
    resumed.on_train_end({**epoch_1, "test_mIoU": 20.0, "final_test_mIoU": 21.0, "params_M": 1.23456})
    history = {key: [m.step for m in client.get_metric_history(run_id, key)]
               for key in ("params_M", "test_mIoU", LR_METRIC, "final_test_mIoU")}
    assert history == {"params_M": [0], "test_mIoU": [1, 2], LR_METRIC: [1, 2], "final_test_mIoU": [2]}
    assert client.get_run(run_id).data.metrics["params_M"] == 1.2346


def test_result_value_reads_the_objective_the_run_names(store: tuple[MlflowClient, str]):
    client, experiment = store
    run_id = client.create_run(experiment, tags={tracking.OBJECTIVE_TAG: "final_test_mIoU"}).info.run_id
    client.log_metric(run_id, "final_test_mIoU", 61.0)
    client.log_metric(run_id, "final_val_mIoU", 1.0)
    legacy = client.create_run(experiment).info.run_id  # recorded before the objective tag
    client.log_metric(legacy, "final_val_mIoU", 52.0)
    assert tracking.result_value(client.get_run(run_id)) == 61.0
    assert tracking.result_value(client.get_run(legacy)) == 52.0


def test_sweep_summary_shows_each_seed_and_the_split_of_its_score():
    from hydra.core.utils import JobReturn, JobStatus

    from sweeper.launch import summary

    def ret(seed: int, value: float) -> JobReturn:
        job = JobReturn(status=JobStatus.COMPLETED)
        job._return_value = {"status": "FINISHED", "name": "n", "run_id": f"r{seed}", "value": value,
                             "seed": seed, "split": "test"}
        return job

    header, _, first, second, _ = summary([ret(1, 50.0), ret(2, 51.0)]).splitlines()
    assert "seed" in header.split() and first.split()[1:5] == ["FINISHED", "n", "1", "r1"]
    assert second.split()[3] == "2" and "51.00 (test)" in second


def test_status_row_shows_the_seed_and_the_split(store: tuple[MlflowClient, str]):
    from sweeper.status import cell_row

    client, experiment = store
    tags = {"segsweep.run_key": "k@h", "segsweep.seed": "4", tracking.EVAL_SPLIT_TAG: "test"}
    run_id = client.create_run(experiment, tags=tags).info.run_id
    client.log_metric(run_id, "test_mIoU", 33.0, step=1)
    client.log_metric(run_id, "val_mIoU", 99.0, step=1)  # not the split this run evaluates
    cell = {"name": "n", "run_key": "k@h", "uri": client.tracking_uri, "experiment": "t", "seed": 0}
    row = cell_row(cell)
    assert row["seed"] == "4" and row["mIoU"] == "33.00 (test)" and row["run id"] == run_id
