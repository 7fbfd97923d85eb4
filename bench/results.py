"""Benchmark: render every dataset table from a store of N runs, against a bare ``mlflow.search_runs``.

    python bench/results.py            # 10,000 runs (the store is built once, then cached)
    python bench/results.py --quick    # 500 runs from 50 seed runs, one repeat (a smoke run)

The store is built with MLflow's own client (``create_run`` + ``log_batch``) for a few hundred
seed runs shaped like real ones (tags, ~30 params, per-epoch val_mIoU, per-class IoU), then those
rows are cloned in SQL with fresh run ids up to N (one client call per run would take ~10 minutes
for 10,000 runs on sqlite). It is cached under the temp dir, keyed by N.

Timed (best of --repeat): ``results`` = load the runs + regenerate a notes file with one block per
dataset (config-hash stale check off: it composes each distinct name with Hydra once);
``search_runs`` = ``mlflow.search_runs`` over the same experiments. The LAST line is JSON with ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

# This file is named like the package it measures: keep bench/ off the import path, put the repo on it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

DATASETS = ("voc", "camvid", "cityscapes", "aerial", "synthetic")
CLASSES = [f"class{i}" for i in range(11)]
SEED_RUNS = 200


def _seed_store(uri: str, n: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    exps = [client.create_experiment(ds) for ds in DATASETS]
    rng = random.Random(0)
    for i in range(n):
        ds_i = i % len(DATASETS)
        name = f"{DATASETS[ds_i]}.scratch.imagesize321.stem.dense30k{12 * (1 + i % 5)}.scale{i // 5}"
        tags = {
            "segsweep.name": name, "segsweep.dataset": DATASETS[ds_i], "segsweep.seed": str(i % 3),
            "segsweep.config_hash": f"{i:016x}", "segsweep.git_commit": "a" * 40, "segsweep.source": "segsweep",
            "segsweep.sweep_id": f"sweep{i // 50}", "segsweep.run_key": f"{name}--{i:016x}",
        }  # fmt: skip
        run = client.create_run(exps[ds_i], run_name=name, tags=tags)
        val = rng.uniform(30, 75)
        ms = [Metric("val_mIoU", val - 10 + e, 0, e) for e in range(1, 11)]
        ms += [Metric(f"val_IoU/{c}", rng.uniform(0, 90), 0, 10) for c in CLASSES]
        ms += [Metric("params_M", rng.uniform(2, 45), 0, 0), Metric("final_val_mIoU", val, 0, 0)]
        ps = [Param(f"cfg.key{k}", str(k * i)) for k in range(30)]
        client.log_batch(run.info.run_id, metrics=ms, params=ps)
        client.set_terminated(run.info.run_id, "FAILED" if i % 97 == 0 else "FINISHED")


def _clone(db: Path, total: int) -> None:
    """Copy the seed runs (with all their rows) under fresh ids until the store holds ``total``."""
    con = sqlite3.connect(db)
    seeds = [r[0] for r in con.execute("SELECT run_uuid FROM runs")]
    tables = {t: [c[1] for c in con.execute(f"PRAGMA table_info({t})")] for t in ("tags", "params", "metrics",
                                                                                  "latest_metrics")}
    rows = {t: {} for t in tables}
    for t, cols in tables.items():
        idx = cols.index("run_uuid")
        for row in con.execute(f"SELECT * FROM {t}"):
            rows[t].setdefault(row[idx], []).append(row)
    run_cols = [c[1] for c in con.execute("PRAGMA table_info(runs)")]
    runs = {r[0]: r for r in con.execute("SELECT * FROM runs")}
    new_runs, new = [], {t: [] for t in tables}
    for k in range(total - len(seeds)):
        src = seeds[k % len(seeds)]
        rid = uuid.uuid4().hex
        copy = k // len(seeds) + 1
        r = list(runs[src])
        r[0] = rid
        r[run_cols.index("name")] = f"{r[run_cols.index('name')]}.copy{copy}"
        new_runs.append(r)
        for t, cols in tables.items():
            idx = cols.index("run_uuid")
            for row in rows[t].get(src, []):
                row = list(row)
                row[idx] = rid
                if t == "tags" and row[0] == "segsweep.name":
                    row[1] = f"{row[1]}.copy{copy}"
                new[t].append(row)
    con.executemany(f"INSERT INTO runs VALUES ({','.join('?' * len(run_cols))})", new_runs)
    for t, cols in tables.items():
        con.executemany(f"INSERT INTO {t} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", new[t])
    con.commit()
    con.close()


def build_store(runs: int, cache: Path, seed_runs: int = SEED_RUNS) -> str:
    """The cached store with ``runs`` runs cloned from ``seed_runs`` (built on first use); its URI."""
    db = cache / (f"mlflow-{runs}.db" if seed_runs == SEED_RUNS else f"mlflow-{runs}-seed{seed_runs}.db")
    uri = f"sqlite:///{db}"
    if db.exists():
        return uri
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"building-{os.getpid()}.db"
    tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    _seed_store(f"sqlite:///{tmp}", min(seed_runs, runs))
    if runs > seed_runs:
        _clone(tmp, runs)
    os.replace(tmp, db)
    print(f"built {runs} runs in {time.perf_counter() - t0:.1f} s -> {db}", file=sys.stderr)
    return uri


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "segsweep-bench-results")
    p.add_argument("--quick", action="store_true", help="500 runs cloned from 50, one repeat")
    args = p.parse_args(argv)
    seed_runs = SEED_RUNS
    if args.quick:
        args.runs, args.repeat, seed_runs = 500, 1, 50

    import mlflow

    from results.query import load_runs
    from results.render import regenerate

    uri = build_store(args.runs, args.cache, seed_runs)
    client = mlflow.MlflowClient(uri)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    mlflow.set_tracking_uri(uri)
    notes = "".join(f"## {d}\n<!-- segsweep:begin {d} -->\n<!-- segsweep:end {d} -->\n" for d in DATASETS)

    def ours() -> None:
        text = regenerate(notes, load_runs(uri))
        assert text.count("| Arch") == len(DATASETS)

    def bare() -> None:
        df = mlflow.search_runs(experiment_ids=exp_ids, max_results=args.runs + 1000)
        assert len(df) == args.runs, len(df)

    ours()  # warm imports (pandas/tabulate) before timing either side
    t_ours = _best(ours, args.repeat)
    t_bare = _best(bare, args.repeat)
    print(f"runs={args.runs}  render all tables: {t_ours:.3f} s  bare mlflow.search_runs: {t_bare:.3f} s")
    print(json.dumps({"runs": args.runs, "render_s": round(t_ours, 4), "search_runs_s": round(t_bare, 4),
                      "ratio": round(t_ours / t_bare, 4), "goal_ratio": 1.5, "goal_render_s": 3.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
