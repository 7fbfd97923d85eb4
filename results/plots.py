"""Pictures for the results README: mIoU against #Params with its Pareto front labelled, and mIoU curves.

Val and test results are drawn apart (their own markers, their own front): a test score is never read
off a val axis. Labels are placed greedily (candidate offsets around the point, the first that stays
inside the axes and overlaps no other label, point or the legend) and the plot returns what it labelled,
so tests check the data, not pixels.

What a plot draws it says: names are shortened to the tokens that differ among what is drawn (the common
prefix and suffix folded at ``.`` boundaries, named in the caption; never cut inside a token), scratch and
pretrained runs have their own markers, the caption line under the axes counts what was left out (rows
without #Params, the best of them by name; rows without a value), and when every point has one #Params
the scatter becomes a strip: one column per name, a point per run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state, faster import
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

_META = {"Software": None}  # no version string in the PNG: the file only changes with the data
SPLIT_STYLE = {"val": {"color": "tab:blue"}, "test": {"color": "tab:red"}}  # colour: the split measured
INIT_MARKER = {"scratch": "o", "pretrained": "^"}  # marker: random init or ImageNet weights
SOURCE_FILL = {"segsweep": True, "notes": False}  # filled: segsweep's runs; hollow: the notes' history
ELLIPSIS = "\u2026"
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
    caption: str = ""  # the line under the axes: what is left out, the folded common part of the names
    left_out: list[dict] = field(default_factory=list)  # rows with a value but no #Params (label, mIoU, split)
    kind: str = "scatter"  # "scatter" (mIoU against #Params) or "strip" (every point has one #Params)
    texts: list[str] = field(default_factory=list)  # the label texts drawn


def _tokens(name: str) -> list[str]:
    return str(name).split(".")


def fold_names(names: list[str]) -> tuple[list[str], str, str]:
    """(each name without the tokens every name shares at its start and end, that prefix, that suffix).
    Folding is at ``.`` token boundaries; a name that would be left empty keeps its last token."""
    toks = [_tokens(n) for n in names]
    if len(toks) < 2:
        return [str(n) for n in names], "", ""
    shortest = min(len(t) for t in toks)
    pre = 0
    while pre < shortest - 1 and len({t[pre] for t in toks}) == 1:
        pre += 1
    suf = 0
    while suf < shortest - pre - 1 and len({t[-1 - suf] for t in toks}) == 1:
        suf += 1
    kept = [t[pre : len(t) - suf] for t in toks]
    labels = [(ELLIPSIS if pre else "") + ".".join(k) + (ELLIPSIS if suf else "") for k in kept]
    return labels, ".".join(toks[0][:pre]), ".".join(toks[0][len(toks[0]) - suf :]) if suf else ""


def short_label(label: str, width: int = 44) -> str:
    """``label`` cut to about ``width`` characters at a token boundary (whole tokens from the right, an
    ellipsis for what is cut); a single token longer than ``width`` is kept whole."""
    if len(label) <= width:
        return label
    lead = label.startswith(ELLIPSIS)
    toks = _tokens(label.removeprefix(ELLIPSIS))
    kept = [toks.pop()]
    while toks and len(".".join([toks[-1], *kept])) + 1 <= width:
        kept.insert(0, toks.pop())
    return (ELLIPSIS if toks or lead else "") + ".".join(kept)


def distinct_labels(names: list[str], width: int = 44) -> tuple[list[str], str]:
    """Labels that keep the part of each name that differs among ``names`` (``fold_names``, then
    ``short_label``), and a caption phrase naming the folded common part ('' when nothing was folded)."""
    folded, pre, suf = fold_names(list(names))
    parts = [f"prefix {pre}" if pre else "", f"suffix {suf}" if suf else ""]
    said = " and ".join(p for p in parts if p)
    return [short_label(f, width) for f in folded], (f"names shown without their common {said}" if said else "")


_PRETRAINED = re.compile(r"^(noscratch|scratch_no|imagenet|pretrained)$")
_DENSENET = re.compile(r"^dense(net)?\d+k\d+")


def init_of(name: str) -> str:
    """``scratch`` or ``pretrained`` from a name's tokens (TOKENS.md): ``noscratch``, ``scratch_no``,
    ``imagenet`` are ImageNet weights; ``scratch...`` and every DenseNet are random init; a ResNet name
    without ``scratch`` loads ImageNet weights."""
    toks = _tokens(name)
    if any(_PRETRAINED.match(t) for t in toks):
        return "pretrained"
    if any(t.startswith("scratch") or _DENSENET.match(t) for t in toks):
        return "scratch"
    return "pretrained"


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


def _with_init(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` with an ``init`` column (from ``name`` when given, else ``label``) and ``dec``."""
    out = points.copy()
    if "init" not in out.columns:
        source = out["name"] if "name" in out.columns else out["label"]
        out["init"] = [init_of(str(n)) for n in source.fillna(out["label"])]
    if "dec" not in out.columns:
        out["dec"] = float("nan")
    return out


def _value_text(value: float, dec: float | None) -> str:
    from results.tables import fmt  # the one precision rule of displayed numbers

    return fmt(value, dec)


def left_out_caption(points: pd.DataFrame) -> tuple[str, list[dict]]:
    """The caption phrase for the rows a scatter cannot draw: a value but no #Params (the best named),
    no value at all; and those rows (label, mIoU, split)."""
    no_params = points[points["mIoU"].notna() & points["params_M"].isna()]
    no_value = points[points["mIoU"].isna()]
    said = []
    if not no_params.empty:
        best = no_params.loc[no_params["mIoU"].idxmax()]
        said.append(f"{len(no_params)} row(s) without #Params (best: {best['split']} "
                    f"{_value_text(best['mIoU'], best.get('dec'))} {best['label']})")
    if not no_value.empty:
        said.append(f"{len(no_value)} row(s) without a value")
    rows = [{"label": r.label, "mIoU": float(r.mIoU), "split": r.split} for r in no_params.itertuples()]
    return ("not drawn: " + "; ".join(said)) if said else "", rows


def _legend(ax, pts: pd.DataFrame, fronts: bool, size: int) -> None:
    """One legend entry per meaning: colour = split, marker = init, fill = source, dashes = front."""
    handles = [Line2D([], [], ls="", marker="s", color=SPLIT_STYLE[sp]["color"], label=f"{sp} mIoU")
               for sp in SPLIT_STYLE if (pts["split"] == sp).any()]
    handles += [Line2D([], [], ls="", marker=m, color="0.3", mfc="0.3", label=init)
                for init, m in INIT_MARKER.items() if (pts["init"] == init).any()]
    if pts["source"].nunique() > 1 or (pts["source"] == "notes").all():
        handles += [Line2D([], [], ls="", marker="o", color="0.3", mfc="0.3" if filled else "none",
                           label="segsweep runs" if filled else "notes (history)")
                    for src, filled in SOURCE_FILL.items() if (pts["source"] == src).any()]
    if fronts:
        handles.append(Line2D([], [], ls="--", lw=0.8, color="0.3", label="Pareto front (per split)"))
    ax.legend(handles=handles, fontsize=size, loc="best", framealpha=0.8)


def _scatter(ax, pts: pd.DataFrame, x: str) -> None:
    for (split, init, source), sub in pts.groupby(["split", "init", "source"], sort=False):
        color = SPLIT_STYLE.get(split, {"color": "0.4"})["color"]
        ax.scatter(sub[x], sub["mIoU"], marker=INIT_MARKER.get(init, "o"), s=30, alpha=0.85,
                   facecolors=color if SOURCE_FILL.get(source, True) else "none", edgecolors=color)


def _finish(fig: Figure, caption: str) -> None:
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, ha="left", va="bottom", wrap=True, color="0.25")
    fig.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))


def params_plot(points: pd.DataFrame, title: str, out: Path, runs: pd.DataFrame | None = None,
                strip_title: str | None = None) -> PlotResult | None:
    """mIoU against #Params, val and test apart, each split's Pareto front drawn and labelled.

    ``points`` has columns label, params_M, mIoU, split ("val"/"test"), source ("segsweep"/"notes"), and
    optionally name (for ``init_of``), init, dec (the decimals a notes value was written with). When every
    drawable point has one #Params the plot is a strip (``strip_plot``) of ``runs`` (a point per run, the
    same columns) or of ``points``. None when no point has both numbers.
    """
    points = _with_init(points)
    pts = points.dropna(subset=["params_M", "mIoU"])
    if pts.empty:
        return None
    caption, left_out = left_out_caption(points)
    if pts["params_M"].nunique() == 1:
        return strip_plot(_with_init(runs) if runs is not None and not runs.empty else pts, strip_title or title,
                          out, caption, left_out)
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    _scatter(ax, pts, "params_M")
    fronts = []
    for split, style in SPLIT_STYLE.items():
        front = pareto_front(pts[pts["split"] == split])
        if not front.empty:
            ax.step(front["params_M"], front["mIoU"], where="post", color=style["color"], lw=0.8, ls="--")
            fronts.append(front.assign(split=split))
    if pts["params_M"].max() > 8 * pts["params_M"].min():  # sizes over an order of magnitude: log axis
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.margins(x=0.08, y=0.12)
    labelled = pd.concat(fronts) if fronts else pts.iloc[:0]
    names, folded = distinct_labels(list(labelled["label"]))
    caption = "; ".join(c for c in (caption, folded) if c)
    _axes(ax, title, "#Params (M)", "mIoU (%)")
    _legend(ax, pts, bool(fronts), 8)
    _finish(fig, caption)
    texts = [f"{n}  {_value_text(r.mIoU, r.dec)}" + (" (pretrained)" if r.init == "pretrained" else "")
             for n, r in zip(names, labelled.itertuples(), strict=True)]
    items = [(t, r.params_M, r.mIoU) for t, r in zip(texts, labelled.itertuples(), strict=True)]
    boxes = _place_labels(fig, ax, items, fontsize=8)
    fig.savefig(out, dpi=100, metadata=_META)
    return PlotResult(
        Path(out),
        [{"label": r.label, "params_M": float(r.params_M), "mIoU": float(r.mIoU), "split": r.split,
          "init": r.init} for r in labelled.itertuples()],
        [tuple(b.extents) for b in boxes],
        tuple(fig.bbox.extents),
        caption, left_out, "scatter", texts,
    )


def strip_plot(runs: pd.DataFrame, title: str, out: Path, caption: str = "",
               left_out: list[dict] | None = None) -> PlotResult:
    """Every point has one #Params: mIoU per name, one column per name (the differing part of the
    names as tick labels), a point per run, the names ordered by their mean."""
    runs = _with_init(runs).dropna(subset=["mIoU"])
    order = runs.groupby("label")["mIoU"].mean().sort_values(ascending=False).index.tolist()
    ticks, folded = distinct_labels(order, width=30)
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    pos = {name: i for i, name in enumerate(order)}
    runs = runs.assign(_x=[pos[n] + 0.06 * (k % 5 - 2) for k, n in enumerate(runs["label"])])
    _scatter(ax, runs, "_x")
    for name, sub in runs.groupby("label"):
        ax.hlines(sub["mIoU"].mean(), pos[name] - 0.25, pos[name] + 0.25, color="0.3", lw=1)
    ax.set_xticks(range(len(order)), ticks, rotation=20 if len(order) > 3 else 0, ha="right" if len(order) > 3 else "center",
                  fontsize=8)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.margins(y=0.15)
    params = runs["params_M"].dropna()
    one = f"every run has {params.iloc[0]:.2f} M params" if not params.empty else "no #Params"
    named = f"name {order[0]}" if len(order) == 1 and ticks[0] != order[0] else folded  # one name: say it whole
    caption = "; ".join(c for c in (f"{one}: a column per name, a point per run, the bar its mean", caption, named) if c)
    _axes(ax, title, "", "mIoU (%)")
    _legend(ax, runs, False, 8)
    _finish(fig, caption)
    fig.savefig(out, dpi=100, metadata=_META)
    return PlotResult(Path(out), [{"label": r.label, "params_M": float(r.params_M) if pd.notna(r.params_M) else None,
                                   "mIoU": float(r.mIoU), "split": r.split, "init": r.init} for r in runs.itertuples()],
                      [], tuple(fig.bbox.extents), caption, left_out or [], "strip", ticks)


def curves_plot(curves: dict[str, pd.DataFrame], title: str, out: Path, split: str = "val") -> Path | None:
    """mIoU against epoch, one line per name: the mean over its seeds (one column per seed, indexed by
    epoch) with a ±1 std band where there are several. Integer epoch ticks."""
    curves = {k: v for k, v in curves.items() if not v.empty}
    if not curves:
        return None
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    labels, folded = distinct_labels(list(curves))
    for short, (_label, runs) in zip(labels, curves.items(), strict=True):
        mean, std, n = runs.mean(axis=1), runs.std(axis=1), runs.shape[1]
        (line,) = ax.plot(mean.index, mean.values, marker=".", label=f"{short} ({n} seed{'s' * (n > 1)})")
        if n > 1:
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _decorate(ax, title, "epoch", f"{split} mIoU (%): mean ± std over seeds", legend_size=7)
    _finish(fig, folded)
    fig.savefig(out, dpi=100, metadata=_META)
    return Path(out)


def _axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _decorate(ax, title: str, xlabel: str, ylabel: str, legend_size: int) -> None:
    _axes(ax, title, xlabel, ylabel)
    ax.legend(fontsize=legend_size, loc="lower right")


def save_figure(fig, ax, out: Path, title: str, xlabel: str, ylabel: str, legend_size: int) -> Path:
    """Label, grid and legend the axes and write the PNG (reproducible metadata)."""
    _decorate(ax, title, xlabel, ylabel, legend_size)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata=_META)
    return out
