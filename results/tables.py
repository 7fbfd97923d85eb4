"""Runs DataFrame -> a results table in the notes' style (markdown through pandas/tabulate).

One row per name (the canonical name, seed excluded): repeats of a name with different seeds are
aggregated as ``mean ± std (n)`` and the Seeds column lists them; rows imported from the notes stay one
row each (they are history, with unknown seeds) and keep the notes' groups (``--|--`` rows) when the
table is in time order; runs that are not FINISHED get their own row with their status (a FAILED one
with the first line of its error). The best value of each metric is **bold**. Without ``cols=``, the
columns follow what the selected runs report (a CamVid run evaluated on ``test``: the Test column).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

COLUMN_TITLES = {
    "params": "#Params(M)",
    "val": "Val mIoU",
    "test": "Test mIoU",
    "epochs": "Epochs",
    "status": "Status",
    "seeds": "Seeds",
    "link": "Run",
}
METRIC_OF = {"val": "val_mIoU", "test": "test_mIoU"}
SORTS = ("time", "name", "miou")
DAGGER, DDAGGER = "\u2020", "\u2021"

# (name, seed) -> config hash that the name composes today (None: it no longer composes)
HashFn = Callable[[str, str | None], str | None]


@dataclass(frozen=True)
class TableSpec:
    """What a table shows: which runs (dataset, name glob, sweep id), columns and row order."""

    key: str
    dataset: str | None = None
    columns: tuple[str, ...] | None = None  # None: what the runs report (see default_columns)
    sort: str = "time"
    name: str | None = None
    sweep: str | None = None
    commit: str | None = None  # reference git commit; default: that of the table's newest run
    link_base: str = "http://127.0.0.1:5000"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [c for c in self.columns or () if c not in COLUMN_TITLES]
        if bad:
            raise ValueError(f"unknown column(s) {bad} in table {self.key!r}; known: {sorted(COLUMN_TITLES)}")
        if self.sort not in SORTS:
            raise ValueError(f"unknown sort {self.sort!r} in table {self.key!r}; use one of {SORTS}")


def decimals(written: float | None = None) -> int:
    """The one precision rule of displayed numbers: one decimal, two where the source gave two or more.
    ``written`` is the decimals a notes value was written with (``89.0`` -> 1, ``86.72`` -> 2, ``89`` -> 0);
    None (or NaN) for a measured value, which has full precision: two decimals."""
    if written is None or pd.isna(written):
        return 2
    return 1 if written <= 1 else 2


def fmt(value: float | None, written: float | None = None) -> str:
    """A displayed number (``decimals``): ``89`` -> ``89.0``, ``86.72`` -> ``86.72``, a measured
    ``34.2234`` -> ``34.22``. The record keeps full precision; only what is shown is rounded."""
    if value is None or pd.isna(value):
        return ""
    text = f"{float(value):.{decimals(written)}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0"


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters at a word boundary, an ellipsis for what is cut
    (a first word longer than ``width`` is kept whole)."""
    if len(text) <= width:
        return text
    head = text[: width - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else text.split(" ", 1)[0]
    return cut.rstrip(" ,;:") + "\u2026"


def reported_splits(sel: pd.DataFrame) -> list[str]:
    """The splits ("val", "test") the runs report as their result: a notes row the split of its table's
    mIoU column (a side value such as ``(val:62.5)`` does not count), a segsweep run what it logged."""
    notes = sel["source"] == "notes"
    out = []
    for split in ("val", "test"):
        by_notes = (notes & (sel["notes_metric"].fillna("val") == split)).any()
        by_runs = (~notes & sel[METRIC_OF[split]].notna()).any()
        if by_notes or by_runs:
            out.append(split)
    return out or ["val"]


def default_columns(sel: pd.DataFrame) -> tuple[str, ...]:
    """#Params, the reported splits, and the seeds when segsweep runs (which have seeds) are listed."""
    seeds = ("seeds",) if (sel["source"] != "notes").any() else ()
    return ("params", *reported_splits(sel), *seeds)


def select(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The runs a table shows."""
    keep = pd.Series(True, index=df.index)
    if spec.dataset:
        keep &= df["dataset"] == spec.dataset
    if spec.sweep:
        keep &= df["sweep_id"] == spec.sweep
    if spec.name:
        pat = spec.name
        keep &= df["display"].map(lambda n: fnmatch.fnmatchcase(str(n), pat)) | df["name"].map(
            lambda n: fnmatch.fnmatchcase(str(n), pat)
        )
    return df[keep]


def _aggregate(sel: pd.DataFrame) -> pd.DataFrame:
    """One row per table row: notes rows and unfinished runs alone, finished runs grouped by name."""
    solo = (sel["source"] == "notes") | (sel["status"] != "FINISHED")
    sel = sel.assign(_key=sel["run_id"].where(solo, "name:" + sel["display"].astype(str)))
    g = sel.groupby("_key", sort=False)
    a = g.agg(
        display=("display", "first"),
        source=("source", "first"),
        status=("status", "first"),
        notes_metric=("notes_metric", "first"),
        remark=("remark", "first"),
        approx=("approx", "first"),
        notes_order=("notes_order", "first"),
        notes_group=("notes_group", "first"),
        error=("error", "first"),
        start=("start_time", "min"),
        params=("params_M", "mean"),
        epochs=("epochs", "max"),
        val_mean=("val_mIoU", "mean"),
        val_std=("val_mIoU", "std"),
        val_n=("val_mIoU", "count"),
        test_mean=("test_mIoU", "mean"),
        test_std=("test_mIoU", "std"),
        test_n=("test_mIoU", "count"),
        val_dec=("val_dec", "first"),
        test_dec=("test_dec", "first"),
        params_dec=("params_dec", "first"),
    )
    runs: dict[str, list[str]] = {}
    seeds: dict[str, set[str]] = {}
    for key, rid, seed in zip(sel["_key"], sel["run_id"], sel["seed"], strict=True):
        runs.setdefault(key, []).append(rid)
        if seed is not None and not pd.isna(seed):
            seeds.setdefault(key, set()).add(str(seed))
    a["runs"] = [runs[k] for k in a.index]
    a["seeds"] = [",".join(sorted(seeds.get(k, ()))) for k in a.index]
    a["exp"] = g["experiment_id"].first()
    return a


def _metric_cell(r, col: str, show_epoch: bool) -> tuple[float | None, str]:
    """(value competing for best, cell text) of a val/test column."""
    mean, std, n = getattr(r, f"{col}_mean"), getattr(r, f"{col}_std"), getattr(r, f"{col}_n")
    if r.source == "notes":
        value = None if pd.isna(mean) else float(mean)
        written = getattr(r, f"{col}_dec")
        if col != (r.notes_metric if isinstance(r.notes_metric, str) else "val"):
            return value, fmt(value, written)
        text = fmt(value, written)
        if text and r.approx == "true":
            text += "~"
        extra = [f"epoch{int(r.epochs)}"] if show_epoch and text and not pd.isna(r.epochs) else []
        extra += [str(r.remark)] if isinstance(r.remark, str) and r.remark else []
        if not text:
            return None, ", ".join(extra)
        return value, text + (f" ({', '.join(extra)})" if extra else "")
    if r.status == "FAILED":
        return None, ""  # the error is told once, in the table's first metric column (see _failed_cell)
    if r.status != "FINISHED":
        where = f"epoch {int(r.epochs)}: " if not pd.isna(r.epochs) else ""
        return None, f"{r.status} ({where}{fmt(mean)})" if not pd.isna(mean) else str(r.status)
    if n == 0:
        return None, ""
    if n == 1:
        return float(mean), fmt(mean)
    return float(mean), f"{fmt(mean)} ± {fmt(std)} ({n})"


def _stale_flags(sel: pd.DataFrame, spec: TableSpec, hash_fn: HashFn | None) -> tuple[pd.DataFrame, str | None]:
    """Per run: made at another commit than the reference (†), config hash changed (‡)."""
    ours = sel[sel["source"] != "notes"]
    ref = spec.commit
    known = ours[ours["git_commit"].notna() & (ours["git_commit"] != "unknown")]
    if ref is None and not known.empty:
        ref = str(known.sort_values("start_time")["git_commit"].iloc[-1])
    commit = ours["git_commit"].astype("string").replace("unknown", pd.NA)  # outside a git checkout
    other = commit.notna() & ~commit.fillna("").map(lambda c: bool(ref) and (c.startswith(ref) or ref.startswith(c)))
    other &= bool(ref)
    if hash_fn is not None:
        have = ours["config_hash"].notna()
        today = [
            hash_fn(str(n), None if pd.isna(sd) else str(sd)) if h else None
            for n, sd, h in zip(ours["name"], ours["seed"], have, strict=True)
        ]
        changed = have & (pd.Series(today, index=ours.index, dtype="object") != ours["config_hash"])
    else:
        changed = pd.Series(False, index=ours.index)
    flags = pd.DataFrame({"commit": other.astype(bool), "hash": changed.astype(bool)}, index=ours.index)
    return flags, ref


def _order(a: pd.DataFrame, spec: TableSpec, best_col: str) -> pd.DataFrame:
    a = a.assign(_o=a["notes_order"].fillna(-1)).sort_values(["start", "_o", "display"], kind="stable")
    if spec.sort == "name":
        a = a.sort_values("display", kind="stable")
    elif spec.sort == "miou":
        a = a.assign(_b=a[best_col].fillna(float("-inf"))).sort_values("_b", ascending=False, kind="stable")
    return a


def _failed_cell(r, with_status: bool, width: int = 90) -> str:
    """A FAILED row's one line: its error (``segsweep.error``), with the word FAILED unless a Status
    column already says it."""
    error = str(r.error).splitlines()[0] if isinstance(r.error, str) and r.error.strip() else ""
    error = clip(error, width)
    text = error.replace("|", "\\|")
    if with_status:
        return text or "(no error recorded)"
    return f"FAILED: {text}" if text else "FAILED"


def _groups(a: pd.DataFrame) -> list[str]:
    """Each row's group: the notes' table group of a notes row, one group for segsweep's runs."""
    return [str(g) if s == "notes" and isinstance(g, str) and g else "segsweep"
            for s, g in zip(a["source"], a["notes_group"], strict=True)]


def _with_separators(text: str, groups: list[str]) -> str:
    """The markdown table split where the group changes (the notes' ``--|--`` rows): each group its own
    table under the same header, a blank line between. A second ``|---|`` row inside one table would
    render as a row of dashes."""
    lines = text.split("\n")
    head, body = lines[:2], lines[2 : 2 + len(groups)]
    out = [*head]
    for i, line in enumerate(body):
        if i and groups[i] != groups[i - 1]:
            out += ["", *head]
        out.append(line)
    return "\n".join(out + lines[2 + len(groups) :])


def render_table(df: pd.DataFrame, spec: TableSpec, hash_fn: HashFn | None = None) -> str:
    """The markdown of one table (plus its footnotes), from the runs DataFrame of ``query.load_runs``."""
    sel = select(df, spec)
    if sel.empty:
        return f"_No runs yet for `{spec.key}`._"
    columns = spec.columns or default_columns(sel)
    a = _aggregate(sel)
    show_epoch = "epochs" not in columns
    for col in ("val", "test"):
        pairs = [_metric_cell(r, col, show_epoch) for r in a.itertuples()]
        a[f"{col}_best"] = [p[0] for p in pairs]
        a[f"{col}_cell"] = [p[1] for p in pairs]
    shown = [c for c in columns if c in METRIC_OF]
    if shown:  # a FAILED row tells its error once, in the first metric column
        failed = a["status"] == "FAILED"
        a.loc[failed, f"{shown[0]}_cell"] = [_failed_cell(r, "status" in columns) for r in a[failed].itertuples()]
    metric = next((c for c in shown if a[f"{c}_best"].notna().any()), shown[0] if shown else "val")
    a = _order(a, spec, f"{metric}_best")
    flags, ref = _stale_flags(sel, spec, hash_fn)
    other_commit = set(sel.loc[flags.index[flags["commit"]], "run_id"])
    changed = set(sel.loc[flags.index[flags["hash"]], "run_id"])
    marks = [
        (DAGGER if other_commit.intersection(runs) else "") + (DDAGGER if changed.intersection(runs) else "")
        for runs in a["runs"]
    ]
    cols: dict[str, list[str]] = {"Arch": [str(d).replace("|", "\\|") + m for d, m in zip(a["display"], marks, strict=True)]}
    for col in columns:
        cols[COLUMN_TITLES[col]] = _column(a, col, spec)
    text = pd.DataFrame(cols).to_markdown(index=False, tablefmt="pipe", disable_numparse=True)
    if spec.sort == "time":
        text = _with_separators(text, _groups(a))
    notes = []
    if any(DAGGER in m for m in marks):
        notes.append(f"{DAGGER} made at another git commit than the table's reference `{str(ref)[:10]}`.")
    if any(DDAGGER in m for m in marks):
        notes.append(
            f"{DDAGGER} its config hash differs from what its name (and seed) composes today: the config "
            "tree changed since, or the run had overrides its name does not show. Re-run to compare like with like."
        )
    return text + ("\n\n" + "\n".join(f"{n}  " for n in notes).rstrip() if notes else "")


def _column(a: pd.DataFrame, col: str, spec: TableSpec) -> list[str]:
    if col in METRIC_OF:
        best = a[f"{col}_best"].max()
        return [
            f"**{c}**" if c and not pd.isna(b) and b == best else c
            for c, b in zip(a[f"{col}_cell"], a[f"{col}_best"], strict=True)
        ]
    if col == "params":
        return [fmt(v, d) for v, d in zip(a["params"], a["params_dec"], strict=True)]
    if col == "epochs":
        return ["" if pd.isna(v) else str(int(v)) for v in a["epochs"]]
    if col == "status":
        return ["notes" if s == "notes" else str(st) for s, st in zip(a["source"], a["status"], strict=True)]
    if col == "seeds":
        return [s.replace(",", ", ") for s in a["seeds"]]
    from sweeper.tracking import ui_url

    return [
        " ".join(f"[{r[:7]}]({ui_url(spec.link_base, e, r)})" for r in runs)
        for runs, e in zip(a["runs"], a["exp"], strict=True)
    ]
