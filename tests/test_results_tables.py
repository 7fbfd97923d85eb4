"""The results table (results/tables.py) rule by rule, in-process on frames of ``query.load_runs``'s shape
(issue 24.6: what mutation testing of the module asks the tests to hold; tests/test_results.py renders
real stores)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from results import query, tables
from results.notes import parse_cell, split_row
from results.tables import TableSpec, clip, decimals, fmt, render_table
from sweeper.tracking import ui_url

SEPARATOR = re.compile(r"^\|[-:|]+\|$")


def run(name: str, val: float | None = None, *, run_id: str | None = None, start: int = 0, **more) -> dict:
    """One segsweep run as ``load_runs`` reads it (FINISHED, commit c1, hash h unless told)."""
    row = {"run_id": run_id or f"{name}-{start}", "experiment_id": "7", "experiment": "camvid", "run_name": name,
           "name": name, "status": "FINISHED", "start_time": start, "val_mIoU": val, "seed": "0",
           "git_commit": "c1", "config_hash": "h"}
    return {**row, **more}


def note(name: str, cell: str | None, *, order: int, metric: str = "val", group: str = "g1", **more) -> dict:
    """One imported notes row: the number as its cell wrote it, its order and group in the notes."""
    parsed = parse_cell(cell, metric) if cell else None
    row = {"run_id": f"n{order}", "experiment_id": "7", "experiment": "camvid", "name": name, "notes_name": name,
           "source": "notes", "status": "FINISHED", "start_time": 0, "notes_order": order, "notes_metric": metric,
           "notes_group": group, "notes_cell": cell,
           "val_mIoU": parsed and parsed.val, "test_mIoU": parsed and parsed.test}
    return {**row, **more}


def frame(*rows: dict) -> pd.DataFrame:
    return query._finish(pd.DataFrame(rows))


def rows_of(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    if not lines:
        return []  # "_No runs yet ..."
    header = split_row(lines[0])
    return [dict(zip(header, split_row(ln), strict=True)) for ln in lines[1:]
            if not SEPARATOR.match(ln) and ln != lines[0]]


def table(df: pd.DataFrame, columns: tuple[str, ...] | None = ("val",), **spec) -> list[dict[str, str]]:
    return rows_of(render_table(df, TableSpec("t", columns=columns, **spec)))


def test_a_spec_refuses_an_unknown_column_or_sort():
    with pytest.raises(ValueError, match=r"^unknown column\(s\) \['x'\] in table 't'; known: \['epochs', "):
        TableSpec("t", columns=("val", "x"))
    with pytest.raises(ValueError, match=r"^unknown sort 'best' in table 't'; use one of \('time', 'name', 'miou'\)"):
        TableSpec("t", sort="best")
    for sort in tables.SORTS:
        assert TableSpec("t", sort=sort).sort == sort


@pytest.mark.parametrize(("written", "places"), [(None, 2), (float("nan"), 2), (0, 1), (1, 1), (2, 2), (3, 2)])
def test_a_number_shows_one_decimal_or_two_where_the_source_gave_two(written, places: int):
    assert decimals(written) == places


@pytest.mark.parametrize(("value", "written", "text"), [
    (None, None, ""), (float("nan"), 1, ""), (89, 0, "89.0"), (86.72, 2, "86.72"), (34.2234, None, "34.22"),
    (-0.001, None, "0.00"), (-0.04, 1, "0.0"), (-1.5, None, "-1.50"), (0.0, 1, "0.0"),
])
def test_fmt_rounds_only_what_is_shown_and_never_shows_minus_zero(value, written, text: str):
    assert fmt(value, written) == text


@pytest.mark.parametrize(("text", "width", "clipped"), [
    ("short", 10, "short"), ("exactly10!", 10, "exactly10!"),
    ("one two three four", 12, "one two\u2026"), ("one two, three", 10, "one two\u2026"),
    ("one two; three", 10, "one two\u2026"), ("averyverylongword and more", 8, "averyverylongword\u2026"),
    ("ab cd", 4, "ab\u2026"), ("one two three", 8, "one\u2026"), ("one two three", 9, "one two\u2026"),
])
def test_clip_cuts_at_a_word_boundary_with_an_ellipsis(text: str, width: int, clipped: str):
    assert clip(text, width) == clipped
    assert len(clipped) <= width or " " not in clipped


def test_the_default_columns_are_params_the_reported_splits_and_the_seeds_of_segsweep_runs():
    assert tables.default_columns(frame(run("a", 50.0))) == ("params", "val", "seeds")
    assert tables.default_columns(frame(run("a", None, test_mIoU=40.0))) == ("params", "test", "seeds")
    assert tables.default_columns(frame(run("a", None))) == ("params", "val", "seeds")  # nothing: val
    notes = frame(note("n1", "(val:62.5) 49", order=1, metric="test"), note("n2", None, order=2))
    assert tables.default_columns(notes) == ("params", "val", "test")  # a notes row: its table's split
    assert tables.default_columns(frame(note("n1", "(val:62.5) 49", order=1, metric="test"))) == ("params", "test")
    unsaid = frame({**note("n1", "49", order=1), "notes_metric": None})  # a notes row without its split: val
    assert tables.default_columns(unsaid) == ("params", "val")


def test_a_table_selects_by_dataset_sweep_and_a_glob_of_the_shown_or_canonical_name():
    df = frame(run("camvid.a", 1.0, start=1, sweep_id="s1"), run("camvid.b", 2.0, start=2, sweep_id="s2", dataset="voc"),
               {**note("old.c", "3.0", order=1), "name": "camvid.c"})
    assert [r["Arch"] for r in table(df, dataset="camvid")] == ["old.c", "camvid.a"]
    assert [r["Arch"] for r in table(df, sweep="s2")] == ["camvid.b"]
    assert [r["Arch"] for r in table(df, name="camvid.*")] == ["old.c", "camvid.a", "camvid.b"]  # c: its name
    assert [r["Arch"] for r in table(df, name="old.?")] == ["old.c"]
    assert [r["Arch"] for r in table(df, dataset="camvid", sweep="s1")] == ["camvid.a"]  # the filters combine
    assert [r["Arch"] for r in table(df, dataset="camvid", name="*.b")] == []
    assert [r["Arch"] for r in table(df, sweep="s1", name="*.b")] == []
    assert render_table(df, TableSpec("t", name="CAMVID.*")) == "_No runs yet for `t`._"  # case-sensitive
    assert render_table(df, TableSpec("t", dataset="cs")) == "_No runs yet for `t`._"


def test_finished_repeats_of_a_name_are_one_row_mean_std_count_and_their_seeds():
    df = frame(run("a", 50.0, seed="2", start=1, params_M=5.714), run("a", 54.0, seed="10", start=2, params_M=5.714),
               run("a", 52.0, seed="2", start=3, params_M=5.714), run("b", 40.0, seed=None, start=4, epochs=3))
    rows = {r["Arch"]: r for r in table(df, ("params", "val", "seeds", "epochs", "status"))}
    assert rows["a"] == {"Arch": "a", "#Params(M)": "5.71", "Val mIoU": "**52.00 ± 2.00 (3)**",
                         "Seeds": "10, 2", "Epochs": "", "Status": "FINISHED"}
    assert rows["b"] == {"Arch": "b", "#Params(M)": "", "Val mIoU": "40.00", "Seeds": "", "Epochs": "3",
                         "Status": "FINISHED"}


def test_a_finished_run_without_the_metric_has_an_empty_cell():
    assert table(frame(run("a", None, test_mIoU=3.0)), ("val", "test"))[0]["Val mIoU"] == ""


def test_an_unfinished_run_is_its_own_row_with_its_status_epoch_and_value():
    df = frame(run("a", 50.0, start=1), run("a", 30.0, status="RUNNING", epochs=2, start=2),
               run("a", None, status="KILLED", start=3), run("a", 20.0, status="SCHEDULED", start=4))
    cells = [r["Val mIoU"] for r in table(df)]
    assert cells == ["**50.00**", "RUNNING (epoch 2: 30.00)", "KILLED", "SCHEDULED (20.00)"]


def test_a_failed_run_tells_the_first_line_of_its_error_once_clipped_and_escaped():
    error = "RuntimeError: a b " + "word " * 30 + "\nTraceback"
    df = frame(run("f", 10.0, status="FAILED", error=error, test_mIoU=9.0), run("g", None, status="FAILED"))
    with_status = table(df, ("val", "test", "status"))
    first = clip(error.splitlines()[0], 90)
    assert [(r["Val mIoU"], r["Test mIoU"], r["Status"]) for r in with_status] == [
        (first, "", "FAILED"), ("(no error recorded)", "", "FAILED")]
    assert len(first) <= 90 and first.endswith("\u2026")
    edge = frame(run("e", None, status="FAILED", error="a" * 85 + " bbb cc"))  # "bbb" ends at 90
    assert table(edge, ("val", "status"))[0]["Val mIoU"] == "a" * 85 + "\u2026"
    without = table(df, ("test", "val"))
    assert [(r["Test mIoU"], r["Val mIoU"]) for r in without] == [
        ("FAILED: " + first, ""), ("FAILED", "")]
    piped = frame(run("f", None, status="FAILED", error="a | b"))
    assert "| FAILED: a \\| b " in render_table(piped, TableSpec("t", columns=("val",)))  # a '|' cannot end the cell
    assert table(df, ("status",))[0] == {"Arch": "f", "Status": "FAILED"}  # no metric column: no error shown


def test_a_notes_row_shows_its_number_as_written_with_its_approx_epoch_and_remark():
    df = frame(note("n1", "89", order=1, approx="true", notes_epoch="30", remark="lr 2"),
               note("n2", "86.72", order=2), note("n3", None, order=3, remark="diverged"),
               note("n4", "(val:62.5) 49", order=4, metric="test"), note("n5", "70.0", order=5, notes_epoch="20"))
    rows = {r["Arch"]: r for r in table(df, ("val", "test"))}
    assert rows["n1"]["Val mIoU"] == "**89.0~ (epoch30, lr 2)**"
    assert rows["n2"]["Val mIoU"] == "86.72"
    assert rows["n3"]["Val mIoU"] == "diverged"
    assert (rows["n4"]["Val mIoU"], rows["n4"]["Test mIoU"]) == ("62.5", "**49.0**")  # a side value: bare
    assert rows["n5"]["Val mIoU"] == "70.0 (epoch20)"
    with_epochs = {r["Arch"]: r for r in table(df, ("val", "epochs", "status"))}
    assert with_epochs["n5"]["Val mIoU"] == "70.0" and with_epochs["n5"]["Epochs"] == "20"
    assert with_epochs["n5"]["Status"] == "notes"


def test_the_best_value_of_each_metric_column_is_bold_ties_included():
    df = frame(run("a", 50.0, test_mIoU=30.0), run("b", 60.0), run("c", 60.0, test_mIoU=20.0),
               run("d", None, status="RUNNING", val_mIoU=70.0))
    rows = {r["Arch"]: r for r in table(df, ("val", "test"))}
    assert [rows[n]["Val mIoU"] for n in "abcd"] == ["50.00", "**60.00**", "**60.00**", "RUNNING (70.00)"]
    assert [rows[n]["Test mIoU"] for n in "abcd"] == ["**30.00**", "", "20.00", "RUNNING"]


def test_rows_come_in_time_then_notes_order_or_by_name_or_by_the_first_reported_metric():
    df = frame(run("c", 50.0, start=5), run("a", None, start=9), run("b", 70.0, start=7),
               note("n2", "60.0", order=2), note("n1", "40.0", order=1), note("z", "55.0", order=0, start_time=0))
    assert [r["Arch"] for r in table(df)] == ["z", "n1", "n2", "c", "b", "a"]
    assert [r["Arch"] for r in table(df, sort="name")] == ["a", "b", "c", "n1", "n2", "z"]
    assert [r["Arch"] for r in table(df, sort="miou")] == ["b", "n2", "z", "c", "n1", "a"]
    test_only = frame(run("x", None, start=1, test_mIoU=1.0), run("y", None, start=2, test_mIoU=2.0))
    assert [r["Arch"] for r in table(test_only, ("val", "test"), sort="miou")] == ["y", "x"]  # val: empty


def test_time_order_splits_the_table_where_the_notes_group_changes():
    df = frame(note("n1", "1.0", order=1, group="g1"), note("n2", "2.0", order=2, group="g1"),
               note("n3", "3.0", order=3, group="g2"), run("r", 4.0, start=1))
    text = render_table(df, TableSpec("t", columns=("val",)))
    blocks = text.split("\n\n")
    assert [[r["Arch"] for r in rows_of(b)] for b in blocks] == [["n1", "n2"], ["n3"], ["r"]]
    assert all(b.splitlines()[0] == blocks[0].splitlines()[0] for b in blocks)  # each under the header
    assert "\n\n" not in render_table(df, TableSpec("t", columns=("val",), sort="name"))


def test_a_run_of_another_commit_than_the_newest_gets_a_dagger_and_the_footnote():
    df = frame(run("a", 1.0, start=1, git_commit="c1abc"), run("b", 2.0, start=2, git_commit="c2"),
               run("c", 3.0, start=3, git_commit="unknown"), run("d", 4.0, start=4, git_commit=None),
               note("n", "5.0", order=1))
    text = render_table(df, TableSpec("t", columns=("val",)))
    assert [r["Arch"] for r in rows_of(text)] == ["n", "a\u2020", "b", "c", "d"]  # reference: c2, the newest
    assert text.endswith("\u2020 made at another git commit than the table's reference `c2`.")
    named = render_table(df, TableSpec("t", columns=("val",), commit="c1"))  # a prefix of c1abc
    assert [r["Arch"] for r in rows_of(named)] == ["n", "a", "b\u2020", "c", "d"]
    longer = render_table(df, TableSpec("t", columns=("val",), commit="c2abcdef1234"))  # c2 is its prefix
    assert [r["Arch"] for r in rows_of(longer)] == ["n", "a\u2020", "b", "c", "d"]
    assert "reference `c2abcdef12`" in longer
    no_commit = frame(run("a", 1.0, git_commit="unknown"), run("b", 1.0, git_commit=None))
    assert "\u2020" not in render_table(no_commit, TableSpec("t", columns=("val",)))


def test_a_run_whose_name_composes_another_hash_today_gets_a_double_dagger():
    asked = []

    def today(name: str, seed: str | None) -> str | None:
        asked.append((name, seed))
        return {"a": "h", "b": "h2"}.get(name)

    df = frame(run("a", 1.0, seed="3"), run("b", 2.0, seed=None), run("c", 3.0), run("d", 4.0, config_hash=None))
    text = render_table(df, TableSpec("t", columns=("val",)), today)
    assert [r["Arch"] for r in rows_of(text)] == ["a", "b\u2021", "c\u2021", "d"]  # c: no longer composes
    assert sorted(asked) == [("a", "3"), ("b", None), ("c", "0")]  # d has no hash: not asked
    assert "\u2021 its config hash differs from what its name (and seed) composes today" in text
    assert "\u2020" not in text
    assert "\u2021" not in render_table(df, TableSpec("t", columns=("val",)))  # no hash function: no check


def test_a_repeat_group_is_marked_when_any_of_its_runs_is_stale():
    df = frame(run("a", 1.0, start=1, git_commit="c0"), run("a", 2.0, start=2), run("b", 3.0, start=3))
    assert [r["Arch"] for r in table(df)] == ["a\u2020", "b"]


def test_a_pipe_in_a_name_is_escaped_and_the_run_column_links_each_run():
    df = frame(run("a|b", 1.0, run_id="0123456789abcdef", start=1), run("a|b", 2.0, run_id="fedcba9876543210", start=2))
    text = render_table(df, TableSpec("t", columns=("link",), link_base="http://ui:5000"))
    assert "| a\\|b " in text
    text = text.replace("a\\|b", "a-b")
    links = " ".join(f"[{r[:7]}]({ui_url('http://ui:5000', '7', r)})" for r in ("0123456789abcdef", "fedcba9876543210"))
    assert rows_of(text)[0]["Run"] == links
