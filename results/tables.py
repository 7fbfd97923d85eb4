"""Runs DataFrame -> a results table in the notes' style (markdown through pandas/tabulate).

One row per name: repeats of a name with different seeds are aggregated as ``mean ± std (n)``;
rows imported from the notes stay one row each (they are history, with unknown seeds); runs that
are not FINISHED get their own row with their status. The best value of each metric is **bold**.
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
    columns: tuple[str, ...] = ("params", "val")
    sort: str = "time"
    name: str | None = None
    sweep: str | None = None
    commit: str | None = None  # reference git commit; default: that of the table's newest run
    link_base: str = "http://127.0.0.1:5000"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [c for c in self.columns if c not in COLUMN_TITLES]
        if bad:
            raise ValueError(f"unknown column(s) {bad} in table {self.key!r}; known: {sorted(COLUMN_TITLES)}")
        if self.sort not in SORTS:
            raise ValueError(f"unknown sort {self.sort!r} in table {self.key!r}; use one of {SORTS}")


def fmt(value: float | None) -> str:
    """A number as the notes write it: at most two decimals, no trailing zeros (``42``, ``9.69``)."""
    if value is None or pd.isna(value):
        return ""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


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


def _groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Notes rows and unfinished runs alone; finished segsweep runs grouped by name."""
    solo = (df["source"] == "notes") | (df["status"] != "FINISHED")
    groups = [df.loc[[i]] for i in df.index[solo]]
    groups += [g for _, g in df[~solo].groupby("display", sort=False)]
    return groups


def _stats(values: pd.Series) -> tuple[float | None, str]:
    v = values.dropna()
    if v.empty:
        return None, ""
    if len(v) == 1:
        return float(v.iloc[0]), fmt(v.iloc[0])
    mean, std = float(v.mean()), float(v.std(ddof=1))
    return mean, f"{fmt(mean)} ± {fmt(std)} ({len(v)})"


def _notes_cell(run: pd.Series, metric: str, value: float | None, show_epoch: bool) -> str:
    text = fmt(value)
    if text and str(run["approx"]) == "true":
        text += "~"
    extra = []
    if show_epoch and not pd.isna(run["epochs"]) and text:
        extra.append(f"epoch{int(run['epochs'])}")
    if run["remark"] and not pd.isna(run["remark"]):
        extra.append(str(run["remark"]))
    if not text:
        return ", ".join(extra)
    return text + (f" ({', '.join(extra)})" if extra else "")


class _Row:
    """One table row under construction."""

    def __init__(self, g: pd.DataFrame) -> None:
        self.g = g
        self.first = g.iloc[0]
        self.notes = self.first["source"] == "notes"
        self.finished = self.first["status"] == "FINISHED"
        self.values: dict[str, float | None] = {}
        self.cells: dict[str, str] = {}
        self.marks = ""


def _build_row(g: pd.DataFrame, spec: TableSpec) -> _Row:
    row = _Row(g)
    run = row.first
    show_epoch = "epochs" not in spec.columns
    for col in ("val", "test"):
        metric = METRIC_OF[col]
        if row.notes:
            value = run[metric] if not pd.isna(run[metric]) else None
            row.values[col] = value
            main = col == (run["notes_metric"] or "val")
            row.cells[col] = _notes_cell(run, metric, value, show_epoch) if main else fmt(value)
        elif row.finished:
            row.values[col], row.cells[col] = _stats(g[metric])
        else:
            value = run[metric] if not pd.isna(run[metric]) else None
            row.values[col] = None  # an unfinished run never competes for best
            where = f"epoch {int(run['epochs'])}: " if not pd.isna(run["epochs"]) else ""
            row.cells[col] = f"{run['status']} ({where}{fmt(value)})" if value is not None else run["status"]
    row.cells["params"] = fmt(g["params_M"].dropna().mean()) if g["params_M"].notna().any() else ""
    row.cells["epochs"] = fmt(g["epochs"].max()) if g["epochs"].notna().any() else ""
    row.cells["status"] = "notes" if row.notes else ", ".join(sorted(set(g["status"])))
    seeds = sorted({str(s) for s in g["seed"].dropna()})
    row.cells["seeds"] = ",".join(seeds)
    row.cells["link"] = " ".join(
        f"[{r.run_id[:7]}]({spec.link_base}/#/experiments/{r.experiment_id}/runs/{r.run_id})"
        for r in g.itertuples()
    )
    return row


def _mark_stale(rows: list[_Row], spec: TableSpec, hash_fn: HashFn | None) -> tuple[str | None, bool, bool]:
    """Set each row's marks; return (reference commit, any †, any ‡)."""
    ours = [r for r in rows if not r.notes]
    commits = pd.concat([r.g for r in ours]) if ours else None
    ref = spec.commit
    if ref is None and commits is not None and commits["git_commit"].notna().any():
        ref = str(commits.dropna(subset=["git_commit"]).sort_values("start_time")["git_commit"].iloc[-1])
    any_commit = any_hash = False
    for r in ours:
        cs = {str(c) for c in r.g["git_commit"].dropna()}
        if ref and any(not (c.startswith(ref) or ref.startswith(c)) for c in cs):
            r.marks += DAGGER
            any_commit = True
        if hash_fn is not None and any(
            pd.notna(x.config_hash) and hash_fn(str(x.name), None if pd.isna(x.seed) else str(x.seed)) != x.config_hash
            for x in r.g.itertuples()
        ):
            r.marks += DDAGGER
            any_hash = True
    return ref, any_commit, any_hash


def _order(rows: list[_Row], spec: TableSpec) -> list[_Row]:
    def by_time(r: _Row) -> tuple:
        order = r.first["notes_order"]
        return (r.g["start_time"].min(), -1 if pd.isna(order) else order, str(r.first["display"]))

    rows = sorted(rows, key=by_time)
    if spec.sort == "name":
        rows.sort(key=lambda r: str(r.first["display"]))
    elif spec.sort == "miou":
        metric = next((c for c in spec.columns if c in METRIC_OF), "val")
        rows.sort(key=lambda r: -(r.values.get(metric) if r.values.get(metric) is not None else float("-inf")))
    return rows


def render_table(df: pd.DataFrame, spec: TableSpec, hash_fn: HashFn | None = None) -> str:
    """The markdown of one table (plus its footnotes), from the runs DataFrame of ``query.load_runs``."""
    sel = select(df, spec)
    if sel.empty:
        return f"_No runs yet for `{spec.key}`._"
    rows = _order([_build_row(g, spec) for g in _groups(sel)], spec)
    ref, any_commit, any_hash = _mark_stale(rows, spec, hash_fn)
    for col in spec.columns:
        if col in METRIC_OF:
            vals = [r.values[col] for r in rows if r.values.get(col) is not None]
            best = max(vals) if vals else None
            for r in rows:
                if best is not None and r.values.get(col) == best and r.cells[col]:
                    r.cells[col] = f"**{r.cells[col]}**"
    table = pd.DataFrame(
        [[str(r.first["display"]).replace("|", "\\|") + r.marks] + [r.cells[c] for c in spec.columns] for r in rows],
        columns=["Arch"] + [COLUMN_TITLES[c] for c in spec.columns],
    )
    text = table.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)
    notes = []
    if any_commit:
        notes.append(f"{DAGGER} made at another git commit than the table's reference `{str(ref)[:10]}`.")
    if any_hash:
        notes.append(
            f"{DDAGGER} its config hash differs from what its name composes today: "
            "the config changed since; re-run it (`+force=true`) to compare like with like."
        )
    return text + ("\n\n" + "\n".join(f"{n}  " for n in notes).rstrip() if notes else "")
