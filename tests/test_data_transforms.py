"""Training transforms: image and label stay aligned, crop/pad/flip/resize semantics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.errors import DatasetError
from data.transforms import TrainAugment, crop_hw, resize_pair, sample_resize, to_sample


def _coord_image(h: int, w: int) -> np.ndarray:
    """Channel 0 = row, channel 1 = column, channel 2 = 7 (all < 255, so padding is recognisable)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 7)], axis=-1).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(8, 120),
    w=st.integers(8, 120),
    ch=st.integers(8, 96),
    cw=st.integers(8, 96),
    seed=st.integers(0, 2**32 - 1),
    interp=st.sampled_from(["nearest", "bilinear"]),
)
def test_label_follows_image(h, w, ch, cw, seed, interp):
    """Encode pixel coordinates in both image and label; after the transform they must agree."""
    aug = TrainAugment(crop=(ch, cw), label_interp=interp)
    img = _coord_image(h, w)
    rows = img[:, :, 0].astype(np.int64)
    cols = img[:, :, 1].astype(np.int64)
    out_r, lab_r = aug(img, rows, np.random.default_rng(seed))
    out_c, lab_c = aug(img, cols, np.random.default_rng(seed))
    np.testing.assert_array_equal(out_r, out_c)  # same rng -> same geometry
    assert out_r.shape == (ch, cw, 3) and lab_r.shape == (ch, cw)
    pad = lab_r == 255
    np.testing.assert_array_equal(pad, lab_c == 255)
    np.testing.assert_array_equal(pad, out_r[:, :, 2] == 255)  # image padded with 255 exactly where label is
    assert np.all(np.abs(lab_r[~pad] - out_r[:, :, 0][~pad]) <= 1.0)
    assert np.all(np.abs(lab_c[~pad] - out_r[:, :, 1][~pad]) <= 1.0)


def test_nearest_labels_keep_only_existing_values_bilinear_invents():
    lab = np.zeros((10, 10), dtype=np.int64)
    lab[:, 5:] = 6
    img = np.zeros((10, 10, 3), dtype=np.float32)
    _, near = resize_pair(img, lab, (17, 13), "nearest")
    assert set(np.unique(near)) == {0, 6}
    _, bil = resize_pair(img, lab, (17, 13), "bilinear")
    assert set(np.unique(bil)) - {0, 6}  # the original's bilinear labels create intermediate ids
    with pytest.raises(DatasetError, match="label_interp"):
        resize_pair(img, lab, (17, 13), "cubic")


def test_small_image_is_centre_padded_and_flip_happens():
    img = np.full((4, 6, 3), 10, dtype=np.uint8)
    lab = np.zeros((4, 6), dtype=np.int64)
    lab[:, 0] = 1  # left column
    aug = TrainAugment(crop=(8, 10), resize_range=(1.0, 1.0), flip=True)
    flipped = 0
    for s in range(40):
        out, o_lab = aug(img, lab, np.random.default_rng(s))
        np.testing.assert_array_equal(o_lab[:2], 255)  # centre padding: 2 rows above, 2 below
        np.testing.assert_array_equal(o_lab[-2:], 255)
        np.testing.assert_array_equal(out[:2], 255.0)
        col = np.flatnonzero(o_lab[2] == 1)
        assert col.tolist() in ([2], [7])
        flipped += col.tolist() == [7]
    assert 5 < flipped < 35


def test_resize_respects_range_and_aspect_threshold():
    rng = np.random.default_rng(0)
    for _ in range(300):
        nh, nw = sample_resize(rng, 100, 200, (0.7, 1.5), 0.15)
        assert 69 <= nh <= 151 and 139 <= nw <= 301
        assert abs((nw / nh) / 2.0 - 1) <= 0.16


def test_same_factor_when_threshold_zero():
    nh, nw = sample_resize(np.random.default_rng(3), 100, 100, (0.7, 1.5), 0.0)
    assert nh == nw


def test_crop_hw_and_to_sample():
    assert crop_hw(5) == (5, 5) and crop_hw([3, 4]) == (3, 4)
    with pytest.raises(DatasetError, match="imagesize"):
        crop_hw([1, 2, 3])
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[..., 0] = 200  # red
    s = to_sample(img, np.ones((2, 3), dtype=np.uint8), [104.0, 116.0, 122.0], "x")
    assert s["image"].shape == (3, 2, 3) and s["label"].dtype.is_floating_point is False
    assert s["image"][2, 0, 0].item() == 200 - 122.0  # red is the last BGR channel
    assert s["image"][0, 0, 0].item() == -104.0


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(4, 90),
    w=st.integers(4, 90),
    ch=st.integers(4, 70),
    cw=st.integers(4, 70),
    seed=st.integers(0, 2**32 - 1),
    interp=st.sampled_from(["nearest", "bilinear"]),
    rr=st.sampled_from([(0.7, 1.5), (1.0, 1.0), (0.2, 3.0)]),
)
def test_windowed_transform_equals_full_reference(h, w, ch, cw, seed, interp, rr):
    """The fast path (only the crop window is resampled) is bit-identical to resize -> crop -> flip."""
    gen = np.random.default_rng(seed)
    img = gen.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    lab = gen.integers(0, 12, size=(h, w)).astype(np.int64)
    aug = TrainAugment(crop=(ch, cw), resize_range=rr, label_interp=interp)
    fast = aug(img, lab, np.random.default_rng(seed))
    ref = aug.reference(img, lab, np.random.default_rng(seed))
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_array_equal(fast[1], ref[1])
    assert fast[0].dtype == np.float32 and fast[1].dtype == np.int64


def test_augment_from_run_config():
    from tests.fixtures_data import compose_cfg

    aug = TrainAugment.from_cfg(compose_cfg(["dataset=camvid", "imagesize=[360,480]"]))
    assert aug.crop == (360, 480) and aug.resize_range == (0.7, 1.5) and aug.aspect_ratio_thres == 0.15
    assert aug.label_interp == "nearest" and aug.flip and aug.pad_value == 255
    aug = TrainAugment.from_cfg(compose_cfg(["train.label_interp=bilinear", "train.flip=false"]))
    assert aug.label_interp == "bilinear" and not aug.flip and aug.crop == (64, 64)
