"""The head registry, apart from the backbones (detectron2's registries): a head works with every backbone.

A backbone (built by its family's declared ``builder``, ``models/families.py``) is an ``nn.Module``
whose ``forward(x)`` returns its stage outputs, shallowest first (the last is the main stream), with

- ``channels``: the channels of each stage output; ``out_channels``: of the last;
- ``preactivation_features`` (default False): True when its features are not yet normalised (DenseNet's
  pre-activation blocks): the DeepLab v2 head then starts with BN-ReLU (the notes' DenseNet head) and the
  fusion decoders (``model.decoder``) apply;
- ``init_network(network)`` (optional): the family's weight init, applied to the whole network (the
  head too, as the notes did); ``set_checkpointing(enabled)`` (optional): ``model.checkpointing``.

A head is registered by ``model.name``: ``@register_head("deeplabv2") fn(cfg, backbone) -> nn.Module``
mapping the backbone's list of features to a list of logits at feature resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from models.errors import ModelConfigError

HeadBuilder = Callable[[Any, nn.Module], nn.Module]
HEADS: dict[str, HeadBuilder] = {}


def register_head(name: str) -> Callable[[HeadBuilder], HeadBuilder]:
    """Decorator: register ``fn(cfg, backbone) -> head`` for ``model.name=name``."""

    def deco(fn: HeadBuilder) -> HeadBuilder:
        if name in HEADS:
            raise ModelConfigError(f"a head for model.name={name!r} is already registered")
        HEADS[name] = fn
        return fn

    return deco


def registered() -> list[str]:
    """The registered heads (``model.name`` values; ``models.build`` imports the built-in ones)."""
    return sorted(HEADS)


def head_builder(name: Any) -> HeadBuilder:
    """The head of ``model.name``."""
    known = registered()
    if name not in HEADS:
        raise ModelConfigError(f"model.name={name!r} has no registered head; known: {', '.join(known)} "
                               "(a head: @register_head in models/heads.py)")
    return HEADS[name]
