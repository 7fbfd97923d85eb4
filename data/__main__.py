"""``python -m data {prepare,check}``: build a dataset tree from its download, verify a dataset.

    python -m data prepare voc --sbd SBD_DIR --voc VOC2012_DIR --out DIR
    python -m data prepare aerial --inria INRIA_DIR --out DIR [--size 1000] [--stride 1000]
                                  [--val-per-city 5 | --val-list FILE]
    python -m data check dataset=NAME [dataset.KEY=VALUE ...] [--full] [--no-cache]

Bad input: one line on stderr, exit 2. ``check`` prints ``<split>: <N> images`` a split, then one line a
broken file on stderr (exit 2) or ``ok``. Imports neither MLflow nor ``sweeper``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from data.errors import DatasetError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="build a dataset tree from its download")
    kinds = prepare.add_subparsers(dest="dataset", required=True)
    voc = kinds.add_parser("voc", help="SBD + VOC2012 -> SegmentationClassAug, train_aug/train/val lists")
    voc.add_argument("--sbd", type=Path, required=True, help="benchmark_RELEASE (or its dataset/ folder)")
    voc.add_argument("--voc", type=Path, required=True, help="VOCdevkit/VOC2012")
    voc.add_argument("--out", type=Path, required=True, help="the tree to write (dataset.root); may be --voc")
    aerial = kinds.add_parser("aerial", help="Inria tiles -> training patches, validation tiles, lists")
    aerial.add_argument("--inria", type=Path, required=True, help="AerialImageDataset (or its train/ folder)")
    aerial.add_argument("--out", type=Path, required=True, help="the tree to write (dataset.root)")
    aerial.add_argument("--size", type=int, default=1000, help="patch side in pixels (default 1000)")
    aerial.add_argument("--stride", type=int, default=None, help="patch step in pixels (default: --size)")
    val = aerial.add_mutually_exclusive_group()
    val.add_argument("--val-per-city", type=int, default=5, help="first N tiles of each city validate (default 5)")
    val.add_argument("--val-list", type=Path, default=None,
                     help="validation tiles from a list (the notes' metadata/aerial/val.txt, or tile names)")
    check = commands.add_parser("check", help="count and verify every pair of the splits a run uses")
    check.add_argument("overrides", nargs="*", help="dataset=NAME and dataset.KEY=VALUE")
    check.add_argument("--full", action="store_true", help="decode every pair and check the label values too")
    check.add_argument("--no-cache", action="store_true", help="check even if an unchanged split passed before")
    return parser


def _prepare(args: argparse.Namespace) -> int:
    if args.dataset == "voc":
        from data.prepare_voc import prepare_voc

        counts = prepare_voc(args.sbd, args.voc, args.out)
        print(f"voc: {counts['written']} labels written, {counts['kept']} already there; train_aug "
              f"{counts['train_aug']}, train {counts['train']}, val {counts['val']} -> {args.out}")
        print(f"next: python -m data check dataset=voc dataset.root={args.out.resolve()}")
    else:
        from data.prepare_aerial import prepare_aerial

        counts = prepare_aerial(args.inria, args.out, size=args.size, stride=args.stride,
                                val_per_city=args.val_per_city, val_list=args.val_list)
        print(f"aerial: train {counts['train']} patches of {counts['train_tiles']} tiles, val {counts['val']} "
              f"tiles -> {args.out}")
        print(f"next: python -m data check dataset=aerial dataset.root={args.out.resolve()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from data.build import build_dataset
    from data.check import check_split, splits_in_use
    from data.config import dataset_config

    cfg = dataset_config(args.overrides)
    splits = splits_in_use(cfg)
    built = {split: build_dataset(cfg, split, train=False) for split in splits}
    for split, dataset in built.items():
        print(f"{split}: {len(dataset)} images", flush=True)
    mode = "full" if args.full else "headers"
    broken = 0
    for split, dataset in built.items():
        report = check_split(dataset, split, mode, use_cache=not args.no_cache, progress=True)
        for problem in report.problems:
            print(problem.line(), file=sys.stderr)
        broken += len(report.problems)
        state = "cached: unchanged since it passed" if report.cached else f"{report.seconds:.2f} s"
        print(f"{split}: {'ok' if not report.problems else f'{len(report.problems)} broken'} ({mode}, {state})")
    if broken:
        print(f"error: {broken} broken file(s) in dataset {cfg.dataset.name}: fix them, or remove their lines "
              "from the list files", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _prepare(args) if args.command == "prepare" else _check(args)
    except DatasetError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only --out: what and where, not a traceback
        print(f"error: {e.strerror or e}: {e.filename or ''} (free space or pick another --out, then re-run to "
              "resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
