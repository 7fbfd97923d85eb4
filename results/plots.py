"""Pictures for the results README: mIoU against #Params with its Pareto front labelled, and mIoU curves.

Val and test results are drawn apart (their own markers, their own front): a test score is never read
off a val axis. Labels are placed greedily (candidate offsets around the point, the first that stays
inside the axes and overlaps no other label, point or the legend) and the plot returns what it labelled,
so tests check the data, not pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state, faster import
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

_META = {"Software": None}  # no version string in the PNG: the file only changes with the data
SPLIT_STYLE = {"val": {"marker": "o", "color": "tab:blue"}, "test": {"marker": "s", "color": "tab:red"}}
SOURCE_FILL = {"segsweep": True, "notes": False}  # filled: segsweep's runs; hollow: the notes' history
# label offsets (points) tried in order around a point: near first, then further out
_OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3, 4, 6) for dx, dy in ((6, 4), (6, -10), (-6, 4), (-6, -10),
                                                                     (0, 12), (0, -18))]


@dataclass
class PlotResult:
    """The written PNG and the points it labelled (label, params_M, mIoU, split), with their label boxes."""

    path: Path
    labelled: list[dict] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # display coords x0,y0,x1,y1
    figure_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def pareto_front(points: pd.DataFrame, x: str = "params_M", y: str = "mIoU") -> pd.DataFrame:
    """The points no other beats: the best ``y`` among all points with ``x`` at most theirs (strictly
    better than every smaller one). Ties in ``x`` keep the best; ordered by ``x``."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False], kind="stable")
    best_before = pts[y].cummax().shift(fill_value=float("-inf"))
    return pts[pts[y] > best_before]


def _overlaps(box: Bbox, others: list[Bbox]) -> float:
    """Total overlapping area of ``box`` with ``others``."""
    total = 0.0
    for o in others:
        w = min(box.x1, o.x1) - max(box.x0, o.x0)
        h = min(box.y1, o.y1) - max(box.y0, o.y0)
        total += max(w, 0) * max(h, 0)
    return total


def _place_labels(fig: Figure, ax, items: list[tuple[str, float, float]], fontsize: float) -> list[Bbox]:
    """Annotate each (text, x, y) at the first candidate offset whose box stays inside the axes and
    overlaps nothing placed (labels, points, legend); else where it overlaps least. Returns the boxes."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    area = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend is not None else []
    for _, x, y in items:  # every point's marker is an obstacle too
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    boxes: list[Bbox] = []
    for i, (text, x, y) in enumerate(items):
        own = taken[len(taken) - len(items) + i]
        obstacles = [b for b in taken if b is not own] + boxes
        best = None
        for dx, dy in _OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              ha="left" if dx >= 0 else "right", va="bottom",
                              arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if abs(dx) > 6 else None)
            box = ann.get_window_extent(renderer).expanded(1.02, 1.1)
            inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
            cost = _overlaps(box, obstacles) + (0 if inside else 1e9)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        assert best is not None
        boxes.append(best[2])
    return boxes


def params_plot(points: pd.DataFrame, title: str, out: Path) -> PlotResult | None:
    """mIoU against #Params, val and test apart, each split's Pareto front drawn and labelled.

    ``points`` has columns label, params_M, mIoU, split ("val"/"test"), source ("segsweep"/"notes").
    None when no point has both numbers.
    """
    pts = points.dropna(subset=["params_M", "mIoU"])
    if pts.empty:
        return None
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    fronts = []
    for split, style in SPLIT_STYLE.items():
        of_split = pts[pts["split"] == split]
        for source, filled in SOURCE_FILL.items():
            sub = of_split[of_split["source"] == source]
            if not sub.empty:
                ax.scatter(sub["params_M"], sub["mIoU"], marker=style["marker"], s=28, alpha=0.85,
                           facecolors=style["color"] if filled else "none", edgecolors=style["color"],
                           label=f"{split} mIoU ({source})")
        front = pareto_front(of_split)
        if not front.empty:
            ax.step(front["params_M"], front["mIoU"], where="post", color=style["color"], lw=0.8, ls="--",
                    label=f"{split} Pareto front")
            fronts.append(front.assign(split=split))
    if pts["params_M"].max() > 8 * pts["params_M"].min():  # sizes over an order of magnitude: log axis
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.08, y=0.12)
    _decorate(ax, title, "#Params (M)", "mIoU (%)", legend_size=8)
    fig.tight_layout()
    labelled = pd.concat(fronts) if fronts else pts.iloc[:0]
    items = [(f"{_short(r.label)}  {r.mIoU:.1f}", r.params_M, r.mIoU) for r in labelled.itertuples()]
    boxes = _place_labels(fig, ax, items, fontsize=8)
    fig.savefig(out, dpi=110, metadata=_META)
    return PlotResult(
        Path(out),
        [{"label": r.label, "params_M": float(r.params_M), "mIoU": float(r.mIoU), "split": r.split}
         for r in labelled.itertuples()],
        [tuple(b.extents) for b in boxes],
        tuple(fig.bbox.extents),
    )


def curves_plot(curves: dict[str, pd.DataFrame], title: str, out: Path, split: str = "val") -> Path | None:
    """mIoU against epoch, one line per name: the mean over its seeds (one column per seed, indexed by
    epoch) with a ±1 std band where there are several. Integer epoch ticks."""
    curves = {k: v for k, v in curves.items() if not v.empty}
    if not curves:
        return None
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for label, runs in curves.items():
        mean, std, n = runs.mean(axis=1), runs.std(axis=1), runs.shape[1]
        (line,) = ax.plot(mean.index, mean.values, marker=".", label=f"{_short(label)} ({n} seed{'s' * (n > 1)})")
        if n > 1:
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _decorate(ax, title, "epoch", f"{split} mIoU (%): mean ± std over seeds", legend_size=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata=_META)
    return Path(out)


def _decorate(ax, title: str, xlabel: str, ylabel: str, legend_size: int) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="lower right")


def save_figure(fig, ax, out: Path, title: str, xlabel: str, ylabel: str, legend_size: int) -> Path:
    """Label, grid and legend the axes and write the PNG (reproducible metadata)."""
    _decorate(ax, title, xlabel, ylabel, legend_size)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata=_META)
    return out


def _short(label: str, width: int = 44) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
