"""DeepLab heads for ResNet backbones and the segmenter that upsamples every output.

- DeepLab v2 as the notes ran it: one 3x3 rate-6 conv straight to the classes (`head=single`),
  or the paper's ASPP (`head=aspp`: 3x3 convs at rates 6/12/18/24, summed). `head_kernel=1`
  gives slim's 1x1 logits, `head_kernel=3, head_rate=6` the `dilation6` classifier.
- DeepLab v3: ASPP (1x1 + 3x3 at `aspp_rates`, BN-ReLU, 256 ch; rates doubled at output
  stride 8) + image pooling, merged by concat (paper) or sum (the notes' `tf.add_n`), a 1x1
  projection (BN-ReLU) and 1x1 logits. `aspp=false` (`noASPP`) is the cascade variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.common import BNReLU, Conv1x1, bn, conv2d, resize
from models.errors import ModelConfigError


class Segmenter(nn.Module):
    """backbone (-> list of features) -> head (-> list of logits) -> each upsampled to the input."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def set_checkpointing(self, enabled: bool) -> None:
        """Turn gradient checkpointing of the backbone's dense layers / residual blocks on or off."""
        self.backbone.set_checkpointing(enabled)

    def forward(self, x: Tensor) -> list[Tensor]:
        logits = self.head(self.backbone(x))
        # upsampled from the small map in NCHW: the loss's log-softmax over classes would otherwise
        # copy the full-size channels_last logits to NCHW (~2-5% of a channels_last train step)
        return [resize(z.contiguous(), x.shape[-2:]) for z in logits]


class DeepLabV2Head(nn.Module):
    """Single atrous classifier, or the sum of the ASPP branches (all straight to the classes)."""

    def __init__(self, c_in: int, num_classes: int, kernel: int, rate: int,
                 aspp_rates: Sequence[int] | None) -> None:
        super().__init__()
        specs = [(3, r) for r in aspp_rates] if aspp_rates else [(kernel, rate if kernel > 1 else 1)]
        self.branches = nn.ModuleList(
            conv2d(c_in, num_classes, k, rate=r) for k, r in specs)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        x = feats[-1]
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return [out]


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, rate: int = 1) -> nn.Sequential:
    """conv (no bias) -> BN -> ReLU."""
    return nn.Sequential(conv2d(c_in, c_out, kernel, rate=rate, bias=False),
                         BNReLU(c_out))


class ImagePooling(nn.Module):
    """GAP -> 1x1 conv -> BN-ReLU -> broadcast. With a batch of one in training the BN cannot
    estimate statistics from a single 1x1 value, so it normalises with its running ones."""

    def __init__(self, c_in: int, channels: int) -> None:
        super().__init__()
        self.conv = Conv1x1(c_in, channels, bias=False)
        self.bn = bn(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.mean(dim=(2, 3), keepdim=True))
        if self.training and y.shape[0] == 1:
            y = F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                             False, 0.0, self.bn.eps)
        else:
            y = self.bn(y)
        return F.relu(y).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """DeepLab v3 ASPP with image pooling."""

    def __init__(self, c_in: int, rates: Sequence[int], channels: int = 256, merge: str = "concat",
                 image_pooling: bool = True) -> None:
        super().__init__()
        if merge not in ("concat", "sum"):
            raise ModelConfigError(f"model.aspp_merge={merge!r} is unknown; use 'concat' or 'sum'")
        self.merge = merge
        self.branches = nn.ModuleList([conv_bn_relu(c_in, channels, 1)]
                                      + [conv_bn_relu(c_in, channels, 3, r) for r in rates])
        self.pool = ImagePooling(c_in, channels) if image_pooling else None
        n_in = len(self.branches) if merge == "concat" else 1
        n_in += 1 if image_pooling else 0
        self.project = conv_bn_relu(n_in * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        if self.merge == "sum":
            outs = [torch.stack(outs).sum(0)]
        if self.pool is not None:
            outs.append(self.pool(x))
        return self.project(torch.cat(outs, 1))


class DeepLabV3Head(nn.Module):
    """ASPP (or nothing, for the cascade variant whose extra blocks live in the backbone) + 1x1 logits."""

    def __init__(self, c_in: int, num_classes: int, aspp: ASPP | None) -> None:
        super().__init__()
        self.aspp = aspp
        self.logits = Conv1x1(aspp.project[0].out_channels if aspp is not None else c_in, num_classes)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        x = feats[-1]
        if self.aspp is not None:
            x = self.aspp(x)
        return [self.logits(x)]
