"""Readers on tiny fixtures written in the real on-disk layouts."""

import numpy as np
import pytest
import torch
from PIL import Image

from data import build_dataset
from data.cityscapes import LABEL_TO_TRAIN, label_lut
from tests.fixtures_data import H, W, compose_cfg, make_aerial, make_camvid, make_cityscapes, make_voc


def _cfg(name, root, *extra):
    return compose_cfg([f"dataset={name}", f"dataset.root={root}", "imagesize=8", *extra])


# --- CamVid ------------------------------------------------------------------------------------
def test_camvid_splits_from_lists(tmp_path):
    names = make_camvid(tmp_path)
    cfg = _cfg("camvid", tmp_path)
    sizes = {s: len(build_dataset(cfg, s, False)) for s in ("train", "val", "test", "train_val")}
    assert sizes == {"train": 3, "val": 2, "test": 2, "train_val": 5}
    s = build_dataset(cfg, "test", False)[1]
    assert s["name"] == names["test"][1][:-4]
    assert s["image"].shape == (3, H, W) and s["label"].shape == (H, W)


def test_camvid_void_label_11_is_ignored(tmp_path):
    make_camvid(tmp_path)
    cfg = _cfg("camvid", tmp_path)
    ds = build_dataset(cfg, "train", False)
    raw = np.asarray(Image.open(ds.pairs[0][1])).astype(np.int64)
    assert (raw == 11).any()
    got = ds[0]["label"].numpy()
    np.testing.assert_array_equal(got, np.where(raw == 11, 255, raw))
    assert got.max() == 255 and set(np.unique(got)) <= set(range(11)) | {255}


def test_camvid_image_is_bgr_minus_mean(tmp_path):
    make_camvid(tmp_path)
    ds = build_dataset(_cfg("camvid", tmp_path), "val", False)
    rgb = np.asarray(Image.open(ds.pairs[0][0])).astype(np.float32)
    expect = (rgb[:, :, ::-1] - np.array([104.0, 116.0, 122.0], dtype=np.float32)).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds[0]["image"].numpy(), expect)


def test_camvid_folder_scan_without_lists(tmp_path):
    make_camvid(tmp_path, lists=False)
    cfg = _cfg("camvid", tmp_path)
    assert len(build_dataset(cfg, "train_val", False)) == 5
    assert len(build_dataset(cfg, "test", False)) == 2


def test_camvid_segnet_absolute_lists_resolved_against_root(tmp_path):
    names = make_camvid(tmp_path, lists=False)
    lines = [f"/SegNet/CamVid/train/{n} /SegNet/CamVid/trainannot/{n}\n" for n in names["train"]]
    (tmp_path / "CamVid" / "train.txt").write_text("".join(lines))
    ds = build_dataset(_cfg("camvid", tmp_path), "train", False)
    assert [p[0] for p in ds.pairs] == [tmp_path / "CamVid" / "train" / n for n in names["train"]]


def test_camvid_training_samples_batch_at_crop_size(tmp_path):
    make_camvid(tmp_path)
    ds = build_dataset(_cfg("camvid", tmp_path, "imagesize=[10,20]"), "train_val", True)
    ds.set_epoch(0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["image"].shape == (5, 3, 10, 20) and batch["label"].shape == (5, 10, 20)
    assert (batch["label"] == 255).any()  # 16 px wide image * <= 1.5 < 20: padded with ignore


def test_list_dir_option(tmp_path):
    make_camvid(tmp_path, lists=False)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "mine.txt").write_text(
        "CamVid/val/0001TP_val000.png CamVid/valannot/0001TP_val000.png\n")
    ds = build_dataset(_cfg("camvid", tmp_path, "dataset.list_dir=meta"), "mine", False)
    assert len(ds) == 1


# --- VOC ---------------------------------------------------------------------------------------
def test_voc_splits_palette_labels_and_ignore(tmp_path):
    make_voc(tmp_path)
    cfg = _cfg("voc", tmp_path)
    tr_aug, tr, val = (build_dataset(cfg, s, False) for s in ("train_aug", "train", "val"))
    assert (len(tr_aug), len(tr), len(val)) == (4, 2, 2)
    assert val.pairs[0][1] == tmp_path / "SegmentationClassAug" / "2008_000000.png"  # from a bare id
    lab = tr_aug[0]["label"].numpy()
    assert set(np.unique(lab)) <= {0, 5, 20, 255} and (lab == 20).any() and (lab == 255).any()
    assert tr_aug[0]["image"].shape == (3, H, W)


# --- Cityscapes --------------------------------------------------------------------------------
def test_cityscapes_label_ids_mapped_to_train_ids(tmp_path):
    raws = make_cityscapes(tmp_path)
    cfg = _cfg("cityscapes", tmp_path)
    train, val = build_dataset(cfg, "train", False), build_dataset(cfg, "val", False)
    assert (len(train), len(val)) == (3, 2)
    expected_map = {0: 255, 1: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 23: 10, 24: 11, 26: 13, 33: 18}
    got = train[0]["label"].numpy()
    raw = raws[0]
    for label_id, train_id in expected_map.items():
        if (raw == label_id).any():
            assert (got[raw == label_id] == train_id).all(), label_id
    assert set(np.unique(got)) <= set(range(19)) | {255}


def test_cityscapes_official_table():
    lut = label_lut()
    assert len(LABEL_TO_TRAIN) == 19 and sorted(LABEL_TO_TRAIN.values()) == list(range(19))
    assert lut[7] == 0 and lut[26] == 13 and lut[31] == 16 and lut[33] == 18
    assert all(lut[i] == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255))


def test_cityscapes_precomputed_train_ids_and_lists(tmp_path):
    raws = make_cityscapes(tmp_path, train_ids=True, lists=True)
    ds = build_dataset(_cfg("cityscapes", tmp_path), "train", False)
    assert ds.pairs[0][1].name.endswith("_gtFine_labelTrainIds.png")
    np.testing.assert_array_equal(ds[0]["label"].numpy(), raws[0])


# --- Aerial ------------------------------------------------------------------------------------
def test_aerial_absolute_lists_tif_and_binary_gt(tmp_path):
    root, meta = tmp_path / "aerial", tmp_path / "meta"
    make_aerial(root, meta)
    cfg = _cfg("aerial", root, f"dataset.list_dir={meta}")
    train, val = build_dataset(cfg, "train", False), build_dataset(cfg, "val", False)
    assert (len(train), len(val)) == (3, 1)
    assert set(np.unique(train[0]["label"].numpy())) == {0, 1}  # 0/1 patches
    assert set(np.unique(val[0]["label"].numpy())) == {0, 1}  # 0/255 tiles -> 0/1


def test_aerial_folder_scan(tmp_path):
    make_aerial(tmp_path, tmp_path / "unused")
    assert len(build_dataset(_cfg("aerial", tmp_path), "train", False)) == 3


@pytest.mark.parametrize("name", ["voc", "camvid", "cityscapes", "aerial"])
def test_root_comes_from_env(tmp_path, monkeypatch, name):
    monkeypatch.setenv("SEGSWEEP_DATA", str(tmp_path))
    cfg = compose_cfg([f"dataset={name}"])
    assert str(cfg.dataset.root).startswith(str(tmp_path))
