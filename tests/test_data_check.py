"""`python -m data check` and the check training runs before its first step, on tiny real trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import DatasetError, build_dataset
from data.__main__ import main
from data.check import check_before_training, check_split, fingerprint, pairs_of
from data.config import dataset_config
from tests.conftest import REPO, subprocess_env
from tests.fixtures_data import H, W, make_aerial, make_voc, rand_image, truncate, write_png


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own (elsewhere: the shared one; test trees have unique paths, hence unique keys)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEGSWEEP_CACHE", str(cache))
    return cache


def _voc(root: Path, split: str = "train_aug"):
    make_voc(root)
    cfg = dataset_config(["dataset=voc", f"dataset.root={root}"])
    return cfg, build_dataset(cfg, split, train=False)


def _problems(ds, mode: str = "headers") -> list[str]:
    return [p.line() for p in check_split(ds, "s", mode, use_cache=False).problems]


def test_a_good_tree_passes_both_depths(tmp_path: Path):
    _, ds = _voc(tmp_path)
    assert _problems(ds) == [] and _problems(ds, "full") == []
    make_aerial(tmp_path / "aerial", tmp_path / "lists")
    cfg = dataset_config(["dataset=aerial", f"dataset.root={tmp_path / 'aerial'}", f"dataset.list_dir={tmp_path / 'lists'}"])
    for split in ("train", "val"):
        aerial = build_dataset(cfg, split, train=False)
        assert _problems(aerial) == [] and _problems(aerial, "full") == []


def _break_png(ds):
    return truncate(ds.pairs[1][1]), "truncated PNG (no IEND chunk"


def _break_jpeg(ds):
    return truncate(ds.pairs[2][0], keep=0.9), "truncated JPEG (no end-of-image marker)"


def _break_jpeg_header(ds):
    return truncate(ds.pairs[0][0], keep=0.05), "image cannot be read"


def _resize_label(ds):
    write_png(ds.pairs[3][1], np.zeros((H, W + 1), dtype=np.uint8))
    return ds.pairs[3][1], f"label is {W + 1}x{H} but its image {ds.pairs[3][0].name} is {W}x{H} (WxH)"


def _colour_label(ds):
    write_png(ds.pairs[0][1], rand_image(np.random.default_rng(0), H, W))
    return ds.pairs[0][1], "label has RGB colour channels"


def _delete_label(ds):
    ds.pairs[2][1].unlink()
    return ds.pairs[2][1], "label file not found"


@pytest.mark.parametrize("damage", [_break_png, _break_jpeg, _break_jpeg_header, _resize_label, _colour_label,
                                    _delete_label])
def test_the_header_check_names_each_broken_file_once(tmp_path: Path, damage):
    _, ds = _voc(tmp_path)
    path, reason = damage(ds)
    (line,) = _problems(ds)
    assert line.startswith(f"{path}: ") and reason in line


def test_a_truncated_tiff_is_named_from_its_strip_table(tmp_path: Path):
    make_aerial(tmp_path / "aerial", tmp_path / "lists")
    cfg = dataset_config(["dataset=aerial", f"dataset.root={tmp_path / 'aerial'}", f"dataset.list_dir={tmp_path / 'lists'}"])
    ds = build_dataset(cfg, "train", train=False)
    truncate(ds.pairs[1][0], keep=0.8)
    (line,) = _problems(ds)
    assert line.startswith(f"{ds.pairs[1][0]}: truncated TIFF (pixel data ends at byte ")


def test_label_values_are_checked_by_the_full_depth_only(tmp_path: Path):
    _, ds = _voc(tmp_path)
    write_png(ds.pairs[1][1], np.full((H, W), 37, dtype=np.uint8))  # not a VOC class (0..20) nor 255
    assert _problems(ds) == []  # headers cannot see values: documented in docs/data.md
    (line,) = _problems(ds, "full")
    assert line == f"{ds.pairs[1][1]}: label values [37] are neither classes 0..20 nor ignore 255"


def test_void_labels_and_the_reader_mapping_count_as_valid(tmp_path: Path):
    make_aerial(tmp_path / "aerial", tmp_path / "lists")  # val gt is 0/255: the reader maps 255 -> building
    cfg = dataset_config(["dataset=aerial", f"dataset.root={tmp_path / 'aerial'}", f"dataset.list_dir={tmp_path / 'lists'}"])
    ds = build_dataset(cfg, "val", train=False)
    assert 255 in np.asarray(Image.open(ds.pairs[0][1])) and _problems(ds, "full") == []


def test_a_passing_split_is_cached_until_a_file_changes(tmp_path: Path, private_cache: Path):
    _, ds = _voc(tmp_path)
    first = check_split(ds, "train_aug")
    assert not first.cached and first.pairs == 4 and len(list(private_cache.rglob("*.ok"))) == 1
    assert check_split(ds, "train_aug").cached
    label = ds.pairs[0][1]
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))  # rewritten later
    assert not check_split(ds, "train_aug").cached
    assert check_split(ds, "train_aug", "full").cached is False  # the depth is part of the key


def test_a_failing_split_is_not_cached(tmp_path: Path, private_cache: Path):
    _, ds = _voc(tmp_path)
    truncate(ds.pairs[0][1])
    assert check_split(ds, "train_aug").problems and check_split(ds, "train_aug").problems
    assert not list(private_cache.rglob("*.ok"))


def test_the_fingerprint_follows_paths_sizes_and_mtimes(tmp_path: Path):
    _, ds = _voc(tmp_path)
    pairs = pairs_of(ds)
    key = fingerprint(pairs, "headers")
    assert key == fingerprint(list(pairs), "headers") and key != fingerprint(pairs[:-1], "headers")
    assert key != fingerprint(pairs, "full")
    pairs[0][0].write_bytes(pairs[0][0].read_bytes() + b"\0")
    assert fingerprint(pairs, "headers") != key
    pairs[1][1].unlink()
    assert fingerprint(pairs, "headers") is None  # a missing file is never cached


def test_training_check_raises_naming_the_files_on_its_first_line(tmp_path: Path):
    cfg, ds = _voc(tmp_path)
    truncate(ds.pairs[0][1])
    truncate(ds.pairs[3][1])
    with pytest.raises(DatasetError) as info:
        check_before_training(cfg, {"train_aug": ds})
    first, *rest = str(info.value).splitlines()
    assert "dataset voc split 'train_aug': 2 broken file(s) of 4 pairs" in first
    assert str(ds.pairs[0][1]) in first and str(ds.pairs[3][1]) in first
    assert rest == [f"{ds.pairs[0][1]}: truncated PNG (no IEND chunk at the end)",
                    f"{ds.pairs[3][1]}: truncated PNG (no IEND chunk at the end)"]


def test_skip_corrupt_lets_undecodable_files_through_but_not_size_mismatches(tmp_path: Path, capsys):
    cfg, ds = _voc(tmp_path)
    cfg.dataset.skip_corrupt = True
    truncate(ds.pairs[0][1])
    check_before_training(cfg, {"train_aug": ds})  # the reader skips it, with a warning and a count
    assert f"{ds.pairs[0][1]}: truncated PNG" in capsys.readouterr().err
    write_png(ds.pairs[1][1], np.zeros((H, W + 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"1 broken file\(s\) of 4 pairs: .*2007_000001.png: label is 19x12"):
        check_before_training(cfg, {"train_aug": ds})


def test_a_listed_sbd_mat_label_says_how_to_convert_it(tmp_path: Path):
    cfg, ds = _voc(tmp_path)
    mat = ds.pairs[0][1].with_suffix(".mat")
    mat.write_bytes(b"MATLAB 5.0 MAT-file")
    ds.pairs[0] = (ds.pairs[0][0], mat)
    (line,) = _problems(ds)
    assert "is an SBD .mat file" in line and "python -m data prepare voc" in line
    with pytest.raises(DatasetError, match="python -m data prepare voc"):
        ds.load(0)


# -- the command line ----------------------------------------------------------------------------
def test_check_prints_the_split_sizes_then_ok(tmp_path: Path, capsys):
    make_voc(tmp_path)
    assert main(["check", "dataset=voc", f"dataset.root={tmp_path}"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[:2] == ["train_aug: 4 images", "val: 2 images"]
    assert lines[2].startswith("train_aug: ok (headers, ") and lines[3].startswith("val: ok (headers, ")
    assert main(["check", "dataset=voc", f"dataset.root={tmp_path}", "dataset.train_split=train"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "train: 2 images"


def test_check_exits_2_with_one_stderr_line_per_broken_file(tmp_path: Path, capsys):
    _, ds = _voc(tmp_path)
    truncate(ds.pairs[1][1])
    write_png(ds.pairs[2][1], np.zeros((H + 2, W), dtype=np.uint8))
    assert main(["check", "dataset=voc", f"dataset.root={tmp_path}", "--full"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{ds.pairs[1][1]}: truncated PNG") and err[1].startswith(f"{ds.pairs[2][1]}: label is")
    assert err[2] == "error: 2 broken file(s) in dataset voc: fix them, or remove their lines from the list files"
    assert len(err) == 3


@pytest.mark.parametrize(("args", "needle"), [
    (["check"], "name the dataset: `dataset=NAME`"),
    (["check", "dataset=nope"], "unknown dataset 'nope'"),
    (["check", "dataset=voc", "train.epochs=1"], "takes only dataset=NAME and dataset.KEY=VALUE"),
    (["check", "dataset=voc", "dataset.root"], "is not KEY=VALUE"),
    (["check", "dataset=voc", "dataset.root=/nonexistent/voc"], "dataset root /nonexistent/voc"),
])
def test_check_bad_input_is_one_line_and_exit_2(args: list[str], needle: str, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_generated_datasets_are_counted_and_not_read(capsys):
    assert main(["check", "dataset=synthetic", "dataset.num_train=5"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["train: 5 images", "val: 16 images"]


@pytest.mark.slow
def test_python_m_data_imports_neither_mlflow_nor_sweeper(tmp_path: Path):
    probe = ("import runpy, sys\nsys.argv = ['data', 'check', 'dataset=synthetic']\n"
             "try:\n    runpy.run_module('data', run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sweeper', 'hydra_plugins'))\n"
             "assert not bad, bad\nprint('clean')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=subprocess_env(PYTHONPATH=str(REPO)))
    assert result.returncode == 0 and result.stdout.strip().endswith("clean"), result.stderr[-2000:]
