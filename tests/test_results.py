"""results/: notes parsing, import, tables, in-place rendering, README (real sqlite MLflow stores)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from results.importer import import_notes
from results.notes import parse_cell, parse_notes, read_notes, split_row
from results.query import load_runs
from results.render import MarkerError, find_blocks, regenerate, render_file
from results.tables import TableSpec, render_table

SEPARATOR = re.compile(r"^\|[-:|]+\|$")
NOTES = Path(__file__).parent / "data" / "deeplab-notes.md"
DATASETS = ("voc", "camvid", "cityscapes", "aerial")


@pytest.mark.parametrize(
    "raw, kind, main, val, test, epoch, remark",
    [
        ("**38**", "test", 38.0, None, 38.0, None, ""),
        ("(val:62.5) 49", "test", 49.0, 62.5, 49.0, None, ""),
        ("(val:62.5)", "test", None, 62.5, None, None, ""),
        ("72.1(epoch9)", "val", 72.1, 72.1, None, 9, ""),
        ("65.5,(val500:67.93,test:65.9)", "val", 65.5, 65.5, 65.9, None, ""),
        ("72.3(test:70.6)", "val", 72.3, 72.3, 70.6, None, ""),
        ("50,terminated", "test", 50.0, None, 50.0, None, "terminated"),
        ("57~\u00ef\u00bc\u0152very low", "test", 57.0, None, 57.0, None, "very low"),
        ("epoch5:21,very low", "test", 21.0, None, 21.0, 5, "very low"),
        ("very low", "val", None, None, None, None, "very low"),
        ("?", "test", None, None, None, None, "?"),
        ("", "val", None, None, None, None, ""),
        ("**74.21** ([test:72.67](https://x.org/?submissionID=984))", "val", 74.21, 74.21, 72.67, None, ""),
        ("68.9(slowly move down)", "val", 68.9, 68.9, None, None, "slowly move down"),
    ],
)
def test_parse_cell_understands_messy_cells(raw, kind, main, val, test, epoch, remark):
    c = parse_cell(raw, kind)
    assert (c.main, c.val, c.test, c.epoch, c.remark) == (main, val, test, epoch, remark)


def test_parse_cell_keeps_extras_and_approx():
    assert parse_cell("65.5,(val500:67.93,test:65.9)").extras == {"val500": 67.93}
    assert parse_cell("57~, very low", "test").approx


def test_read_notes_finds_every_results_row_and_skips_other_tables():
    rows, skipped = read_notes(NOTES)
    assert len(rows) == 97
    assert {r.dataset for r in rows} == set(DATASETS)
    assert [t.line for t in skipped] == [14, 18, 185]  # no mIoU column
    camvid = [r for r in rows if r.dataset == "camvid"]
    assert all(r.metric == "test" for r in camvid)  # "Test mIoU(66)" header
    assert next(r for r in rows if r.name.endswith("stride8.scale480")).params == 66.3  # as the notes state


def test_generated_blocks_and_code_fences_are_not_history():
    table = "Arch | #Params(M) | Val mIoU\n--|--|--\nx.voc|1|2\n"
    text = (
        f"### VOC\n<!-- segsweep:begin voc -->\n{table}<!-- segsweep:end voc -->\n"
        f"```\n<!-- segsweep:begin voc -->\n{table}```\n{table}"
    )
    rows, _ = parse_notes(text)
    assert [r.line for r in rows] == [15]  # only the table outside the block and the fence
    assert [b.begin_line for b in find_blocks(text.splitlines())] == [2]


@pytest.fixture(scope="module")
def notes_store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('notes')}/mlflow.db"
    report = import_notes(NOTES, uri, codec=False)  # the codec path: test_import_names_through_the_codec
    assert report.created == 97
    return uri


def test_import_is_idempotent_and_tags_rows(notes_store):
    again = import_notes(NOTES, notes_store, codec=False)
    assert (again.created, again.existing) == (0, 97)
    runs = load_runs(notes_store)
    assert len(runs) == 97
    assert set(runs["source"]) == {"notes"} and set(runs["status"]) == {"FINISHED"}
    client = MlflowClient(notes_store)
    row = runs[runs["display"] == "deeplabv2.camvid.imagesize473.scratch_acturally321"].iloc[0]
    tags = client.get_run(row.run_id).data.tags
    assert tags["segsweep.notes_cell"] == "(val:62.5) 49"
    assert tags["segsweep.source"] == "notes"
    assert client.list_artifacts(row.run_id) == []


def test_import_names_through_the_codec(tmp_path):
    naming = pytest.importorskip("sweeper.naming")
    notes = tmp_path / "n.md"
    good = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36"
    notes.write_text(f"### Camvid\nArch | #Params(M) | Test mIoU\n--|--|--\n{good}|5.7|60\nzz.notatoken99|1|2\n")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    report = import_notes(notes, uri)
    assert report.created == 2 and [u[1] for u in report.unparsed] == ["zz.notatoken99"]
    runs = load_runs(uri).set_index("display")
    assert runs.loc[good, "name"] == naming.canonical(good)
    assert runs.loc["zz.notatoken99", "name"] == "zz.notatoken99"
    tags = MlflowClient(uri).get_run(runs.loc["zz.notatoken99", "run_id"]).data.tags
    assert tags["segsweep.name_error"]


def _rendered_rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = split_row(lines[0])
    rows = [ln for ln in lines[1:] if not SEPARATOR.match(ln) and ln != lines[0]]  # a table per notes group
    return [dict(zip(header, split_row(ln), strict=True)) for ln in rows]


def test_bar_every_notes_triple_appears_in_the_rendered_tables(notes_store, tmp_path):
    """Import the notes, render: every stated (name, #Params, mIoU) comes back with the same numbers."""
    notes = tmp_path / "n.md"
    notes.write_text(
        "".join(
            f"## {ds}\n<!-- segsweep:begin {ds} cols=params,val,test -->\n<!-- segsweep:end {ds} -->\n"
            for ds in DATASETS
        )
    )
    _, new = render_file(notes, load_runs(notes_store))
    blocks = re.split(r"<!-- segsweep:begin (\w+)", new)[1:]
    rendered = {ds: _rendered_rows(body) for ds, body in zip(blocks[::2], blocks[1::2], strict=True)}
    rows, _ = read_notes(NOTES)
    for r in rows:
        pool = rendered[r.dataset]
        col = "Test mIoU" if r.metric == "test" else "Val mIoU"

        def same(x: dict[str, str], r=r, col=col) -> bool:
            return (
                x["Arch"] == r.name
                and (parse_cell(x["#Params(M)"]).main == r.params)
                and parse_cell(x[col], r.metric).main == r.cell.main
                and parse_cell(x["Val mIoU"]).main == r.cell.val
                and parse_cell(x["Test mIoU"]).main == r.cell.test
            )

        match = next((x for x in pool if same(x)), None)
        assert match is not None, f"line {r.line}: {r.name} {r.params} {r.cell.raw!r} not rendered"
        pool.remove(match)  # duplicates (two rows, one name) must both appear
    assert all(not pool for pool in rendered.values())


def test_render_keeps_outside_bytes_and_crlf(notes_store, tmp_path):
    head = "# Notes\r\nfree text | with a pipe\r\n\r\n"
    tail = "\r\nafter \u00e9\r\n"
    path = tmp_path / "n.md"
    path.write_bytes((head + "<!-- segsweep:begin aerial -->\r\nstale\r\n<!-- segsweep:end aerial -->" + tail).encode())
    render_file(path, load_runs(notes_store))
    data = path.read_bytes().decode()
    assert data.startswith(head + "<!-- segsweep:begin aerial -->\r\n")
    assert data.endswith("<!-- segsweep:end aerial -->" + tail)
    assert "stale" not in data and "| Arch" in data and "\n" not in data.replace("\r\n", "")
    assert "**90.0**" in data and "| 89.0 " in data and "| 89 " not in data  # the notes' digits; the best bold
    old, new = render_file(path, load_runs(notes_store))
    assert old == new  # a second render changes nothing


@pytest.mark.parametrize(
    "text, lines",
    [
        ("a\n<!-- segsweep:begin voc -->\nx\n", ["line 2"]),
        ("<!-- segsweep:end voc -->\n", ["line 1"]),
        ("<!-- segsweep:begin voc -->\n<!-- segsweep:begin camvid -->\n<!-- segsweep:end camvid -->\n", ["line 2"]),
        (
            "<!-- segsweep:begin voc -->\n<!-- segsweep:end voc -->\n<!-- segsweep:begin voc -->\n"
            "<!-- segsweep:end voc -->\n",
            ["line 3", "line 1"],
        ),
        ("<!-- segsweep:begin voc bogus=1 -->\n<!-- segsweep:end voc -->\n", ["line 1"]),
        ("<!-- segsweep:begin voc -->\n<!-- segsweep:end camvid -->\n", ["line 2", "line 1"]),
    ],
)
def test_bad_markers_are_refused_with_line_numbers(text, lines):
    with pytest.raises(MarkerError) as err:
        find_blocks(text.splitlines())
    for ln in lines:
        assert ln in str(err.value)


def _cli(*args: str, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "results", "--tracking-uri", uri, *args], capture_output=True, text=True
    )


def test_cli_check_dry_run_and_refusal(notes_store, tmp_path):
    path = tmp_path / "n.md"
    original = "x\n<!-- segsweep:begin voc sort=miou -->\n<!-- segsweep:end voc -->\ny\n"
    path.write_text(original)
    check = _cli("render", "--check", "--no-hash-check", str(path), uri=notes_store)
    assert check.returncode == 1 and path.read_text() == original
    dry = _cli("render", "--dry-run", "--no-hash-check", str(path), uri=notes_store)
    assert dry.returncode == 0 and "+| deeplabv3.voc.imagesize473 " in dry.stdout and path.read_text() == original
    assert _cli("render", "--no-hash-check", str(path), uri=notes_store).returncode == 0
    assert _cli("render", "--check", "--no-hash-check", str(path), uri=notes_store).returncode == 0
    bad = tmp_path / "bad.md"
    bad.write_text(original + "<!-- segsweep:begin voc -->\n")
    before = bad.read_bytes()
    res = _cli("render", str(bad), uri=notes_store)
    assert res.returncode == 2 and "line 5" in res.stderr and bad.read_bytes() == before


# ---- segsweep runs: seeds, unfinished runs, stale marks -------------------------------------------


def _run(client, exp, name, seed, val, *, status="FINISHED", commit="c1", chash="h", params=5.7, epochs=3,
         error=None):
    tags = {
        "segsweep.name": name, "segsweep.dataset": "camvid", "segsweep.seed": str(seed),
        "segsweep.git_commit": commit, "segsweep.config_hash": chash, "segsweep.source": "segsweep",
    }  # fmt: skip
    if error:
        tags["segsweep.error"] = error
    run = client.create_run(exp, run_name=name, tags=tags)
    ms = [Metric("params_M", params, 0, 0)]
    ms += [Metric("val_mIoU", val - (epochs - e), 0, e) for e in range(1, epochs + 1)]
    if status == "FINISHED":
        ms.append(Metric("final_val_mIoU", val, 0, 0))
    client.log_batch(run.info.run_id, metrics=ms)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('sweep')}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("camvid")
    for seed, val in enumerate((50.0, 52.0, 54.0)):
        _run(client, exp, "a", seed, val)
    _run(client, exp, "b", 0, 60.0, commit="c2")
    _run(client, exp, "c", 0, 45.0, status="RUNNING")
    _run(client, exp, "d", 0, 30.0, status="FAILED", error="RuntimeError: CUDA out of memory, batch 8\nmore")
    _run(client, exp, "e", 0, 40.0, chash="old")
    return uri


def test_table_seeds_status_bold_and_stale_marks(sweep_store):
    df = load_runs(sweep_store)
    assert df.set_index("name").loc["c", "epochs"] == 3
    text = render_table(df, TableSpec("camvid", "camvid", ("params", "val", "status")), lambda n, s: "h")
    rows = {r["Arch"]: r for r in _rendered_rows(text)}
    assert rows["a"]["Val mIoU"] == "52.00 ± 2.00 (3)"  # measured values: two decimals (results.tables.fmt)
    assert rows["b\u2020"]["Val mIoU"] == "**60.00**"  # reference = the newest run's commit (c1): b is †
    assert rows["c"]["Val mIoU"] == "RUNNING (epoch 3: 45.00)" and rows["c"]["Status"] == "RUNNING"
    failed = "RuntimeError: CUDA out of memory, batch 8"  # its first line, told once
    assert (rows["d"]["Val mIoU"], rows["d"]["Status"]) == (failed, "FAILED")
    without_status = {r["Arch"]: r for r in _rendered_rows(render_table(df, TableSpec("camvid", "camvid", ("val",))))}
    assert without_status["d"]["Val mIoU"] == "FAILED: " + failed
    assert "e\u2021" in rows and "a" in rows  # e's hash "old" != "h"; a matches
    assert "\u2021 its config hash differs" in text


def test_stale_reference_commit_and_sort(sweep_store):
    df = load_runs(sweep_store)
    text = render_table(df, TableSpec("camvid", "camvid", ("val",), sort="miou", commit="c1"))
    names = [r["Arch"] for r in _rendered_rows(text)]
    assert names[:3] == ["b\u2020", "a", "e"]  # by mIoU; only b was made at another commit than c1
    assert "\u2020 made at another git commit" in text


def test_real_config_hash_check(tmp_path):
    naming = pytest.importorskip("sweeper.naming")
    from results.stale import ConfigHashes

    name = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16"
    good = naming.config_hash(naming.compose_config(naming.parse(name), ["seed=3"]))
    hashes = ConfigHashes()
    assert hashes(name, "3") == good
    assert hashes(name, "4") == naming.config_hash(naming.compose_config(naming.parse(name), ["seed=4"]))
    assert hashes("camvid.notatoken123", "0") is None


def test_config_hashes_are_cached_on_disk(tmp_path, monkeypatch):
    naming = pytest.importorskip("sweeper.naming")
    from results.stale import ConfigHashes

    name = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36"
    first = ConfigHashes(tmp_path)
    expected = first(name, "1")
    first.save()
    monkeypatch.setattr(naming, "compose_config", lambda *a, **k: pytest.fail("composed again"))
    second = ConfigHashes(tmp_path)
    assert second(name, "1") == expected and second(name, "2") != expected


def test_readme_refresh_writes_tables_and_plots(sweep_store, tmp_path, monkeypatch):
    from results.readme import refresh

    monkeypatch.setenv("SEGSWEEP_CACHE", str(tmp_path / "cache"))

    out = refresh(sweep_store, tmp_path / "results" / "README.md")
    text = out.read_text()
    assert text.startswith("<!-- Auto-generated")
    assert "## camvid" in text and "52.00 ± 2.00 (3)" in text
    assert (out.parent / "camvid_params_miou.png").stat().st_size > 1000
    assert (out.parent / "camvid_curves.png").stat().st_size > 1000
    assert "](camvid_curves.png)" in text


def test_regenerate_empty_selection_says_so(sweep_store):
    text = "<!-- segsweep:begin synthetic -->\n<!-- segsweep:end synthetic -->\n"
    assert "_No runs yet for `synthetic`._" in regenerate(text, load_runs(sweep_store))


def test_missing_store_is_one_clear_error(tmp_path):
    res = _cli("readme", uri=f"sqlite:///{tmp_path}/nope.db")
    assert res.returncode == 2 and "no MLflow store" in res.stderr


def test_copy_of_notes_untouched_outside_blocks(notes_store, tmp_path):
    """The real notes with a block added: every original byte is still there, in order."""
    path = tmp_path / "notes.md"
    shutil.copy(NOTES, path)
    original = path.read_text()
    marked = original.replace("### Aerial \n", "### Aerial \n<!-- segsweep:begin aerial -->\n<!-- segsweep:end aerial -->\n")
    path.write_text(marked)
    _, new = render_file(path, load_runs(notes_store))
    start, end = new.index("<!-- segsweep:begin aerial -->"), new.index("<!-- segsweep:end aerial -->")
    assert new[:start] + new[end:] == marked[: marked.index("<!-- segsweep:begin")] + marked[marked.index("<!-- segsweep:end"):]


def test_sqlite_reader_matches_search_runs(sweep_store):
    """The fast SQL path and the mlflow.search_runs path (used for servers) give the same frame."""
    from results.query import _finish, _load_search

    fast = load_runs(sweep_store).set_index("run_id").sort_index()
    slow = _finish(_load_search(sweep_store)).set_index("run_id").sort_index()
    cols = ["name", "dataset", "status", "params_M", "val_mIoU", "test_mIoU", "seed", "git_commit", "config_hash"]
    assert len(fast) == 7
    assert fast[cols].astype(str).equals(slow[cols].astype(str))


def test_trials_table_and_plot(tmp_path):
    from results.trials import trials_plot, trials_table

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("synthetic")
    parent = client.create_run(exp, run_name="search").info.run_id
    for trial, val in enumerate((40.0, 55.5, 50.0)):
        tags = {"mlflow.parentRunId": parent, "segsweep.trial": str(trial), "segsweep.name": f"t{trial}"}
        rid = client.create_run(exp, run_name=f"t{trial}", tags=tags).info.run_id
        client.log_batch(rid, metrics=[Metric("final_val_mIoU", val, 0, 0)])
        client.set_terminated(rid)
    rows = _rendered_rows(trials_table(parent, uri))
    assert [r["Trial"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["Val mIoU"] == "**55.50**"  # a measured value: two decimals
    assert trials_plot(parent, tmp_path / "t.png", uri).stat().st_size > 1000


def test_config_hash_cache_follows_every_file_of_the_codec_package(tmp_path):
    """An edit to the token table (any module of sweeper/naming/) invalidates the cached hashes."""
    import types

    from results.stale import ConfigHashes

    package, conf = tmp_path / "naming", tmp_path / "conf"
    package.mkdir()
    conf.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tokens.py").write_text("TABLE = 1\n")
    (conf / "sweep.yaml").write_text("seed: 0\n")
    hashes = ConfigHashes()
    hashes._naming = types.SimpleNamespace(__file__=str(package / "__init__.py"), CONF_DIR=str(conf))
    before = hashes._tree_digest()
    (package / "tokens.py").write_text("TABLE = 2\n")
    assert hashes._tree_digest() != before
    (conf / "sweep.yaml").write_text("seed: 1\n")
    assert len({before, hashes._tree_digest()}) == 2


def test_readme_links_open_the_named_ui(tmp_path, monkeypatch):
    """`results readme --ui-url URL`: the README's experiment links and a sweep page's run links open that
    UI; without it, a tracking server's own URL, else http://127.0.0.1:5000 (issue 29.10)."""
    from results.readme import ui_base

    monkeypatch.setenv("SEGSWEEP_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("camvid")
    parent = client.create_run(exp, tags={"segsweep.kind": "sweep", "segsweep.sweep_id": "s1",
                                          "segsweep.sweep": "sweep seed=0"}).info.run_id
    kid = client.create_run(exp, tags={"segsweep.name": "camvid.x", "segsweep.dataset": "camvid", "segsweep.seed": "0",
                                       "segsweep.sweep_id": "s1", "mlflow.parentRunId": parent}).info.run_id
    client.log_batch(kid, metrics=[Metric("final_val_mIoU", 40.0, 0, 0)])
    client.set_terminated(kid)
    client.set_terminated(parent)
    res = _cli("readme", "--out", str(tmp_path / "r" / "README.md"), "--ui-url", "http://mlflow.lab:8080/", uri=uri)
    assert res.returncode == 0, res.stderr
    readme, page = (tmp_path / "r" / "README.md").read_text(), (tmp_path / "r" / "sweeps" / "s1.md").read_text()
    assert f"(http://mlflow.lab:8080/#/experiments/{exp}/runs?" in readme
    assert f"(http://mlflow.lab:8080/#/experiments/{exp}/runs/{kid}?" in page
    assert f"(http://mlflow.lab:8080/#/experiments/{exp}/runs/{parent}?" in page
    assert "127.0.0.1" not in readme + page
    assert ui_base(uri) == "http://127.0.0.1:5000" and ui_base("https://srv:5443/") == "https://srv:5443"
    bad = _cli("readme", "--out", str(tmp_path / "x" / "README.md"), "--ui-url", "mlflow.lab", uri=uri)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--ui-url" in bad.stderr
    assert not (tmp_path / "x").exists()
