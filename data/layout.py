"""Dataset roots, list files ("<image> <label>" per line) and layout errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from data.errors import DatasetError

Pair = tuple[Path, Path]


def dataset_root(cfg, tree: str) -> Path:
    """`cfg.dataset.root` as an existing directory, else an error showing the expected `tree`."""
    ds = cfg.dataset
    root = ds.get("root")
    if root in (None, ""):
        raise DatasetError(
            f"dataset.root is not set for dataset {ds.name!r}; pass dataset.root=<dir> or set SEGSWEEP_DATA "
            f"(root = $SEGSWEEP_DATA/{ds.name}); the expected layout (also in docs/data.md):\n{tree}"
        )
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"dataset root {path} (dataset.root, from SEGSWEEP_DATA or the config) does not exist or is not a "
            f"directory: pass dataset.root=<dir> (the layout dataset {ds.name!r} expects is below and in docs/data.md)"
            f"\n{tree}"
        )
    return path


def list_dir(cfg, root: Path) -> Path | None:
    """`cfg.dataset.list_dir` (absolute, or relative to the root), or None."""
    value = cfg.dataset.get("list_dir")
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else root / p


def find_list(candidates: Sequence[Path | None]) -> Path | None:
    """The first existing list file among `candidates`."""
    for c in candidates:
        if c is not None and c.is_file():
            return c
    return None


def resolve(token: str, root: Path) -> Path | None:
    """A list-file path: absolute if it exists, else relative to root (leading '/' or leading folders
    such as '/SegNet/' of lists written on another machine are dropped until the file is found)."""
    p = Path(token)
    if p.is_absolute() and p.exists():
        return p
    parts = p.parts[1:] if p.is_absolute() else p.parts
    keep = min(2, len(parts))  # never reduce a folder/file token to a bare file name
    for k in range(len(parts) - keep + 1):
        cand = root.joinpath(*parts[k:])
        if cand.exists():
            return cand
    return None


def read_pairs(
    list_file: Path, root: Path, from_id: Callable[[str], tuple[str, str]] | None = None
) -> list[Pair]:
    """Parse a list file of "<image> <label>" lines (blank lines and '#' comments skipped).

    One-token lines are ids, expanded by `from_id` (an error when the dataset has none). All files
    must exist: the error names how many are missing and the first few.
    """
    pairs: list[Pair] = []
    missing: list[str] = []
    for n, raw in enumerate(list_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) == 1 and from_id is not None:
            tokens = list(from_id(tokens[0]))
        if len(tokens) != 2:
            raise DatasetError(
                f"{list_file}:{n}: expected '<image> <label>' (two paths separated by a space), got {line!r}"
            )
        resolved = [resolve(t, root) for t in tokens]
        for t, r in zip(tokens, resolved, strict=True):
            if r is None:
                missing.append(t)
        if None not in resolved:
            pairs.append((resolved[0], resolved[1]))  # type: ignore[arg-type]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise DatasetError(
            f"{len(missing)} file(s) listed in {list_file} not found under {root} (nor as absolute paths), "
            f"e.g.:\n  {shown}"
        )
    if not pairs:
        raise DatasetError(f"list file {list_file} has no entries")
    return pairs


def missing_list_error(name: str, split: str, candidates: Sequence[Path | None], tree: str) -> DatasetError:
    """The error for a split with no list file (and no folders to scan)."""
    looked = "\n  ".join(str(c) for c in candidates if c is not None)
    return DatasetError(
        f"no list file for {name} split {split!r} (docs/data.md; `python -m data prepare`); looked for:\n  {looked}"
        f"\nExpected layout:\n{tree}"
    )


def split_pairs(cfg, name: str, split: str, tree: str, scan: Callable[[Path, str], list[Pair] | None],
                extra_lists: Sequence[str] = (), scan_base: str | None = None) -> list[Pair]:
    """The (image, label) pairs of ``split``: from its list file (``dataset.list_dir``, the root, or
    ``extra_lists`` below the root) if there is one, else from ``scan`` of the folders; an error that
    prints the expected ``tree`` when neither exists."""
    root = dataset_root(cfg, tree)
    ld = list_dir(cfg, root)
    candidates = [ld / f"{split}.txt" if ld else None, root / f"{split}.txt",
                  *(root / sub / f"{split}.txt" for sub in extra_lists)]
    list_file = find_list(candidates)
    if list_file is not None:
        return read_pairs(list_file, root)
    base = root / scan_base if scan_base and (root / scan_base).is_dir() else root
    pairs = scan(base, split)
    if pairs is None:
        raise missing_list_error(name, split, candidates, tree)
    return pairs
