"""How segsweep's own costs grow with a sweep's cells and a store's runs (issue 27, item 1).

1. Sweeps of no-op jobs (``sweep.py``'s task with training replaced by a function that returns at
   once: the claim, the run-key look-up, the MLflow run, its params and tags, the heartbeat, the
   parent run, the cell manifest and the summary are all measured; training is not) at 16, 128 and
   1,024 cells (``--quick``: 2 and 3, local launcher only, each sweep forked from the bench's
   process, its imports done once, without the results README at its end) through the local
   launcher (``launcher=local``: hydra/launcher=segsweep_local), the pool (``launcher=gpus``, 2 CPU
   workers: segsweep_pool) and submitit's local executor (``hydra/launcher=submitit_local``, in
   batches of 8). Each sweep starts a new store. The per-job cost is the marginal one,
   ``(T(N) - T(1)) / (N - 1)``, against a 1-cell sweep timed in the same run (the baseline: process
   start, imports, the store's creation), in CPU seconds of the sweep's whole process tree (a shared
   machine's load stretches wall time, not CPU time; wall figures are printed too).
2. ``python -m sweeper status`` (a 1,000-cell sweep; ``--quick``: 20) and ``python -m results
   readme`` / ``results matrix`` in stores of 1k, 10k and 100k runs (``--quick``: 200 and 800 runs of
   6 names, each command's ``main`` called in the bench's own process: no interpreter start per
   command), built directly: segsweep creates the empty store (MLflow's schema and segsweep's tag
   index), then its tables (experiments, runs, tags, params, metrics, latest_metrics) are filled with
   ``executemany`` as MLflow itself holds them. CPU seconds per cell (status) and per run (readme,
   matrix), against the smallest store.

Prints one line per figure; LAST, one JSON line whose ``ratio`` is the worst per-job (per-cell,
per-run) cost at the largest size over the same at the smallest (goal <= 1.3: linear).

    python bench/scale.py [--quick] [--launchers local,pool,submitit] [--cells 16,128,1024]
                          [--runs 1000,10000,100000] [--skip-sweeps] [--skip-store]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# This file must not shadow a package: keep bench/ off the import path, put the repo on it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
REPO = _HERE.parent
sys.path.insert(0, str(REPO))

GOAL = 1.3
LAUNCHERS: dict[str, list[str]] = {
    "local": ["launcher=local"],
    "pool": ["launcher=gpus", "hydra.launcher.workers=2"],
    # submitit's LocalExecutor starts every job of a launch at once: batches of 8 keep 2 cores usable
    "submitit": ["hydra/launcher=submitit_local", "hydra.sweeper.max_batch_size=8"],
}
DATASETS = ("voc", "camvid", "cityscapes", "aerial", "synthetic")
STATUS_CELLS = 1000
#: a marginal cost below this (CPU seconds per job; a tenth of it per status cell) is under the noise of
#: a process's start-up: counted as this, so that a tiny or negative difference never makes a ratio
RESOLUTION_S = 0.001
EPOCHS = 5


# ------------------------------------------------------------------ 1. sweeps of no-op jobs
def noop_train(cfg: Any, callbacks: Any, workdir: Path) -> dict[str, float]:
    """Stands in for ``engine.train.train``: no data, no model, returns at once."""
    from sweeper.tracking import objective_metric

    return {objective_metric(cfg): 0.0, "params_M": 0.0}


def noop_sweep() -> None:
    """``sweep.py`` with training replaced by :func:`noop_train` (in this process and in every
    worker: the patch is made by the task function, which the pool and submitit pickle by value)."""
    import hydra
    from omegaconf import DictConfig

    from sweeper import LAUNCH_DIR_ENV, cli_help
    from sweeper.shutdown import run_cli

    os.environ.setdefault(LAUNCH_DIR_ENV, os.getcwd())
    cli_help.register()

    @hydra.main(config_path=str(REPO / "conf"), config_name="sweep", version_base="1.3")
    def main(cfg: DictConfig) -> dict:
        from sweeper import task

        task.train = noop_train
        return task.main(cfg)

    sys.argv = [sys.argv[0], *sys.argv[2:]]
    run_cli(main)


#: ``--quick`` keeps segsweep's cache (the store template, config hashes): a smoke run, not a first run
SHARED_CACHE: list[str] = []


def _env(tmp: Path, store: Path) -> dict[str, str]:
    cache = SHARED_CACHE[0] if SHARED_CACHE else str(tmp / "cache")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "SEGSWEEP_CACHE": cache}
    env.pop("SEGSWEEP_LAUNCH_DIR", None)
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it waited for)."""
    start, cpu = time.perf_counter(), _cpu_children()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, _cpu_children() - cpu


def _in_process(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> float:
    """CPU seconds of ``python -m <module> ...`` run by its ``main`` in this process (``--quick``: no
    interpreter start and imports per command, which would be most of a smoke run's time)."""
    import contextlib
    import importlib
    import io

    module, args = cmd[2], cmd[3:]
    saved, here = dict(os.environ), os.getcwd()
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "SEGSWEEP_CACHE")})
    os.chdir(cwd)
    out = io.StringIO()
    start = time.process_time()
    try:
        with contextlib.redirect_stdout(out):
            code = importlib.import_module(f"{module}.__main__").main(args)
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
    if code:
        raise SystemExit(f"{what} failed ({code}):\n{out.getvalue()[-1500:]}")
    return time.process_time() - start


def _forked(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> tuple[float, float]:
    """(wall, CPU) seconds of ``cmd`` (this file's ``--noop-sweep``) run in a child forked from this
    process, whose imports (torch, MLflow, Hydra) are done once (``--quick``); CPU of its whole tree."""
    start = time.perf_counter()
    log = cwd / "sweep.log"
    pid = os.fork()
    if pid == 0:  # the child: the sweep as its own process would run it, then exit without cleanup
        code = 1
        try:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = cmd[1:]
            noop_sweep()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{what} failed ({os.waitstatus_to_exitcode(status)}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def _warm_imports() -> None:
    """What every sweep process imports (``--quick`` forks its sweeps from this process)."""
    import hydra  # noqa: F401

    import sweeper.launch
    import sweeper.pool
    import sweeper.task  # noqa: F401


def sweep_seconds(launcher: str, cells: int, tmp: Path, tag: str = "", forked: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of one no-op sweep of ``cells`` seeds into a new store (``forked``, the
    smoke run: without the results README the sweep's end writes, seconds of plots)."""
    where = tmp / f"{launcher}-{cells}{tag}"
    where.mkdir(parents=True)
    seeds = f"seed=range(0,{cells})" if cells > 1 else "seed=0"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--noop-sweep", "-m", seeds, *LAUNCHERS[launcher],
           f"hydra.sweep.dir={where / 'sweep'}", f"output_root={where / 'out'}",
           *(["~hydra.callbacks.results_readme"] if forked else [])]
    run = _forked if forked else _timed
    return run(cmd, where, _env(tmp, where / "mlflow.db"), f"{launcher} sweep of {cells} cells")


def sweeps(launchers: list[str], sizes: list[int], tmp: Path, warm: bool = True, forked: bool = False) -> dict[str, Any]:
    """Per launcher: the 1-cell baseline, each size's wall time and marginal seconds per job (``forked``:
    each sweep a child of this process, its imports done once here)."""
    out: dict[str, Any] = {}
    if forked:
        from sweeper.store_template import seed_sqlite_store

        os.environ["SEGSWEEP_CACHE"] = _env(tmp, tmp / "warm.db")["SEGSWEEP_CACHE"]
        seed_sqlite_store(tmp / "template-warm.db")  # the store template (MLflow's migrations), untimed
        _warm_imports()
    elif warm:
        sweep_seconds(launchers[0], 1, tmp, "-warm")  # the store template (MLflow's migrations), .pyc files
    for launcher in launchers:
        base_wall, base_cpu = sweep_seconds(launcher, 1, tmp, forked=forked)
        figures = {"baseline_1_cell_wall_s": round(base_wall, 2), "baseline_1_cell_cpu_s": round(base_cpu, 2)}
        per_job = {}
        for n in sizes:
            wall, cpu = sweep_seconds(launcher, n, tmp, forked=forked)
            per_job[n] = max((cpu - base_cpu) / (n - 1), RESOLUTION_S)
            wall_job = (wall - base_wall) / (n - 1)
            figures.update({f"wall_{n}_s": round(wall, 2), f"cpu_{n}_s": round(cpu, 2),
                            f"cpu_per_job_{n}_s": round(per_job[n], 4), f"wall_per_job_{n}_s": round(wall_job, 4)})
            print(f"{launcher:8s} {n:5d} cells: {wall:7.1f} s wall, {cpu:7.1f} s CPU -> {per_job[n] * 1000:7.1f} ms "
                  f"CPU/job, {wall_job * 1000:7.1f} ms wall/job (marginal over a 1-cell sweep: {base_wall:.1f} s "
                  f"wall, {base_cpu:.1f} s CPU)", flush=True)
        figures["ratio"] = round(per_job[max(sizes)] / per_job[min(sizes)], 3)
        out[launcher] = figures
    return out


# ------------------------------------------------------------------ 2. a store made directly
def _names(limit: int) -> list[tuple[str, str]]:
    """(dataset, name): the notes' DenseNet family (5 datasets x 3 depths x 4 growths x 4 scales: 240),
    the first ``limit`` with every dataset among them."""
    grid = [(ds, f"{ds}.scratch.imagesize321.stem.dense{depth}k{growth}.scale{scale}")
            for depth in (30, 42, 121) for growth in (12, 24, 36, 48) for scale in (8, 12, 16, 20)
            for ds in DATASETS]
    return grid[:limit]


def build_store(db: Path, runs: int, n_names: int = 240, sweep_size: int = STATUS_CELLS) -> list[dict[str, Any]]:
    """A sqlite store of ``runs`` FINISHED runs, rows inserted as MLflow's tables hold them, in sweeps of
    ``sweep_size`` (tag ``segsweep.sweep_id``: ``sweep0`` the newest); returns the cells (manifest
    entries) of the newest ``sweep_size`` runs, as a sweep's launcher records them."""
    import mlflow

    from sweeper.store_template import seed_sqlite_store

    uri = f"sqlite:///{db}"
    seed_sqlite_store(db)  # as segsweep makes a store: MLflow's migrated schema and segsweep's tag index
    client = mlflow.MlflowClient(uri)
    exp_ids = {ds: client.create_experiment(ds) for ds in DATASETS}
    del client
    names, rng = _names(n_names), random.Random(0)
    t0 = int(time.time() * 1000) - runs * 1000
    rows: dict[str, list[tuple]] = {t: [] for t in ("runs", "tags", "params", "metrics", "latest_metrics")}
    cells = []
    for i in range(runs):
        ds, name = names[i % len(names)]
        seed, rid = i // len(names), uuid.uuid4().hex
        config_hash = f"{i:016x}"
        key = f"{name}--{config_hash}"
        start, end = t0 + i * 1000, t0 + i * 1000 + 900
        run_name = f"{name}.seed{seed}"
        rows["runs"].append((rid, run_name, "LOCAL", "", "", "root", "FINISHED", start, end, "active",
                             f"file:///artifacts/{rid}", exp_ids[ds]))
        tags = {"segsweep.name": name, "segsweep.dataset": ds, "segsweep.seed": str(seed),
                "segsweep.config_hash": config_hash, "segsweep.run_key": key, "segsweep.source": "segsweep",
                "segsweep.sweep_id": f"sweep{(runs - 1 - i) // sweep_size}", "segsweep.git_commit": "a" * 40,
                "segsweep.eval_split": "val", "segsweep.objective": "final_val_mIoU", "mlflow.runName": run_name,
                "mlflow.user": "root"}
        rows["tags"] += [(k, v, rid) for k, v in tags.items()]
        rows["params"] += [(k, v, rid) for k, v in {"seed": str(seed), "train.epochs": str(EPOCHS),
                                                    "dataset.name": ds, "backbone.depth": name.split("dense")[1]
                                                    .split("k")[0], "lr": "0.007", "batch_size": "10"}.items()]
        val = rng.uniform(30, 75)
        points = [("val_mIoU", val - EPOCHS + e, e) for e in range(1, EPOCHS + 1)]
        points += [("epoch", float(e), e) for e in range(1, EPOCHS + 1)]
        points += [("final_val_mIoU", val, 0), ("params_M", 1.0 + i % 40, 0)]
        rows["metrics"] += [(k, v, end, rid, s, 0) for k, v, s in points]
        latest = {k: (v, s) for k, v, s in points}
        rows["latest_metrics"] += [(k, v, end, s, 0, rid) for k, (v, s) in latest.items()]
        if i >= runs - sweep_size:
            cells.append({"name": name, "seed": seed, "dataset": ds, "run_key": key, "uri": uri, "experiment": ds,
                          "epochs": EPOCHS})
    con = sqlite3.connect(db)
    with con:
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
                        " status, start_time, end_time, lifecycle_stage, artifact_uri, experiment_id)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows["runs"])
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", rows["tags"])
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", rows["params"])
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                        " VALUES (?,?,?,?,?,?)", rows["metrics"])
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                        " VALUES (?,?,?,?,?,?)", rows["latest_metrics"])
    con.close()
    return cells


def _write_manifest(sweep_dir: Path, cells: list[dict[str, Any]], sweep_id: str) -> Path:
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "segsweep_cells.json").write_text(json.dumps({"sweep_id": sweep_id, "sweep": "bench",
                                                               "parents": {}, "cells": cells}))
    return sweep_dir


def store_figures(n: int, status_cells: int, names: int, tmp: Path, warm: bool = False,
                  in_process: bool = False, results: tuple[str, ...] = ("readme", "matrix")) -> dict[str, float]:
    """CPU seconds of status (of ``status_cells`` cells and of 1 cell), readme and matrix on a store of ``n``
    (``in_process``: each command's ``main`` called here, not a new interpreter)."""
    where = tmp / f"store-{n}"
    where.mkdir(parents=True)
    t0 = time.perf_counter()
    cells = build_store(where / "mlflow.db", n, names, status_cells)
    built = time.perf_counter() - t0
    env, py = _env(tmp, where / "mlflow.db"), sys.executable
    # the sweep's status reads its runs in one search (tag segsweep.sweep_id); the 1-cell baseline's
    # sweep id has no runs, so it looks its one cell up by run key (one indexed search)
    cmds = {"status": [py, "-m", "sweeper", "status", str(_write_manifest(where / "sweep", cells, "sweep0"))],
            "status_1": [py, "-m", "sweeper", "status",
                         str(_write_manifest(where / "sweep1", cells[-1:], "bench-1-cell"))],
            "readme": [py, "-m", "results", "readme", "--out", str(where / "results" / "README.md")],
            "matrix": [py, "-m", "results", "matrix"]}
    cmds = {label: cmd for label, cmd in cmds.items() if label.startswith("status") or label in results}

    def timed(label: str) -> float:
        if in_process:
            return _in_process(cmds[label], where, env, label)
        return _timed(cmds[label], where, env, label)[1]

    if warm:  # the config-hash cache (one Hydra compose per distinct name) and .pyc files, untimed
        for label in ("matrix", "status_1"):
            timed(label)
    secs = {label: timed(label) for label in cmds}
    return {"built_s": built, "cells": len(cells), **secs}


def store_commands(sizes: list[int], status_cells: int, names: int, tmp: Path, in_process: bool = False,
                   results: tuple[str, ...] = ("readme", "matrix")) -> dict[str, Any]:
    """CPU seconds of status / readme / matrix per store size. Status: per cell, over a 1-cell status in
    the same store (the look-ups alone). Readme, matrix: per run, T(N) / N (their fixed costs included;
    the marginal cost between consecutive sizes is reported beside it)."""
    figures: dict[str, Any] = {}
    per: dict[str, dict[int, float]] = {"status": {}, **{label: {} for label in results}}
    got: dict[int, dict[str, float]] = {}
    for n in sorted(sizes):
        got[n] = g = store_figures(n, status_cells, names, tmp, warm=n == min(sizes), in_process=in_process,
                                   results=results)
        per["status"][n] = max((g["status"] - g["status_1"]) / max(g["cells"] - 1, 1), RESOLUTION_S / 10)
        for label in results:
            per[label][n] = g[label] / n
        figures[f"store_{n}_built_s"] = round(g["built_s"], 1)
        figures.update({f"{label}_{n}_cpu_s": round(g[label], 2) for label in ("status", "status_1", *results)})
        figures.update({f"{label}_{n}_per_{'cell' if label == 'status' else 'run'}_ms": round(1000 * v[n], 3)
                        for label, v in per.items()})
        tail = "".join(f", results {label} {g[label]:.2f} ({1000 * per[label][n]:.3f} ms/run)" for label in results)
        print(f"store of {n:6d} runs (built in {g['built_s']:.1f} s), CPU s: status of {g['cells']} cells "
              f"{g['status']:.2f} (1 cell {g['status_1']:.2f}: {1000 * per['status'][n]:.2f} ms/cell){tail}", flush=True)
    ordered = sorted(sizes)
    for a, b in zip(ordered, ordered[1:], strict=False):
        for label in results:
            slope = (got[b][label] - got[a][label]) / (b - a)
            figures[f"{label}_marginal_{a}_{b}_ms_per_run"] = round(1000 * slope, 4)
            print(f"results {label}: {1000 * slope:.4f} ms CPU per run added from {a} to {b} runs")
    small, large = min(sizes), max(sizes)
    for label, by_size in per.items():
        figures[f"{label}_ratio"] = round(by_size[large] / by_size[small], 3)
    figures["status_cells"] = status_cells
    return figures


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--noop-sweep":
        noop_sweep()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2/3 cells (local launcher, sweeps forked from this process, no README), 200/800 runs of 6 names "
                        "(status and matrix in process), segsweep's own cache kept")
    parser.add_argument("--launchers", default="local,pool,submitit")
    parser.add_argument("--cells", type=_ints, default=None, help="sweep sizes (default 16,128,1024)")
    parser.add_argument("--runs", type=_ints, default=None, help="store sizes (default 1000,10000,100000)")
    parser.add_argument("--status-cells", type=int, default=None, help=f"cells of the status sweep ({STATUS_CELLS})")
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--skip-store", action="store_true")
    args = parser.parse_args()
    launchers = [x for x in args.launchers.split(",") if x]
    if unknown := set(launchers) - set(LAUNCHERS):
        parser.error(f"unknown launcher(s) {sorted(unknown)}: choose from {sorted(LAUNCHERS)}")
    if args.quick and args.launchers == parser.get_default("launchers"):
        launchers = ["local"]  # a smoke run: the pool and submitit start a process per job (seconds each)
    if args.quick:
        from sweeper.store_template import cache_dir

        SHARED_CACHE.append(str(cache_dir()))
    cells = args.cells or ([2, 3] if args.quick else [16, 128, 1024])
    runs = args.runs or ([200, 800] if args.quick else [1000, 10_000, 100_000])
    status_cells = args.status_cells or (20 if args.quick else STATUS_CELLS)
    result: dict[str, Any] = {"quick": args.quick}
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="segsweep-scale-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_sweeps:
            for launcher, figures in sweeps(launchers, cells, tmp, warm=not args.quick, forked=args.quick).items():
                result.update({f"{launcher}_{k}": v for k, v in figures.items()})
                ratios[f"{launcher} per job"] = figures["ratio"]
        if not args.skip_store:
            results = ("matrix",) if args.quick else ("readme", "matrix")  # the README: seconds of plots
            figures = store_commands(runs, status_cells, 6 if args.quick else 240, tmp, in_process=args.quick,
                                     results=results)
            result.update(figures)
            ratios.update({f"{k} per {'cell' if k == 'status' else 'run'}": figures[f"{k}_ratio"]
                           for k in ("status", *results)})
    worst = max(ratios, key=ratios.get) if ratios else "none"
    for label, value in ratios.items():
        print(f"{label}: {value:.2f}x from the smallest size to the largest (goal <= {GOAL})")
    result.update({"cells": cells, "runs": runs, "worst": worst, "goal": GOAL, "ratio": ratios.get(worst, 0.0)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
