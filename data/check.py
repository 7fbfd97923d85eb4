"""Verify every (image, label) pair of a dataset's splits before anything trains on it.

Two depths:

- ``headers`` (the default, and what training runs): each file is *opened* with Pillow, which parses
  the header only (format, size, mode), and its completeness is read from the file's structure
  without decoding pixels: a PNG must end with its ``IEND`` chunk, a JPEG with its ``EOI`` marker
  (``FF D9`` in the last KiB), a TIFF's strips/tiles (offset + byte count) must lie inside the file.
  Other formats are decoded (no structural test is known for them). Checked: both files exist and
  open, the label is single-channel (not RGB), image and label have the same size.
- ``full``: each pair is decoded through the dataset's own reader (its label mapping included) and,
  besides the above, every label value must be a class id, the ignore index or a declared void label.

Results of a passing check are cached (``$SEGSWEEP_CACHE``, else ``$XDG_CACHE_HOME/segsweep``, else
``~/.cache/segsweep``) under a fingerprint of every file's path, size and mtime, so an unchanged
split is not read twice; a changed, added or removed file changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.errors import CorruptFileError, DatasetError
from data.io import COLOUR_MODES, sbd_mat_hint, write_atomic

#: bump when what a check verifies changes (old cache entries then no longer match)
CHECK_VERSION = 1
MODES = ("headers", "full")
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"
TIFF_OFFSETS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_OPEN_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
THREADS = 8  # file opens wait on the disk (or a network file system) more than on the CPU

Pair = tuple[Path, Path]


@dataclass(frozen=True)
class Problem:
    """One broken file (or pair) and what is wrong with it."""

    path: Path
    reason: str
    corrupt: bool = False  # undecodable or truncated: what ``dataset.skip_corrupt: true`` skips at load

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Header:
    """What the header of an image file says."""

    size: tuple[int, int]  # (W, H)
    mode: str


# -- one file --------------------------------------------------------------------------------------
def _tail(path: Path, n: int) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read()


def _tiff_incomplete(img: Image.Image, file_size: int) -> str | None:
    tags = getattr(img, "tag_v2", {})
    for offsets_tag, counts_tag in TIFF_OFFSETS:
        if offsets_tag in tags and counts_tag in tags:
            ends = [int(o) + int(c) for o, c in zip(_seq(tags[offsets_tag]), _seq(tags[counts_tag]), strict=False)]
            if ends and max(ends) > file_size:
                return f"truncated TIFF (pixel data ends at byte {max(ends)}, the file has {file_size})"
            return None
    img.load()  # no strip table: decode to find out
    return None


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, tuple | list) else (value,)


def incomplete(img: Image.Image, path: Path) -> str | None:
    """Why the file behind the opened ``img`` is truncated, or None; decodes only formats without a
    structural end (not PNG, JPEG or TIFF)."""
    if img.format == "PNG":
        return None if _tail(path, len(PNG_END)) == PNG_END else "truncated PNG (no IEND chunk at the end)"
    if img.format in ("JPEG", "MPO"):
        return None if JPEG_END in _tail(path, 1024) else "truncated JPEG (no end-of-image marker)"
    if img.format == "TIFF":
        return _tiff_incomplete(img, path.stat().st_size)
    img.load()
    return None


def read_header(path: Path, what: str) -> Header | Problem:
    """The header of ``path`` (and that the file is complete), or the problem with it."""
    if not path.is_file():
        return Problem(path, f"{what} file not found")
    if path.suffix.lower() == ".mat":
        return Problem(path, sbd_mat_hint())
    try:
        with Image.open(path) as img:
            reason = incomplete(img, path)
            header = Header(img.size, img.mode)
    except _OPEN_ERRORS as e:
        return Problem(path, f"{what} cannot be read ({type(e).__name__}: {e})", corrupt=True)
    return Problem(path, reason, corrupt=True) if reason else header


def check_pair_headers(image: Path, label: Path) -> list[Problem]:
    """Both files open and are complete, the label is single-channel, the sizes agree."""
    got = [read_header(image, "image"), read_header(label, "label")]
    problems = [g for g in got if isinstance(g, Problem)]
    if problems:
        return problems
    img, lab = got
    assert isinstance(img, Header) and isinstance(lab, Header)
    if lab.mode in COLOUR_MODES:
        return [Problem(label, f"label has {lab.mode} colour channels; expected a single-channel map of class ids")]
    if img.size != lab.size:
        return [Problem(label, f"label is {lab.size[0]}x{lab.size[1]} but its image {image.name} is "
                               f"{img.size[0]}x{img.size[1]} (WxH)")]
    return []


def check_item_decoded(dataset: Any, j: int) -> list[Problem]:
    """Item ``j`` decoded by its reader: sizes agree and every label value is a class, ignore or void."""
    image_path, label_path = dataset.pairs[j]
    header_problems = check_pair_headers(image_path, label_path)
    if header_problems:
        return header_problems
    try:
        image, label = dataset.load(j)
    except CorruptFileError as e:
        return [Problem(label_path, str(e).splitlines()[0], corrupt=True)]
    except DatasetError as e:
        return [Problem(label_path, str(e).splitlines()[0])]
    allowed = {*range(dataset.num_classes), dataset.ignore_index, *dataset.void_labels}
    bad = sorted(set(np.unique(label).tolist()) - allowed)
    if bad:
        return [Problem(label_path, f"label values {bad[:10]} are neither classes 0..{dataset.num_classes - 1} "
                                    f"nor ignore {dataset.ignore_index}")]
    return []


# -- a split -----------------------------------------------------------------------------------------
def pairs_of(dataset: Any) -> list[Pair] | None:
    """The (image, label) files of a file-backed dataset; None for generated ones (synthetic)."""
    pairs = getattr(dataset, "pairs", None)
    return None if pairs is None else [(Path(a), Path(b)) for a, b in pairs]


def fingerprint(pairs: Iterable[Pair], mode: str, extra: str = "") -> str | None:
    """A digest of every file's path, size and mtime (None when a file is missing: never cached)."""
    digest = hashlib.sha256(f"v{CHECK_VERSION}|{mode}|{extra}\n".encode())
    for pair in pairs:
        for path in pair:
            try:
                st = path.stat()
            except OSError:
                return None
            digest.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where passing checks are remembered."""
    explicit = os.environ.get("SEGSWEEP_CACHE")
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "segsweep"
    return base / "data-check"


def _cache_file(key: str) -> Path:
    return cache_dir() / f"{key}.ok"


def _remember(key: str, summary: str) -> None:
    try:
        path = _cache_file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_text(summary + "\n"))
    except OSError:
        pass  # a read-only home only costs the next run the check again


@dataclass(frozen=True)
class SplitReport:
    """The outcome of checking one split."""

    split: str
    pairs: int
    problems: tuple[Problem, ...]
    seconds: float
    cached: bool


def check_split(dataset: Any, split: str, mode: str = "headers", use_cache: bool = True,
                progress: bool = False) -> SplitReport:
    """Check every pair of ``dataset`` (its split ``split``) at depth ``mode``."""
    if mode not in MODES:
        raise DatasetError(f"unknown check mode {mode!r}; use one of {MODES}")
    pairs = pairs_of(dataset)
    if pairs is None:
        return SplitReport(split, len(dataset), (), 0.0, cached=False)
    extra = f"{dataset.num_classes}|{dataset.ignore_index}|{dataset.void_labels}|{type(dataset).__name__}"
    key = fingerprint(pairs, mode, extra) if use_cache else None
    if key is not None and _cache_file(key).is_file():
        return SplitReport(split, len(pairs), (), 0.0, cached=True)
    started = time.perf_counter()
    one: Callable[[int], list[Problem]] = (
        (lambda j: check_item_decoded(dataset, j)) if mode == "full" else (lambda j: check_pair_headers(*pairs[j])))
    with ThreadPoolExecutor(THREADS) as pool:
        results = pool.map(one, range(len(pairs)))
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=len(pairs), desc=f"check {split}", unit="pair", leave=False, disable=None)
        problems = tuple(p for found in results for p in found)
    seconds = time.perf_counter() - started
    if key is not None and not problems:
        _remember(key, f"{split}: {len(pairs)} pairs ({mode}) ok in {seconds:.2f} s")
    return SplitReport(split, len(pairs), problems, seconds, cached=False)


def splits_in_use(cfg: Any) -> list[str]:
    """The splits a run of ``cfg`` reads (train, then eval), once each."""
    return list(dict.fromkeys([str(cfg.dataset.train_split), str(cfg.dataset.eval_split)]))


def check_before_training(cfg: Any, datasets: Mapping[str, Any]) -> None:
    """Headers and sizes of every pair of ``datasets`` (split -> dataset); raise a ``DatasetError``
    naming the broken files (on its first line: the first few) before any step. Cached. With
    ``dataset.skip_corrupt: true`` undecodable files are only reported (the reader skips them)."""
    name = str(cfg.dataset.name)
    skip_corrupt = bool(cfg.dataset.get("skip_corrupt", False))
    for split, dataset in datasets.items():
        report = check_split(dataset, split, "headers")
        fatal = tuple(p for p in report.problems if not (skip_corrupt and p.corrupt))
        if fatal:
            raise broken_error(name, replace(report, problems=fatal))
        for problem in report.problems:
            print(f"[data] {name} {split}: {problem.line()} (skipped when read: dataset.skip_corrupt=true)",
                  file=sys.stderr, flush=True)
        if not report.cached and report.pairs and pairs_of(dataset) is not None:
            print(f"[data] {name} {split}: {report.pairs} pairs checked (headers) in {report.seconds:.1f} s",
                  file=sys.stderr, flush=True)


def broken_error(name: str, report: SplitReport, shown: int = 3) -> DatasetError:
    """The error for a split with broken files: the first ``shown`` on the first line, all below."""
    problems = report.problems
    head = "; ".join(p.line() for p in problems[:shown]) + ("; ..." if len(problems) > shown else "")
    return DatasetError(
        f"dataset {name} split {report.split!r}: {len(problems)} broken file(s) of {report.pairs} pairs: {head} "
        f"(fix or unlist them; `python -m data check dataset={name}` lists all)\n"
        + "\n".join(p.line() for p in problems))
