"""The researcher's views: Pareto plots, the recipe x dataset matrix, the sweep parent's record, bad input.

Real sqlite MLflow stores (tmp_path) and real CLI processes; the plots are checked on what they return
(the labelled points and their label boxes), not on pixels.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from results import matrix
from results.importer import import_notes
from results.notes import parse_cell, read_notes
from results.plots import curves_plot, params_plot, pareto_front
from results.query import load_runs, load_runs_and_parents
from results.render import MarkerError, parse_spec
from results.tables import TableSpec, render_table
from sweeper import sweep_record, tracking
from sweeper.sweep_record import JobRow

NOTES = Path(__file__).parent / "data" / "deeplab-notes.md"


def _cli(*args: str, uri: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "results", "--tracking-uri", uri, *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


# ---- plots ------------------------------------------------------------------------------------------


def test_pareto_front_is_the_best_miou_for_at_most_its_size():
    pts = pd.DataFrame({"label": list("abcdef"), "params_M": [11.6, 5.7, 5.7, 3.0, 20.0, 2.0],
                        "mIoU": [59.2, 60.0, 55.0, 56.0, 61.0, 40.0]})
    assert list(pareto_front(pts)["label"]) == ["f", "d", "b", "e"]  # 59.2 @ 11.6M is beaten by 60 @ 5.7M


def test_params_plot_labels_the_front_without_overlaps_inside_the_figure(tmp_path):
    rows, _ = read_notes(NOTES)
    camvid = [r for r in rows if r.dataset == "camvid" and r.params is not None and r.cell.test is not None]
    pts = pd.DataFrame({"label": [r.name for r in camvid], "params_M": [r.params for r in camvid],
                        "mIoU": [r.cell.test for r in camvid], "split": "test", "source": "notes"})
    val = pts.head(4).assign(split="val", mIoU=pts.head(4)["mIoU"] + 5, source="segsweep")
    result = params_plot(pd.concat([pts, val]), "camvid", tmp_path / "p.png")
    expected = pd.concat([pareto_front(pts).assign(split="test"), pareto_front(val).assign(split="val")])
    got = {(p["label"], p["params_M"], p["mIoU"], p["split"]) for p in result.labelled}
    assert got == {(r.label, r.params_M, r.mIoU, r.split) for r in expected.itertuples()}
    assert ("camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36", 5.7, 60.0, "test") in got
    x0, y0, x1, y1 = result.figure_box
    for i, (a0, b0, a1, b1) in enumerate(result.boxes):
        assert x0 <= a0 and a1 <= x1 and y0 <= b0 and b1 <= y1, "label outside the figure"
        for c0, d0, c1, d1 in result.boxes[i + 1:]:
            assert min(a1, c1) <= max(a0, c0) or min(b1, d1) <= max(b0, d0), "labels overlap"
    assert result.path.stat().st_size > 5000


def test_curves_have_integer_epoch_ticks_and_a_seed_band(tmp_path):
    runs = pd.DataFrame({"seed 0": [10.0, 20.0, 30.0], "seed 1": [12.0, 22.0, 31.0]}, index=[1, 2, 3])
    from matplotlib.figure import Figure

    captured = {}
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        captured["ax"] = self.axes[0]
        return original(self, *args, **kwargs)

    Figure.savefig = keep
    try:
        assert curves_plot({"a": runs}, "t", tmp_path / "c.png") is not None
    finally:
        Figure.savefig = original
    ax = captured["ax"]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert len(ax.collections) == 1  # the ±std band of the two seeds
    assert "2 seeds" in ax.get_legend().get_texts()[0].get_text()


# ---- importer, render, matrix on the notes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def notes_uri(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('notes')}/mlflow.db"
    import_notes(NOTES, uri, codec=False)
    return uri


@pytest.mark.slow
def test_import_keeps_the_notes_order_in_time_and_marks_imported(notes_uri, tmp_path):
    client = MlflowClient(notes_uri)
    exp = client.get_experiment_by_name("camvid")
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND
    assert exp.tags[tracking.NOTE_TAG].startswith("segsweep runs on **camvid**")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    by_line = sorted(runs, key=lambda r: int(r.data.tags["segsweep.notes_line"]))
    starts = [r.info.start_time for r in by_line]
    assert starts == sorted(starts) and min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 60_000
    assert all(r.info.end_time == r.info.start_time and r.data.tags["segsweep.imported"] == "true" for r in runs)
    res = _cli("import-notes", "--dry-run", "--raw-names", str(NOTES), uri=f"sqlite:///{tmp_path}/new.db")
    assert res.returncode == 0 and res.stdout.startswith("would import 97 run(s), 0 already present")
    assert not (tmp_path / "new.db").exists() or not MlflowClient(f"sqlite:///{tmp_path}/new.db").search_experiments(
        filter_string="name = 'camvid'")


def test_render_keeps_the_notes_groups_and_the_test_column(notes_uri):
    runs = load_runs(notes_uri)
    text = render_table(runs, TableSpec("camvid", "camvid"))
    lines = text.splitlines()
    assert lines[0].split("|")[1:-1][-1].strip() == "Test mIoU" and "Val mIoU" not in lines[0]  # what CamVid reports
    tables = [t.splitlines() for t in text.split("\n\n") if t.startswith("|")]
    assert len(tables) == 5  # the notes' CamVid table has four group separators: five groups, five tables
    assert all(t[0] == lines[0] and set(t[1]) <= set("|:- ") for t in tables)  # each under the same header
    assert not [ln for t in tables for ln in t[2:] if set(ln) <= set("|:- ")]  # no row of dashes in a table
    by_miou = render_table(runs, TableSpec("camvid", "camvid", sort="miou"))
    values = [parse_cell(ln.split("|")[-2]).main for ln in by_miou.splitlines()[2:] if ln.startswith("| ")]
    shown = [v for v in values if v is not None]
    assert len(shown) > 30 and shown == sorted(shown, reverse=True)  # sorted on the Test column, which holds values
    assert values[0] == 65.8


@pytest.mark.parametrize("body, why", [("nosuchkey", "unknown KEY 'nosuchkey'"), ("x dataset=mars", "unknown dataset=mars"),
                                       ("x name=*.voc.*", None), ("camvid", None)])
def test_a_block_must_say_which_runs_it_shows(body, why):
    if why is None:
        assert parse_spec(body, 3).key == body.split()[0]
    else:
        with pytest.raises(MarkerError, match=why):
            parse_spec(body, 3)


@pytest.mark.slow
def test_render_refuses_a_block_that_would_show_every_run(notes_uri, tmp_path):
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text("<!-- segsweep:begin voc -->\n<!-- segsweep:end voc -->\n")
    bad.write_text("<!-- segsweep:begin nosuchkey -->\n<!-- segsweep:end nosuchkey -->\n")
    why = "line 1: unknown KEY 'nosuchkey'"
    before = (good.read_bytes(), bad.read_bytes())
    res = _cli("render", "--no-hash-check", str(good), str(bad), uri=notes_uri)
    assert res.returncode == 2 and why in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (good.read_bytes(), bad.read_bytes()) == before  # nothing rewritten, not even the good file


@pytest.mark.slow
def test_binary_notes_are_one_line_exit_2(notes_uri, tmp_path):
    binary = tmp_path / "notes.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage")
    for args in (("render", "--no-hash-check", str(binary)), ("import-notes", "--raw-names", str(binary))):
        res = _cli(*args, uri=notes_uri)
        assert res.returncode == 2 and "not UTF-8 text" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert binary.read_bytes().startswith(b"\x89PNG")


def test_matrix_rows_are_recipes_and_columns_datasets(notes_uri):
    frame, cells = matrix.build(load_runs(notes_uri))
    assert list(frame.columns) == ["voc (val mIoU)", "camvid (test mIoU)", "cityscapes (val mIoU)",
                                   "aerial (val mIoU)"]
    recipe = "deeplabv2.imagesize321.densenet121k48.scratch"  # deeplabv2.voc.imagesize321... without voc
    assert frame.loc[recipe, "voc (val mIoU)"] == "50.6 (notes)"
    assert cells[(recipe, "camvid")].state == "missing"
    commands = matrix.missing_commands(load_runs(notes_uri), cells)
    assert "python sweep.py -m name=deeplabv2.camvid.imagesize321.densenet121k48.scratch,deeplabv2.cityscapes." \
           "imagesize321.densenet121k48.scratch,deeplabv2.aerial.imagesize321.densenet121k48.scratch" in commands


def test_matrix_cell_states_from_segsweep_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exps = {ds: client.create_experiment(ds) for ds in ("voc", "camvid")}

    def run(ds, seed, status, value=None, chash="h", error=None):
        tags = {"segsweep.name": f"{ds}.scratch.x", "segsweep.dataset": ds, "segsweep.seed": str(seed),
                "segsweep.config_hash": chash, "segsweep.source": "segsweep"}
        if error:
            tags["segsweep.error"] = error
        rid = client.create_run(exps[ds], tags=tags).info.run_id
        if value is not None:
            client.log_batch(rid, metrics=[Metric("final_val_mIoU", value, 0, 0)])
        if status != "RUNNING":
            client.set_terminated(rid, status)

    run("voc", 0, "FINISHED", 50.0)
    run("voc", 1, "FINISHED", 54.0)
    run("camvid", 0, "FAILED", error="ValueError: boom\ntrace")
    frame, cells = matrix.build(load_runs(uri), hash_fn=lambda name, seed: "h")
    assert frame.loc["scratch.x", "voc (val mIoU)"] == "52.00 ± 2.83 (2)"
    assert (cells[("scratch.x", "camvid")].state, frame.loc["scratch.x", "camvid (val mIoU)"]) == (
        "failed", "failed: ValueError: boom")
    run("camvid", 1, "RUNNING")
    _, cells = matrix.build(load_runs(uri), hash_fn=lambda name, seed: "new")  # the config tree changed
    assert cells[("scratch.x", "voc")].state == "stale" and cells[("scratch.x", "camvid")].state == "running"
    assert matrix.missing_commands(load_runs(uri), cells) == [  # stale voc, and the real sets it has no run on
        "python sweep.py -m name=voc.scratch.x,cityscapes.scratch.x,aerial.scratch.x"]
    assert matrix.missing_commands(load_runs(uri), cells, ["voc", "camvid"]) == ["python sweep.py -m name=voc.scratch.x"]


# ---- the sweep parent's record ----------------------------------------------------------------------------


def test_split_overrides_tells_axes_from_fixed():
    axes, fixed = sweep_record.split_overrides(["train.epochs=1,2", "dataset=camvid", "seed=range(0,3)", "+force=true"])
    assert axes == {"train.epochs": "1,2", "seed": "0,1,2"}
    assert fixed == {"dataset": "camvid", "force": "true"}
    assert sweep_record.parent_params(["lr=1e-3"])["sweep.axes"] == "(none)"


def test_summary_counts_best_and_seeds():
    jobs = [JobRow("a", "0", "FINISHED", "r0", val=50.0), JobRow("a", "1", "FINISHED", "r1", val=54.123),
            JobRow("b", "0", "FAILED", "r2", error="RuntimeError: x | y\nmore"), JobRow("c")]
    metrics = sweep_record.parent_metrics(jobs, skipped=1)
    assert metrics == {"jobs_total": 4, "jobs_finished": 2, "jobs_failed": 1, "jobs_killed": 0, "jobs_running": 0,
                       "jobs_pending": 1, "jobs_skipped": 1, "best_final_val_mIoU": 54.123}
    text = sweep_record.summary_markdown("sweep seed=0,1", jobs, skipped=1)
    assert "3/4 jobs ended: 2 finished, 1 failed, 1 pending, 1 skipped" in text
    assert "Best final val mIoU: **54.12** (`a`, seed 1)" in text
    assert "| 1 | `a` | 1 | FINISHED | 54.12 | r1 |  |" in text and "RuntimeError: x \\| y |" in text


def test_record_on_a_real_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = tracking.ensure_experiment(uri, "synthetic")
    client = MlflowClient(uri)
    parent = client.create_run(exp, tags={"segsweep.kind": "sweep", "segsweep.sweep_id": "s1"}).info.run_id
    cells = [{"name": f"n{i}", "run_key": f"k{i}", "uri": uri, "experiment": "synthetic", "experiment_id": exp,
              "seed": "0"} for i in range(2)]
    sweep_record.record_start(client, parent, ["lr=1e-3,1e-2", "dataset=synthetic"], "sweep", cells, argv=["sweep.py"])
    run = client.get_run(parent)
    assert run.data.params == {"lr": "0.001,0.01", "dataset": "synthetic", "sweep.axes": "lr"}
    assert run.data.tags["segsweep.command"] == "python sweep.py" and run.data.metrics["jobs_pending"] == 2
    kid = client.create_run(exp, tags={"segsweep.run_key": "k0", "segsweep.name": "n0", "segsweep.seed": "0"})
    client.log_batch(kid.info.run_id, metrics=[Metric("final_val_mIoU", 41.5, 0, 0)])
    client.set_terminated(kid.info.run_id)
    sweep_record.close_record({f"{uri}|synthetic": parent}, ["FINISHED", "SKIPPED"])  # no manifest: children
    client.set_tag(kid.info.run_id, "mlflow.parentRunId", parent)
    sweep_record.refresh(client, parent, "sweep", cells, skipped=1)
    run = client.get_run(parent)
    assert run.data.metrics["jobs_finished"] == 1 and run.data.metrics["best_final_val_mIoU"] == 41.5
    assert "1/2 jobs ended" in run.data.tags["mlflow.note.content"]
    assert [m.step for m in client.get_metric_history(parent, "jobs_finished")][-1] == 2
    _, parents = load_runs_and_parents(uri)
    assert list(parents["run_id"]) == [parent]


def test_a_run_evaluated_on_test_lands_in_the_test_column(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("camvid")
    for seed, value in ((0, 60.0), (1, 62.0)):
        rid = client.create_run(exp, tags={"segsweep.name": "camvid.x", "segsweep.dataset": "camvid",
                                           "segsweep.seed": str(seed), "segsweep.source": "segsweep"}).info.run_id
        client.log_batch(rid, metrics=[Metric("test_mIoU", value - 1, 0, 1), Metric("final_test_mIoU", value, 0, 0)])
        client.set_terminated(rid)
    text = render_table(load_runs(uri), TableSpec("camvid", "camvid"))
    header, _, row = text.splitlines()[:3]
    assert [c.strip() for c in header.split("|")[1:-1]] == ["Arch", "#Params(M)", "Test mIoU", "Seeds"]
    assert [c.strip() for c in row.split("|")[1:-1]] == ["camvid.x", "", "**61.00 ± 1.41 (2)**", "0, 1"]


def test_a_search_parent_gets_the_trials_summary_and_its_command(tmp_path):
    from sweeper.optuna_trial import SearchParentRun

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = SearchParentRun(uri, "synthetic", "study1")
    client = parent.client
    for trial, value in enumerate((40.0, 47.5)):
        rid = client.create_run(parent.experiment_id, tags={"mlflow.parentRunId": parent.run_id,
                                                            "segsweep.name": f"t{trial}", "segsweep.seed": "0"})
        client.log_batch(rid.info.run_id, metrics=[Metric("final_val_mIoU", value, 0, 0)])
        client.set_terminated(rid.info.run_id)
    parent.finish()
    run = client.get_run(parent.run_id)
    assert run.data.tags["segsweep.command"].startswith("python ")
    assert "2/2 jobs ended: 2 finished, 0 failed." in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["best_final_val_mIoU"] == 47.5 and run.info.status == "FINISHED"


# ---- what a plot says: labels that differ, what it leaves out, scratch vs pretrained, one #Params -------

TRIALS = [f"synthetic.scratch.imagesize32.dense30k12.{lr}.train-epochs-3.train-max_steps_per_epoch-2"
          for lr in ("lr1p61e-3", "lr4p2e-4", "lr2e-2")]  # three search trials: only the lr token differs


def test_labels_keep_the_differing_token_and_never_cut_one():
    from results.plots import distinct_labels, short_label

    labels, caption = distinct_labels(TRIALS)
    assert labels == ["\u2026lr1p61e-3\u2026", "\u2026lr4p2e-4\u2026", "\u2026lr2e-2\u2026"]
    assert len(set(labels)) == 3
    assert "synthetic.scratch.imagesize32.dense30k12" in caption and "train-max_steps_per_epoch-2" in caption
    voc = ["deeplabv2.voc.imagesize473", "deeplabv2.voc.imagesize321.densenet31k48.scratch"]
    assert distinct_labels(voc)[0] == ["\u2026imagesize473", "\u2026imagesize321.densenet31k48.scratch"]
    long = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.3gpu.regularization2e-4"
    cut = short_label(long, 44)
    assert cut.startswith("\u2026") and long.endswith(cut[1:]) and len(cut) <= 44
    assert cut[1:].split(".")[0] in long.split(".")  # cut at a token boundary, never mid-token
    assert short_label("x" * 60, 44) == "x" * 60  # a single long token is kept whole


def test_curve_legends_of_three_trials_differ(tmp_path):
    from matplotlib.figure import Figure

    curves = {n: pd.DataFrame({"seed 0": [30.0 + i, 31.0 + i]}, index=[1, 2]) for i, n in enumerate(TRIALS)}
    captured = {}
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        captured["legend"] = [t.get_text() for t in self.axes[0].get_legend().get_texts()]
        captured["caption"] = [t.get_text() for t in self.texts]
        return original(self, *args, **kwargs)

    Figure.savefig = keep
    try:
        curves_plot(curves, "synthetic", tmp_path / "c.png")
    finally:
        Figure.savefig = original
    assert captured["legend"] == [f"\u2026{lr}\u2026 (1 seed)" for lr in ("lr1p61e-3", "lr4p2e-4", "lr2e-2")]
    assert "dense30k12" in captured["caption"][0]  # the folded common part is said once, under the axes


def test_the_voc_plot_says_what_it_leaves_out_and_marks_pretrained(notes_uri, tmp_path):
    from results.readme import plot_points

    runs = load_runs(notes_uri)
    pts = plot_points(runs[runs["dataset"] == "voc"])
    result = params_plot(pts, "voc", tmp_path / "voc.png")
    assert result.kind == "scatter"
    assert "71.6" in result.caption and "without #Params" in result.caption  # the table's bold best, no #Params
    assert {"label": "deeplabv3.voc.imagesize473", "mIoU": 71.6, "split": "val"} in result.left_out
    inits = {p["label"]: p["init"] for p in result.labelled}
    assert inits["deeplabv2.voc.imagesize473"] == "pretrained"  # the ResNet on ImageNet weights
    assert inits["deeplabv2.voc.imagesize321.densenet31k48.scratch"] == "scratch"
    assert any(t.endswith("(pretrained)") for t in result.texts)
    for text, point in zip(result.texts, result.labelled, strict=True):  # whole tokens of the name, never cut
        shown = text.split("  ")[0].strip("\u2026")
        assert f".{shown}." in f".{point['label']}.", (text, point["label"])
    assert not [t for t in result.texts if t.startswith("deeplabv2.voc")]  # the common prefix is folded
    from results.plots import init_of

    assert [init_of(n) for n in ("camvid.noscratch.x", "camvid.scratch_no.resnet50", "x.dense30k48", "x.res50")] == \
        ["pretrained", "pretrained", "scratch", "pretrained"]


def test_one_params_for_every_point_makes_a_strip_of_runs(tmp_path):
    points = pd.DataFrame({"label": TRIALS, "params_M": 0.3412, "mIoU": [34.6, 33.2, 35.9], "split": "val",
                           "source": "segsweep"})
    runs = pd.concat([points.assign(mIoU=points["mIoU"] - 0.5), points.assign(mIoU=points["mIoU"] + 0.5)])
    result = params_plot(points, "synthetic", tmp_path / "s.png", runs, strip_title="synthetic: per run")
    assert result.kind == "strip" and len(result.labelled) == 6  # a point per run (two seeds a name)
    assert result.texts == ["\u2026lr2e-2\u2026", "\u2026lr1p61e-3\u2026", "\u2026lr4p2e-4\u2026"]  # best first
    assert "every run has 0.34 M params" in result.caption
    assert result.path.stat().st_size > 5000


def test_matrix_missing_proposes_real_datasets_for_notes_and_named_variants_only(tmp_path):
    """Search trials, smoke runs, the synthetic set and failed-only recipes get no command; a comment
    line counts them by reason; a failed cell's error is cut at a word (issue 29.7)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exps = {ds: client.create_experiment(ds) for ds in ("voc", "camvid", "synthetic")}

    def run(name, ds, status="FINISHED", **tags):
        base = {"segsweep.name": name, "segsweep.dataset": ds, "segsweep.seed": "0", "segsweep.source": "segsweep"}
        rid = client.create_run(exps[ds], tags={**base, **tags}).info.run_id
        client.log_batch(rid, metrics=[Metric("final_val_mIoU", 40.0, 0, 0)] if status == "FINISHED" else [])
        client.set_terminated(rid, status)

    run("voc.scratch.dense30k48", "voc")  # the user's named variant, finished on a real set: proposed
    run("voc.scratch.dense30k12.lr1p61e-3", "voc", **{"segsweep.trial": "0"})  # a search trial
    run("voc.scratch.dense30k12.train-max_steps_per_epoch-2", "voc")  # a smoke run
    run("synthetic.scratch.dense30k12", "synthetic")  # the quick start
    run("voc.scratch.dense30k60", "voc", "FAILED", **{
        "segsweep.error": "RuntimeError: CUDA out of memory while allocating the decoder; lower batch_size "
                          "or check the device"})
    frame, cells = matrix.build(load_runs(uri))
    commands, left = matrix.missing_plan(load_runs(uri), cells)
    assert commands == ["python sweep.py -m name=camvid.scratch.dense30k48,cityscapes.scratch.dense30k48,"
                        "aerial.scratch.dense30k48"]  # every real set it lacks; never synthetic
    assert left == {"trial": 1, "smoke": 1, "synthetic": 1, "failed": 1}
    line = matrix.left_out_line(left)
    assert line.startswith("# left out 4 recipe(s): ") and "only search trials" in line and "smoke" in line
    error = frame.loc["scratch.dense30k60", "voc (val mIoU)"]
    words = "RuntimeError: CUDA out of memory while allocating the decoder; lower batch_size or check the device"
    assert error.endswith("\u2026") and error.removesuffix("\u2026").split()[-1].rstrip(";") in words.replace(";", "").split(" ")
    assert matrix.real_datasets() == ("voc", "camvid", "cityscapes", "aerial")
