"""Parse the researcher's markdown notes: tables, their sections, and the messy result cells.

A notes table is a pipe table (header line, a ``--|--`` separator, rows). Its first column is the
run name, the first later column whose header mentions ``param`` is #Params(M), and the column whose
header mentions ``mIoU`` holds the result (``test`` in that header means test mIoU, else val mIoU).
Rows inside ``<!-- segsweep:begin/end -->`` blocks are generated, not history, and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from data import registry


def datasets() -> tuple[str, ...]:
    """The declared datasets (``conf/dataset/*.yaml`` through ``data.registry``), in listing order."""
    return registry.names()


def _heading_word(token: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z]){re.escape(token.lower())}(?![a-z])")


_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BEGIN = re.compile(r"^\s*<!--\s*segsweep:begin\b")
_END = re.compile(r"^\s*<!--\s*segsweep:end\b")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_NUM = r"\d+(?:\.\d+)?"
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_LABELLED = re.compile(rf"\b([A-Za-z]+)(\d*)\s*:\s*({_NUM})")
_EPOCH = re.compile(r"\bepoch\s*(\d+)\b", re.IGNORECASE)
_MAIN = re.compile(rf"(?<![\w.])({_NUM})(\s*~)?(?![\w.])")


@dataclass(frozen=True)
class Cell:
    """What one result cell states. ``main`` is in the column's metric (val or test)."""

    raw: str
    main: float | None = None
    val: float | None = None
    test: float | None = None
    epoch: int | None = None
    approx: bool = False
    extras: dict[str, float] = field(default_factory=dict)
    remark: str = ""
    decimals: dict[str, int] = field(default_factory=dict)  # label (val, test, ...) -> decimals as written


@dataclass(frozen=True)
class NotesRow:
    """One row of a notes results table."""

    dataset: str
    section: str
    line: int  # 1-based line number in the notes file
    name: str
    params_raw: str
    params: float | None
    cell: Cell
    metric: str  # "val" or "test": what the table's mIoU column reports
    group: str = ""  # "<table line>:<n>": the notes' visual groups (``--|--`` rows inside a table)


@dataclass(frozen=True)
class SkippedTable:
    """A table that holds no importable results, and why."""

    line: int
    section: str
    reason: str


def _fix_text(text: str) -> str:
    """Undo UTF-8-read-as-latin-1 damage (``ï¼Œ`` -> ``，``) where that round-trips."""
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def decimals_of(number: str) -> int:
    """The decimals a number was written with: ``'89.0'`` -> 1, ``'86.72'`` -> 2, ``'89'`` -> 0."""
    return len(number.partition(".")[2])


def params_decimals(text: str) -> int | None:
    """The decimals of a #Params cell's number as written (``'9.69'`` -> 2), None without one."""
    m = re.fullmatch(rf"\s*\**\s*({_NUM})\s*M?\s*\**\s*", text)
    return decimals_of(m.group(1)) if m else None


def cell_decimals(raw: str, metric: str = "val") -> dict[str, int]:
    """{split: decimals as written} of a result cell (``'89.0'`` -> {'val': 1})."""
    return parse_cell(raw, metric).decimals


def parse_params(text: str) -> float | None:
    """``'42'`` -> 42.0; ``'?'``, ``''`` or anything else -> None."""
    m = re.fullmatch(rf"\s*\**\s*({_NUM})\s*M?\s*\**\s*", text)
    return float(m.group(1)) if m else None


def parse_cell(raw: str, metric: str = "val") -> Cell:
    """Understand a result cell such as ``(val:62.5) 49`` or ``65.5,(val500:67.93,test:65.9)``.

    ``metric`` is what the column reports ("val" or "test"); the cell's unlabelled number is that.
    """
    text = _fix_text(raw).replace("**", "")
    text = _LINK.sub(r"\1", text)
    labelled: dict[str, float] = {}
    written: dict[str, int] = {}
    epoch: int | None = None

    def take(m: re.Match[str]) -> str:
        nonlocal epoch
        label, suffix, num = m.group(1).lower(), m.group(2), float(m.group(3))
        if label == "epoch" and suffix:
            epoch = int(suffix)
            if metric not in labelled:
                labelled[metric], written[metric] = num, decimals_of(m.group(3))
        else:
            labelled[label + suffix], written[label + suffix] = num, decimals_of(m.group(3))
        return " "

    text = _LABELLED.sub(take, text)

    def take_epoch(m: re.Match[str]) -> str:
        nonlocal epoch
        epoch = int(m.group(1))
        return " "

    text = _EPOCH.sub(take_epoch, text)
    main_m = _MAIN.search(text)
    approx = False
    if main_m:
        labelled[metric] = float(main_m.group(1))
        written[metric] = decimals_of(main_m.group(1))
        approx = bool(main_m.group(2))
        text = text[: main_m.start()] + " " + text[main_m.end() :]
    main = labelled.get(metric)
    remark = re.sub(r"[\s,;:()\[\]~?\uff0c\u3001]+", " ", text).strip()
    if not remark and main is None and "?" in text:
        remark = "?"  # the notes say the result is unknown
    extras = {k: v for k, v in labelled.items() if k not in ("val", "test")}
    return Cell(
        raw=raw,
        main=main,
        val=labelled.get("val"),
        test=labelled.get("test"),
        epoch=epoch,
        approx=approx,
        extras=extras,
        remark=remark,
        decimals={k: v for k, v in written.items() if k in ("val", "test")},
    )


def split_row(line: str) -> list[str]:
    """Cells of a pipe-table line (outer pipes optional)."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def heading_dataset(heading: str) -> str | None:
    """The dataset a section heading talks about (``Camvid`` -> ``camvid``, ``Pascal VOC`` -> ``voc``), or
    None: the first declared name token (``data.registry``) that the heading holds as a word."""
    low = heading.lower()
    hits = [(m.start(), ds) for token, ds in registry.dataset_of_token().items()
            if (m := _heading_word(token).search(low)) is not None]
    return min(hits)[1] if hits else None


def _roles(header: list[str]) -> tuple[int | None, int | None, str]:
    """(params column, mIoU column, metric kind) from a header."""
    params = next((i for i, h in enumerate(header) if i > 0 and "param" in h.lower()), None)
    miou = next((i for i, h in enumerate(header) if i > 0 and "miou" in h.lower()), None)
    kind = "test" if miou is not None and "test" in header[miou].lower() else "val"
    return params, miou, kind


def parse_notes(text: str) -> tuple[list[NotesRow], list[SkippedTable]]:
    """Every result row of every notes table, plus the tables that hold no results."""
    lines = text.splitlines()
    rows: list[NotesRow] = []
    skipped: list[SkippedTable] = []
    section = ""
    in_block = fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
        elif fenced:
            pass
        elif _BEGIN.match(line):
            in_block = True
        elif _END.match(line):
            in_block = False
        elif (h := _HEADING.match(line)) is not None:
            section = h.group(2)
        elif "|" in line and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]) and not in_block:
            i = _read_table(lines, i, section, rows, skipped)
            continue
        i += 1
    return rows, skipped


def _read_table(
    lines: list[str], start: int, section: str, rows: list[NotesRow], skipped: list[SkippedTable]
) -> int:
    """Read the table whose header is at ``start``; return the index after it."""
    header = split_row(lines[start])
    params_col, miou_col, kind = _roles(header)
    dataset = heading_dataset(section)
    end = start + 2
    while end < len(lines) and "|" in lines[end] and lines[end].strip():
        end += 1
    if miou_col is None or dataset is None:
        why = "no mIoU column" if miou_col is None else f"section {section!r} names no dataset"
        skipped.append(SkippedTable(start + 1, section, why))
        return end
    group = 0
    for j in range(start + 2, end):
        if _SEPARATOR.match(lines[j]):
            group += 1  # a visual group separator inside the table: the render keeps it
            continue
        cells = split_row(lines[j]) + [""] * len(header)
        if not cells[0]:
            continue
        params_raw = cells[params_col] if params_col is not None else ""
        rows.append(
            NotesRow(
                dataset=dataset,
                section=section,
                line=j + 1,
                name=cells[0],
                params_raw=params_raw,
                params=parse_params(params_raw),
                cell=parse_cell(cells[miou_col], kind),
                metric=kind,
                group=f"{start + 1}:{group}",
            )
        )
    return end


class NotesFileError(ValueError):
    """A notes file that cannot be read as text; the message names the file and the fix."""


def read_text(path: Path) -> str:
    """A notes file's text (UTF-8, line endings kept); NotesFileError when it is not UTF-8 text."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise NotesFileError(f"{path} is not UTF-8 text (byte {exc.start}): give the markdown notes file, "
                             "saved as UTF-8") from None
    if "\0" in text:
        raise NotesFileError(f"{path} holds NUL bytes (a binary file?): give the markdown notes file")
    return text


def read_notes(path: Path) -> tuple[list[NotesRow], list[SkippedTable]]:
    """Parse a notes file (UTF-8)."""
    return parse_notes(read_text(Path(path)))
