"""sweeper.launch, the one launch skeleton of the local, pool and SLURM launchers: options derived from
the launcher's dataclass (docs/architecture.md's "A launcher option" recipe), cells left out through
sweeper.task.decide, the one manifest format, arrays split at MaxArraySize, and launcher=slurm on a
machine without SLURM's tools."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from hydra_plugins.segsweep_pool import SegsweepPoolLauncherConf
from hydra_plugins.segsweep_slurm import SegsweepSlurmLauncher, SegsweepSlurmLauncherConf
from sweeper import bookkeeping, launch_slurm
from sweeper.errors import UserError
from sweeper.launch import Batch, left_out
from tests.conftest import FAST

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------
# the recipe: a launcher option is a field of the launcher's dataclass, nothing else


@dataclasses.dataclass
class PoolWithOption(SegsweepPoolLauncherConf):
    my_option: int = 7  # the recipe's one step


@dataclasses.dataclass
class SlurmWithOption(SegsweepSlurmLauncherConf):
    my_option: int = 7  # the recipe's one step


@pytest.mark.parametrize("conf", [PoolWithOption, SlurmWithOption])
def test_a_new_field_of_the_launchers_dataclass_reaches_its_options(conf: type) -> None:
    """docs/architecture.md, "A launcher option": add a field to the dataclass, and
    ``hydra.launcher.<field>`` reaches ``launcher.options`` (what sweeper.launch and the backends
    read); for SLURM it never goes to submitit/sbatch, while submitit's own options all do."""
    from hydra import compose, initialize_config_dir

    name = f"test_{conf.__name__.lower()}"
    ConfigStore.instance().store(group="hydra/launcher", name=name, node=conf, provider="tests")
    with initialize_config_dir(config_dir=str(REPO / "tests" / "apps" / "conf"), version_base="1.3"):
        cfg = compose("objective", overrides=[f"hydra/launcher={name}", "hydra.launcher.my_option=3"],
                      return_hydra_config=True)
        default = compose("objective", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert launcher.options["my_option"] == 3 and instantiate(default.hydra.launcher).options["my_option"] == 7
    assert {"detach", "cell_info"} <= set(launcher.options)
    if isinstance(launcher, SegsweepSlurmLauncher):
        assert "my_option" not in launcher.params and not set(launcher.options) & set(launcher.params)
        assert set(launcher.params) == set(SegsweepSlurmLauncher.SUBMITIT_OPTIONS)
        assert set(launcher.options) == {"detach", "cell_info", "executor", "max_array_size", "my_option"}


def test_a_key_that_is_no_field_is_refused_by_the_schema() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    with initialize_config_dir(config_dir=str(REPO / "tests" / "apps" / "conf"), version_base="1.3"), \
            pytest.raises(ConfigCompositionException):
        compose("objective", overrides=["hydra/launcher=segsweep_slurm", "hydra.launcher.my_typo=3"],
                return_hydra_config=True)


# --------------------------------------------------------------------------------------------------
# cells left out before launch: sweeper.task.decide on what cell_info found


@pytest.mark.parametrize("cell, launched", [
    ({}, True),  # no run of the key yet
    ({"previous": "FINISHED"}, False),
    ({"previous": "FINISHED", "force": True}, True),
    ({"previous": "FAILED"}, True),
    ({"previous": "KILLED"}, True),
    ({"previous": "RUNNING", "alive": True}, False),  # running elsewhere: left alone
    ({"previous": "RUNNING", "alive": True, "force": True}, False),  # not even force disturbs it
    ({"previous": "RUNNING", "alive": False}, True),  # its process is gone: taken over by the job
])
def test_cells_are_left_out_as_decide_says(cell: dict, launched: bool) -> None:
    batch = Batch(jobs=[(4, ["x=1"])], configs=[OmegaConf.create()], cells=[{"name": "n", **cell}])
    skipped = left_out(batch)
    assert (4 not in skipped) is launched
    if not launched:
        value = skipped[4].return_value
        assert value["status"] == "SKIPPED" and value["name"] == "n"
        assert ("reason" in value) is (cell["previous"] == "RUNNING")


# --------------------------------------------------------------------------------------------------
# the one manifest


def _config(*overrides: str):
    return OmegaConf.create({"hydra": {"overrides": {"task": list(overrides)}}})


def test_the_manifest_merges_a_rerun_of_the_same_sweep_by_job_number(tmp_path: Path) -> None:
    config = _config("x=1,2")
    bookkeeping.write_manifest(tmp_path, config, [
        {"job_num": 1, "overrides": ["x=2"], "slurm_job_id": "5_1"},
        {"job_num": 0, "overrides": ["x=1"], "slurm_job_id": "5_0"}], {"u|e": "p1"})
    # a re-run submits job 1 again and leaves job 0 out (FINISHED): job 0 keeps its job id
    bookkeeping.write_manifest(tmp_path, config, [
        {"job_num": 0, "overrides": ["x=1"], "previous": "FINISHED"},
        {"job_num": 1, "overrides": ["x=2"], "slurm_job_id": "6_0"}], {"u|e": "p1"})
    data = bookkeeping.read_manifest(tmp_path)
    assert data["sweep_id"] == bookkeeping.sweep_id(config) and data["parents"] == {"u|e": "p1"}
    assert [(c["job_num"], c.get("slurm_job_id"), c.get("previous")) for c in data["cells"]] == [
        (0, "5_0", "FINISHED"), (1, "6_0", None)]
    # another sweep in the same dir: nothing of the old one is merged
    bookkeeping.write_manifest(tmp_path, _config("x=3"), [{"job_num": 0, "overrides": ["x=3"]}], {})
    assert bookkeeping.manifest_cells(tmp_path) == [{"job_num": 0, "overrides": ["x=3"]}]


def test_an_older_slurm_manifest_still_reads(tmp_path: Path) -> None:
    assert bookkeeping.read_manifest(tmp_path) == {} and bookkeeping.manifest_cells(tmp_path) == []
    (tmp_path / bookkeeping.LEGACY_MANIFEST).write_text(json.dumps([{"job_num": 0, "slurm_job_id": "9_0"}]))
    assert bookkeeping.manifest_cells(tmp_path) == [{"job_num": 0, "slurm_job_id": "9_0"}]


# --------------------------------------------------------------------------------------------------
# SLURM arrays at lab size


@pytest.mark.parametrize("n, size, chunks", [
    (5, 2, [(0, 2), (2, 4), (4, 5)]), (4, 2, [(0, 2), (2, 4)]), (3, None, [(0, 3)]), (3, 1001, [(0, 3)]),
    (2500, 1001, [(0, 1001), (1001, 2002), (2002, 2500)]), (3, 0, [(0, 1), (1, 2), (2, 3)]), (0, 5, []),
])
def test_array_chunks_cover_every_cell_once_below_the_max(n: int, size: int | None, chunks: list) -> None:
    got = launch_slurm.array_chunks(n, size)
    assert [(r.start, r.stop) for r in got] == chunks
    assert [i for r in got for i in r] == list(range(n))


def test_max_array_size_is_read_from_scontrols_config_and_never_exceeded() -> None:
    text = "Configuration data as of ...\nMaxArraySize            = 1001\nMaxJobCount             = 10000\n"
    assert launch_slurm.parse_max_array_size(text) == 1001 and launch_slurm.parse_max_array_size("x = 1") is None
    assert launch_slurm.array_size(None, 1001) == 1001 and launch_slurm.array_size(100, 1001) == 100
    assert launch_slurm.array_size(5000, 1001) == 1001 and launch_slurm.array_size(None, None) is None
    with pytest.raises(UserError, match="max_array_size=0"):
        launch_slurm.array_size(0, 1001)


def test_a_sweep_larger_than_the_clusters_max_array_size_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch's array limit reads the cluster (here a reader that says MaxArraySize=2): a
    5-cell sweep goes out as 3 arrays, and hydra.launcher.max_array_size only ever lowers it."""
    monkeypatch.setattr(launch_slurm, "cluster_max_array_size", lambda: 2)

    class Launcher:
        def __init__(self, **options: object) -> None:
            self.options = options

    def limit(**options: object) -> int | None:
        return launch_slurm.Slurm(Launcher(**options)).array_limit()

    assert [len(r) for r in launch_slurm.array_chunks(5, limit(executor="slurm"))] == [2, 2, 1]
    assert limit(executor="slurm", max_array_size=100) == 2
    assert limit(executor="local", max_array_size=100) == 100  # submitit's local executor has no MaxArraySize


# --------------------------------------------------------------------------------------------------
# launcher=slurm without SLURM's tools


def test_the_missing_tools_are_named_with_the_ways_out() -> None:
    assert launch_slurm.missing_tools(lambda tool: None) == ["sbatch", "srun"]
    assert launch_slurm.missing_tools(lambda tool: None if tool == "srun" else "/usr/bin/" + tool) == ["srun"]
    launch_slurm.check_tools([])
    with pytest.raises(UserError) as error:
        launch_slurm.check_tools(["srun"])
    line = str(error.value)
    assert "\n" not in line and "srun is missing" in line
    assert "SLURM login node" in line and "launcher=local" in line and "launcher=gpus" in line


def _bin_without_slurm(tmp_path: Path, keep: tuple[str, ...]) -> Path:
    """A PATH dir with python (and ``keep`` of SLURM's tools) only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    for tool in keep:
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    return bin_dir


@pytest.mark.parametrize("keep, missing", [((), "sbatch, srun are missing"), (("sbatch",), "srun is missing")])
def test_launcher_slurm_without_slurm_is_one_line_exit_2_and_nothing_running(tmp_path: Path, keep: tuple,
                                                                            missing: str) -> None:
    bin_dir = _bin_without_slurm(tmp_path, keep)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PATH": str(bin_dir), "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    proc = subprocess.run([str(bin_dir / "python"), str(REPO / "sweep.py"), "-m", "seed=0,1", "launcher=slurm",
                           *FAST, f"output_root={tmp_path / 'out'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: launcher=slurm needs SLURM's sbatch and srun") and missing in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if r.data.tags.get("segsweep.kind") == "sweep"]
    assert [p.info.status for p in parents] == ["FAILED"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing submitted
