"""Regenerate the tables of a notes file in place, between its segsweep markers.

    <!-- segsweep:begin camvid cols=params,val,test sort=miou -->
    ...generated...
    <!-- segsweep:end camvid -->

KEY is a dataset (``data.registry.names()``: voc, camvid, cityscapes, aerial, synthetic), or a label
when ``dataset=``, ``name=`` or ``sweep=`` says which runs it shows (a KEY that is neither is refused:
it would fill the block with every run). Options after it: ``cols=`` (params, val, test, epochs,
status, seeds, link; default: what the runs report), ``sort=`` (time, name, miou), ``dataset=``,
``name=`` (a glob over names), ``sweep=`` (a sweep id), ``commit=`` (the reference git commit of the
stale check), ``link=`` (the MLflow UI base URL). Everything outside the blocks is kept
byte for byte; the file is replaced atomically.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from results.notes import datasets, read_text
from results.tables import HashFn, TableSpec, render_table

BEGIN = re.compile(r"^\s*<!--\s*segsweep:begin\b\s*(?P<body>.*?)\s*-->\s*$")
END = re.compile(r"^\s*<!--\s*segsweep:end\b\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
MARKERISH = re.compile(r"segsweep:(begin|end)")
OPTIONS = ("cols", "sort", "dataset", "name", "sweep", "commit", "link")


class MarkerError(ValueError):
    """Unbalanced, duplicated or malformed markers; the message names the lines."""


@dataclass(frozen=True)
class Block:
    """A generated block: the lines strictly between its markers are ``start:stop`` (0-based)."""

    spec: TableSpec
    begin_line: int  # 1-based line of the begin marker
    start: int
    stop: int


def parse_spec(body: str, line: int) -> TableSpec:
    """``camvid cols=params,val sort=miou`` -> TableSpec."""
    parts = body.split()
    if not parts or "=" in parts[0]:
        raise MarkerError(f"line {line}: a begin marker needs a KEY first (e.g. `segsweep:begin camvid`)")
    key, opts = parts[0], {}
    for part in parts[1:]:
        k, sep, v = part.partition("=")
        if not sep or k not in OPTIONS:
            raise MarkerError(f"line {line}: unknown option {part!r}; known: {', '.join(o + '=' for o in OPTIONS)}")
        opts[k] = v
    known = datasets()
    if key not in known and not {"dataset", "name", "sweep"} & set(opts):
        raise MarkerError(f"line {line}: unknown KEY {key!r}: use a dataset ({', '.join(known)}) or say which "
                          f"runs the block shows with dataset=, name= or sweep=")
    if "dataset" in opts and opts["dataset"] not in known:
        raise MarkerError(f"line {line}: unknown dataset={opts['dataset']}; known: {', '.join(known)}")
    kwargs: dict = {"key": key, "dataset": opts.get("dataset", key if key in known else None)}
    if "cols" in opts:
        kwargs["columns"] = tuple(c for c in opts["cols"].split(",") if c)
    for k, field_ in (("sort", "sort"), ("name", "name"), ("sweep", "sweep"), ("commit", "commit")):
        if k in opts:
            kwargs[field_] = opts[k]
    if "link" in opts:
        kwargs["link_base"] = opts["link"].rstrip("/")
    try:
        return TableSpec(**kwargs)
    except ValueError as exc:
        raise MarkerError(f"line {line}: {exc}") from exc


def find_blocks(lines: list[str]) -> list[Block]:
    """The blocks of a file's lines; MarkerError (all problems, with line numbers) if unbalanced."""
    blocks: list[Block] = []
    errors: list[str] = []
    open_: tuple[str, int, TableSpec | None] | None = None
    seen: dict[str, int] = {}
    fenced = False
    for i, line in enumerate(lines):
        n = i + 1
        if FENCE.match(line):
            fenced = not fenced  # markers inside ``` code blocks are examples, not blocks
            continue
        if fenced:
            continue
        if (m := BEGIN.match(line)) is not None:
            if open_ is not None:
                errors.append(f"line {n}: begin inside the block opened at line {open_[1]} (missing end)")
                continue
            key = m.group("body").split()[0] if m.group("body").split() else ""
            try:
                spec = parse_spec(m.group("body"), n)
            except MarkerError as exc:
                errors.append(str(exc))
                spec = None
            if key in seen:
                errors.append(f"line {n}: duplicate block {key!r} (first at line {seen[key]})")
            seen.setdefault(key, n)
            open_ = (key, n, spec)
        elif (m := END.match(line)) is not None:
            if open_ is None:
                errors.append(f"line {n}: end without a begin")
                continue
            key, start, spec = open_
            if m.group("body") and m.group("body") != key:
                errors.append(f"line {n}: end {m.group('body')!r} closes begin {key!r} of line {start}")
            if spec is not None:
                blocks.append(Block(spec, start, start, i))
            open_ = None
        elif MARKERISH.search(line) and "<!--" in line:
            errors.append(f"line {n}: malformed segsweep marker (write `<!-- segsweep:begin KEY -->`)")
    if open_ is not None:
        errors.append(f"line {open_[1]}: begin {open_[0]!r} is never closed (add `<!-- segsweep:end {open_[0]} -->`)")
    if errors:
        raise MarkerError("refusing to rewrite: " + "; ".join(errors))
    return blocks


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def regenerate(text: str, runs: pd.DataFrame, hash_fn: HashFn | None = None) -> str:
    """``text`` with every block's content replaced by its table."""
    lines = text.splitlines(keepends=True)
    blocks = find_blocks([ln.rstrip("\r\n") for ln in lines])
    nl = _newline(text)
    out: list[str] = []
    pos = 0
    for b in blocks:
        out += lines[pos : b.start]
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += nl
        body = render_table(runs, b.spec, hash_fn)
        out.append(nl + body.replace("\n", nl) + nl + nl)
        pos = b.stop
    out += lines[pos:]
    return "".join(out)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (keeps the file's mode)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def diff(old: str, new: str, path: str) -> str:
    """A unified diff of a notes file before and after regeneration."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )


def render_file(
    path: Path, runs: pd.DataFrame, hash_fn: HashFn | None = None, write: bool = True
) -> tuple[str, str]:
    """Regenerate ``path``'s blocks; return (old text, new text). Writes only when it changes."""
    path = Path(path)
    old = read_text(path)  # NotesFileError (a ValueError) for a file that is not UTF-8 text
    new = regenerate(old, runs, hash_fn)
    if write and new != old:
        atomic_write(path, new)
    return old, new
