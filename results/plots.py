"""Pictures for the results README: val mIoU against #Params, and val mIoU curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state, faster import

_META = {"Software": None}  # no version string in the PNG: the file only changes with the data


def params_plot(points: pd.DataFrame, title: str, out: Path) -> Path | None:
    """Scatter of ``val_mIoU`` against ``params_M`` with each point labelled by ``label``.

    ``points`` has columns label, params_M, val_mIoU (val, else test), source. None when nothing has both.
    """
    pts = points.dropna(subset=["params_M", "val_mIoU"])
    if pts.empty:
        return None
    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for source, marker in (("segsweep", "o"), ("notes", "s")):
        sub = pts[pts["source"] == source]
        if not sub.empty:
            ax.scatter(sub["params_M"], sub["val_mIoU"], marker=marker, label=source, alpha=0.8)
    for row in _labelled(pts).itertuples():
        ax.annotate(_short(row.label), (row.params_M, row.val_mIoU), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    return save_figure(fig, ax, out, title, "#Params (M)", "mIoU (%): val, else test", legend_size=8)


def curves_plot(curves: dict[str, pd.Series], title: str, out: Path) -> Path | None:
    """val mIoU against epoch, one line per run (``label -> Series indexed by epoch``)."""
    curves = {k: v for k, v in curves.items() if len(v)}
    if not curves:
        return None
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, series in curves.items():
        ax.plot(series.index, series.values, marker=".", label=_short(label))
    return save_figure(fig, ax, out, title, "epoch", "val mIoU (%)", legend_size=6)


def save_figure(fig, ax, out: Path, title: str, xlabel: str, ylabel: str, legend_size: int) -> Path:
    """Label, grid and legend the axes and write the PNG (reproducible metadata)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata=_META)
    return out


def _labelled(pts: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """The points worth a label: the Pareto front (best mIoU for its size) and the ``top`` best."""
    by_size = pts.sort_values(["params_M", "val_mIoU"], ascending=[True, False])
    front = by_size[by_size["val_mIoU"] > by_size["val_mIoU"].cummax().shift(fill_value=float("-inf"))]
    best = pts.nlargest(top, "val_mIoU")
    return pd.concat([front, best]).drop_duplicates(subset=["label", "params_M", "val_mIoU"])


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
