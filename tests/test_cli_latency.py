"""Start-up and help: the commands a person waits on import neither torch nor MLflow; the help
lists what conf/ holds (sweeper/cli_help.py, conf/hydra/help/segsweep.yaml, bench/cli_latency.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli_latency
from sweeper import cli_help
from tests.conftest import REPO, subprocess_env

HEAVY = ("torch", "mlflow", "optuna", "pandas")


def _imported(args: list[str], cwd: Path) -> tuple[str, set[str]]:
    """stdout of ``python -X importtime ARGS`` and the top-level packages it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True,
                          env=subprocess_env(PYTHONPATH=str(REPO)), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    return done.stdout, modules


def _conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    for path in ("backbone/_densenet.yaml", "backbone/dense30k12.yaml", "backbone/resnet50.yaml",
                 "dataset/voc.yaml", "hydra/help/segsweep.yaml", "empty/README.md"):
        (conf / path).parent.mkdir(parents=True, exist_ok=True)
        (conf / path).write_text("{}\n")
    return conf


def test_groups_leave_out_internal_files_and_hydra_groups(tmp_path: Path):
    conf = _conf(tmp_path)
    assert cli_help.group_options(conf) == {"backbone": ["dense30k12", "resnet50"], "dataset": ["voc"]}
    assert cli_help.format_groups(conf).splitlines() == ["  backbone: dense30k12, resnet50", "  dataset:  voc"]


def test_the_real_groups_are_the_codecs_with_the_generated_backbones_in_one_phrase():
    groups = cli_help.group_options()
    assert groups["backbone"] == ["resnet101", "resnet50", "dense{30,42,121}k{1..128}"]
    assert "synthetic" in groups["dataset"] and "hydra" not in groups


def test_short_keys_come_from_sweep_yaml_with_their_comments(tmp_path: Path):
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text("defaults:\n  - dataset: voc\n  - _self_\n\nseed: 0\nscale: ${dataset.scale}   # repeats\n"
                          "device: auto   # auto | cpu\nhydra:\n  job:\n    chdir: false\n")
    assert cli_help.short_keys(sweep_yaml) == [("seed", "0", ""), ("scale", "= dataset.scale", "repeats"),
                                               ("device", "auto", "auto | cpu")]
    text = cli_help.format_short_keys(sweep_yaml)
    assert text.splitlines()[1] == "  scale   = dataset.scale  repeats"


def test_a_dollar_in_a_comment_is_escaped_for_hydras_template(tmp_path: Path):
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text("root: data   # default $SEGSWEEP_DATA\n")
    assert "$$SEGSWEEP_DATA" in cli_help.format_short_keys(sweep_yaml)


def test_every_short_key_of_the_real_sweep_yaml_is_listed():
    keys = [k for k, _, _ in cli_help.short_keys()]
    assert {"name", "seed", "scale", "imagesize", "lr", "batch_size", "gpus", "init", "output_root"} <= set(keys)


def test_the_bench_ratio_is_the_worst_command_over_the_bare_app():
    times = {"bare": [1.0, 2.0, 1.0], "a": [1.5, 1.5, 9.0], "b": [3.0, 0.5, 2.5]}
    assert cli_latency.ratios(times) == {"a": 1.5, "b": 2.5}
    rounds = []
    cli_latency.measure({k: [k] for k in ("x", "y", "z")}, 3, {}, run=lambda cmd, env: rounds.append(cmd[0]) or 0.0)
    assert rounds == ["x", "y", "z", "x", "y", "z", "y", "z", "x", "z", "x", "y"]  # warm-up, then rotated rounds


@pytest.mark.slow
def test_help_is_segsweeps_and_imports_neither_torch_nor_mlflow(tmp_path: Path):
    text, modules = _imported([str(REPO / "sweep.py"), "dataset=camvid", "--help"], tmp_path)
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert "python sweep.py -m backbone=" in text and "+search=" in text and "name=<notes name>" in text
    groups = text.split("== Config groups")[1].split("== Short keys")[0]
    assert "dense{30,42,121}k{1..128}" in groups and "resnet101" in groups  # generated and file options
    assert "_densenet" not in groups and "_resnet" not in groups
    assert "  scale        = dataset.scale" in text and "  output_root  outputs" in text
    assert "experiment camvid" in text and "outputs/runs/<dataset>/<canonical name>--<config hash>/" in text
    assert "--cfg job --resolve" in text


@pytest.mark.slow
@pytest.mark.parametrize("args", [["sweep.py", "--cfg", "job", "--resolve"],
                                  ["-m", "sweeper.naming", "hash", cli_latency.NOTES_NAME]],
                         ids=["cfg-job", "naming-hash"])
def test_inspecting_commands_import_neither_torch_nor_mlflow(args: list[str], tmp_path: Path):
    if args[0] == "sweep.py":
        args = [str(REPO / "sweep.py"), *args[1:]]
    text, modules = _imported(args, tmp_path)
    assert text.strip() and not modules & set(HEAVY), modules & set(HEAVY)
    if "--resolve" in args:
        assert "${" not in text and "scale: 1" in text  # resolved, not `scale: ${dataset.scale}`


# ---------------------------------------------------------------- the fast tier's rule (tests/conftest.py)
TIER_MODULE = '''
import subprocess, sys

def _helper():
    return subprocess.run([sys.executable, "-c", "pass"])

def _indirect():
    return _helper()

def test_calls_a_helper():
    _indirect()

def test_trains():
    from engine.train import train
    train(None)

def test_pure():
    model = object()
    model.train()  # a method called train is not training
    return "subprocess is only a word here"
'''


def _tier_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "tier_probe.py").write_text(TIER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("tier_probe")


def test_a_test_is_slow_when_it_or_a_helper_starts_a_process_or_trains(tmp_path: Path, monkeypatch):
    from tests.conftest import starts_process_or_trains

    probe = _tier_module(tmp_path, monkeypatch)
    assert starts_process_or_trains(probe.test_calls_a_helper, probe)
    assert not starts_process_or_trains(probe.test_calls_a_helper, probe, depth=1)  # the helper is 2 calls away
    assert starts_process_or_trains(probe.test_trains, probe)
    assert not starts_process_or_trains(probe.test_pure, probe)


def test_the_suite_marks_the_process_starting_tests_slow(request: pytest.FixtureRequest):
    from tests.conftest import SLOW_MODULES

    assert "test_sweeps.py" in SLOW_MODULES
    assert request.node.get_closest_marker("slow") is None  # this one starts nothing: in the fast tier


def test_the_fast_tier_forbids_python_processes_and_scripts_not_git():
    from tests.conftest import is_heavy_command

    assert is_heavy_command([sys.executable, "-c", "pass"]) and is_heavy_command(["python3", "sweep.py"])
    assert is_heavy_command("scripts/mlflow-server.sh --port 5000") and is_heavy_command(["/usr/bin/env", "x.py"])
    assert not is_heavy_command(["git", "rev-parse", "HEAD"]) and not is_heavy_command("nvidia-smi -L")
