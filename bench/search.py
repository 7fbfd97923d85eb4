"""Asynchronous trials vs synchronous batches, same trials, same launcher, same run.

8 trials whose durations are uneven (sleep-based, drawn once from a seeded generator and tied to the
trial number, so both loops run exactly the same work), 2 trials in flight:

- segsweep: the ``segsweep_optuna`` sweeper's real search loop (``_search.Search``): a new trial
  starts as soon as one ends;
- batch-synchronous baseline (what hydra-optuna-sweeper does): ask 2, launch both, wait for both, tell.

Both use one in-process launcher that runs each job in its own thread (no process start-up noise)
and an Optuna sqlite study. The last line is JSON with ``ratio`` = segsweep / baseline (goal <= 0.8).

    python bench/search.py [--unit 0.5] [--seed 0] [--quick]

``--quick``: trials of a 0.25 s median (the same schedule, scaled down; the ratio holds while the
loops' own costs stay small against the sleeps).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra_plugins.segsweep_optuna.config import SegsweepOptunaSweeperConf
from hydra_plugins.segsweep_optuna.sweeper import SegsweepOptunaSweeper
from sweeper.optuna_search import Search
from sweeper.optuna_trial import TRIAL_ENV

N_TRIALS, N_JOBS = 8, 2


class SleepLauncher(Launcher):
    """Runs each job of a batch in its own thread: sleeps the trial's duration, returns x."""

    def __init__(self, durations: Sequence[float]) -> None:
        self.durations = list(durations)

    def setup(self, **kwargs: object) -> None:  # pragma: no cover - not used by the bench
        pass

    def _one(self, overrides: Sequence[str]) -> JobReturn:
        kv = {k.rpartition(".")[2]: v.strip("'") for k, v in (o.lstrip("+").split("=", 1) for o in overrides)}
        time.sleep(self.durations[int(kv[TRIAL_ENV])])
        ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        ret.return_value = {"status": "FINISHED", "value": float(kv["x"]), "run_id": None, "name": "sleep"}
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with ThreadPoolExecutor(max_workers=len(job_overrides)) as pool:
            return list(pool.map(self._one, job_overrides))


def run_segsweep(durations: Sequence[float], workdir: Path) -> float:
    """Wall time of the segsweep_optuna search loop with n_jobs=2."""
    settings = OmegaConf.to_container(OmegaConf.structured(SegsweepOptunaSweeperConf))
    assert isinstance(settings, dict)
    settings.pop("_target_")
    settings.pop("defaults")
    settings.update(
        n_trials=N_TRIALS, n_jobs=N_JOBS, storage=f"sqlite:///{workdir / 'async.db'}", mlflow_parent=False
    )
    settings["sampler"] = {"name": "random", "seed": 0}
    settings["pruner"].update(name="none")
    sweeper = SegsweepOptunaSweeper(**settings)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(workdir / "async")}}})
    sweeper.launcher = SleepLauncher(durations)
    sweeper.validate_batch_is_legal = lambda batch: None  # no Hydra config to compose here
    t0 = time.perf_counter()
    Search(sweeper, ["x=interval(0.0, 1.0)"]).run()
    return time.perf_counter() - t0


def run_batch_sync(durations: Sequence[float], workdir: Path) -> float:
    """Wall time of the batch-synchronous loop: ask 2, launch both, wait for both, tell."""
    t0 = time.perf_counter()
    study = optuna.create_study(
        storage=f"sqlite:///{workdir / 'sync.db'}",
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
    )
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    launcher = SleepLauncher(durations)
    for _ in range(N_TRIALS // N_JOBS):
        trials = [study.ask(space) for _ in range(N_JOBS)]
        batch = [[f"x={t.params['x']!r}", f"++hydra.job.env_set.{TRIAL_ENV}={t.number}"] for t in trials]
        for trial, ret in zip(trials, launcher.launch(batch, 0), strict=True):
            study.tell(trial, ret.return_value["value"])
    return time.perf_counter() - t0


def warm_up(workdir: Path) -> None:
    """Pay the one-time costs (imports, SQLAlchemy/alembic set-up) before either timed loop."""
    study = optuna.create_study(storage=f"sqlite:///{workdir / 'warm.db'}")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}), 0.0)


def ideal_times(durations: Sequence[float]) -> tuple[float, float]:
    """Sleep-only wall times: batches of N_JOBS, and greedy list scheduling on N_JOBS workers."""
    sync = sum(max(durations[i : i + N_JOBS]) for i in range(0, len(durations), N_JOBS))
    free = [0.0] * N_JOBS
    for d in durations:
        free[free.index(min(free))] += d
    return sync, max(free)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unit", type=float, default=2.0, help="median trial duration (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="--unit 0.25")
    args = ap.parse_args()
    if args.quick:
        args.unit = 0.25
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(args.seed)
    # Log-normal run times (sigma 0.75): models of different sizes, early-stopped trials, busy nodes.
    durations = [round(args.unit * rng.lognormvariate(0.0, 0.75), 3) for _ in range(N_TRIALS)]
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(Path(tmp))
        sync_s = run_batch_sync(durations, Path(tmp))
        async_s = run_segsweep(durations, Path(tmp))
    sync_floor, async_floor = ideal_times(durations)
    print(f"trial durations (s): {durations}")
    print(
        f"batch-synchronous (ask {N_JOBS}, wait all, tell): {sync_s:.2f} s (sleep alone: {sync_floor:.2f} s)"
    )
    print(
        f"segsweep asynchronous, n_jobs={N_JOBS}:            {async_s:.2f} s (sleep alone: {async_floor:.2f} s)"
    )
    result = {
        "bench": "search",
        "n_trials": N_TRIALS,
        "n_jobs": N_JOBS,
        "segsweep_async_s": round(async_s, 3),
        "batch_sync_s": round(sync_s, 3),
        "ideal_ratio": round(async_floor / sync_floor, 3),
        "ratio": round(async_s / sync_s, 3),
        "goal": 0.8,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
