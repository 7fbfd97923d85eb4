"""Build a segmentation network from the whole run config: a backbone by its family's declaration
(``models/families.py``), a head by ``model.name`` (``models/registry.py``).

Every built model maps `x: [N,3,H,W]` to a list of logits `[N,C,H,W]` at the input size; the
last is the prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

import models.families as families
import models.heads  # noqa: F401 - registers the built-in heads
from models.common import setting
from models.deeplab import Segmenter
from models.errors import InitWeightsError, ModelConfigError
from models.registry import head_builder

__all__ = ["build_model", "count_params_m", "load_imagenet"]


def build_model(cfg: Any) -> nn.Module:
    """Build the model for a run config (`cfg.backbone`, `cfg.model`, `cfg.dataset.num_classes`,
    `cfg.init`, `cfg.init_path`), with gradient checkpointing when `model.checkpointing`."""
    family = families.family(setting(cfg.backbone, "family"))
    head = head_builder(setting(cfg.model, "name"))
    init = setting(cfg, "init", "scratch")
    if init not in families.INITS:
        raise ModelConfigError(f"init={init!r} is unknown; use 'scratch' or 'imagenet' (with init_path=<file>)")
    backbone = family.build(cfg)
    model = Segmenter(backbone, head(cfg, backbone))
    if hasattr(backbone, "init_network"):
        backbone.init_network(model)
    if init == "imagenet":
        load_imagenet(model, family, setting(cfg, "init_path"))
    if setting(cfg.model, "checkpointing", False):
        model.set_checkpointing(True)
    return model


def count_params_m(model: nn.Module) -> float:
    """Trainable parameters in millions (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6


def load_imagenet(model: nn.Module, family: families.Family, path: str | None) -> None:
    """Load ImageNet backbone weights from a local file (a state dict with the backbone's key names,
    torchvision's for ResNet, optionally prefixed `backbone.`); the classifier `fc.*` keys are ignored."""
    if not family.imagenet_init:
        with_weights = sorted(f.name for f in families.families().values() if f.imagenet_init)
        raise ModelConfigError(f"init=imagenet is only available for {', '.join(with_weights)} backbones "
                               f"(backbone.family={family.name!r} declares no ImageNet weights): set init=scratch")
    if not path:
        raise ModelConfigError("init=imagenet needs init_path=<local .pth file with ImageNet weights of the backbone>")
    file = Path(path).expanduser()
    if not file.is_file():
        raise InitWeightsError(f"init_path={str(file)!r} does not exist; point it at a local ImageNet state dict "
                               "of the backbone (nothing is downloaded)")
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
        raise ModelConfigError(
            f"{file} does not match the {len(own)}-tensor backbone: missing {len(missing)} (e.g. {missing[:3]}), "
            f"unexpected {len(unexpected)} (e.g. {unexpected[:3]}), wrong shape {len(shape)} (e.g. {shape[:3]})")
    backbone.load_state_dict(state, strict=False)
