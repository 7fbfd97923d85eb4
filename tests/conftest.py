"""Shared fixtures: a private MLflow store per test, configs composed from the repo's conf/."""

from __future__ import annotations

import inspect
import multiprocessing.process
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: One torch (OpenMP) thread in each test process and in every process a test starts, unless set:
#: the tests run in parallel, a worker per core, and threads beyond the cores spin-wait on each
#: other (measured on 2 cores beside one busy test: a 2-step sweep.py run took 31-39 s of CPU with
#: 2 threads, 17-18 s with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")


REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "tests" / "data" / "deeplab-notes.md"

#: Overrides that make a synthetic run take seconds: tiny data, two epochs of two steps.
FAST = ["dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32", "dataset.crop_size=32",
        "batch_size=4", "train.epochs=2", "train.max_steps_per_epoch=2"]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite MLflow store; also the default for code that reads MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def notes_names() -> list[str]:
    """Every experiment name in the first column of the notes' tables (dotted, no spaces)."""
    pattern = re.compile(r"^([A-Za-z][\w.()=-]*\.[\w.()=-]+) *\|", re.MULTILINE)
    return pattern.findall(NOTES.read_text())


def wait_until(predicate: Callable[[], object], what: str = "condition", *, timeout: float = 120.0,
               poll: float = 0.5) -> None:
    """Poll ``predicate`` every ``poll`` s until it is true; fail the test after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what} ({timeout:.0f} s)"
        time.sleep(poll)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    return env


# ---------------------------------------------------------------- the fast tier: `-m "not slow"`
#: test modules whose every test starts `sweep.py` processes, servers or clusters
SLOW_MODULES = frozenset({"test_sweeps.py", "test_server.py", "test_postgres.py"})
#: fixtures that start processes, servers or clusters (other fixtures are judged by their source)
SLOW_FIXTURES = frozenset({"mlflow_server", "postgres_store", "slurm_cluster", "ranks"})
#: a call that starts a process or trains: in the test, or in a module-level helper it calls
_SLOW_CALL = re.compile(r"\bsubprocess\.(run|Popen|call|check_call|check_output)\b|\bPopen\(|\brun_job\("
                        r"|(?<![.\w])train\(|\.backward\(|\bsweep\.py\b|\bmp\.spawn\(|\bmultiprocessing\.|\.spawn\("
                        r"|\bnum_workers=[1-9]")  # a train step (backward) or DataLoader worker processes
_NAME = re.compile(r"\b[A-Za-z_]\w*\b")


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def starts_process_or_trains(func: object, module: object, depth: int = 3) -> bool:
    """Whether ``func``'s source, or that of a function of ``module`` it names (``depth`` levels),
    starts a process or trains (``_SLOW_CALL``)."""
    seen: set[str] = set()
    frontier = [func]
    for _ in range(depth + 1):
        names: set[str] = set()
        for f in frontier:
            text = _source(f)
            if _SLOW_CALL.search(text):
                return True
            names |= set(_NAME.findall(text))
        frontier = [getattr(module, n) for n in names - seen
                    if inspect.isfunction(getattr(module, n, None)) and getattr(module, n).__module__ == module.__name__]
        seen |= names
    return False


def is_slow(item: pytest.Item) -> bool:
    """The rule of the fast tier: a test is slow when marked, when its module or a fixture starts
    processes, or when it, a fixture or a helper of its module starts a process or trains."""
    if item.get_closest_marker("slow") or Path(str(item.fspath)).name in SLOW_MODULES:
        return True
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    func, module = getattr(item, "function", None), getattr(item, "module", None)
    if func is None or module is None:
        return False
    fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    own = [defs[-1].func for defs in fixtures.values() if defs and defs[-1].func.__module__ == module.__name__]
    return any(starts_process_or_trains(f, module) for f in [func, *own])


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core, at least 2 and at most 8 (the slow tier's tests wait on the
    processes, SLURM jobs and servers they start; more workers than cores stretch the timed waits of
    the fault tests); ``SEGSWEEP_TEST_WORKERS`` overrides."""
    wanted = os.environ.get("SEGSWEEP_TEST_WORKERS", "")
    return int(wanted) if wanted.isdigit() else min(8, max(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not item.get_closest_marker("slow") and is_slow(item):
            item.add_marker(pytest.mark.slow)


def is_heavy_command(args: object) -> bool:
    """A command the fast tier must not start: a Python process or a script (a quick ``git`` is fine)."""
    argv = [str(a) for a in args] if isinstance(args, list | tuple) else str(args).split()
    program = Path(argv[0]).name if argv else ""
    return program.startswith("python") or argv[:1] == [sys.executable] or \
        any(a.endswith((".py", ".sh")) for a in argv)


def _fast_tier(config: pytest.Config) -> bool:
    return "not slow" in (config.getoption("markexpr", default="") or "")


@pytest.fixture(autouse=True)
def _no_process_in_the_fast_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """In the fast tier, a test that starts a process without being marked slow fails and says so
    (the static rule above missed it: mark it `@pytest.mark.slow`)."""
    if not _fast_tier(request.config) or request.node.get_closest_marker("slow"):
        yield
        return
    started: list[str] = []
    popen_init, process_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def recording_popen(self, args, *a, **kw):
        if is_heavy_command(args):
            started.append(" ".join(map(str, args)) if isinstance(args, list | tuple) else str(args))
        popen_init(self, args, *a, **kw)

    def recording_start(self):
        started.append(f"multiprocessing {self.name}")
        process_start(self)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_popen)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", recording_start)
    yield
    if started:
        pytest.fail(f"{request.node.nodeid} starts a process ({started[0][:120]}) but is not marked slow: "
                    "add @pytest.mark.slow (the fast tier runs no processes)", pytrace=False)
