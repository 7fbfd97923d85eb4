"""A multi-objective search's front, read from MLflow: ``python -m results pareto [--study NAME]``.

The search's parent run (tag ``segsweep.kind=search``) names its objectives and directions (tags
``segsweep.objectives`` / ``segsweep.directions``); each trial's run records their values (a
``<split>_mIoU`` objective is the run's final mIoU, ``segsweep.objective``; ``params_M``,
``latency_ms``, ``flops_G`` are its metrics). The front is recomputed here from those recorded
values (``sweeper.pareto.non_dominated``), so what is printed is what the store holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from results.query import StoreError
from results.tables import fmt
from sweeper.pareto import draw_front, non_dominated


@dataclass
class Front:
    """One study: its parent run, objectives, directions, and its trials (``on_front`` marks the front)."""

    study: str
    title: str
    parent_run_id: str
    objectives: list[str]
    directions: list[str]
    trials: pd.DataFrame  # trial, name, run_id, status, one column per objective, on_front, tagged

    @property
    def front(self) -> pd.DataFrame:
        """The front's trials, best first in the first objective."""
        return self.trials[self.trials["on_front"]].sort_values(
            self.objectives[0], ascending=self.directions[0] == "minimize", kind="stable")


def _metric_name(objective: str, run_tags: dict[str, str]) -> str:
    split, _, measure = objective.removeprefix("final_").partition("_")
    if measure == "mIoU" and split in ("val", "test"):
        return run_tags.get("segsweep.objective") or f"final_{split}_mIoU"  # the split the trial evaluated on
    return objective


def search_parents(client: MlflowClient) -> list:
    """Every search's parent run that names two or more objectives, newest first."""
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "tags.`segsweep.kind` = 'search'", order_by=["attributes.start_time DESC"],
                              max_results=1000) if ids else []
    return [r for r in runs if len((r.data.tags.get("segsweep.directions") or "").split(",")) > 1]


def load_front(tracking_uri: str, study: str | None = None) -> Front:
    """The front of ``study`` (its name: tag ``segsweep.study``), else of the newest multi-objective search."""
    client = MlflowClient(tracking_uri)
    try:
        parents = search_parents(client)
    except Exception as error:
        raise StoreError(f"cannot read the MLflow store {tracking_uri}: {error}") from error
    if study is not None:
        parents = [p for p in parents if study in (p.data.tags.get("segsweep.study"), p.data.tags.get("segsweep.sweep_id"))]
    if not parents:
        what = f"no multi-objective search named {study!r}" if study else "no multi-objective search"
        raise LookupError(f"{what} in {tracking_uri}: run one (python sweep.py -m +search=densenet_pareto) "
                          "or name another with --study")
    return _front_of(client, parents[0])


def _front_of(client: MlflowClient, parent) -> Front:
    tags = parent.data.tags
    objectives = tags["segsweep.objectives"].split(",")
    directions = tags["segsweep.directions"].split(",")
    kids = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                              max_results=10000)
    rows = []
    for run in kids:
        t, m = run.data.tags, run.data.metrics
        rows.append({"trial": t.get("segsweep.trial", ""), "name": t.get("segsweep.name") or run.info.run_name,
                     "run_id": run.info.run_id, "status": run.info.status, "tagged": t.get("segsweep.pareto") == "true",
                     **{o: m.get(_metric_name(o, t), float("nan")) for o in objectives}})
    trials = pd.DataFrame(rows, columns=["trial", "name", "run_id", "status", "tagged", *objectives])
    trials["trial_no"] = pd.to_numeric(trials["trial"], errors="coerce")
    trials = trials.sort_values("trial_no", kind="stable").reset_index(drop=True)
    done = trials["status"] == "FINISHED"
    points = trials.loc[done, objectives].astype(float).values.tolist()
    on = set(trials.index[done][non_dominated(points, directions)]) if points else set()
    trials["on_front"] = [i in on for i in trials.index]
    return Front(tags.get("segsweep.study") or tags.get("segsweep.sweep_id", ""), tags.get("segsweep.sweep", ""),
                 parent.info.run_id, objectives, directions, trials)


def front_table(front: Front, heading: bool = True) -> str:
    """Markdown: Trial | Arch | one column per objective (its direction) | Run, the front only; after a
    line naming the study and how many of its trials are on the front (the study's name: ``heading``)."""
    rows = front.front
    if rows.empty:
        return f"_Study `{front.study}` has no finished trial yet._"
    arrow = {"maximize": "↑", "minimize": "↓"}
    table = pd.DataFrame({"Trial": rows["trial"].astype(str), "Arch": rows["name"].astype(str),
                          **{f"{o} {arrow[d]}": rows[o].map(fmt) for o, d in zip(front.objectives, front.directions,
                                                                                   strict=True)},
                          "Run": rows["run_id"].str[:8]})
    head = (f"{f'**{front.title or front.study}**: ' if heading else ''}{len(rows)} of "
            f"{int((front.trials['status'] == 'FINISHED').sum())} finished trials on the Pareto front\n\n")
    return head + table.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def front_plot(front: Front, out: Path) -> Path | None:
    """Every finished trial (the second objective across, the first up), the front highlighted; None
    without a finished trial."""
    done = front.trials[front.trials["status"] == "FINISHED"].dropna(subset=front.objectives[:2])
    if done.empty:
        return None
    y, x = front.objectives[0], front.objectives[1]
    points = [{x: r[x], y: r[y], "front": bool(r["on_front"]), "label": f"#{r['trial']}"} for _, r in done.iterrows()]
    return draw_front(points, x, y, [front.directions[1], front.directions[0]], Path(out),
                      f"{front.study}: {int(done['on_front'].sum())} of {len(done)} trials on the front")


def readme_section(tracking_uri: str, out_dir: Path) -> str:
    """The results README's section: per multi-objective search, its front's table and its plot
    (``<out_dir>/pareto_<study>.png``); empty when the store has none."""
    client = MlflowClient(tracking_uri)
    parts = []
    for parent in search_parents(client):
        front = _front_of(client, parent)
        png = front_plot(front, Path(out_dir) / f"pareto_{front.study}.png")
        parts.append(f"\n### {front.title or front.study}\n\n{front_table(front, heading=False)}\n")
        if png is not None:
            parts.append(f"\n![{front.study}: the trials, the Pareto front highlighted]({png.name})\n")
    return ("\n## Pareto fronts\n" + "".join(parts)) if parts else ""
