"""The tracking store at load: N concurrent writer processes log per-step metrics through a real
``python -m sweeper server`` with PostgreSQL behind it (issue 27, item 4).

Each writer is a small process of its own that speaks MLflow's REST API (``runs/create``, then one
``runs/log-batch`` per step, then ``runs/update`` FINISHED) with the standard library, so that 64 of
them start in a second on 2 cores (an MLflow client import costs ~2 s of CPU a process); every
request is timed client-side. The writers start together (a start file they all wait for). Then
the store is read back in SQL: every (run, key, step) once, none lost, none twice.

The baseline, in the same run and on the same server: one writer alone. ``ratio`` = p99 request
latency with N writers / p99 with one (how much a writer waits on the others); the absolute p50,
p99 and max latencies and the points per second are printed beside it.

    python bench/store_load.py [--quick] [--writers 64] [--steps 100]

Needs PostgreSQL: ``$SEGSWEEP_POSTGRES_URI`` (scripts/local-postgres-start.sh); a database of its
own is created and dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
REPO = _HERE.parent
sys.path.insert(0, str(REPO))

DEFAULT_POSTGRES = "postgresql://segsweep:segsweep@127.0.0.1:5433/segsweep"
KEYS = ("train_loss", "lr", "val_mIoU")  # metrics of one step, one log-batch
WRITER = r'''
import json, os, sys, time, urllib.error, urllib.request
url, experiment_id, i, steps, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
keys = sys.argv[6].split(",")
latencies = []

def call(path, body):
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            out = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as error:
        sys.exit(f"{path}: HTTP {error.code}: {error.read()[:500]!r}")
    latencies.append(time.perf_counter() - start)
    return out

open(go + f".ready{i}", "w").close()
deadline = time.monotonic() + 300
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("the start file never came")
    time.sleep(0.01)
now = int(time.time() * 1000)
run_id = call("runs/create", {"experiment_id": experiment_id, "run_name": f"w{i}", "start_time": now,
                              "tags": [{"key": "segsweep.run_key", "value": f"w{i}@load"}]})["run"]["info"]["run_id"]
for step in range(steps):
    metrics = [{"key": k, "value": float(step * (j + 1) + i), "timestamp": int(time.time() * 1000), "step": step}
               for j, k in enumerate(keys)]
    call("runs/log-batch", {"run_id": run_id, "metrics": metrics})
call("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
print(json.dumps({"run_id": run_id, "latencies": latencies}))
'''


def postgres_base() -> str:
    return os.environ.get("SEGSWEEP_POSTGRES_URI", DEFAULT_POSTGRES)


def _admin(uri: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(uri, connect_timeout=5, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)


@contextlib.contextmanager
def database(base: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards, as far as the server lets): its store URI."""
    base = base or postgres_base()
    name = f"load_{uuid.uuid4().hex[:12]}"
    _admin(base, f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        for _ in range(20):  # autovacuum may still be in it for a moment
            try:
                _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                break
            except Exception:  # noqa: BLE001 - left to local-postgres-stop.sh --purge otherwise
                time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(store: str, workdir: Path) -> Iterator[str]:
    """``python -m sweeper server --store STORE`` on a free port; its URL; stopped (its group) afterwards."""
    from sweeper import server

    port = _free_port()
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "server", "--store", store, "--port", str(port),
                             "--artifacts", str(workdir / "artifacts")], cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(url, timeout_s=180)
        yield url
    finally:
        proc.terminate()  # sweeper.server stops its whole group on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def create_experiment(url: str, name: str) -> str:
    import urllib.request

    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/create", data=json.dumps({"name": name}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["experiment_id"]


def run_writers(url: str, experiment_id: str, writers: int, steps: int, workdir: Path) -> list[dict[str, Any]]:
    """Start ``writers`` processes, release them together, wait for all; each one's run id and latencies."""
    go = workdir / f"go-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = [subprocess.Popen([sys.executable, "-S", "-c", WRITER, url, experiment_id, str(i), str(steps), str(go),
                               ",".join(KEYS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(writers)]
    deadline = time.monotonic() + 120
    while sum(1 for i in range(writers) if Path(f"{go}.ready{i}").exists()) < writers:
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError("the writers did not all start: " + next(
                (p.stderr.read()[-1500:] for p in procs if p.poll() not in (None, 0)), "timed out"))
        time.sleep(0.05)
    go.touch()
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a writer exited {proc.returncode}: {stderr[-1500:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def count_points(store: str, experiment_id: str) -> dict[str, int]:
    """From PostgreSQL itself: runs, FINISHED runs, points, distinct (run, key, step), duplicated ones."""
    import psycopg

    with psycopg.connect(store, connect_timeout=5) as con:
        runs, finished = con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'FINISHED') FROM runs"
                                     " WHERE experiment_id = %s", (int(experiment_id),)).fetchone()
        points, distinct, dup = con.execute(
            "SELECT coalesce(sum(n), 0), count(*), count(*) FILTER (WHERE n > 1) FROM (SELECT count(*) AS n"
            " FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.experiment_id = %s"
            " GROUP BY m.run_uuid, m.key, m.step) AS per", (int(experiment_id),)).fetchone()
    return {"runs": runs, "finished": finished, "points": int(points), "distinct": distinct, "duplicated": dup}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def load(url: str, store: str, writers: int, steps: int, workdir: Path, label: str) -> dict[str, Any]:
    """One load round into a new experiment: latencies, throughput and the store's own count."""
    experiment_id = create_experiment(url, f"{label}-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    results = run_writers(url, experiment_id, writers, steps, workdir)
    wall = time.perf_counter() - start
    latencies = [x for r in results for x in r["latencies"]]
    counted = count_points(store, experiment_id)
    expected = writers * steps * len(KEYS)
    return {"writers": writers, "steps": steps, "requests": len(latencies), "wall_s": wall,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 99),
            "max_ms": 1000 * max(latencies), "points_per_s": expected / wall, "expected_points": expected,
            "lost": expected - (counted["distinct"]), "duplicated": counted["duplicated"], **counted,
            "run_ids": sorted(r["run_id"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 writers x 5 steps (a smoke run; the 64-writer"
                        " check is tests/test_store_load.py)")
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    steps, writers = (5, 8) if args.quick else (args.steps, args.writers)
    with tempfile.TemporaryDirectory(prefix="segsweep-load-") as tmp, database() as store, \
            serving(store, Path(tmp)) as url:
        alone = load(url, store, 1, steps, Path(tmp), "alone")
        many = load(url, store, writers, steps, Path(tmp), "many")
    for r in (alone, many):
        print(f"{r['writers']:3d} writer(s) x {r['steps']} steps ({len(KEYS)} metrics a step, one log-batch): "
              f"{r['requests']} requests in {r['wall_s']:.1f} s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
              f"max {r['max_ms']:.0f} ms, {r['points_per_s']:.0f} points/s; in PostgreSQL: {r['points']} points, "
              f"{r['lost']} lost, {r['duplicated']} duplicated, {r['finished']}/{r['runs']} runs FINISHED")
    result = {"writers": many["writers"], "steps": steps, "requests": many["requests"],
              "p50_ms": round(many["p50_ms"], 1), "p99_ms": round(many["p99_ms"], 1), "max_ms": round(many["max_ms"], 1),
              "points_per_s": round(many["points_per_s"]), "lost": many["lost"], "duplicated": many["duplicated"],
              "alone_p50_ms": round(alone["p50_ms"], 1), "alone_p99_ms": round(alone["p99_ms"], 1),
              "ratio": round(many["p99_ms"] / alone["p99_ms"], 2)}
    print(json.dumps(result))
    if many["lost"] or many["duplicated"] or alone["lost"] or alone["duplicated"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
