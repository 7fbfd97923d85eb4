"""``python -m results``: render notes in place, write the results README, import the notes' history."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from results.query import StoreError, default_uri


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m results", description=__doc__)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="regenerate the <!-- segsweep:begin KEY --> blocks of notes files in place")
    r.add_argument("notes", nargs="+", type=Path)
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")
    r.add_argument("--dry-run", action="store_true", help="write nothing; print the diff")
    r.add_argument("--no-hash-check", action="store_true", help="skip the config-hash stale check (faster)")
    m = sub.add_parser("readme", help="write the results README (tables, plots, a page per sweep)")
    m.add_argument("--out", type=Path, default=None,
                   help="the README to write; its PNGs and sweeps/ go next to it (default outputs/results/README.md)")
    m.add_argument("--ui-url", default=None,
                   help="the MLflow UI its run links open (default: the tracking URI when it is an http(s) "
                        "server, else http://127.0.0.1:5000)")
    i = sub.add_parser("import-notes", help="turn every row of the notes' tables into an MLflow run")
    i.add_argument("notes", type=Path)
    i.add_argument("--dry-run", action="store_true", help="parse and report, write nothing")
    i.add_argument("--raw-names", action="store_true",
                   help="keep the names as the notes write them (fast: no codec, ~0.3 s a name)")
    x = sub.add_parser("matrix", help="recipe x dataset: each recipe's result and state on every dataset")
    x.add_argument("--datasets", default=None, help="comma-separated columns (default: the datasets with runs)")
    x.add_argument("--missing", action="store_true", help="print the sweep commands that fill missing/stale cells")
    x.add_argument("--no-hash-check", action="store_true", help="skip the config-hash stale check (faster)")
    t = sub.add_parser("trials", help="table of an Optuna search's trials (child runs of a parent run)")
    t.add_argument("parent_run_id")
    t.add_argument("--plot", type=Path, default=None, help="also write mIoU against trial number (PNG)")
    f = sub.add_parser("pareto", help="the Pareto front of a multi-objective search (markdown table)")
    f.add_argument("--study", default=None, help="the study's name (default: the newest multi-objective search)")
    f.add_argument("--plot", type=Path, default=None, help="also write its trials, the front highlighted (PNG)")
    return p


def _render(args: argparse.Namespace, uri: str) -> int:
    """Regenerate every file in memory first; write only when all of them are good (one line, exit 2,
    nothing rewritten, on the first bad file or marker)."""
    from results.notes import NotesFileError, read_text
    from results.query import load_runs
    from results.render import MarkerError, atomic_write, diff, regenerate
    from results.stale import default_hash_fn

    missing = [p for p in args.notes if not p.is_file()]
    if missing:
        print(f"error: {missing[0]}: no such notes file", file=sys.stderr)
        return 2
    runs = load_runs(uri)
    hash_fn = None if args.no_hash_check else default_hash_fn()
    texts: list[tuple[Path, str, str]] = []
    for path in args.notes:
        try:
            old = read_text(path)
            texts.append((path, old, regenerate(old, runs, hash_fn)))
        except (MarkerError, NotesFileError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    status = 0
    write = not (args.check or args.dry_run)
    for path, old, new in texts:
        if "segsweep:begin" not in old:
            print(f"{path}: no <!-- segsweep:begin KEY --> blocks, nothing to render", file=sys.stderr)
        if args.dry_run:
            sys.stdout.write(diff(old, new, str(path)))
        if new != old:
            status = 1 if args.check else status
            if write:
                atomic_write(path, new)
            print(f"{path}: {'updated' if write else 'would change'}", file=sys.stderr)
    if hash_fn is not None:
        hash_fn.save()
    return status


def _matrix(args: argparse.Namespace, uri: str) -> int:
    from results import matrix
    from results.query import load_runs
    from results.stale import default_hash_fn

    runs = load_runs(uri)
    chosen = [d for d in (args.datasets or "").split(",") if d] or None
    hash_fn = None if args.no_hash_check else default_hash_fn()
    try:
        frame, cells = matrix.build(runs, hash_fn, chosen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if hash_fn is not None:
        hash_fn.save()
    if args.missing:
        commands, left = matrix.missing_plan(runs, cells, chosen)
        print("\n".join(commands) if commands else "# every cell is filled and up to date")
        if left:
            print(matrix.left_out_line(left))
    else:
        print(matrix.markdown(frame) if len(frame) else "_No runs yet._")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    uri = args.tracking_uri or default_uri()
    try:
        if args.cmd == "render":
            return _render(args, uri)
        if args.cmd == "readme":
            from results.readme import DEFAULT_OUT, refresh

            if args.ui_url is not None and not args.ui_url.startswith(("http://", "https://")):
                print(f"error: --ui-url {args.ui_url!r} is not an http(s) URL: give the MLflow UI's address, "
                      "e.g. --ui-url http://127.0.0.1:5000", file=sys.stderr)
                return 2
            print(refresh(uri, args.out or DEFAULT_OUT, args.ui_url))
            return 0
        if args.cmd == "import-notes":
            from results.importer import import_notes
            from results.notes import NotesFileError

            if not args.notes.is_file():
                print(f"error: {args.notes}: no such notes file", file=sys.stderr)
                return 2
            try:
                print(import_notes(args.notes, uri, dry_run=args.dry_run, codec=not args.raw_names).summary())
            except NotesFileError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.cmd == "matrix":
            return _matrix(args, uri)
        if args.cmd == "trials":
            from results.trials import trials_plot, trials_table

            print(trials_table(args.parent_run_id, uri))
            if args.plot:
                print(trials_plot(args.parent_run_id, args.plot, uri))
            return 0
        if args.cmd == "pareto":
            from results.pareto import front_plot, front_table, load_front

            try:
                front = load_front(uri, args.study)
            except LookupError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(front_table(front))
            if args.plot:
                print(front_plot(front, args.plot))
            return 0
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
