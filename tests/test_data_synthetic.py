"""Synthetic dataset: determinism, class coverage, sample contract, build registry."""

import numpy as np
import pytest
import torch

from data import DatasetError, build_dataset
from tests.fixtures_data import compose_cfg


def _all(ds):
    return [ds[i] for i in range(len(ds))]


def test_same_seed_same_tensors_and_other_seed_differs():
    cfg = compose_cfg()
    a, b = _all(build_dataset(cfg, "val", False)), _all(build_dataset(cfg, "val", False))
    assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"]) for x, y in zip(a, b, strict=True))
    c = _all(build_dataset(compose_cfg(["dataset.data_seed=99"]), "val", False))
    assert not torch.equal(a[0]["image"], c[0]["image"])


def test_sample_contract_and_sizes():
    cfg = compose_cfg(["dataset.num_train=5", "dataset.num_val=3"])
    tr, va = build_dataset(cfg, "train", True), build_dataset(cfg, "val", False)
    assert (len(tr), len(va)) == (5, 3)
    s = tr[0]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 64, 64)
    assert s["label"].dtype == torch.int64 and s["label"].shape == (64, 64)
    assert s["name"] == "synthetic_train_00000"
    # eval image is the raw image: BGR minus mean
    from data.synthetic import generate

    raw, lab = generate(np.random.default_rng([cfg.dataset.data_seed, 1, 0]), 64)
    expect = raw[:, :, ::-1].astype(np.float32) - np.array(cfg.dataset.mean_bgr, dtype=np.float32)
    np.testing.assert_allclose(va[0]["image"].numpy(), expect.transpose(2, 0, 1))
    np.testing.assert_array_equal(va[0]["label"].numpy(), lab)


def test_class_coverage_and_ignore_region():
    ds = build_dataset(compose_cfg(), "val", False)
    labels = torch.stack([s["label"] for s in _all(ds)])
    values = set(torch.unique(labels).tolist())
    assert values == {0, 1, 2, 3, 255}
    counts = torch.bincount(labels[labels != 255].flatten(), minlength=4)
    assert (counts[1:] > 0.03 * counts.sum()).all()  # each shape class is a real share of pixels


def test_train_and_val_are_different_images():
    cfg = compose_cfg()
    tr, va = build_dataset(cfg, "train", False), build_dataset(cfg, "val", False)
    assert not torch.equal(tr[0]["image"], va[0]["image"])


def test_augmentation_reproducible_by_seed_epoch_index():
    cfg = compose_cfg()
    ds1, ds2 = build_dataset(cfg, "train", True), build_dataset(cfg, "train", True)
    ds1.set_epoch(3)
    ds2.set_epoch(3)
    order = [5, 1, 7]
    first = {i: ds1[i] for i in order}
    second = {i: ds2[i] for i in reversed(order)}
    for i in order:
        assert torch.equal(first[i]["image"], second[i]["image"])
        assert torch.equal(first[i]["label"], second[i]["label"])
    ds2.set_epoch(4)
    assert any(not torch.equal(first[i]["label"], ds2[i]["label"]) for i in order)
    other = build_dataset(compose_cfg(["seed=1"]), "train", True)
    other.set_epoch(3)
    assert any(not torch.equal(first[i]["label"], other[i]["label"]) for i in order)


def test_dataloader_workers_give_same_batches():
    cfg = compose_cfg(["dataset.num_train=8"])
    ds = build_dataset(cfg, "train", True)
    ds.set_epoch(1)
    b0 = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=0)))
    b2 = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)))
    assert torch.equal(b0["image"], b2["image"]) and torch.equal(b0["label"], b2["label"])
    assert b0["image"].shape == (8, 3, 64, 64)


def test_indices_past_len_wrap_with_fresh_augmentation():
    ds = build_dataset(compose_cfg(["dataset.num_train=4"]), "train", True)
    assert ds[5]["name"] == ds[1]["name"]
    assert not torch.equal(ds[5]["image"], ds[1]["image"])


def test_bad_split_and_unknown_dataset():
    with pytest.raises(DatasetError, match="splits"):
        build_dataset(compose_cfg(), "bogus", False)
    cfg = compose_cfg()
    cfg.dataset.name = "nope"
    with pytest.raises(DatasetError, match="unknown dataset.name 'nope'"):
        build_dataset(cfg, "train", True)
