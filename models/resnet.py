"""Dilated bottleneck ResNets for DeepLab (TOKENS.md 1a/1f, 2b/2c).

- v1 (`preact: false`): torchvision key layout (`conv1`, `bn1`, `layer1.0.conv1`, ...), so a local
  torchvision ImageNet state dict loads as is. Stride on the 3x3 conv.
- v2 (`preact: true`, the notes' `slim` port): pre-activation units, linear stem conv, a final
  `postnorm` BN-ReLU.

Dilation schedules (`style`):
- "deeplabv2" (tensorpack, the notes' v2): OS16 = layer3 strided *and* dilated 2, layer4 dilated 4;
  OS8 = layer3 dilated 2, layer4 dilated 4.
- "deeplabv3" (slim v3): OS16 = layer4 dilated 2 x multi-grid; OS8 = layer3 dilated 2, layer4
  dilated 4 x multi-grid. `cascade=True` (`noASPP`) appends layers 5-7 (3 units each) at 2x, 4x, 8x
  the layer-4 rate (the notes' training-time rates 4/8/16 at OS16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from models.common import BNReLU, Conv1x1, bn, conv2d, maybe_checkpoint, setting
from models.errors import ModelConfigError

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class Bottleneck(nn.Module):
    """ResNet v1 bottleneck (1x1 -> 3x3 (stride, dilation) -> 1x1 x4), BN after each conv."""

    def __init__(self, c_in: int, mid: int, stride: int, rate: int) -> None:
        super().__init__()
        c_out = 4 * mid
        self.conv1 = Conv1x1(c_in, mid, bias=False)
        self.bn1 = bn(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=rate, dilation=rate, bias=False)
        self.bn2 = bn(mid)
        self.conv3 = Conv1x1(mid, c_out, bias=False)
        self.bn3 = bn(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(conv2d(c_in, c_out, 1, stride, bias=False), bn(c_out))
        self.checkpointing = False

    def _forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.downsample(x) if self.downsample is not None else x  # in place, as torchvision's
        return self.relu(out)

    def forward(self, x: Tensor) -> Tensor:
        return maybe_checkpoint(self._forward, x, enabled=self.checkpointing)


class PreActBottleneck(nn.Module):
    """ResNet v2 bottleneck: BN-ReLU preact -> 1x1 -> BN-ReLU-3x3 -> BN-ReLU-1x1, identity or
    projection (from the preact) shortcut."""

    def __init__(self, c_in: int, mid: int, stride: int, rate: int) -> None:
        super().__init__()
        c_out = 4 * mid
        self.preact = BNReLU(c_in)
        self.conv1 = Conv1x1(c_in, mid, bias=False)
        self.bn1 = BNReLU(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=rate, dilation=rate, bias=False)
        self.bn2 = BNReLU(mid)
        self.conv3 = Conv1x1(mid, c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = conv2d(c_in, c_out, 1, stride)
        self.checkpointing = False

    def _forward(self, x: Tensor) -> Tensor:
        pre = self.preact(x)
        identity = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(pre)))))
        return out + identity

    def forward(self, x: Tensor) -> Tensor:
        return maybe_checkpoint(self._forward, x, enabled=self.checkpointing)


def stage_plan(style: str, output_stride: int, cascade: bool) -> list[tuple[int, int]]:
    """(stride, rate) of layers 1..4 (and 5..7 for the cascade)."""
    if output_stride not in (8, 16):
        raise ModelConfigError(f"backbone.output_stride={output_stride} is not supported for ResNet; use 16 or 8")
    if style == "deeplabv2":
        plan = [(1, 1), (2, 1), (2, 2), (1, 4)] if output_stride == 16 else [(1, 1), (2, 1), (1, 2), (1, 4)]
    elif style == "deeplabv3":
        plan = [(1, 1), (2, 1), (2, 1), (1, 2)] if output_stride == 16 else [(1, 1), (2, 1), (1, 2), (1, 4)]
    else:
        raise ModelConfigError(f"unknown ResNet dilation style {style!r}")
    if cascade:
        r4 = plan[3][1]
        plan += [(1, 2 * r4), (1, 4 * r4), (1, 8 * r4)]
    return plan


class ResNet(nn.Module):
    """Dilated ResNet feature extractor; `forward` returns [layer1, ..., last layer] outputs."""

    def __init__(self, depth: int, output_stride: int = 16, multi_grid: Sequence[int] = (1, 1, 1),
                 preact: bool = False, style: str = "deeplabv2", cascade: bool = False) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ModelConfigError(f"backbone.depth={depth} is not supported; use one of {sorted(DEPTHS)}")
        unit = PreActBottleneck if preact else Bottleneck
        self.preact = preact
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=preact)
        self.bn1: nn.Module = nn.Identity() if preact else bn(64)
        self.relu: nn.Module = nn.Identity() if preact else nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        counts = DEPTHS[depth] + ([3, 3, 3] if cascade else [])
        plan = stage_plan(style, output_stride, cascade)
        c = 64
        self.layer_names: list[str] = []
        for i, ((stride, rate), n) in enumerate(zip(plan, counts, strict=True)):
            mid = 64 * 2 ** min(i, 3)
            grid = list(multi_grid) if i >= 3 else [1] * n
            units = []
            for j in range(n):
                units.append(unit(c, mid, stride if j == 0 else 1, rate * grid[j % len(grid)]))
                c = 4 * mid
            name = f"layer{i + 1}"
            setattr(self, name, nn.Sequential(*units))
            self.layer_names.append(name)
        self.postnorm: nn.Module = BNReLU(c) if preact else nn.Identity()
        self.channels = [4 * 64 * 2 ** min(i, 3) for i in range(len(self.layer_names))]
        self.out_channels = c

    def init_network(self, network: nn.Module) -> None:
        """The family's weight init over the whole network (``init_resnet``)."""
        init_resnet(network)

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute each residual block in the backward pass instead of storing its activations."""
        for m in self.modules():
            if isinstance(m, Bottleneck | PreActBottleneck):
                m.checkpointing = enabled

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for name in self.layer_names:
            x = getattr(self, name)(x)
            outs.append(x)
        outs[-1] = self.postnorm(outs[-1])
        return outs


def build_resnet(b: Any, style: str, cascade: bool = False, multi_grid: Sequence[int] | None = None) -> ResNet:
    """ResNet from the `backbone` config node (depth, output_stride, multi_grid, preact);
    `multi_grid` (e.g. `model.multi_grid`) overrides the backbone's when given."""
    grid = list(multi_grid) if multi_grid else list(b.get("multi_grid", None) or [1, 1, 1])
    return ResNet(depth=int(b.get("depth", 101)), output_stride=int(b.get("output_stride", 16)),
                  multi_grid=grid, preact=bool(b.get("preact", False)),
                  style=style, cascade=cascade)


def init_resnet(module: nn.Module) -> None:
    """He-normal fan-out conv weights (tensorpack `variance_scaling(FAN_OUT)`), zero biases, BN 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_backbone(cfg: Any) -> ResNet:
    """The ResNet of a run config (the family's declared builder, conf/backbone/_resnet.yaml): the
    dilation style of the model (v2, or v3 with ``model.multi_grid`` and the ``aspp=false`` cascade)."""
    if setting(cfg.model, "name") == "deeplabv3":
        return build_resnet(cfg.backbone, style="deeplabv3", cascade=not setting(cfg.model, "aspp", True),
                            multi_grid=setting(cfg.model, "multi_grid"))
    return build_resnet(cfg.backbone, style="deeplabv2")
