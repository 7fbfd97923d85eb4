"""Every bench under bench/ runs in its ``--quick`` form and prints, last, a JSON line with a numeric
``ratio`` (a smoke test: no timing is asserted). The list is a glob, so a new bench is covered."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, subprocess_env

BENCHES = sorted(p for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_"))
#: benches that fail today for a reason another branch fixes: strict, so the mark goes once it passes
KNOWN: dict[str, str] = {}
#: seconds one quick bench may take on a loaded 2-core machine before the test fails (not a goal)
DEADLINE_S = 420
#: benches that need a service: the environment variable that says it is there, and the one that
#: makes its absence a failure (CI) instead of a skip
NEEDS = {"store_load.py": ("SEGSWEEP_POSTGRES_URI", "REQUIRE_POSTGRES")}


def _param(bench: Path) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[bench.name])] if bench.name in KNOWN else []
    return pytest.param(bench, id=bench.stem, marks=marks)


def last_json(stdout: str) -> dict:
    """The JSON object on the last non-empty line of ``stdout`` (fails the test when there is none)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "the bench printed nothing"
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"the last line is not JSON: {lines[-1][:200]!r}")
    assert isinstance(result, dict), f"the last line is JSON but not an object: {lines[-1][:200]!r}"
    return result


def test_the_glob_finds_the_benches():
    names = {p.name for p in BENCHES}
    assert {"sweep_overhead.py", "results.py", "search.py", "cli_latency.py", "scale.py"} <= names
    assert set(KNOWN) <= names, "a KNOWN entry names no bench"


@pytest.mark.parametrize("bench", [_param(b) for b in BENCHES])
def test_the_bench_runs_quick_and_prints_its_ratio_last(bench: Path, tmp_path: Path):
    if bench.name in NEEDS and not os.environ.get(NEEDS[bench.name][0]):
        reason = f"{bench.name} needs ${NEEDS[bench.name][0]} (scripts/local-postgres-start.sh)"
        if os.environ.get(NEEDS[bench.name][1]) == "1":
            pytest.fail(f"{NEEDS[bench.name][1]}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        done = subprocess.run([sys.executable, str(bench), "--quick"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=DEADLINE_S, env=subprocess_env(PYTHONPATH=str(REPO)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{bench.name} --quick ran past {DEADLINE_S} s")
    assert done.returncode == 0, f"{bench.name} --quick exited {done.returncode}:\n{done.stderr[-3000:]}"
    result = last_json(done.stdout)
    ratio = result.get("ratio")
    assert isinstance(ratio, int | float) and not isinstance(ratio, bool) and math.isfinite(ratio), \
        f"{bench.name}: 'ratio' is {ratio!r}, not a finite number"
