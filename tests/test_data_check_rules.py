"""Each rule of data/check.py, one by one and in-process (fast: mutation testing runs these per mutant;
docs/testing.md lists what they kill). test_data_check.py has the end-to-end checks."""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from data import DatasetError, build_dataset
from data.__main__ import main
from data.check import (
    PNG_END,
    Problem,
    SplitReport,
    _tiff_incomplete,
    broken_error,
    cache_dir,
    check_before_training,
    check_item_decoded,
    check_pair_headers,
    check_split,
    fingerprint,
    incomplete,
    pairs_of,
    read_header,
    splits_in_use,
)
from data.config import dataset_config
from data.errors import CorruptFileError
from tests.fixtures_data import H, W, make_voc, rand_image, truncate, write_png


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEGSWEEP_CACHE", str(cache))
    return cache


def _voc(root: Path, *overrides: str, split: str = "train_aug"):
    if not (root / "JPEGImages").is_dir():
        make_voc(root)
    cfg = dataset_config(["dataset=voc", f"dataset.root={root}", *overrides])
    return cfg, build_dataset(cfg, split, train=False)


def _label(ds, j: int, values: list[int]) -> Path:
    """Give item ``j`` a label holding exactly ``values`` (row-major, repeated)."""
    grid = np.resize(np.asarray(values, dtype=np.uint8), (H, W))
    return write_png(ds.pairs[j][1], grid)


def _full(ds) -> list[Problem]:
    return list(check_split(ds, "s", "full", use_cache=False).problems)


# -- label values (the full depth) ---------------------------------------------------------------
def test_a_label_value_equal_to_num_classes_is_broken(tmp_path: Path, capsys):
    _, ds = _voc(tmp_path)
    path = _label(ds, 2, [0, 20, 21, 255])  # VOC: classes 0..20, ignore 255; 21 is one past the last class
    (problem,) = _full(ds)
    assert problem.line() == f"{path}: label values [21] are neither classes 0..20 nor ignore 255"
    assert not problem.corrupt  # a wrong value is not what skip_corrupt skips
    assert main(["check", "dataset=voc", f"dataset.root={tmp_path}", "--full", "--no-cache"]) == 2
    assert f"{path}: label values [21]" in capsys.readouterr().err


def test_the_last_class_and_the_ignore_index_are_valid(tmp_path: Path):
    _, ds = _voc(tmp_path)
    _label(ds, 0, [0, 1, 19, 20, 255])
    assert _full(ds) == []


def test_the_ignore_index_is_the_declared_one(tmp_path: Path):
    _, ds = _voc(tmp_path, "dataset.ignore_index=100")
    for j in range(4):
        _label(ds, j, [0, 100])
    assert _full(ds) == []
    path = _label(ds, 1, [0, 255])
    assert [p.line() for p in _full(ds)] == [f"{path}: label values [255] are neither classes 0..20 nor ignore 100"]


def test_fewer_classes_make_the_upper_ones_broken(tmp_path: Path):
    _, ds = _voc(tmp_path, "dataset.num_classes=6")
    for j in range(4):
        _label(ds, j, [0, 5, 255])
    assert _full(ds) == []
    path = _label(ds, 3, [5, 6, 255])
    assert [p.line() for p in _full(ds)] == [f"{path}: label values [6] are neither classes 0..5 nor ignore 255"]


def test_declared_void_labels_are_valid(tmp_path: Path):
    _, ds = _voc(tmp_path, "dataset.void_labels=[30,31]")
    _label(ds, 0, [0, 30, 31])
    assert _full(ds) == []
    path = _label(ds, 0, [0, 30, 32])
    assert [p.line() for p in _full(ds)] == [f"{path}: label values [32] are neither classes 0..20 nor ignore 255"]


def test_the_bad_values_are_listed_sorted_and_at_most_ten(tmp_path: Path):
    _, ds = _voc(tmp_path)
    path = _label(ds, 1, [200, *range(40, 21, -1), 0])
    (problem,) = _full(ds)
    assert problem.line() == f"{path}: label values {list(range(22, 32))} are neither classes 0..20 nor ignore 255"


# -- the full depth's decode -------------------------------------------------------------------------
def _png_with_bad_pixels(path: Path) -> None:
    """Keep the PNG's chunk structure (its IEND too: the header check passes) but break its pixel data."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 4
    data[at:at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def test_an_undecodable_label_is_a_corrupt_problem_at_the_full_depth_only(tmp_path: Path):
    _, ds = _voc(tmp_path)
    _png_with_bad_pixels(ds.pairs[2][1])
    assert check_split(ds, "s", "headers", use_cache=False).problems == ()
    (problem,) = _full(ds)
    assert problem.corrupt and problem.path == ds.pairs[2][1]
    assert problem.reason.startswith(f"corrupt or truncated label file {ds.pairs[2][1]}: ")
    assert "\n" not in problem.reason


class _Listed:
    """A file-backed dataset whose reader is ``read`` (what a dataset module plugs in)."""

    def __init__(self, pairs, read, num_classes: int = 3, ignore_index: int = 255, void_labels=()):
        self.pairs, self.read = pairs, read
        self.num_classes, self.ignore_index, self.void_labels = num_classes, ignore_index, list(void_labels)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, j: int):
        return self.read(j)


def _pair(tmp_path: Path, label: np.ndarray | None = None) -> tuple[Path, Path]:
    image = write_png(tmp_path / "a.png", rand_image(np.random.default_rng(0), H, W))
    return image, write_png(tmp_path / "a_gt.png", np.zeros((H, W), np.uint8) if label is None else label)


def test_a_reader_error_is_one_line_and_only_corrupt_when_the_reader_says_so(tmp_path: Path):
    image, label = _pair(tmp_path)

    def refuse(error):
        def read(j):
            raise error
        return read

    (problem,) = check_item_decoded(_Listed([(image, label)], refuse(DatasetError("no mapping\nfor 7"))), 0)
    assert (problem.path, problem.reason, problem.corrupt) == (label, "no mapping", False)
    (problem,) = check_item_decoded(_Listed([(image, label)], refuse(CorruptFileError("bad bytes\nmore"))), 0)
    assert (problem.path, problem.reason, problem.corrupt) == (label, "bad bytes", True)


def test_the_full_depth_checks_what_the_reader_returns_not_the_raw_file(tmp_path: Path):
    image, label = _pair(tmp_path, np.full((H, W), 7, np.uint8))
    mapped = _Listed([(image, label)], lambda j: (None, np.full((H, W), 2)))  # 7 -> class 2
    assert check_item_decoded(mapped, 0) == []
    raw = _Listed([(image, label)], lambda j: (None, np.full((H, W), 7)))
    assert [p.reason for p in check_item_decoded(raw, 0)] == ["label values [7] are neither classes 0..2 nor ignore 255"]


def test_the_full_depth_checks_headers_first(tmp_path: Path):
    image, label = _pair(tmp_path)
    truncate(label)
    never = _Listed([(image, label)], lambda j: pytest.fail("decoded a pair whose header check failed"))
    (problem,) = check_item_decoded(never, 0)
    assert problem.reason.startswith("truncated PNG") and problem.corrupt


# -- one file: headers and completeness ----------------------------------------------------------
def test_what_is_corrupt_and_what_is_only_wrong(tmp_path: Path):
    image, label = _pair(tmp_path)
    assert read_header(tmp_path / "nope.png", "label") == Problem(tmp_path / "nope.png", "label file not found")
    mat = tmp_path / "x.MAT"
    mat.write_bytes(b"MATLAB 5.0")
    got = read_header(mat, "label")
    assert got.path == mat and not got.corrupt and "is an SBD .mat file" in got.reason
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    got = read_header(garbage, "image")
    assert got.corrupt and got.reason.startswith("image cannot be read (UnidentifiedImageError: ")
    header = read_header(label, "label")
    assert (header.size, header.mode) == ((W, H), "L")
    truncate(label)
    got = read_header(label, "label")
    assert got == Problem(label, "truncated PNG (no IEND chunk at the end)", corrupt=True)


def test_colour_and_size_problems_are_not_corrupt(tmp_path: Path):
    image, label = _pair(tmp_path)
    write_png(label, rand_image(np.random.default_rng(1), H, W))
    (colour,) = check_pair_headers(image, label)
    assert colour == Problem(label, "label has RGB colour channels; expected a single-channel map of class ids")
    write_png(label, np.zeros((H + 1, W), np.uint8))
    (size,) = check_pair_headers(image, label)
    assert size == Problem(label, f"label is {W}x{H + 1} but its image a.png is {W}x{H} (WxH)")


def test_both_files_of_a_pair_are_reported(tmp_path: Path):
    image, label = _pair(tmp_path)
    truncate(image)
    label.unlink()
    assert [p.path for p in check_pair_headers(image, label)] == [image, label]


def test_a_png_is_complete_exactly_when_it_ends_with_iend(tmp_path: Path):
    _, label = _pair(tmp_path)
    with Image.open(label) as img:
        assert incomplete(img, label) is None
    label.write_bytes(label.read_bytes() + b"\0")  # a byte after IEND: not how a PNG ends
    with Image.open(label) as img:
        assert incomplete(img, label) == "truncated PNG (no IEND chunk at the end)"
    assert label.read_bytes()[-len(PNG_END) - 1:-1] == PNG_END


def test_a_jpeg_end_marker_may_be_followed_by_padding(tmp_path: Path):
    jpeg = tmp_path / "a.jpg"
    Image.fromarray(rand_image(np.random.default_rng(0), 64, 64)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes() + b"\0" * 1000)  # some cameras pad after EOI
    assert read_header(jpeg, "image").size == (64, 64)
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:-1002])  # EOI gone, the rest is longer than the KiB searched
    assert read_header(jpeg, "image").reason == "truncated JPEG (no end-of-image marker)"


def test_a_multi_picture_jpeg_is_checked_like_a_jpeg(tmp_path: Path):
    """Cameras write MPO (JPEG frames in a row): the first frame decodes even when the file is cut."""
    rng = np.random.default_rng(0)
    first, second = (Image.fromarray(rand_image(rng, 64, 64)) for _ in range(2))
    mpo = tmp_path / "a.mpo"
    first.save(mpo, format="MPO", save_all=True, append_images=[second])
    assert read_header(mpo, "image").size == (64, 64)
    truncate(mpo, keep=0.9)
    with Image.open(mpo) as img:
        assert img.format == "MPO"
        img.load()  # what decoding alone would conclude: nothing wrong
    assert read_header(mpo, "image").reason == "truncated JPEG (no end-of-image marker)"


def test_other_formats_are_decoded_to_find_truncation(tmp_path: Path):
    bmp = tmp_path / "a.bmp"
    Image.fromarray(rand_image(np.random.default_rng(0), H, W)).save(bmp)
    assert read_header(bmp, "image").size == (W, H)
    truncate(bmp, keep=0.5)
    got = read_header(bmp, "image")
    assert got.corrupt and got.reason.startswith("image cannot be read (OSError: image file is truncated")


def test_a_tiff_strip_or_tile_table_past_the_end_is_truncated():
    def tiff(tags):
        return SimpleNamespace(tag_v2=tags, load=lambda: pytest.fail("decoded a TIFF with a strip table"))

    assert _tiff_incomplete(tiff({273: (8, 100), 279: (92, 50)}), 150) is None
    assert _tiff_incomplete(tiff({273: (8, 100), 279: (92, 51)}), 150) == (
        "truncated TIFF (pixel data ends at byte 151, the file has 150)")
    assert _tiff_incomplete(tiff({273: 8, 279: 143}), 150) == "truncated TIFF (pixel data ends at byte 151, the file has 150)"
    assert _tiff_incomplete(tiff({324: (8, 40), 325: (32, 120)}), 150) == (
        "truncated TIFF (pixel data ends at byte 160, the file has 150)")
    assert _tiff_incomplete(tiff({273: (8,), 279: (10,), 324: (8,), 325: (500,)}), 150) is None  # strips win
    assert _tiff_incomplete(tiff({273: (8, 100, 120), 279: (92, 50)}), 150) is None  # checked as far as it pairs


def test_a_tiff_without_a_strip_table_is_decoded(tmp_path: Path):
    loads = []
    assert _tiff_incomplete(SimpleNamespace(tag_v2={273: (8,)}, load=lambda: loads.append(1)), 10) is None
    assert _tiff_incomplete(SimpleNamespace(load=lambda: loads.append(2)), 10) is None
    assert loads == [1, 2]


# -- a split: the cache ------------------------------------------------------------------------------
def test_the_cache_lives_under_segsweep_cache_else_xdg_else_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert cache_dir() == tmp_path / "cache" / "data-check"
    monkeypatch.delenv("SEGSWEEP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "segsweep" / "data-check"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "segsweep" / "data-check"


def test_a_pass_is_remembered_with_what_passed(tmp_path: Path, private_cache: Path):
    _, ds = _voc(tmp_path)
    report = check_split(ds, "train_aug")
    (ok,) = private_cache.rglob("*.ok")
    assert ok.parent == private_cache / "data-check"
    assert ok.read_text() == f"train_aug: 4 pairs (headers) ok in {report.seconds:.2f} s\n"
    again = check_split(ds, "train_aug")
    assert again == SplitReport("train_aug", 4, (), 0.0, cached=True)


def test_an_unwritable_cache_only_costs_the_next_run(tmp_path: Path, private_cache: Path):
    private_cache.write_text("a file where the cache directory should be")
    _, ds = _voc(tmp_path)
    assert check_split(ds, "train_aug").problems == ()
    assert not check_split(ds, "train_aug").cached


def test_no_cache_neither_reads_nor_writes_it(tmp_path: Path, private_cache: Path):
    _, ds = _voc(tmp_path)
    assert not check_split(ds, "train_aug", use_cache=False).cached
    assert not private_cache.exists()
    check_split(ds, "train_aug")
    assert not check_split(ds, "train_aug", use_cache=False).cached


@pytest.mark.parametrize("change", ["dataset.num_classes=20", "dataset.ignore_index=20", "dataset.void_labels=[20]"])
def test_what_makes_a_value_valid_is_part_of_the_cache_key(tmp_path: Path, change: str):
    _, ds = _voc(tmp_path)
    assert check_split(ds, "train_aug", "full").problems == ()
    assert check_split(ds, "train_aug", "full").cached
    _, changed = _voc(tmp_path, change)
    assert not check_split(changed, "train_aug", "full").cached


def test_the_reader_is_part_of_the_cache_key(tmp_path: Path):
    _, ds = _voc(tmp_path)
    check_split(ds, "train_aug", "full")

    class OtherReader(type(ds)):
        pass

    other = OtherReader.__new__(OtherReader)
    other.__dict__.update(ds.__dict__)
    assert not check_split(other, "train_aug", "full").cached


def test_the_fingerprint_covers_the_extra_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, ds = _voc(tmp_path)
    pairs = pairs_of(ds)
    key = fingerprint(pairs, "full", "21|255")
    assert key != fingerprint(pairs, "full", "20|255") and key != fingerprint(pairs, "full")
    monkeypatch.chdir(tmp_path)
    relative = [(a.relative_to(tmp_path), b.relative_to(tmp_path)) for a, b in pairs]
    assert fingerprint(relative, "full", "21|255") == key
    assert fingerprint([], "headers") != fingerprint([], "full")


# -- a split: what a report says ----------------------------------------------------------------------
def test_an_unknown_depth_is_refused(tmp_path: Path):
    _, ds = _voc(tmp_path)
    with pytest.raises(DatasetError, match=r"unknown check mode 'deep'; use one of \('headers', 'full'\)"):
        check_split(ds, "s", "deep")


def test_a_generated_dataset_is_counted_not_read():
    cfg = dataset_config(["dataset=synthetic", "dataset.num_train=5"])
    ds = build_dataset(cfg, "train", train=False)
    assert pairs_of(ds) is None
    assert check_split(ds, "train", "full") == SplitReport("train", 5, (), 0.0, cached=False)


def test_problems_come_in_list_order_with_the_time_spent(tmp_path: Path):
    _, ds = _voc(tmp_path)
    truncate(ds.pairs[3][1])
    truncate(ds.pairs[1][0], keep=0.5)
    for progress in (False, True):
        started = time.perf_counter()
        report = check_split(ds, "train_aug", use_cache=False, progress=progress)
        took = time.perf_counter() - started
        assert [p.path for p in report.problems] == [ds.pairs[1][0], ds.pairs[3][1]]
        assert (report.split, report.pairs, report.cached) == ("train_aug", 4, False)
        assert 0 < report.seconds <= took


def test_the_splits_a_run_reads_are_train_then_eval_once_each():
    def cfg(train, val):
        return SimpleNamespace(dataset=SimpleNamespace(train_split=train, eval_split=val))

    assert splits_in_use(cfg("train_aug", "val")) == ["train_aug", "val"]
    assert splits_in_use(cfg("val", "val")) == ["val"]


# -- before training -------------------------------------------------------------------------------
def test_training_checks_every_split_and_says_so_once(tmp_path: Path, capsys):
    cfg, train = _voc(tmp_path)
    _, val = _voc(tmp_path, split="val")
    check_before_training(cfg, {"train_aug": train, "val": val})
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in err] == ["[data] voc train_aug: 4 pairs checked (headers)",
                                                        "[data] voc val: 2 pairs checked (headers)"]
    check_before_training(cfg, {"train_aug": train, "val": val})  # cached: nothing to say
    assert capsys.readouterr().err == ""
    truncate(val.pairs[1][1])
    with pytest.raises(DatasetError, match=r"dataset voc split 'val': 1 broken file\(s\) of 2 pairs"):
        check_before_training(cfg, {"train_aug": train, "val": val})


def test_training_on_a_generated_dataset_says_nothing(capsys):
    cfg = dataset_config(["dataset=synthetic"])
    check_before_training(cfg, {"train": build_dataset(cfg, "train", train=False)})
    assert capsys.readouterr().err == ""


def test_skip_corrupt_reports_each_skipped_file_and_defaults_to_off(tmp_path: Path, capsys):
    cfg, ds = _voc(tmp_path, "dataset.skip_corrupt=true")
    truncate(ds.pairs[0][1])
    truncate(ds.pairs[2][0])
    check_before_training(cfg, {"train_aug": ds})
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        f"[data] voc train_aug: {ds.pairs[0][1]}: truncated PNG (no IEND chunk at the end) "
        "(skipped when read: dataset.skip_corrupt=true)",
        f"[data] voc train_aug: {ds.pairs[2][0]}: truncated JPEG (no end-of-image marker) "
        "(skipped when read: dataset.skip_corrupt=true)"]
    del cfg.dataset["skip_corrupt"]  # a dataset that does not declare it fails on corrupt files
    with pytest.raises(DatasetError, match="2 broken file"):
        check_before_training(cfg, {"train_aug": ds})


def test_the_error_shows_three_files_on_its_first_line_and_all_below():
    def report(n):
        return SplitReport("val", 9, tuple(Problem(Path(f"/d/{i}.png"), "bad") for i in range(n)), 0.1, False)

    three = str(broken_error("voc", report(3))).splitlines()
    assert three[0] == ("dataset voc split 'val': 3 broken file(s) of 9 pairs: /d/0.png: bad; /d/1.png: bad; "
                        "/d/2.png: bad (fix or unlist them; `python -m data check dataset=voc` lists all)")
    assert three[1:] == ["/d/0.png: bad", "/d/1.png: bad", "/d/2.png: bad"]
    four = str(broken_error("voc", report(4))).splitlines()
    assert four[0].startswith("dataset voc split 'val': 4 broken file(s) of 9 pairs: /d/0.png: bad; "
                              "/d/1.png: bad; /d/2.png: bad; ... (fix")
    assert len(four) == 5 and four[-1] == "/d/3.png: bad"
    assert str(broken_error("voc", report(2), shown=1)).splitlines()[0].count("/d/") == 1


def test_problem_line_is_path_then_reason():
    assert Problem(Path("/x/a.png"), "why").line() == "/x/a.png: why"
    assert Problem(Path("/x/a.png"), "why").corrupt is False


def test_a_zlib_broken_png_still_has_its_structure(tmp_path: Path):
    """The fixture above relies on this: Pillow opens the header, only decoding fails."""
    _, label = _pair(tmp_path)
    _png_with_bad_pixels(label)
    with Image.open(label) as img:
        assert incomplete(img, label) is None
        with pytest.raises((OSError, SyntaxError, zlib.error, ValueError)):
            img.load()
