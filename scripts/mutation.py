"""Mutation testing of the pure decision modules with mutmut 3.8.1 (not in CI: minutes per module).

    pip install mutmut==3.8.1
    scripts/mutation.sh [TARGET ...] [--max-children N] [--slow] [--fail-under PCT] [--resume]
    scripts/mutation.sh --show MUTANT | [TARGET ...] --report

A TARGET is a file of ``TARGETS`` (``data/check.py``), its short name (``check``) or ``all`` (the
default). mutmut's shared settings are ``[tool.mutmut]`` in pyproject.toml; this script adds, per run,
the files (or functions) to mutate and the tests that cover them, starts from a fresh ``mutants/``
(stale copies there are mutmut's trap), and prints the score per target with every survivor.
docs/testing.md says how to read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from glob import glob
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSION = "3.8.1"
SELECTION = Path("mutants") / "segsweep-selection.txt"  # what a --resume may continue


@dataclass(frozen=True)
class Target:
    """A module to mutate, the functions of it that count (None: all), the fast tests that cover it and
    those that ``--slow`` adds (each surviving mutant runs every covering test: minutes per module)."""

    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] | None = None
    slow_tests: tuple[str, ...] = ()
    #: functions left out: those that only run while the module is imported (mutmut picks the mutant
    #: after the import, so their mutants can never run and would all "survive")
    skip: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    def patterns(self) -> list[str]:
        """mutmut's mutant-name globs for this target (``data.check.*``, ``sweeper.task.x_decide__mutmut_*``)."""
        if self.functions is None:
            return [f"{self.module}.*"]
        return [f"{self.module}.x_{name}__mutmut_*" for name in self.functions]

    def counts(self, mutant: str) -> bool:
        """Whether a mutant (by name) is one of this target's."""
        from fnmatch import fnmatch

        skipped = [f"{self.module}.x" + ("".join(f"ǁ{p}" for p in name.split(".")) if "." in name else f"_{name}")
                   + "__mutmut_*" for name in self.skip]  # Class.method: xǁClassǁmethod__mutmut_N
        return any(fnmatch(mutant, p) for p in self.patterns()) and not any(fnmatch(mutant, p) for p in skipped)


#: the naming modules' unit-level tests (seconds; the golden file decodes every notes name); the notes round
#: trips through Hydra and the property tests (a minute per surviving mutant) run with --slow
NAMING_FAST = ("tests/test_naming_values.py", "tests/test_naming_tokens.py", "tests/test_naming_gaps.py",
               "tests/test_naming_golden.py", "tests/test_naming_edges.py")
NAMING_SLOW = ("tests/test_naming.py", "tests/test_naming_properties.py")
#: tests/test_search.py's tests of the grammar (the rest run searches: seconds to minutes each)
SEARCH_UNIT = tuple(f"tests/test_search.py::{name}" for name in (
    "test_grammar_to_distributions", "test_bad_search_entries_name_the_problem", "test_grid_refuses_continuous_params",
    "test_format_value_round_trips", "test_create_optuna_distribution_from_override",
    "test_create_params_from_overrides"))
#: the pure decision modules (issue 24 item 6) and the tests that cover each
TARGETS = {t.path: t for t in (
    Target("sweeper/naming/codec.py", NAMING_FAST, slow_tests=NAMING_SLOW),
    Target("sweeper/naming/tokens.py", NAMING_FAST, slow_tests=NAMING_SLOW, skip=(
        "_set", "_dotted", "_flag", "_value", "_dataset_pattern", "_backbone_pattern", "Token.__post_init__")),
    Target("sweeper/naming/values.py", NAMING_FAST, slow_tests=NAMING_SLOW),
    Target("sweeper/task.py", ("tests/test_task_decision.py",), functions=("decide",)),
    Target("sweeper/tracking.py", ("tests/test_tracking.py",), functions=(
        "resolve_uri", "tracking_uri", "flatten", "short_keys", "_is_bookkeeping", "run_params", "run_name",
        "objective_metric", "result_value", "run_tags", "is_alive", "_pid_alive", "first_line",
        "error_line", "ui_url")),
    Target("data/check.py", ("tests/test_data_check*.py",)),
    Target("results/tables.py", ("tests/test_results_tables.py",),
           slow_tests=("tests/test_results.py", "tests/test_results_views.py")),
    Target("sweeper/search_space.py", ("tests/test_search_space.py", *SEARCH_UNIT), slow_tests=("tests/test_search.py",)),
)}
KILLED = ("killed", "timeout", "caught by type check")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def choose(names: list[str]) -> list[Target]:
    """The targets named on the command line (a path, its file stem, or ``all``), in TARGETS order."""
    if not names or "all" in names:
        return list(TARGETS.values())
    by_stem = {Path(path).stem: t for path, t in TARGETS.items()}
    chosen = []
    for name in names:
        target = TARGETS.get(name) or by_stem.get(name)
        if target is None:
            fail(f"unknown target {name!r}; choose from: all, {', '.join(TARGETS)}")
        chosen.append(target)
    return [t for t in TARGETS.values() if t in chosen]


def test_files(targets: list[Target], slow: bool) -> list[str]:
    patterns = [p for t in targets for p in (*t.tests, *(t.slow_tests if slow else ()))]
    files = dict.fromkeys(f for pattern in patterns  # a test id (file::test) is passed as it is
                          for f in ([pattern] if "::" in pattern else sorted(glob(pattern))))
    if not files:
        fail("no test file of these targets exists")
    return list(files)


def configure(targets: list[Target], slow: bool) -> None:
    """mutmut's config: pyproject's ``[tool.mutmut]`` with this run's files and tests."""
    from mutmut import configuration

    cfg = configuration._load_config()
    args = list(cfg.pytest_add_cli_args)
    if slow and "-m" in args:
        at = args.index("-m")
        del args[at:at + 2]
    configuration._config = dataclasses.replace(
        cfg, only_mutate=[t.path for t in targets], pytest_add_cli_args=args,
        pytest_add_cli_args_test_selection=test_files(targets, slow))


def run(targets: list[Target], max_children: int) -> None:
    """``mutmut run`` on the targets' mutants only: the others (functions a target leaves out) stay
    unchecked. (mutmut's own filter, mutant names on its command line, lists every result at the end.)"""

    import mutmut.__main__ as cli

    collect = cli.collect_source_file_mutation_data

    def only_targets(*, mutant_names):
        mutants, by_path = collect(mutant_names=mutant_names)
        return [m for m in mutants if any(t.counts(m[1]) for t in targets)], by_path

    cli.collect_source_file_mutation_data = only_targets
    cli._run([], max_children)


def verdicts(targets: list[Target]) -> dict[Target, dict[str, str]]:
    """Each target's mutants and their status (killed, survived, no tests, ...)."""

    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    out = {}
    for target in targets:
        data = SourceFileMutationData(path=Path(target.path))
        data.load()
        out[target] = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()
                       if target.counts(name)}
    return out


def change(name: str) -> str:
    """A mutant's change in one line: the removed and the added source lines."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    try:
        diff = get_diff_for_mutant(name).splitlines()[2:]
    except Exception as e:  # noqa: BLE001 - a diff is a courtesy; the name is what counts
        return f"(no diff: {type(e).__name__})"
    return "  ".join(" ".join(line.split()) for line in diff if line[:1] in "-+")[:300]


def report(targets: list[Target]) -> float:
    """Print the score per target and overall with every mutant not killed; return the overall %."""
    killed = total = 0
    lines = ["", "mutation score (killed / total; killed counts timeouts):"]
    survivors = []
    for target, status in verdicts(targets).items():
        counts = Counter(status.values())
        k = sum(counts[s] for s in KILLED)
        killed, total = killed + k, total + len(status)
        rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in KILLED)
        pct = 100 * k / len(status) if status else 0.0
        lines.append(f"  {target.path:28} {k:4d} / {len(status):4d} = {pct:5.1f}%" + (f"  ({rest})" if rest else ""))
        survivors += [(name, s) for name, s in sorted(status.items()) if s not in KILLED]
    score = 100 * killed / total if total else 0.0
    lines.append(f"  {'all':28} {killed:4d} / {total:4d} = {score:5.1f}%")
    if survivors:
        lines += ["", "not killed (scripts/mutation.sh --show NAME prints the diff):"]
        lines += [f"  {s:10} {name}  {change(name)}" for name, s in survivors]
    print("\n".join(lines))
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="files of TARGETS or their stems (default: all)")
    parser.add_argument("--max-children", type=int, default=int(os.environ.get("MUTATION_CHILDREN", "1")),
                        help="mutants tested at once (default 1, or $MUTATION_CHILDREN)")
    parser.add_argument("--slow", action="store_true", help="run the slow tier and each target's slow test files too")
    parser.add_argument("--fail-under", type=float, help="exit 1 when the overall score is below this %%")
    parser.add_argument("--resume", action="store_true", help="continue the last run's mutants/ (same targets)")
    parser.add_argument("--show", metavar="MUTANT", help="print one mutant's diff (after a run)")
    parser.add_argument("--report", action="store_true", help="print the last run's score again (no run)")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    try:
        installed = version("mutmut")
    except PackageNotFoundError:
        fail(f"mutmut is not installed: pip install mutmut=={VERSION}")
    if installed != VERSION:
        fail(f"mutmut {installed} is installed; this setup is for {VERSION}: pip install mutmut=={VERSION}")
    targets = choose(args.targets)
    if args.show:
        configure(list(TARGETS.values()), args.slow)
        from mutmut.mutation.diff_apply import get_diff_for_mutant
        print(get_diff_for_mutant(args.show))
        return 0
    if args.report:
        configure(targets, args.slow)
        report(targets)
        return 0
    missing = [t.path for t in targets if not Path(t.path).is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)} (update TARGETS in scripts/mutation.py)")
    selection = "\n".join(f"{t.path} {t.functions} slow={args.slow}" for t in targets)
    if args.resume and not (SELECTION.is_file() and SELECTION.read_text() == selection):
        fail("--resume needs the last run's mutants/ with the same targets and tier; run without --resume")
    if not args.resume:
        shutil.rmtree("mutants", ignore_errors=True)
    Path("mutants").mkdir(exist_ok=True)
    SELECTION.write_text(selection)
    configure(targets, args.slow)
    try:
        run(targets, args.max_children)
    except SystemExit as e:
        if e.code:
            return int(e.code) if isinstance(e.code, int) else 1
    score = report(targets)
    return 1 if args.fail_under is not None and score < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
