"""What a researcher plausibly mistypes: each ends with one ``error:`` line naming the problem and the
fix, exit status 2, no run in the store, no file rewritten. The command line runs in-process here
(``sweep.py``'s real entry point with its argv; one import of torch/Hydra/MLflow for all cases) and
once as a real process."""

from __future__ import annotations

import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from engine import guards
from tests.conftest import FAST, REPO, subprocess_env

NO_CUDA = not torch.cuda.is_available()
CASES = [
    (["lr=abc"], "lr=abc must be a positive number (e.g. `lr=1e-3`)"),
    (["lr=-1"], "lr=-1 must be a positive number"),
    (["seed=x"], "seed=x must be a non-negative integer (e.g. `seed=1`)"),
    (["scale=0"], "scale=0 must be a positive integer (e.g. `scale=1`)"),
    (["scale=1.5"], "scale=1.5 must be a positive integer"),
    (["imagesize=-1"], "imagesize=-1 must be a positive integer or [height, width]"),
    (["batch_size=0"], "batch_size=0 must be a positive integer"),
    (["train.epochs=0"], "train.epochs=0 must be a positive integer"),
    (["dataset=nope"], "Could not find 'dataset/nope': choose one of aerial, camvid, cityscapes, synthetic, voc"),
    (["backbone=dense99k12"], "Could not find 'backbone/dense99k12': choose one of "),
    (["trian.epochs=1"], "Could not override 'trian.epochs'. (Key 'trian' is not in struct"),
    (["lr=[1"], "cannot parse the override 'lr=[1' (no viable alternative at input '[1'): write key=value"),
    pytest.param(["device=cuda"], "device=cuda but CUDA is not available here: use device=cpu or device=auto",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")),
    pytest.param(["gpus=2"], "gpus=2 but 0 GPU(s) are visible here: set gpus=1",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")),
    (["-m", "launcher=gpus", "hydra.launcher.workers=0"], "hydra.launcher.workers=0: a pool needs a whole number of workers"),
    (["-m", "launcher=gpus", "launcher.workers=2"], "the launcher's options are Hydra's now, write `hydra.launcher.workers=...`"),
    (["-m", "launcher=gpus", "hydra.launcher.workers=two"], "Value 'two' of type 'str' could not be converted to Integer): give a value of the option's type"),
]


def flags(args: tuple[str, ...]) -> list[str]:
    return [a for a in args if a.startswith("-")]


def values(args: tuple[str, ...]) -> list[str]:
    return [a for a in args if not a.startswith("-")]


@pytest.fixture()
def cli(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run ``sweep.py ARGS`` in this process; returns (exit status, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGSWEEP_LAUNCH_DIR", str(tmp_path))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # restored afterwards (the entry point sets it)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def run(*args: str) -> tuple[int, str]:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", [str(REPO / "sweep.py"), *flags(args), *FAST, *values(args), f"output_root={tmp_path / 'out'}"])
        with pytest.raises(SystemExit) as ended:
            runpy.run_path(str(REPO / "sweep.py"), run_name="__main__")
        return ended.value.code, capsys.readouterr().err

    yield run
    for signum, handler in handlers.items():  # the entry point installed its own
        signal.signal(signum, handler)


def _no_runs(store: str) -> bool:
    if not Path(store.removeprefix("sqlite:///")).exists():  # not even created
        return True
    client = MlflowClient(store)
    return all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


@pytest.mark.parametrize(("args", "needle"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_ends_with_one_line_exit_2_and_nothing_recorded(cli, store: str, tmp_path: Path,
                                                                   args: list[str], needle: str):
    code, stderr = cli(*args)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and needle in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr
    assert _no_runs(store)
    assert not (tmp_path / "results").exists()  # nothing (re)written


@pytest.mark.slow
def test_a_bad_value_from_a_real_command_line(store: str, tmp_path: Path):
    result = subprocess.run([sys.executable, str(REPO / "sweep.py"), "trian.epochs=1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith("error: Could not override 'trian.epochs'.")


def test_the_device_guard_reads_what_is_visible():
    cfg = {"device": "cuda", "gpus": 1}
    guards.check_devices(cfg, cuda_available=True, cuda_count=1)
    with pytest.raises(guards.ConfigValueError, match="device=cuda but CUDA is not available"):
        guards.check_devices(cfg, cuda_available=False, cuda_count=0)
    with pytest.raises(guards.ConfigValueError, match="gpus=4 but 2 GPU"):
        guards.check_devices({"device": "auto", "gpus": 4}, cuda_available=True, cuda_count=2)
    with pytest.raises(guards.ConfigValueError, match="device=gpu is not a device"):
        guards.check_devices({"device": "gpu", "gpus": 1}, cuda_available=True, cuda_count=2)


def test_an_exploding_loss_warns_once_past_the_factor():
    watch = guards.LossWatch(factor=1e6)
    assert watch.check(2.0, 1, 1) is None and watch.check(2e6, 1, 2) is None  # 1e6 x: not yet
    warning = watch.check(2.1e6, 1, 3)
    assert warning.startswith("training loss 2.1e+06 at epoch 1, step 3 is more than 1e+06 x its first value 2")
    assert watch.check(1e13, 1, 4) is None  # once


@pytest.mark.slow
def test_an_exploding_loss_is_reported_and_tagged_on_the_run(store: str, tmp_path: Path):
    from engine.callbacks import Callback
    from engine.train import train
    from sweeper import naming, tracking

    warnings: list[tuple[str, str]] = []

    class Seen(Callback):
        def on_warning(self, key: str, message: str) -> None:
            warnings.append((key, message))

    cfg = naming.compose_config([*FAST, "train.epochs=1", "+train.explode_factor=1.5", "lr=10"])
    train(cfg, [Seen()])  # a real (tiny) training loop whose loss grows past 1.5 x its first value
    assert [key for key, _ in warnings] == ["loss_exploded"]
    assert warnings[0][1].startswith("training loss ") and "its first value" in warnings[0][1]
    client = MlflowClient(store)
    run_id = client.create_run(tracking.ensure_experiment(store, "x")).info.run_id  # a store from the template
    tracking.MlflowCallback(client, run_id).on_warning(*warnings[0])
    assert client.get_run(run_id).data.tags["segsweep.warning.loss_exploded"] == warnings[0][1]


def test_an_unreachable_tracking_server_fails_in_seconds_with_one_line(cli, monkeypatch: pytest.MonkeyPatch):
    import socket
    import time

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    code, stderr = cli("train.epochs=1")
    assert time.monotonic() - started < 30
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert f"cannot reach the tracking server {uri} (connection refused)" in errors[0]
    assert "`python -m sweeper server`" in errors[0]
