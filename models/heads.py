"""The registered heads (``model.name``): DeepLab v2 (with the DenseNet fusion decoders) and v3.

Each reads only the backbone's interface (``models/registry.py``), never its family: a new backbone
works with every head.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from models.common import setting
from models.decoders import build_densenet_head
from models.deeplab import ASPP, DeepLabV2Head, DeepLabV3Head
from models.errors import ModelConfigError
from models.registry import register_head


def num_classes(cfg: Any) -> int:
    """``dataset.num_classes``, a positive int."""
    n = setting(cfg.dataset, "num_classes")
    if not isinstance(n, int) or n < 1:
        raise ModelConfigError(f"dataset.num_classes must be a positive int, got {n!r}")
    return n


def _v2_rates(cfg: Any) -> list[int] | None:
    head_kind = setting(cfg.model, "head", "single")
    if head_kind not in ("single", "aspp"):
        raise ModelConfigError(f"model.head={head_kind!r} is unknown; use 'single' or 'aspp'")
    return list(setting(cfg.model, "aspp_rates", [6, 12, 18, 24])) if head_kind == "aspp" else None


def no_decoder(cfg: Any) -> None:
    """Refuse ``model.decoder`` where the head has none."""
    decoder = setting(cfg.model, "decoder", "none")
    if decoder != "none":
        raise ModelConfigError(f"model.decoder={decoder!r} needs model=deeplabv2 with a backbone whose features "
                               "are pre-activation (DenseNet): set model.decoder=none")


@register_head("deeplabv2")
def deeplabv2(cfg: Any, backbone: nn.Module) -> nn.Module:
    """Pre-activation features (DenseNet): the notes' BN-ReLU classifier (1x1, or summed ASPP with
    head=aspp) or a fusion decoder; otherwise (ResNet) the atrous classifier straight on the features."""
    m = cfg.model
    if getattr(backbone, "preactivation_features", False):
        rates = _v2_rates(cfg)
        return build_densenet_head(setting(m, "decoder", "none"), backbone.channels, num_classes(cfg),
                                   int(setting(m, "did_ratio", 8)), rates,
                                   float(setting(cfg.backbone, "bn_momentum", 0.1)))
    no_decoder(cfg)
    rates = _v2_rates(cfg)
    return DeepLabV2Head(backbone.out_channels, num_classes(cfg), int(setting(m, "head_kernel", 3)),
                         int(setting(m, "head_rate", 6)), rates)


@register_head("deeplabv3")
def deeplabv3(cfg: Any, backbone: nn.Module) -> nn.Module:
    """DeepLab v3: ASPP (rates doubled at output stride 8) + 1x1 logits; ``aspp=false``: logits only
    (the ResNet cascade's extra blocks live in its backbone)."""
    no_decoder(cfg)
    m, c_in = cfg.model, backbone.out_channels
    aspp = None
    if setting(m, "aspp", True):
        factor = 2 if int(setting(cfg.backbone, "output_stride", 16)) == 8 else 1
        aspp = ASPP(c_in, [r * factor for r in setting(m, "aspp_rates", [6, 12, 18])],
                    int(setting(m, "aspp_channels", 256)), setting(m, "aspp_merge", "concat"),
                    bool(setting(m, "image_pooling", True)))
    return DeepLabV3Head(c_in, num_classes(cfg), aspp)
