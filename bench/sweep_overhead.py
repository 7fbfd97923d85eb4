"""Sweep overhead benchmark (CPU).

1. A sweep of 1-step runs (16 jobs; ``--quick``: 3) through segsweep (``python sweep.py -m``: new
   store, parent run, run-key look-ups, MLflow params/metrics/artifacts/heartbeats, summary, results
   README with plots) against a bare Hydra multirun of the same training task without tracking (Hydra's basic sweeper and launcher, no callbacks), in
   one run: interleaved pairs (default 3), median ratio. Reports per-job overhead and the wall-time
   ratio segsweep / bare (goal <= 1.3).
2. The MLflow logging share of training: time spent in the MLflow callback over the training time of
   a small tracked run (goal <= 2%).

Prints its figures, then LAST one JSON line with the key ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TINY = ["dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32", "dataset.crop_size=32",
        "batch_size=4", "train.epochs=1", "train.max_steps_per_epoch=1"]


def bare_task() -> None:
    """The same training task as a bare Hydra app: no tracking, Hydra's basic launcher."""
    # bench/ comes first on sys.path when this file runs, and bench/results.py would shadow the results
    # package that conf/sweep.yaml's callbacks name: the repository root stands in its place
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != here)]
    import hydra
    from omegaconf import DictConfig

    @hydra.main(config_path=str(REPO / "conf"), config_name="sweep", version_base="1.3")
    def main(cfg: DictConfig) -> float:
        from engine.train import train, validate_config

        validate_config(cfg)
        with tempfile.TemporaryDirectory() as workdir:
            return train(cfg, [], Path(workdir)).get("final_val_mIoU", 0.0)

    sys.argv = [sys.argv[0], *sys.argv[2:]]
    main()


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[:4])} ...\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def store_template_s() -> float:
    """Seconds to build the migrated store template (0 when cached): once per MLflow version, not
    per sweep, so it is built (and reported) before the timed sweeps, which then start a new store."""
    import mlflow  # noqa: F401 - importing MLflow is not part of the build

    from sweeper import store_template

    start = time.perf_counter()
    if not store_template.template_path().exists():
        store_template.seed_sqlite_store(Path(tempfile.mkdtemp()) / "warm.db")
    return time.perf_counter() - start


def sweep_ratio(jobs: int, tmp: Path, repeats: int) -> dict[str, Any]:
    """``repeats`` interleaved pairs (bare, segsweep into a new store); the ratio is the median of the
    pairs' ratios (a pair shares the machine's momentary load), then one all-skipped re-run."""
    seeds = "seed=" + ",".join(str(i) for i in range(jobs))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    bare_s, ours_s = [], []
    for rep in range(repeats):
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / f'mlflow{rep}.db'}"
        bare_s.append(_timed([sys.executable, __file__, "--bare-task", "-m", seeds, *TINY, "hydra/launcher=basic",
                              "hydra/sweeper=basic",
                              "hydra.callbacks.results_readme.enabled=false",
                              "hydra.callbacks.sweep_summary.enabled=false",
                              f"hydra.sweep.dir={tmp / f'bare{rep}'}", f"output_root={tmp / f'bare-out{rep}'}"],
                             tmp, env))
        ours_cmd = [sys.executable, str(REPO / "sweep.py"), "-m", seeds, *TINY, f"hydra.sweep.dir={tmp / f'seg{rep}'}",
                    f"output_root={tmp / f'seg-out{rep}'}"]
        ours_s.append(_timed(ours_cmd, tmp, env))
    again = _timed(ours_cmd, tmp, env)
    ratios = [o / b for o, b in zip(ours_s, bare_s, strict=True)]
    bare, ours = statistics.median(bare_s), statistics.median(ours_s)
    return {"jobs": jobs, "repeats": repeats, "bare_s": bare, "segsweep_s": ours, "rerun_all_skipped_s": again,
            "overhead_per_job_s": (ours - bare) / jobs, "ratios": [round(r, 3) for r in ratios],
            "ratio": statistics.median(ratios)}


def logging_share(tmp: Path, steps: int) -> dict[str, float]:
    """Seconds inside the MLflow callback / seconds of training, for a small tracked run."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'share.db'}"
    import torch

    from sweeper import naming, tracking
    from sweeper.task import run_job

    torch.set_num_threads(1)
    spent = [0.0]
    for method in ("on_train_start", "on_epoch_end", "on_train_end"):
        original = getattr(tracking.MlflowCallback, method)

        def timed(self, *args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        setattr(tracking.MlflowCallback, method, timed)
    cfg = naming.compose_config(["dataset.num_train=64", "dataset.num_val=4", "dataset.image_size=64",
                                 "dataset.crop_size=64", "batch_size=4", "train.epochs=2",
                                 f"train.max_steps_per_epoch={steps}", f"output_root={tmp / 'share-out'}"])
    start = time.perf_counter()
    run_job(cfg)
    total = time.perf_counter() - start
    return {"train_steps": 2 * steps, "run_s": total, "mlflow_callback_s": spent[0],
            "mlflow_share_pct": 100 * spent[0] / total}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-task":
        bare_task()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 jobs, fewer steps, one pair")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved (bare, segsweep) pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        template_s = store_template_s()
        print(f"store template (MLflow's migrations, once per MLflow version): "
              f"{'cached' if template_s < 0.05 else f'built in {template_s:.1f} s'}")
        sweep = sweep_ratio(3 if args.quick else 16, tmp, 1 if args.quick else args.repeats)
        print(f"sweep of {sweep['jobs']} 1-step jobs (median of {sweep['repeats']}): bare Hydra "
              f"{sweep['bare_s']:.1f} s, segsweep {sweep['segsweep_s']:.1f} s -> overhead "
              f"{sweep['overhead_per_job_s']:.2f} s/job, ratio {sweep['ratio']:.2f} (pairs {sweep['ratios']}; "
              f"goal <= 1.3); re-run, all skipped: {sweep['rerun_all_skipped_s']:.1f} s")
        share = logging_share(tmp, 5 if args.quick else 40)
        print(f"MLflow logging share of training: {share['mlflow_callback_s']:.3f} s of {share['run_s']:.1f} s "
              f"({share['train_steps']} steps) = {share['mlflow_share_pct']:.2f}% (goal <= 2%)")
    print(json.dumps({"store_template_s": template_s, **sweep, **share}))


if __name__ == "__main__":
    main()
