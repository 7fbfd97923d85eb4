"""DenseNet-BC backbone as the notes ran it (tensorpack `experiment2/densenet_v1.py`, TOKENS.md 1d/1e).

`dense{L}k{K}`: L = sum(blocks) dense layers, K = growth rate. Each dense layer is
BN-ReLU-1x1 conv(4K) -> BN-ReLU-3x3 conv(K, dilation = rate of its block) [-> SE], concatenated.
Convolutions carry biases (slim `conv2d` defaults) and are xavier-initialised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.common import BNReLU, SqueezeExcitation, conv2d, maybe_checkpoint, same_avg_pool_s1, setting
from models.errors import ModelConfigError


class Unit(nn.Sequential):
    """TF-slim `unit`: BN -> ReLU -> conv (with bias)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, rate: int = 1,
                 momentum: float = 0.1) -> None:
        super().__init__(BNReLU(c_in, momentum), conv2d(c_in, c_out, kernel, stride=stride, rate=rate))


class DenseLayer(nn.Module):
    """One dense layer on the list of earlier feature maps (concatenated inside, so that a
    checkpointed layer keeps no concatenation alive)."""

    def __init__(self, c_in: int, growth: int, rate: int, se_ratio: int, momentum: float) -> None:
        super().__init__()
        self.bottleneck = Unit(c_in, 4 * growth, 1, momentum=momentum)
        self.composite = Unit(4 * growth, growth, 3, rate=rate, momentum=momentum)
        self.se = SqueezeExcitation(growth, se_ratio) if se_ratio > 0 else None
        self.checkpointing = False

    def _forward(self, *features: Tensor) -> Tensor:
        x = torch.cat(features, 1) if len(features) > 1 else features[0]
        out = self.composite(self.bottleneck(x))
        return self.se(out) if self.se is not None else out

    def forward(self, features: list[Tensor]) -> Tensor:
        return maybe_checkpoint(self._forward, *features, enabled=self.checkpointing)


class DenseBlock(nn.Module):
    """`n` dense layers; returns the concatenation of the input and every new feature map."""

    def __init__(self, n: int, c_in: int, growth: int, rate: int, se_ratio: int, momentum: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(c_in + i * growth, growth, rate, se_ratio, momentum) for i in range(n))
        self.out_channels = c_in + n * growth

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """Transition: BN-ReLU-1x1 conv (compressed) -> 2x2 avg-pool (stride s; the stride-1 pool is
    skipped with `latter_pooling=False`) [-> SE(transition_senet)].

    `transition_senet == 2` is the residual bottleneck variant (1x1 C/4 -> 3x3 C/4 stride s ->
    1x1 C -> SE(2)) plus a skip (a strided BN-ReLU-1x1 when s > 1).
    """

    def __init__(self, c_in: int, compression: float, stride: int, latter_pooling: bool,
                 transition_senet: int, momentum: float) -> None:
        super().__init__()
        c_out = math.floor(c_in * compression) if compression < 1 else c_in
        self.out_channels = c_out
        self.stride = stride
        self.latter_pooling = latter_pooling
        self.residual = transition_senet == 2
        if self.residual:
            self.body = nn.Sequential(
                Unit(c_in, c_out // 4, 1, momentum=momentum),
                Unit(c_out // 4, c_out // 4, 3, stride=stride, momentum=momentum),
                Unit(c_out // 4, c_out, 1, momentum=momentum))
            self.se = SqueezeExcitation(c_out, 2)
            self.skip = Unit(c_in, c_out, 1, stride=stride, momentum=momentum) if stride > 1 else None
            if stride == 1 and c_out != c_in:
                raise ModelConfigError("transition_senet=2 with stride 1 needs compression=1.0 (the skip is identity)")
        else:
            self.body = Unit(c_in, c_out, 1, momentum=momentum)
            self.se = SqueezeExcitation(c_out, transition_senet) if transition_senet > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        if self.residual:
            out = self.se(self.body(x))
            return out + (self.skip(x) if self.skip is not None else x)
        out = self.body(x)
        if self.stride > 1:
            out = F.avg_pool2d(out, 2, stride=self.stride, ceil_mode=True)
        elif self.latter_pooling:
            out = same_avg_pool_s1(out)
        return self.se(out) if self.se is not None else out


def make_stem(stem: bool, growth: int) -> tuple[nn.Sequential, int]:
    """7x7/2 conv (2K) + 3x3/2 max-pool, or the deep stem (three linear 3x3 convs + 2x2/2 max-pool)."""
    if stem:
        return nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2, padding=1),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.MaxPool2d(2, stride=2, ceil_mode=True)), 128
    return nn.Sequential(
        nn.Conv2d(3, 2 * growth, 7, stride=2, padding=3),
        nn.MaxPool2d(3, stride=2, padding=1)), 2 * growth


class DenseNet(nn.Module):
    """The DenseNet feature extractor. `forward` returns the outputs of every block (blocks 1..n-1
    before their transition, and the last block = the main stream), shallowest first: pre-activation
    features (the heads normalise them, models/registry.py)."""

    preactivation_features = True

    def __init__(self, blocks: Sequence[int], growth: int, rates: Sequence[int], strides: Sequence[int],
                 stem: bool = False, compression: float = 0.5, latter_pooling: bool = True,
                 senet: int = 0, transition_senet: int = 0, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if not (len(blocks) == len(rates) == len(strides)):
            raise ModelConfigError(f"blocks {list(blocks)}, rates {list(rates)} and strides {list(strides)} "
                             "must have the same length")
        self.stem, c = make_stem(stem, growth)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        self.channels: list[int] = []
        for i, n in enumerate(blocks):
            block = DenseBlock(n, c, growth, rates[i], senet, bn_momentum)
            self.blocks.append(block)
            c = block.out_channels
            self.channels.append(c)
            if i < len(blocks) - 1:
                trans = Transition(c, compression, strides[i], latter_pooling, transition_senet, bn_momentum)
                self.transitions.append(trans)
                c = trans.out_channels
        self.out_channels = c

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute each dense layer in the backward pass instead of storing its activations."""
        for m in self.modules():
            if isinstance(m, DenseLayer):
                m.checkpointing = enabled

    def init_network(self, network: nn.Module) -> None:
        """The family's weight init over the whole network (``init_densenet``)."""
        init_densenet(network)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            outs.append(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return outs


def init_densenet(module: nn.Module) -> None:
    """Xavier-uniform conv/FC weights and zero biases (slim xavier_initializer, tf.layers.dense)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def densenet_strides(n_blocks: int, output_stride: int) -> list[int]:
    """Transition strides: [2, 2, 1, 1] for output stride 16, [2, 1, 1, 1] for 8 (`stride8`)."""
    if output_stride == 16:
        first = [2, 2]
    elif output_stride == 8:
        first = [2, 1]
    else:
        raise ModelConfigError(f"backbone.output_stride={output_stride} is not supported for DenseNet; use 16 or 8")
    return (first + [1] * n_blocks)[:n_blocks]


def build_backbone(cfg: Any) -> DenseNet:
    """The DenseNet of the ``backbone`` config node (the family's declared builder, conf/backbone/_densenet.yaml)."""
    b = cfg.backbone
    blocks = list(setting(b, "blocks"))
    return DenseNet(
        blocks=blocks, growth=int(setting(b, "growth")), rates=list(setting(b, "rates", [1, 1, 2, 4])),
        strides=densenet_strides(len(blocks), int(setting(b, "output_stride", 16))),
        stem=bool(setting(b, "stem", False)), compression=float(setting(b, "compression", 0.5)),
        latter_pooling=bool(setting(b, "latter_pooling", True)), senet=int(setting(b, "senet", 0)),
        transition_senet=int(setting(b, "transition_senet", 0)), bn_momentum=float(setting(b, "bn_momentum", 0.1)))
