"""Bad input: missing root/list/files, corrupt images, out-of-range labels, size mismatches."""

import numpy as np
import pytest

from data import DatasetError, build_dataset
from tests.fixtures_data import compose_cfg, make_camvid, make_cityscapes, rand_image, write_png


def _cfg(name, root, *extra):
    return compose_cfg([f"dataset={name}", f"dataset.root={root}", "imagesize=8", *extra])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("camvid", "CamVid/trainannot"), ("voc", "SegmentationClassAug"), ("cityscapes", "gtFine"),
     ("aerial", "train/gt")],
)
def test_missing_root_prints_expected_tree(tmp_path, name, expected):
    with pytest.raises(DatasetError, match="does not exist") as e:
        build_dataset(_cfg(name, tmp_path / "nowhere"), "train", True)
    assert expected in str(e.value) and str(tmp_path / "nowhere") in str(e.value)


def test_root_not_set(tmp_path):
    with pytest.raises(DatasetError, match="dataset.root is not set"):
        build_dataset(compose_cfg(["dataset=camvid", "dataset.root=null"]), "train", True)


def test_missing_list_names_candidates_and_tree(tmp_path):
    make_camvid(tmp_path)
    with pytest.raises(DatasetError, match="no list file for camvid split 'trainval2'") as e:
        build_dataset(_cfg("camvid", tmp_path), "trainval2", False)
    assert str(tmp_path / "trainval2.txt") in str(e.value) and "CamVid/testannot" in str(e.value)


def test_list_with_missing_files(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "train.txt").write_text("CamVid/train/nope.png CamVid/trainannot/nope.png\n")
    with pytest.raises(DatasetError, match="2 file.*not found.*\n.*nope.png"):
        build_dataset(_cfg("camvid", tmp_path), "train", False)


def test_malformed_list_line(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "train.txt").write_text("a b c\n")
    with pytest.raises(DatasetError, match=r"train.txt:1: expected '<image> <label>'"):
        build_dataset(_cfg("camvid", tmp_path), "train", False)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_image_names_file(tmp_path):
    names = make_camvid(tmp_path)
    bad = tmp_path / "CamVid" / "train" / names["train"][1]
    _truncate(bad)
    ds = build_dataset(_cfg("camvid", tmp_path), "train", True)
    ds[0]
    with pytest.raises(DatasetError, match=f"corrupt or truncated image file {bad}"):
        ds[1]
    (tmp_path / "CamVid" / "train" / names["train"][2]).write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="corrupt or truncated image"):
        ds[2]


def test_skip_corrupt_counts_and_returns_next(tmp_path):
    names = make_camvid(tmp_path)
    _truncate(tmp_path / "CamVid" / "train" / names["train"][1])
    ds = build_dataset(_cfg("camvid", tmp_path, "dataset.skip_corrupt=true"), "train", False)
    with pytest.warns(UserWarning, match=r"skipping \(1 so far"):
        s = ds[1]
    assert s["name"] == names["train"][2][:-4] and ds.skipped == 1


def test_all_corrupt_with_skip_is_an_error_not_a_hang(tmp_path):
    names = make_camvid(tmp_path, counts={"train": 2})
    for n in names["train"]:
        (tmp_path / "CamVid" / "train" / n).write_bytes(b"")
    ds = build_dataset(_cfg("camvid", tmp_path, "dataset.skip_corrupt=true"), "train", False)
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="every item of split 'train' is corrupt"):
        ds[0]


def test_out_of_range_labels_counted_and_ignored(tmp_path):
    names = make_camvid(tmp_path)
    lab = np.zeros((12, 16), dtype=np.uint8)
    lab[0, :3] = 40
    lab[1, 0] = 11  # void: ignored silently
    write_png(tmp_path / "CamVid" / "valannot" / names["val"][0], lab)
    ds = build_dataset(_cfg("camvid", tmp_path), "val", False)
    with pytest.warns(UserWarning, match=r"3 label pixels outside \[0, 11\).*values \[40\]"):
        out = ds[0]["label"].numpy()
    assert (out[0, :3] == 255).all() and out[1, 0] == 255 and ds.out_of_range_pixels == 3


def test_size_mismatch_names_pair(tmp_path):
    names = make_camvid(tmp_path)
    img = tmp_path / "CamVid" / "test" / names["test"][0]
    write_png(img, rand_image(np.random.default_rng(0), 10, 16))
    ds = build_dataset(_cfg("camvid", tmp_path), "test", False)
    with pytest.raises(DatasetError, match="size mismatch.*0001TP_test000.png.*16x10 vs label 16x12"):
        ds[0]


def test_rgb_label_rejected(tmp_path):
    names = make_camvid(tmp_path)
    write_png(tmp_path / "CamVid" / "testannot" / names["test"][0], rand_image(np.random.default_rng(0), 12, 16))
    with pytest.raises(DatasetError, match="single-channel"):
        build_dataset(_cfg("camvid", tmp_path), "test", False)[0]


def test_cityscapes_wrong_label_kind(tmp_path):
    make_cityscapes(tmp_path, lists=True)
    text = (tmp_path / "val.txt").read_text()
    src = tmp_path / text.split()[1]
    color = src.with_name(src.name.replace("labelIds", "color"))
    color.write_bytes(src.read_bytes())
    (tmp_path / "val.txt").write_text(text.replace(src.name, color.name))
    with pytest.raises(DatasetError, match="neither \\*_gtFine_labelIds.png"):
        build_dataset(_cfg("cityscapes", tmp_path), "val", False)[0]
