"""MLflow runs -> one pandas DataFrame (one row per run), read-only.

For ``sqlite:///`` stores the tables are read with one SQL query each (runs, tags, latest metrics):
that is what keeps rendering 10,000 runs well under a second. Any other tracking URI (an MLflow
server) goes through ``mlflow.search_runs``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from sweeper.errors import StoreError

DEFAULT_URI = "sqlite:///mlflow.db"

# tag key -> column
TAGS = {
    "segsweep.name": "name",
    "segsweep.dataset": "dataset",
    "segsweep.seed": "seed",
    "segsweep.git_commit": "git_commit",
    "segsweep.config_hash": "config_hash",
    "segsweep.source": "source",
    "segsweep.sweep_id": "sweep_id",
    "segsweep.kind": "kind",
    "segsweep.trial": "trial",
    "segsweep.error": "error",
    "segsweep.name_error": "name_error",
    "segsweep.notes_name": "notes_name",
    "segsweep.notes_remark": "remark",
    "segsweep.notes_epoch": "notes_epoch",
    "segsweep.notes_approx": "approx",
    "segsweep.notes_order": "notes_order",
    "segsweep.notes_metric": "notes_metric",
    "segsweep.notes_group": "notes_group",
    "segsweep.notes_cell": "notes_cell",
    "segsweep.notes_params_cell": "notes_params_cell",
    "segsweep.sweep": "sweep",
    "mlflow.parentRunId": "parent_run_id",
}
METRICS = ("params_M", "val_mIoU", "final_val_mIoU", "test_mIoU", "final_test_mIoU")

COLUMNS = [
    "run_id", "experiment_id", "experiment", "run_name", "name", "display", "dataset", "source", "status",
    "start_time", "params_M", "val_mIoU", "test_mIoU", "epochs", "seed", "git_commit",
    "config_hash", "sweep_id", "parent_run_id", "trial", "error", "remark", "approx", "notes_order", "notes_metric",
    "notes_group", "kind", "sweep", "val_dec", "test_dec", "params_dec", "name_error",
]  # fmt: skip


PARENT_KINDS = ("sweep", "search")  # parent runs summarise their jobs; they are not results


def default_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the local sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:"):
        return None
    if not uri.startswith("sqlite:///"):
        raise StoreError(f"cannot read {uri!r}: write sqlite:///relative.db or sqlite:////absolute.db")
    # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
    return Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0]))


def load_runs(tracking_uri: str | None = None) -> pd.DataFrame:
    """Every active run of every active experiment, one row each (see ``COLUMNS``).

    ``val_mIoU`` is ``final_val_mIoU`` when logged, else the latest per-epoch ``val_mIoU``;
    ``test_mIoU`` likewise; ``epochs`` is the step of the latest per-epoch ``val_mIoU``/``test_mIoU``.
    """
    frame = _finish(_load(tracking_uri))
    return frame[~frame["kind"].isin(PARENT_KINDS)].reset_index(drop=True)


def load_runs_and_parents(tracking_uri: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of ``load_runs``, the parent runs of sweeps and searches), from one read of the store."""
    frame = _finish(_load(tracking_uri))
    parent = frame["kind"].isin(PARENT_KINDS)
    return frame[~parent].reset_index(drop=True), frame[parent].reset_index(drop=True)


def _load(tracking_uri: str | None) -> pd.DataFrame:
    uri = tracking_uri or default_uri()
    path = sqlite_path(uri)
    return _load_sqlite(path) if path is not None else _load_search(uri)


def _load_sqlite(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise StoreError(
            f"no MLflow store at {path}: run a sweep first, or pass --tracking-uri "
            "(or set MLFLOW_TRACKING_URI) to the store that holds the runs"
        )
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        runs = pd.read_sql_query(
            "SELECT r.run_uuid AS run_id, r.experiment_id, e.name AS experiment, r.name AS run_name, r.status,"
            " r.start_time FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id"
            " WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'",
            con,
        )
        marks = ",".join("?" * len(TAGS))
        tags = pd.read_sql_query(
            f"SELECT run_uuid, key, value FROM tags WHERE key IN ({marks})", con, params=list(TAGS)
        )
        marks = ",".join("?" * len(METRICS))
        metrics = pd.read_sql_query(
            f"SELECT run_uuid, key, value, step, is_nan FROM latest_metrics WHERE key IN ({marks})",
            con,
            params=list(METRICS),
        )
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise StoreError(f"{path} is not a readable MLflow sqlite store: {exc}") from exc
    finally:
        con.close()
    runs = runs.set_index("run_id")
    wide_tags = tags.pivot(index="run_uuid", columns="key", values="value").rename(columns=TAGS)
    metrics.loc[metrics["is_nan"].astype(bool), "value"] = float("nan")
    wide = metrics.pivot(index="run_uuid", columns="key", values="value")
    per_epoch = metrics[metrics["key"].isin(["val_mIoU", "test_mIoU"])]
    steps = per_epoch.groupby("run_uuid")["step"].max().rename("epochs")
    out = runs.join(wide_tags).join(wide).join(steps)
    out.index.name = "run_id"
    out["start_time"] = pd.to_datetime(out["start_time"], unit="ms", utc=True)
    return out.reset_index()


def _load_search(uri: str) -> pd.DataFrame:
    import mlflow

    client = mlflow.MlflowClient(uri)
    exps = {e.experiment_id: e.name for e in client.search_experiments()}
    if not exps:
        return pd.DataFrame(columns=COLUMNS)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # search_runs takes no URI: set it for this call only
    try:
        df = mlflow.search_runs(experiment_ids=list(exps), output_format="pandas", max_results=1_000_000)
    finally:
        mlflow.set_tracking_uri(previous)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    ren = {f"tags.{k}": v for k, v in TAGS.items()}
    ren.update({f"metrics.{m}": m for m in METRICS})
    ren.update({"tags.mlflow.runName": "run_name"})
    df = df.rename(columns=ren)
    df["experiment"] = df["experiment_id"].map(exps)
    df["epochs"] = float("nan")  # the step is not in search_runs' frame
    return df


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Derived columns, and every expected column present with a stable dtype."""
    for col in [*COLUMNS, *METRICS, *TAGS.values()]:
        if col not in df.columns:
            df[col] = None
    df = df.copy()
    df["name"] = df["name"].fillna(df["run_name"])
    df["display"] = df["notes_name"].fillna(df["name"])
    df["dataset"] = df["dataset"].fillna(df["experiment"])
    df["source"] = df["source"].fillna("segsweep")
    for col in ("params_M", "val_mIoU", "final_val_mIoU", "test_mIoU", "final_test_mIoU", "epochs"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["val_mIoU"] = df["final_val_mIoU"].where(df["final_val_mIoU"].notna(), df["val_mIoU"])
    df["test_mIoU"] = df["final_test_mIoU"].where(df["final_test_mIoU"].notna(), df["test_mIoU"])
    notes_epoch = pd.to_numeric(df["notes_epoch"], errors="coerce")
    df["epochs"] = df["epochs"].where(df["epochs"].notna(), notes_epoch)
    df["notes_order"] = pd.to_numeric(df["notes_order"], errors="coerce")
    df = df.assign(**_written_decimals(df))
    return df[COLUMNS].reset_index(drop=True)


def _written_decimals(df: pd.DataFrame) -> dict[str, list[float]]:
    """val_dec, test_dec, params_dec: the decimals a notes row's numbers were written with (NaN for
    segsweep's measured values), from its raw cells, so a render shows ``89.0`` as the notes wrote it."""
    from results.notes import cell_decimals, params_decimals

    nan = float("nan")
    out: dict[str, list[float]] = {"val_dec": [], "test_dec": [], "params_dec": []}
    for source, cell, metric, pcell in zip(df["source"], df["notes_cell"], df["notes_metric"],
                                          df["notes_params_cell"], strict=True):
        written = cell_decimals(cell, metric if isinstance(metric, str) else "val") \
            if source == "notes" and isinstance(cell, str) else {}
        out["val_dec"].append(written.get("val", nan))
        out["test_dec"].append(written.get("test", nan))
        pdec = params_decimals(pcell) if source == "notes" and isinstance(pcell, str) else None
        out["params_dec"].append(nan if pdec is None else pdec)
    return out
