"""Build a segmentation network from the whole run config through one registry.

Builders are registered per (`backbone.family`, `model.name`), e.g. ("densenet", "deeplabv2").
Every built model maps `x: [N,3,H,W]` to a list of logits `[N,C,H,W]` at the input size; the
last is the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.decoders import build_densenet_head
from models.deeplab import ASPP, DeepLabV2Head, DeepLabV3Head, Segmenter
from models.densenet import DenseNet, densenet_strides, init_densenet

Builder = Callable[[Any], nn.Module]
_REGISTRY: dict[tuple[str, str], Builder] = {}


def register(family: str, name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `fn(cfg) -> nn.Module` for a backbone family and a model name."""

    def deco(fn: Builder) -> Builder:
        key = (family, name)
        if key in _REGISTRY:
            raise ValueError(f"a builder for {key} is already registered")
        _REGISTRY[key] = fn
        return fn

    return deco


def registered() -> list[tuple[str, str]]:
    """The (family, model name) pairs that can be built."""
    return sorted(_REGISTRY)


def _get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    value = node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)
    return default if value is None else value


def build_model(cfg: Any) -> nn.Module:
    """Build the model for a run config (`cfg.backbone`, `cfg.model`, `cfg.dataset.num_classes`,
    `cfg.init`, `cfg.init_path`), with gradient checkpointing when `model.checkpointing`."""
    family = _get(cfg.backbone, "family")
    name = _get(cfg.model, "name")
    builder = _REGISTRY.get((family, name))
    if builder is None:
        known = ", ".join(f"{f}+{n}" for f, n in registered())
        raise ValueError(f"no model for backbone.family={family!r} with model.name={name!r}; known: {known}")
    model = builder(cfg)
    init = _get(cfg, "init", "scratch")
    if init == "imagenet":
        load_imagenet(model, family, _get(cfg, "init_path"))
    elif init != "scratch":
        raise ValueError(f"init={init!r} is unknown; use 'scratch' or 'imagenet' (with init_path=<file>)")
    if _get(cfg.model, "checkpointing", False):
        model.set_checkpointing(True)
    return model


def count_params_m(model: nn.Module) -> float:
    """Trainable parameters in millions (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6


def _num_classes(cfg: Any) -> int:
    n = _get(cfg.dataset, "num_classes")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"dataset.num_classes must be a positive int, got {n!r}")
    return n


def _densenet_backbone(cfg: Any) -> DenseNet:
    b = cfg.backbone
    blocks = list(_get(b, "blocks"))
    return DenseNet(
        blocks=blocks, growth=int(_get(b, "growth")), rates=list(_get(b, "rates", [1, 1, 2, 4])),
        strides=densenet_strides(len(blocks), int(_get(b, "output_stride", 16))),
        stem=bool(_get(b, "stem", False)), compression=float(_get(b, "compression", 0.5)),
        latter_pooling=bool(_get(b, "latter_pooling", True)), senet=int(_get(b, "senet", 0)),
        transition_senet=int(_get(b, "transition_senet", 0)), bn_momentum=float(_get(b, "bn_momentum", 0.1)))


@register("densenet", "deeplabv2")
def build_densenet_deeplabv2(cfg: Any) -> nn.Module:
    """DenseNet + the notes' head (BN-ReLU-1x1, or summed ASPP with head=aspp) / fusion decoder."""
    backbone = _densenet_backbone(cfg)
    m = cfg.model
    head_kind = _get(m, "head", "single")
    if head_kind not in ("single", "aspp"):
        raise ValueError(f"model.head={head_kind!r} is unknown; use 'single' or 'aspp'")
    rates = list(_get(m, "aspp_rates", [6, 12, 18, 24])) if head_kind == "aspp" else None
    head = build_densenet_head(_get(m, "decoder", "none"), backbone.channels, _num_classes(cfg),
                               int(_get(m, "did_ratio", 8)), rates, float(_get(cfg.backbone, "bn_momentum", 0.1)))
    model = Segmenter(backbone, head)
    init_densenet(model)
    return model


@register("densenet", "deeplabv3")
def build_densenet_deeplabv3(cfg: Any) -> nn.Module:
    """DenseNet + DeepLab v3 ASPP (rates doubled at output stride 8)."""
    backbone = _densenet_backbone(cfg)
    _no_decoder(cfg)
    model = Segmenter(backbone, _v3_head(cfg, backbone.out_channels, _get(cfg.backbone, "output_stride", 16)))
    init_densenet(model)
    return model


def _no_decoder(cfg: Any) -> None:
    decoder = _get(cfg.model, "decoder", "none")
    if decoder != "none":
        raise ValueError(f"model.decoder={decoder!r} needs model=deeplabv2 with a DenseNet backbone")


def _v3_head(cfg: Any, c_in: int, output_stride: int) -> DeepLabV3Head:
    m = cfg.model
    aspp = None
    if _get(m, "aspp", True):
        factor = 2 if int(output_stride) == 8 else 1
        aspp = ASPP(c_in, [r * factor for r in _get(m, "aspp_rates", [6, 12, 18])],
                    int(_get(m, "aspp_channels", 256)), _get(m, "aspp_merge", "concat"),
                    bool(_get(m, "image_pooling", True)))
    return DeepLabV3Head(c_in, _num_classes(cfg), aspp)


@register("resnet", "deeplabv2")
def build_resnet_deeplabv2(cfg: Any) -> nn.Module:
    """ResNet (OS16 as the notes: layer3 strided+dilated 2, layer4 dilated 4; or OS8) + v2 head."""
    from models.resnet import build_resnet, init_resnet

    backbone = build_resnet(cfg.backbone, style="deeplabv2")
    _no_decoder(cfg)
    m = cfg.model
    head_kind = _get(m, "head", "single")
    if head_kind not in ("single", "aspp"):
        raise ValueError(f"model.head={head_kind!r} is unknown; use 'single' or 'aspp'")
    rates = list(_get(m, "aspp_rates", [6, 12, 18, 24])) if head_kind == "aspp" else None
    head = DeepLabV2Head(backbone.out_channels, _num_classes(cfg), int(_get(m, "head_kernel", 3)),
                         int(_get(m, "head_rate", 6)), rates)
    model = Segmenter(backbone, head)
    init_resnet(model)
    return model


@register("resnet", "deeplabv3")
def build_resnet_deeplabv3(cfg: Any) -> nn.Module:
    """ResNet (block 4 with multi-grid) + DeepLab v3 ASPP, or the cascade (`aspp=false`)."""
    from models.resnet import build_resnet, init_resnet

    _no_decoder(cfg)
    cascade = not _get(cfg.model, "aspp", True)
    backbone = build_resnet(cfg.backbone, style="deeplabv3", cascade=cascade,
                            multi_grid=_get(cfg.model, "multi_grid"))
    head = _v3_head(cfg, backbone.out_channels, _get(cfg.backbone, "output_stride", 16))
    model = Segmenter(backbone, head)
    init_resnet(model)
    return model


def load_imagenet(model: nn.Module, family: str, path: str | None) -> None:
    """Load ImageNet backbone weights from a local file (a state dict with torchvision ResNet key
    names, optionally prefixed `backbone.`); the classifier `fc.*` keys are ignored."""
    if family != "resnet":
        raise ValueError(f"init=imagenet is only available for ResNet backbones (got {family!r}); "
                         "DenseNet runs start from scratch: set init=scratch")
    if not path:
        raise ValueError("init=imagenet needs init_path=<local .pth file with ResNet ImageNet weights>")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"init_path={str(file)!r} does not exist; point it at a local ResNet "
                                "ImageNet state dict (nothing is downloaded)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith("fc.")}
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    own = backbone.state_dict()
    # the cascade's extra layers 5-7 have no ImageNet counterpart and start from scratch
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(("layer5.", "layer6.", "layer7.")))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        raise ValueError(
            f"{file} does not match the {len(own)}-tensor backbone: missing {len(missing)} (e.g. {missing[:3]}), "
            f"unexpected {len(unexpected)} (e.g. {unexpected[:3]}), wrong shape {len(shape)} (e.g. {shape[:3]})")
    backbone.load_state_dict(state, strict=False)
