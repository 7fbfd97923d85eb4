"""An Optuna search's trials (child runs of a parent run, tagged ``segsweep.trial``): table and plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from results.query import load_runs
from results.tables import fmt


def trials_frame(parent_run_id: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The parent's trial runs, ordered by trial number (columns of ``query.COLUMNS`` + ``trial_no``)."""
    runs = load_runs(tracking_uri)
    kids = runs[(runs["parent_run_id"] == parent_run_id) & runs["trial"].notna()].copy()
    kids["trial_no"] = pd.to_numeric(kids["trial"], errors="coerce")
    return kids.sort_values(["trial_no", "start_time"]).reset_index(drop=True)


def trials_table(parent_run_id: str, tracking_uri: str | None = None) -> str:
    """Markdown: Trial | Arch | Seed | #Params(M) | Val mIoU | Status, the best mIoU in bold."""
    kids = trials_frame(parent_run_id, tracking_uri)
    if kids.empty:
        return f"_No trials under run `{parent_run_id}`._"
    best = kids.loc[kids["status"] == "FINISHED", "val_mIoU"].max()
    cells = [
        f"**{fmt(v)}**" if pd.notna(v) and v == best and s == "FINISHED" else fmt(v)
        for v, s in zip(kids["val_mIoU"], kids["status"], strict=True)
    ]
    table = pd.DataFrame(
        {
            "Trial": kids["trial"].astype(str),
            "Arch": kids["name"].astype(str),
            "Seed": kids["seed"].fillna("").astype(str),
            "#Params(M)": kids["params_M"].map(fmt),
            "Val mIoU": cells,
            "Status": kids["status"],
        }
    )
    return table.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def trials_plot(parent_run_id: str, out: Path, tracking_uri: str | None = None) -> Path | None:
    """val mIoU against trial number, with the running best; None when no trial has a value."""
    from matplotlib.figure import Figure

    from results.plots import save_figure

    kids = trials_frame(parent_run_id, tracking_uri).dropna(subset=["val_mIoU", "trial_no"])
    if kids.empty:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.scatter(kids["trial_no"], kids["val_mIoU"], label="trial")
    ax.step(kids["trial_no"], kids["val_mIoU"].cummax(), where="post", label="best so far")
    return save_figure(fig, ax, Path(out), "val mIoU per trial", "trial", "val mIoU (%)", legend_size=10)
