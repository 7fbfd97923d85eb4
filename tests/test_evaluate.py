"""engine.metrics / engine.evaluate: confusion matrix, absent classes, multi-scale, flip, tiles, limit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch import nn

from engine.evaluate import ConfusionMatrix, EvalSettings, evaluate, predict, predict_tiles

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[1] / "conf"
MEAN = [104.0, 116.0, 122.0]


def make_cfg(num_classes: int = 3, scales=(1.0,), flip: bool = False, tile=16, **ds) -> OmegaConf:
    names = [f"c{i}" for i in range(num_classes)]
    return OmegaConf.create({
        "imagesize": tile,
        "eval": {"scales": list(scales), "flip": flip, "tile": "${imagesize}", "overlap": 0.3333333333},
        "dataset": {"num_classes": num_classes, "class_names": names, "ignore_index": 255,
                    "mean_bgr": MEAN, **ds},
    })


class ListModel(nn.Module):
    """Wraps a module so that it returns a list of logits, like the project's models."""

    def __init__(self, body: nn.Module, aux: bool = True):
        super().__init__()
        self.body, self.aux = body, aux

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        return [torch.zeros_like(out), out] if self.aux else [out]


def conv_model(k: int, classes: int = 3, seed: int = 0, symmetric: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, classes, k, padding=k // 2)
    if symmetric:
        with torch.no_grad():
            conv.weight.copy_(conv.weight + conv.weight.flip(-1))
    return ListModel(conv).eval()


def whole_probs(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(image[None])[-1], dim=1)[0]


# ---------------------------------------------------------------- confusion matrix
def test_confusion_matrix_matches_hand_computed():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 11]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, label)
    # rows = label, cols = pred; 255 and 11 (>= num_classes) are dropped
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(cm.mat, expected)
    assert cm.total == 6
    iou = cm.iou()
    assert iou == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    assert cm.mean_class_accuracy() == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    summary = cm.summary(["a", "b", "c"])
    assert summary["mIoU"] == pytest.approx(100 * (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert summary["iou"]["b"] == pytest.approx(200 / 3)


def test_absent_class_is_excluded_and_reported_none():
    cm = ConfusionMatrix(4)
    # class 2 appears nowhere; class 3 is predicted but never labelled (IoU 0, counted)
    cm.update(np.array([0, 1, 1, 3]), np.array([0, 1, 1, 1]))
    assert cm.iou() == [1.0, pytest.approx(2 / 3), None, 0.0]
    assert cm.miou() == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert math.isnan(cm.miou_legacy())  # the original's np.mean over all classes
    assert cm.class_accuracy()[2] is None and cm.class_accuracy()[3] is None
    assert cm.summary(["a", "b", "c", "d"])["iou"]["c"] is None


def test_ignore_index_inside_class_range_is_dropped():
    cm = ConfusionMatrix(3, ignore_index=0)
    cm.update(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 2]))
    assert cm.total == 2 and cm.miou() == 1.0


def test_confusion_matrix_rejects_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cm.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(TypeError, match="argmax"):
        cm.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0, 1, 2, 3, 4, 5, 7, 255])),
                                   min_size=1, max_size=60))
def test_confusion_matrix_equals_numpy_reference(c, pairs):
    pred = np.array([p % c for p, _ in pairs])
    label = np.array([lab for _, lab in pairs])
    keep = label < c
    ref = np.bincount(c * label[keep] + pred[keep], minlength=c * c).reshape(c, c)
    cm = ConfusionMatrix(c)
    cm.update(torch.from_numpy(pred), torch.from_numpy(label))
    cm2 = ConfusionMatrix(c).merge(cm).merge(cm)
    assert np.array_equal(cm.mat.numpy(), ref)
    assert np.array_equal(cm2.mat.numpy(), 2 * ref)


# ---------------------------------------------------------------- sliding window
@pytest.mark.parametrize("hw", [(50, 70), (16, 40), (9, 11), (33, 16)])
def test_sliding_window_equals_whole_image_for_pointwise_model(hw):
    model = conv_model(1)
    image = torch.randn(3, *hw)
    with torch.no_grad():
        tiled = predict_tiles(model, image, (16, 16), 1 / 3, [-m for m in MEAN], tile_batch=3)
    assert torch.allclose(tiled, whole_probs(model, image), atol=1e-6)


def test_sliding_window_differs_from_whole_image_for_spatial_model():
    """A 3x3 model sees tile borders, so the tiled result must differ (the equality test above can fail)."""
    model = conv_model(3)
    image = torch.randn(3, 50, 70)
    with torch.no_grad():
        tiled = predict_tiles(model, image, (16, 16), 1 / 3, [0.0, 0.0, 0.0])
    assert not torch.allclose(tiled, whole_probs(model, image), atol=1e-4)


def test_small_image_is_padded_bottom_right_with_raw_black():
    model = conv_model(5)
    image = torch.randn(3, 10, 12)
    pad = torch.tensor([-m for m in MEAN]).view(3, 1, 1)
    padded = pad.expand(3, 16, 16).clone()
    padded[:, :10, :12] = image
    with torch.no_grad():
        tiled = predict_tiles(model, image, (16, 16), 1 / 3, pad.flatten().tolist())
    assert torch.allclose(tiled, whole_probs(model, padded)[:, :10, :12], atol=1e-6)


# ---------------------------------------------------------------- multi-scale and flip
@pytest.mark.parametrize("k, tile", [(1, 16), (3, 64)])
def test_flip_is_a_no_op_for_a_flip_equivariant_model(k, tile):
    """A mirror-symmetric model gives the same multi-scale prediction with and without flip.

    Tiles themselves are not mirror-symmetric (border tiles shift inward, padding goes bottom/right),
    so the 3x3 case uses one tile per scale and a zero pad value, like the conv's own zero padding.
    """
    model = conv_model(k, symmetric=True)
    image = torch.randn(3, 30, 41)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5)
    zero_mean = {"mean_bgr": [0.0, 0.0, 0.0]}
    with torch.no_grad():
        plain = predict(model, image, make_cfg(scales=scales, flip=False, tile=tile, **zero_mean))
        flipped = predict(model, image, make_cfg(scales=scales, flip=True, tile=tile, **zero_mean))
    assert torch.allclose(plain, flipped, atol=1e-5)
    assert torch.equal(plain.argmax(0), flipped.argmax(0))


def test_flip_changes_a_non_equivariant_model():
    model = conv_model(3, seed=1)
    image = torch.randn(3, 30, 41)
    with torch.no_grad():
        plain, flipped = (predict(model, image, make_cfg(flip=f)) for f in (False, True))
    assert not torch.allclose(plain, flipped, atol=1e-4)


def test_multiscale_is_the_mean_of_per_scale_softmax_at_full_size():
    model = conv_model(1)
    image = torch.randn(3, 20, 30)
    scales = (0.5, 1.0, 1.5)
    with torch.no_grad():
        got = predict(model, image, make_cfg(scales=scales, tile=64))
    expected = torch.zeros_like(got)
    for s in scales:
        size = (round(20 * s), round(30 * s))
        x = nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        p = whole_probs(model, x)
        expected += nn.functional.interpolate(p[None], size=(20, 30), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(got, expected / len(scales), atol=1e-6)
    assert torch.allclose(got.sum(0), torch.ones(20, 30), atol=1e-5)


def test_scaled_sizes_are_truncated_as_in_the_original_code():
    model = conv_model(1)
    image = torch.randn(3, 375, 15)  # a VOC-high image: 0.5 x 375 = 187.5 -> 187 (round() gives 188)
    with torch.no_grad():
        got = predict(model, image, make_cfg(scales=(0.5,), tile=400))
    x = nn.functional.interpolate(image[None], size=(187, 7), mode="bilinear", align_corners=False)[0]
    expected = nn.functional.interpolate(whole_probs(model, x)[None], size=(375, 15), mode="bilinear",
                                         align_corners=False)[0]
    assert torch.allclose(got, expected, atol=1e-6)


# ---------------------------------------------------------------- evaluate()
class OneHotDataset(torch.utils.data.Dataset):
    """Images whose channel c is large where the label is c; the first `good` images match their labels."""

    def __init__(self, n: int = 5, good: int = 2, classes: int = 3, hw=(12, 20)):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            label = torch.randint(0, classes, hw, generator=g)
            shown = label if i < good else (label + 1) % classes
            image = 10.0 * nn.functional.one_hot(shown, 3).permute(2, 0, 1).float()
            label = label.clone()
            label[0, :3] = 255
            self.items.append({"image": image, "label": label, "name": f"img{i}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def identity_model() -> nn.Module:
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
    return ListModel(conv)


def test_evaluate_limit_and_full_split():
    model, ds = identity_model(), OneHotDataset()
    model.train()
    part = evaluate(model, ds, make_cfg(tile=8), limit=2)
    assert part["mIoU"] == pytest.approx(100.0) and part["pixel_acc"] == pytest.approx(100.0)
    assert part["n_images"] == 2 and part["scales"] == [1.0] and part["flip"] is False
    assert set(part["iou"]) == {"c0", "c1", "c2"}
    full = evaluate(model, ds, make_cfg(tile=8, scales=(1.0, 1.5), flip=True))
    assert full["n_images"] == 5 and full["mIoU"] < 60 and full["flip"] is True
    assert evaluate(model, ds, make_cfg(), limit=50)["n_images"] == 5
    assert model.training, "evaluate() must restore the training mode"


def test_evaluate_reports_absent_class_as_none():
    model = identity_model()
    ds = OneHotDataset(n=1, good=1, classes=2)  # labels use classes 0 and 1 only
    cfg = make_cfg(num_classes=3)
    out = evaluate(model, ds, cfg)
    assert out["iou"]["c2"] is None and out["mIoU"] == pytest.approx(100.0)


def test_evaluate_errors_name_the_problem():
    model, ds = identity_model(), OneHotDataset(n=2)
    with pytest.raises(ValueError, match="class_names"):
        evaluate(model, ds, OmegaConf.merge(make_cfg(num_classes=3), {"dataset": {"class_names": ["x"]}}))
    with pytest.raises(ValueError, match="num_classes=4"):
        evaluate(conv_model(1, classes=3), ds, make_cfg(num_classes=4))
    with pytest.raises(ValueError, match="limit"):
        evaluate(model, ds, make_cfg(), limit=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [], make_cfg())
    with pytest.raises(ValueError, match="scales"):
        evaluate(model, ds, OmegaConf.merge(make_cfg(), {"eval": {"scales": [0.0]}}))
    all_ignored = [{"image": torch.zeros(3, 4, 4), "label": torch.full((4, 4), 255), "name": "x"}]
    with pytest.raises(ValueError, match="no labelled pixel"):
        evaluate(model, all_ignored, make_cfg())


def test_settings_from_the_real_eval_configs():
    single = OmegaConf.load(CONF / "eval" / "single.yaml")
    multi = OmegaConf.load(CONF / "eval" / "multiscale.yaml")
    multi.pop("defaults")
    for group, scales in ((single, [1.0]), (OmegaConf.merge(single, multi), [0.5, 0.75, 1.0, 1.25, 1.5])):
        cfg = OmegaConf.create({"imagesize": 321, "eval": group,
                                "dataset": OmegaConf.load(CONF / "dataset" / "camvid.yaml")})
        st_ = EvalSettings.from_cfg(cfg)
        assert list(st_.scales) == scales and st_.flip is False
        assert st_.tile == (321, 321) and st_.overlap == pytest.approx(1 / 3)
        assert st_.num_classes == 11 and len(st_.class_names) == 11
        assert st_.pad_value == (-104.0, -116.0, -122.0)
    rect = OmegaConf.create({"imagesize": [360, 480], "eval": single,
                             "dataset": OmegaConf.load(CONF / "dataset" / "camvid.yaml")})
    assert EvalSettings.from_cfg(rect).tile == (360, 480)
