"""models/: every architecture of the notes builds from config and trains a step on 65x65."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from models.build import build_model, count_params_m
from models.errors import ModelConfigError
from models.registry import register_head, registered

CONF = Path(__file__).resolve().parents[1] / "conf"
DENSE = ["backbone.stem=true", "backbone.compression=1.0", "backbone.latter_pooling=false"]
SMALL_DENSE = ["backbone=dense30k12", "backbone.blocks=[2,2,2,2]"]


def make_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="sweep", overrides=overrides)


# (id, overrides): one per architecture token of the notes, kept small so that the step is fast.
ARCHS = [
    ("dense-default", ["backbone=dense30k12"]),
    ("dense-stem-nocompression-nopooling", SMALL_DENSE + DENSE),
    ("dense-compression-pooling", SMALL_DENSE + ["backbone.stem=true"]),
    ("senet4", SMALL_DENSE + DENSE + ["backbone.senet=4"]),
    ("transitionsenet4", SMALL_DENSE + DENSE + ["backbone.transition_senet=4"]),
    ("transitionsenet2", SMALL_DENSE + DENSE + ["backbone.transition_senet=2"]),
    ("stride8", SMALL_DENSE + DENSE + ["backbone.output_stride=8", "model.decoder=newdid6"]),
    ("did", SMALL_DENSE + DENSE + ["model.decoder=did"]),
    ("did4", SMALL_DENSE + DENSE + ["model.decoder=did", "model.did_ratio=4"]),
    ("newdid", SMALL_DENSE + DENSE + ["model.decoder=newdid"]),
    ("newdid2", SMALL_DENSE + DENSE + ["model.decoder=newdid2"]),
    ("newdid4", SMALL_DENSE + DENSE + ["model.decoder=newdid4"]),
    ("newdid4_1", SMALL_DENSE + DENSE + ["model.decoder=newdid4_1"]),
    ("newdid6", SMALL_DENSE + DENSE + ["model.decoder=newdid6"]),
    ("newdid6_senet", SMALL_DENSE + DENSE + ["model.decoder=newdid6_senet"]),
    ("dense-aspp-head", SMALL_DENSE + ["model.head=aspp"]),
    ("dense-deeplabv3", SMALL_DENSE + ["model=deeplabv3"]),
    ("sublinear-dense", SMALL_DENSE + DENSE + ["model.decoder=newdid6", "model.checkpointing=true"]),
    ("resnet50-deeplabv2", ["backbone=resnet50"]),
    ("resnet-aspp4", ["backbone=resnet50", "model.head=aspp"]),
    ("resnet-stride8", ["backbone=resnet50", "backbone.output_stride=8"]),
    ("slim", ["backbone=resnet50", "backbone.preact=true", "backbone.output_stride=8", "model.head_kernel=1"]),
    ("slim-dilation6", ["backbone=resnet50", "backbone.preact=true", "backbone.output_stride=8"]),
    ("deeplabv3", ["backbone=resnet50", "model=deeplabv3", "backbone.multi_grid=[1,2,4]"]),
    ("deeplabv3-os8-sum", ["backbone=resnet50", "model=deeplabv3", "backbone.output_stride=8",
                           "model.aspp_merge=sum", "backbone.preact=true"]),
    ("deeplabv3-noASPP", ["backbone=resnet50", "model=deeplabv3", "model.aspp=false", "backbone.multi_grid=[1,2,1]"]),
    ("sublinear-resnet", ["backbone=resnet50", "model.checkpointing=true"]),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_step(model: torch.nn.Module, num_classes: int, size: int = 65, batch: int = 2) -> list[torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, num_classes, (batch, size, size))
    y[:, :4] = 255
    model.train()
    outs = model(x)
    loss = torch.stack([F.cross_entropy(o, y, ignore_index=255) for o in outs]).mean()
    loss.backward()
    return outs


@pytest.mark.parametrize("overrides", [a[1] for a in ARCHS], ids=[a[0] for a in ARCHS])
def test_forward_backward(overrides: list[str]) -> None:
    cfg = make_cfg(["dataset=synthetic", *overrides])
    model = build_model(cfg)
    n = cfg.dataset.num_classes
    outs = train_step(model, n)
    expected = 3 if str(cfg.model.get("decoder")).startswith("newdid6") else 1
    assert len(outs) == expected
    for o in outs:
        assert o.shape == (2, n, 65, 65)
        assert torch.isfinite(o).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameters got no gradient"
    assert any(g.abs().sum() > 0 for g in grads)


def test_heads_register_apart_from_backbones() -> None:
    assert registered() == ["deeplabv2", "deeplabv3"]
    with pytest.raises(ModelConfigError, match="already registered"):
        register_head("deeplabv2")(lambda cfg, backbone: None)


def test_unknown_decoder_is_a_clear_error() -> None:
    cfg = make_cfg(["dataset=synthetic", "model.decoder=newdid9"])
    with pytest.raises(ModelConfigError, match="model.decoder='newdid9' is unknown"):
        build_model(cfg)


def test_unknown_family_is_a_clear_error() -> None:
    cfg = make_cfg(["dataset=synthetic", "backbone.family=vgg"])
    with pytest.raises(ModelConfigError, match=r"backbone.family='vgg' is not declared; known: densenet, resnet"):
        build_model(cfg)


def test_unknown_head_is_a_clear_error() -> None:
    cfg = make_cfg(["dataset=synthetic", "model.name=pspnet"])
    with pytest.raises(ModelConfigError, match=r"model.name='pspnet' has no registered head; known: deeplabv2, deeplabv3"):
        build_model(cfg)


def test_densenet_init_and_bn() -> None:
    model = build_model(make_cfg(["dataset=synthetic"] + SMALL_DENSE))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in convs if m.bias is not None)
    w = convs[1].weight  # xavier-uniform: bound sqrt(6/(fan_in+fan_out))
    fan_in = w.shape[1] * w[0, 0].numel()
    fan_out = w.shape[0] * w[0, 0].numel()
    assert float(w.detach().abs().max()) <= (6 / (fan_in + fan_out)) ** 0.5 + 1e-6


def test_count_params_m() -> None:
    model = torch.nn.Conv2d(10, 100, 1)
    assert count_params_m(model) == pytest.approx(0.0011)


def test_checkpointing_matches_and_keeps_bn_stats() -> None:
    """Checkpointed and plain dense layers give the same outputs, gradients and BN statistics."""
    base = ["dataset=synthetic", *SMALL_DENSE, *DENSE, "model.decoder=newdid6"]
    torch.manual_seed(1)
    plain = build_model(make_cfg(base))
    ckpt = build_model(make_cfg([*base, "model.checkpointing=true"]))
    ckpt.load_state_dict(plain.state_dict())
    outs_p = train_step(plain, 4)
    outs_c = train_step(ckpt, 4)
    for a, b in zip(outs_p, outs_c, strict=True):
        torch.testing.assert_close(a, b)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def _resnet_cfg(extra: list[str]):
    return make_cfg(["dataset=synthetic", "backbone=resnet50", *extra])


def test_imagenet_init_loads_local_file(tmp_path: Path) -> None:
    donor = build_model(_resnet_cfg([]))
    state = {k: v for k, v in donor.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)  # a classifier in the file is ignored
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    model = build_model(_resnet_cfg(["init=imagenet", f"init_path={path}"]))
    torch.testing.assert_close(model.backbone.layer3[0].conv2.weight, donor.backbone.layer3[0].conv2.weight)


def test_imagenet_init_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(_resnet_cfg(["init=imagenet", f"init_path={tmp_path / 'nope.pth'}"]))
    with pytest.raises(ValueError, match="needs init_path"):
        build_model(_resnet_cfg(["init=imagenet"]))


def test_imagenet_init_mismatched_keys_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"missing \d+ \(e.g. \['bn1.bias'.*unexpected 1 \(e.g. \['features.0.weight'\]"):
        build_model(_resnet_cfg(["init=imagenet", f"init_path={path}"]))


def test_imagenet_init_refused_for_densenet() -> None:
    with pytest.raises(ModelConfigError, match="only available for resnet backbones"):
        build_model(make_cfg(["dataset=synthetic", "init=imagenet", "init_path=x.pth"]))


def test_resnet_output_strides() -> None:
    """The notes' v2 is OS16 with layer3 strided and dilated; stride8 keeps layer3 at OS8."""
    x = torch.randn(1, 3, 64, 64)
    for os_, expected in ((16, 4), (8, 8)):
        model = build_model(_resnet_cfg([f"backbone.output_stride={os_}"])).eval()
        with torch.no_grad():
            feats = model.backbone(x)
        assert feats[-1].shape[-1] == expected
        assert model.backbone.layer4[0].conv2.dilation == (4, 4)


def test_deeplabv3_rates_double_at_os8() -> None:
    m16 = build_model(_resnet_cfg(["model=deeplabv3"]))
    m8 = build_model(_resnet_cfg(["model=deeplabv3", "backbone.output_stride=8"]))
    rates16 = [b[0].dilation[0] for b in m16.head.aspp.branches[1:]]
    rates8 = [b[0].dilation[0] for b in m8.head.aspp.branches[1:]]
    assert rates16 == [6, 12, 18] and rates8 == [12, 24, 36]


def test_summary_cli_last_line_is_params(capsys: pytest.CaptureFixture[str]) -> None:
    from models.summary import main

    main(["dataset=camvid", "backbone=dense30k12", "backbone.blocks=[2,2,2,2]", "model.decoder=newdid6", "--size", "33"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("block4 (2 layers)") for line in lines)
    cfg = make_cfg(["dataset=camvid", "backbone=dense30k12", "backbone.blocks=[2,2,2,2]", "model.decoder=newdid6"])
    assert lines[-1] == f"{count_params_m(build_model(cfg)):.2f}"


def test_summary_cli_accepts_a_notes_name(capsys: pytest.CaptureFixture[str]) -> None:
    from models.summary import main

    main(["camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16", "--size", "33"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "11.65"


def test_models_import_no_hydra_or_tracking() -> None:
    import subprocess
    import sys

    code = ("import sys, models.build, models.summary; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('hydra', 'mlflow', 'submitit', 'sweeper', 'optuna')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_channels_last_matches_conv2d(bias: bool) -> None:
    """The matmul path of a 1x1 conv on a channels_last input gives conv2d's output and gradients."""
    from models.common import Conv1x1

    torch.manual_seed(0)
    conv = Conv1x1(6, 5, bias=bias)
    x = torch.randn(2, 6, 7, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = conv(x)
    ref_x = x.detach().contiguous().requires_grad_()
    ref = F.conv2d(ref_x, conv.weight, conv.bias)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    params = [conv.weight] + ([conv.bias] if bias else [])
    got = torch.autograd.grad(out, [x, *params], grad)
    want = torch.autograd.grad(ref, [ref_x, *params], grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize(("overrides", "check_grads"), [
    (SMALL_DENSE + DENSE + ["model.decoder=newdid6"], True),
    # ResNet from scratch: gradients hinge on ReLUs that float reordering flips (~2% apart between any
    # two kernels), so only its logits are compared
    (["dataset=voc", "backbone=resnet50", "model=deeplabv3"], False)], ids=["newdid6", "resnet50-v3"])
def test_channels_last_model_matches_contiguous(overrides: list[str], check_grads: bool) -> None:
    """A model converted to channels_last computes the same logits (in NCHW) and gradients (eval mode:
    batch statistics of two tiny maps would make the comparison ill-conditioned)."""
    cfg = make_cfg(overrides)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    twin = build_model(cfg).eval().to(memory_format=torch.channels_last)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 33, 33)
    outs = model(x)
    twin_outs = twin(x.contiguous(memory_format=torch.channels_last))
    for out, twin_out in zip(outs, twin_outs, strict=True):
        assert twin_out.is_contiguous()
        assert_close_to_scale(twin_out, out, "logits")
    if check_grads:
        sum(o.square().mean() for o in outs).backward()
        sum(o.square().mean() for o in twin_outs).backward()
        twin_grads = dict(twin.named_parameters())
        for name, p in model.named_parameters():
            assert_close_to_scale(twin_grads[name].grad, p.grad, name)


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, what: str, rel: float = 1e-3) -> None:
    """Equal up to float reordering: the largest difference within `rel` of the largest magnitude
    (another summation order differs by ~1e-5 of it, a wrong op by O(1))."""
    error, scale = (got - want).abs().max().item(), want.abs().max().item()
    assert error <= rel * scale + 1e-6, f"{what}: max difference {error:.3g} vs scale {scale:.3g}"
