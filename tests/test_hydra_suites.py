"""Hydra's own plugin suites (hydra/test_utils/launcher_common_tests.py), instantiated for each
segsweep launcher as hydra-submitit-launcher and hydra-joblib-launcher instantiate them, plus the
app cases of issue 14 with a small app of the tests' own (tests/apps/objective.py, not sweep.py).

segsweep_local runs in this process (fast tier); segsweep_pool starts worker processes and
segsweep_slurm runs on submitit's local executor (``hydra.launcher.executor=local``): both slow.
The real cluster runs the same suite in tests/slurm/test_hydra_suite_cluster.py (REQUIRE_SLURM=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from omegaconf import OmegaConf

from hydra_plugins.segsweep_optuna.sweeper import SegsweepOptunaSweeper
from hydra_plugins.segsweep_pool import SegsweepLocalLauncher, SegsweepPoolLauncher
from hydra_plugins.segsweep_pool.sweeper import SegsweepBasicSweeper
from hydra_plugins.segsweep_slurm import SegsweepSlurmLauncher
from sweeper.bookkeeping import format_value, summary

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "objective.py"

#: Hydra's suites run many tiny jobs; those that start processes per job are `conformance` (a CI step of
#: their own, `python -m pytest -m conformance`), so the README's suite keeps its time.
CONFORMANCE = (pytest.mark.slow, pytest.mark.conformance)
#: (launcher, overrides) as the suites take them
LAUNCHERS = [
    pytest.param("segsweep_local", [], id="local"),
    pytest.param("segsweep_pool", ["hydra.launcher.workers=2"], id="pool", marks=CONFORMANCE),
    pytest.param("segsweep_slurm", ["hydra.launcher.executor=local", "hydra.launcher.gpus_per_node=0",
                                    "hydra.launcher.timeout_min=2"], id="slurm-local", marks=CONFORMANCE),
]
FLAGS = {"segsweep_local": [], "segsweep_pool": ["hydra.launcher.workers=2"],
         "segsweep_slurm": ["hydra.launcher.executor=local", "hydra.launcher.gpus_per_node=0",
                            "hydra.launcher.timeout_min=1"]}


@pytest.fixture(autouse=True)
def _subprocesses_import_this_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes and the suites' task scripts import this checkout's plugins."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture(autouse=True)
def _hydra_version_base_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's suites assume a fresh process: no version_base yet (an earlier test's
    ``initialize_config_dir(version_base="1.3")`` sets it process-wide and turns off the job chdir)."""
    from hydra import version

    monkeypatch.setattr(version.VersionBase.instance(), "version_base", version._UNSPECIFIED_)


@pytest.mark.parametrize("cls", [SegsweepLocalLauncher, SegsweepPoolLauncher, SegsweepSlurmLauncher])
def test_discovery_of_the_launchers(cls: type) -> None:
    assert cls.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("cls", [SegsweepBasicSweeper, SegsweepOptunaSweeper])
def test_discovery_of_the_sweepers(cls: type) -> None:
    assert cls.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize("launcher_name, overrides", LAUNCHERS)
class TestSegsweepLaunchers(LauncherTestSuite):
    """Hydra's LauncherTestSuite with Hydra's basic sweeper."""


@pytest.mark.parametrize("launcher_name, overrides", [("segsweep_local", ["hydra/sweeper=segsweep_basic"])])
class TestSegsweepLaunchersWithSegsweepSweeper(LauncherTestSuite):
    """Hydra's LauncherTestSuite with segsweep's grid sweeper (one composition per job; through the
    pool and SLURM launchers it runs Hydra's BatchedSweeperTestSuite below, which costs less time)."""


@pytest.mark.parametrize("launcher_name, overrides", [
    pytest.param(p.values[0], ["hydra/sweeper=segsweep_basic", "hydra.sweeper.max_batch_size=2", *p.values[1]],
                 id=p.id, marks=p.marks)
    for p in LAUNCHERS])
class TestSegsweepSweeperBatches(BatchedSweeperTestSuite):
    """Hydra's BatchedSweeperTestSuite: segsweep's grid sweeper in batches of 2 through each launcher."""


@pytest.mark.slow
@pytest.mark.conformance
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    pytest.param({}, ["-m", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled",
                      f"hydra/launcher={name}", *flags], id=name.removeprefix("segsweep_"))
    for name, flags in FLAGS.items()])
class TestSegsweepLaunchersIntegration(IntegrationTestSuite):
    """Hydra's IntegrationTestSuite: real `python task.py -m` processes per launcher."""


# --------------------------------------------------------------------------------------------------
# the summary of any return value


@pytest.mark.parametrize("value, shown", [(0.5, "0.50"), (3, "3.00"), ("foo", "foo"), (None, ""),
                                          (True, "True"), ({"a": 1}, "{'a': 1}"), ("a\nb", "a ...")])
def test_summary_formats_any_return_value(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_summary_of_a_string_returning_job_names_its_value_column_for_what_it_is() -> None:
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=["x=1"], status=JobStatus.COMPLETED)
    ret.return_value = "foo"
    table = summary([ret])
    assert "foo" in table and "value" in table.splitlines()[0] and "mIoU" not in table


# --------------------------------------------------------------------------------------------------
# the app cases: an app of its own with `launcher:` and `tracking:` keys


def _run_app(cwd: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(APP), "-m", f"hydra.sweep.dir={cwd / 'sweep'}", *overrides]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


APP_KEYS = {"x", "y", "z", "error", "result", "record", "launcher", "tracking"}
#: job dirs named by the job's overrides (Hydra's override_dirname), the record file left out
BY_OVERRIDES = ("hydra.sweep.subdir=${hydra.job.override_dirname}",
                "hydra.job.config.override_dirname.exclude_keys=[record]")


def _job_dirs(cwd: Path) -> list[str]:
    return sorted(p.name for p in (cwd / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_pool_options_stay_out_of_the_app_and_its_own_keys_are_its_own(tmp_path: Path) -> None:
    """hydra/launcher=segsweep_pool with its options under hydra.launcher.*: the jobs' configs and
    overrides hold none of them, the app's own `launcher`/`tracking` keys are untouched, no MLflow
    store appears (the app is not segsweep's), and a string return value is summarised."""
    record = tmp_path / "jobs.jsonl"
    proc = _run_app(tmp_path, "hydra/launcher=segsweep_pool", "hydra.launcher.workers=2", "x=1,2",
                    "result=done", f"record={record}", *BY_OVERRIDES)
    jobs = _records(record)
    assert sorted(j["cfg"]["x"] for j in jobs) == [1, 2]
    assert all(j["cfg"]["launcher"] == "mine" and j["cfg"]["tracking"] is True for j in jobs)
    assert all(set(j["cfg"]) == APP_KEYS for j in jobs)
    assert _job_dirs(tmp_path) == ["result=done,x=1", "result=done,x=2"]
    for job_dir in _job_dirs(tmp_path):
        given = OmegaConf.load(tmp_path / "sweep" / job_dir / ".hydra" / "overrides.yaml")
        assert not [o for o in given if "launcher" in o or "workers" in o]
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "sweep" / "segsweep_cells.json").exists()
    assert "done" in proc.stdout and "2 finished" in proc.stdout


# --------------------------------------------------------------------------------------------------
# the Optuna sweeper with an app of its own


def _search(cwd: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run_app(cwd, "hydra/sweeper=segsweep_optuna", "hydra.sweeper.direction=minimize",
                    f"hydra.sweeper.storage=sqlite:///{cwd / 'optuna.db'}", *overrides, check=check)


@pytest.mark.slow
def test_optuna_trials_in_parallel_through_the_pool_with_their_study_out_of_the_job(tmp_path: Path) -> None:
    """n_jobs=2 through the pool for an app without MLflow: all trials run (no lock contention),
    their study coordinates come in the environment, never in the config or override_dirname, and
    a sampled float is trained exactly as rounded to 3 significant digits."""
    import optuna

    record = tmp_path / "trials.jsonl"
    _search(tmp_path, "hydra/launcher=segsweep_pool", "hydra.launcher.workers=2", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random", "x=interval(-2.0, 2.0)", "y=0",
            f"record={record}", *BY_OVERRIDES)
    trials = _records(record)
    assert len(trials) == 4
    for trial in trials:
        assert set(trial["cfg"]) == APP_KEYS
        assert set(trial["env"]) == {"SEGSWEEP_OPTUNA_STORAGE", "SEGSWEEP_OPTUNA_STUDY", "SEGSWEEP_OPTUNA_TRIAL"}
        x = trial["cfg"]["x"]
        assert x == float(f"{x:.3g}"), x
    assert _job_dirs(tmp_path) == sorted(f"x={t['cfg']['x']!r},y=0" for t in trials)
    study_name = trials[0]["env"]["SEGSWEEP_OPTUNA_STUDY"]
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 4
    trained = sorted(t["cfg"]["x"] for t in trials)
    assert sorted(t.user_attrs["segsweep.params"]["x"] for t in study.trials) == trained


def test_sampler_is_a_config_group() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "tests" / "apps" / "conf"), version_base="1.3"):
        cfg = compose("objective", overrides=["hydra/sweeper=segsweep_optuna", "hydra/sweeper/sampler=random"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.sampler.name == "random"
    assert OmegaConf.select(cfg, "hydra.runtime.choices")["hydra/sweeper/sampler"] == "random"


@pytest.mark.parametrize("short, entry, options", [
    ("local", "sweep_local", {"detach": False, "cell_info": "sweeper.bookkeeping.cell_info"}),
    ("gpus", "sweep_pool", {"workers": 2, "gpus_per_job": 1, "cell_info": "sweeper.bookkeeping.cell_info"}),
    ("slurm", "sweep_slurm", {"executor": "slurm", "cell_info": "sweeper.slurm.cell_info"}),
])
def test_the_launcher_group_of_sweep_py_is_the_short_form_of_the_entries(short: str, entry: str,
                                                                         options: dict) -> None:
    """`launcher=gpus` selects hydra/launcher=sweep_pool (segsweep_pool with segsweep's options under
    hydra.launcher); the job's config holds no `launcher` key; another hydra/launcher replaces it whole."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("sweep", overrides=[f"launcher={short}"], return_hydra_config=True)
        basic = compose("sweep", overrides=[f"launcher={short}", "hydra/launcher=basic"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == entry
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.segsweep_")
    assert {k: cfg.hydra.launcher[k] for k in options} == options
    assert "launcher" not in cfg
    assert set(basic.hydra.launcher) == {"_target_"}
