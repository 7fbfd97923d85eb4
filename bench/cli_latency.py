"""Start-up latency of the commands a person waits on, against a bare Hydra app's ``--help``.

Each command is a fresh ``python`` process (what a person types); the reference is a bare
``@hydra.main`` app with no config printing its ``--help``, timed in the same run. The commands are
interleaved (one round = every command once, in a rotated order) so that the load of a shared machine
falls on all of them alike; each figure is the median over the rounds.

    python bench/cli_latency.py [--repeats N] [--quick]

``--quick``: one timed round (a smoke run: the ratio is noisy).

Prints one line per command and, last, one JSON line whose ``ratio`` (last key) is the worst
command's median / the bare app's median (goal <= 2).
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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: a name from the notes (CamVid DenseNet with the newdid6 decoder): it exercises the whole grammar
NOTES_NAME = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16"
BARE_APP = '''
import hydra

@hydra.main(config_path=None, version_base="1.3")
def main(cfg):
    pass

main()
'''
GOAL = 2.0


def commands(bare_app: Path) -> dict[str, list[str]]:
    """The timed commands by label; ``bare`` is the reference."""
    py = sys.executable
    return {
        "bare": [py, str(bare_app), "--help"],
        "sweep.py --help": [py, "sweep.py", "--help"],
        "sweep.py --cfg job": [py, "sweep.py", "--cfg", "job"],
        "naming canonical": [py, "-m", "sweeper.naming", "canonical", NOTES_NAME],
        "naming hash": [py, "-m", "sweeper.naming", "hash", NOTES_NAME],
    }


def run_once(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process; a failing command stops the benchmark with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd[1:])}\n{done.stderr[-2000:]}")
    return elapsed


def measure(cmds: dict[str, list[str]], repeats: int, env: dict[str, str],
            run: Callable[[list[str], dict[str, str]], float] = run_once) -> dict[str, list[float]]:
    """Times of every command over ``repeats`` interleaved rounds (after one untimed warm-up round)."""
    labels = list(cmds)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for label in labels:  # warm the file cache and the .pyc files
        run(cmds[label], env)
    for r in range(repeats):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            times[label].append(run(cmds[label], env))
    return times


def ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """Median of each command over the bare app's median."""
    bare = statistics.median(times["bare"])
    return {label: statistics.median(t) / bare for label, t in times.items() if label != "bare"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="one timed round")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        bare_app = Path(tmp) / "bare_app.py"
        bare_app.write_text(BARE_APP)
        times = measure(commands(bare_app), args.repeats, env)
    by_label = ratios(times)
    for label, t in times.items():
        spread = f"{min(t):.2f}-{max(t):.2f}"
        extra = "" if label == "bare" else f"  {by_label[label]:.2f}x bare"
        print(f"{label:22s} median {statistics.median(t):6.2f} s  (range {spread} s){extra}")
    worst = max(by_label, key=by_label.get)
    result = {"bare_s": round(statistics.median(times["bare"]), 3), "repeats": args.repeats,
              **{label.replace(" ", "_"): round(v, 2) for label, v in by_label.items()},
              "worst": worst, "goal": GOAL, "ratio": round(by_label[worst], 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
