"""The variant x dataset matrix: one row per recipe (a name without its dataset token), one column per
declared dataset (``data.registry.names()``), each cell the recipe's result on that dataset and its state.

A cell is ``missing`` (no run), ``running``, ``failed`` (runs, none finished), ``stale`` (its finished
runs were made under another config tree: their config hash is not what the name composes today) or
``done``. Its value is the mean ± std (n) over the seeds of segsweep's finished runs, else the best of the
notes' rows, on the split the dataset's runs report (named in the column's title).
``--missing`` prints the sweep commands that fill the missing and stale cells of the real datasets (a
declared dataset with a ``root``: not the generated synthetic set), for the notes' recipes and the user's
own variants only: recipes known only from search trials, smoke runs (a capped epoch,
``train.max_steps_per_epoch``), the synthetic set, failed runs, or names the codec does not read are left
out, and a comment line counts them by reason.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import yaml

from data import registry
from results.tables import HashFn, clip, fmt, reported_splits


def main_split(runs: pd.DataFrame) -> str:
    """A dataset's column split: "test" when its runs report only test (the notes' CamVid), else "val"."""
    return "test" if not runs.empty and reported_splits(runs) == ["test"] else "val"

STATES = ("missing", "running", "failed", "stale", "done")


def recipe_of(name: str) -> tuple[str, str | None]:
    """(the name without its dataset token, that token's dataset) -- ``camvid.scratch.x`` -> (``scratch.x``,
    ``camvid``). A name without a dataset token is its own recipe (dataset None)."""
    tokens = name.split(".")
    table = registry.dataset_of_token()
    datasets = [table[t] for t in tokens if t in table]
    return ".".join(t for t in tokens if t and t not in table), (datasets[-1] if datasets else None)


def name_for(template: str, dataset: str) -> str:
    """The recipe's name on ``dataset``: the template with its dataset slot (``{}``) filled."""
    return template.replace("{}", registry.datasets()[dataset].token)


def _hydra_value(text: str) -> str:
    """A value as Hydra's override grammar reads it back: quoted when it holds more than a plain token."""
    return text if re.fullmatch(r"[\w.\-]+", text) else "'" + text.replace("'", "\\'") + "'"


def _template(name: str) -> str:
    """The name with its dataset token replaced by ``{}`` (where the token sits in this spelling)."""
    table = registry.dataset_of_token()
    return ".".join("{}" if t in table else t for t in name.split(".") if t)


@dataclass(frozen=True)
class Cell:
    """One recipe on one dataset."""

    state: str
    text: str = ""
    n: int = 0


def _value(runs: pd.DataFrame, split: str) -> str:
    """mean ± std (n) of segsweep's finished runs on ``split``, else the notes' best, else ''."""
    col = f"{split}_mIoU"
    ours = runs[(runs["source"] != "notes") & (runs["status"] == "FINISHED")][col].dropna()
    notes = runs[runs["source"] == "notes"].dropna(subset=[col])
    if len(ours) > 1:
        return f"{fmt(ours.mean())} ± {fmt(ours.std())} ({len(ours)})"
    if len(ours) == 1:
        return fmt(ours.iloc[0])
    if notes.empty:
        return ""
    best = notes.loc[notes[col].idxmax()]
    return f"{fmt(best[col], best[f'{split}_dec'])} (notes)"


def cell_of(runs: pd.DataFrame, stale: set[str], split: str = "val") -> Cell:
    """The cell of one recipe x dataset from its runs (segsweep's and the notes'), on the column's
    ``split``; a value only known on the other split is shown with that split's name."""
    if runs.empty:
        return Cell("missing")
    value = _value(runs, split)
    if not value:
        other = "test" if split == "val" else "val"
        value = f"{other}: {_value(runs, other)}" if _value(runs, other) else "no result"
    ours = runs[runs["source"] != "notes"]
    finished = ours[ours["status"] == "FINISHED"]
    if (ours["status"] == "RUNNING").any():
        return Cell("running", value)
    if not finished.empty and set(finished["run_id"]) <= stale:
        return Cell("stale", value, len(finished))
    if finished.empty and not ours.empty and runs[runs["source"] == "notes"].empty:
        return Cell("failed", clip(str(ours["error"].dropna().iloc[0]).splitlines()[0], 60)
                    if ours["error"].notna().any() else "")
    return Cell("done", value, len(finished))


def stale_runs(runs: pd.DataFrame, hash_fn: HashFn | None) -> set[str]:
    """Run ids of segsweep's finished runs whose config hash differs from what their name composes today."""
    if hash_fn is None:
        return set()
    ours = runs[(runs["source"] != "notes") & runs["config_hash"].notna()]
    return {r.run_id for r in ours.itertuples()
            if hash_fn(str(r.name), None if pd.isna(r.seed) else str(r.seed)) != r.config_hash}


def columns(runs: pd.DataFrame, chosen: Sequence[str] | None = None) -> list[str]:
    """The matrix's datasets: ``chosen`` (checked against the registry), else every declared dataset
    that holds a run, in the registry's order."""
    known = registry.names()
    if chosen:
        bad = [d for d in chosen if d not in known]
        if bad:
            raise ValueError(f"unknown dataset(s) {', '.join(bad)}: choose from {', '.join(known)}")
        return list(chosen)
    present = set(runs["dataset"].dropna())
    return [d for d in known if d in present]


def build(runs: pd.DataFrame, hash_fn: HashFn | None = None,
          datasets: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[tuple[str, str], Cell]]:
    """(the matrix as text cells: index recipe, one column per dataset; every cell by (recipe, dataset))."""
    runs = runs.assign(recipe=[recipe_of(str(n))[0] for n in runs["name"]])
    datasets = columns(runs, datasets)
    splits = {ds: main_split(runs[runs["dataset"] == ds]) for ds in datasets}
    stale = stale_runs(runs, hash_fn)
    cells: dict[tuple[str, str], Cell] = {}
    rows = {}
    for recipe, of_recipe in runs.groupby("recipe", sort=False):
        row = {}
        for ds in datasets:
            cell = cell_of(of_recipe[of_recipe["dataset"] == ds], stale, splits[ds])
            cells[(recipe, ds)] = cell
            row[ds] = cell.text if cell.state == "done" else f"{cell.state}: {cell.text}" if cell.text else cell.state
        rows[recipe] = row
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=datasets)
    frame.columns = [f"{ds} ({splits[ds]} mIoU)" for ds in datasets]
    frame.index.name = "recipe"
    return frame.sort_index(), cells


def markdown(frame: pd.DataFrame) -> str:
    """The matrix as a pipe table (recipes escaped)."""
    shown = frame.reset_index()
    shown["recipe"] = [str(i).replace("|", "\\|") for i in shown["recipe"]]
    return shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def real_datasets() -> tuple[str, ...]:
    """The declared datasets read from disk (a ``root:`` in ``conf/dataset/<name>.yaml``), in listing
    order: not the generated synthetic set."""
    out = []
    for name in registry.names():
        raw = yaml.safe_load((registry.CONF_DATASET_DIR / f"{name}.yaml").read_text()) or {}
        if raw.get("root") is not None:
            out.append(name)
    return tuple(out)


LEFT_OUT = {  # reason key -> what the comment line says
    "trial": "only search trials",
    "smoke": "only smoke runs (train.max_steps_per_epoch)",
    "synthetic": "only the synthetic set",
    "failed": "only failed runs",
    "unparsed": "a name the codec does not read",
}


def _is_smoke(name: str) -> bool:
    return any(t.startswith(("train-max_steps_per_epoch", "max_steps_per_epoch")) for t in str(name).split("."))


def recipe_reason(of_recipe: pd.DataFrame, real: Sequence[str]) -> str | None:
    """Why a recipe gets no ``--missing`` command (a ``LEFT_OUT`` key), or None: it is a notes recipe
    (a row the codec reads) or a variant the user ran to the end on a real dataset (not a search trial,
    not a smoke run)."""
    notes = of_recipe[of_recipe["source"] == "notes"]
    if not notes.empty:
        return None if notes["name_error"].isna().any() else "unparsed"
    ours = of_recipe[of_recipe["source"] != "notes"]
    trial = ours["trial"].notna()
    smoke = ours["name"].map(_is_smoke).astype(bool)
    on_real = ours["dataset"].isin(real)
    finished = ours["status"] == "FINISHED"
    if (~trial & ~smoke & on_real & finished).any():
        return None
    if trial.all():
        return "trial"
    if (trial | smoke).all():
        return "smoke"
    if not on_real[~trial & ~smoke].any():
        return "synthetic"
    return "failed"


def missing_plan(runs: pd.DataFrame, cells: dict[tuple[str, str], Cell],
                 datasets: Sequence[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """(one sweep command per kept recipe that fills its missing and stale cells on the real datasets
    (``datasets`` among them; default every real one, with runs or not), {reason: recipes left out});
    see ``recipe_reason``."""
    runs = runs.assign(recipe=[recipe_of(str(n))[0] for n in runs["name"]])
    real = real_datasets()
    targets = [ds for ds in (real if datasets is None else datasets) if ds in real]  # every real set by default
    out: list[str] = []
    left: dict[str, int] = {}
    for recipe, of_recipe in sorted(runs.groupby("recipe", sort=False), key=lambda kv: kv[0]):
        why = recipe_reason(of_recipe, real)
        if why is not None:
            left[why] = left.get(why, 0) + 1
            continue
        usable = of_recipe[of_recipe["name_error"].isna()]
        template = _template(str(usable["name"].iloc[0]))
        if "{}" not in template:
            template = "{}." + template  # a name without a dataset token: the token leads
        todo = [ds for ds in targets if cells.get((recipe, ds), Cell("missing")).state in ("missing", "stale")]
        if todo:
            names = ",".join(_hydra_value(name_for(template, ds)) for ds in todo)
            out.append("python sweep.py -m " + shlex.quote(f"name={names}"))
    return out, left


def left_out_line(left: dict[str, int]) -> str:
    """``# left out 7 recipe(s): 3 only search trials, ...`` ('' when none was left out)."""
    if not left:
        return ""
    parts = [f"{n} {LEFT_OUT[k]}" for k, n in sorted(left.items(), key=lambda kv: -kv[1])]
    return f"# left out {sum(left.values())} recipe(s): " + ", ".join(parts)


def missing_commands(runs: pd.DataFrame, cells: dict[tuple[str, str], Cell],
                     datasets: Sequence[str] | None = None) -> list[str]:
    """The commands of ``missing_plan``."""
    return missing_plan(runs, cells, datasets)[0]
