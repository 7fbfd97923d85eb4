"""DenseNet heads and the notes' fusion decoders (`did{N}`, `newdid`, `newdid2`, `newdid4`,
`newdid4_1`, `newdid6`, `newdid6_senet`; `densenet_v1*.py` `denseindense` 1..7, TOKENS.md 1e).

Every module here maps the backbone's list of block outputs (shallowest first, the last = the
main stream) to a list of logits at feature resolution; the segmenter upsamples them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.common import BNReLU, Conv1x1, SqueezeExcitation, conv2d, resize
from models.errors import ModelConfigError

FPN_CHANNELS = 416  # `output_channel = 416` in denseindense 4..7


class Classifier(nn.Module):
    """`postnorm` BN-ReLU then the logits: a 1x1 conv (`head=single`; slim's `rate=6` on a 1x1
    kernel is a no-op), or the sum of 3x3 atrous convs at `aspp_rates` (`head=aspp`)."""

    def __init__(self, c_in: int, num_classes: int, aspp_rates: Sequence[int] | None = None,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.postnorm = BNReLU(c_in, momentum)
        if aspp_rates:
            self.branches = nn.ModuleList(
                nn.Conv2d(c_in, num_classes, 3, padding=r, dilation=r) for r in aspp_rates)
        else:
            self.branches = nn.ModuleList([Conv1x1(c_in, num_classes)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.postnorm(x)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class PlainHead(nn.Module):
    """No decoder: classifier on the main stream."""

    def __init__(self, channels: Sequence[int], num_classes: int, aspp_rates: Sequence[int] | None,
                 momentum: float) -> None:
        super().__init__()
        self.classifier = Classifier(channels[-1], num_classes, aspp_rates, momentum)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return [self.classifier(feats[-1])]


class Smoothen(nn.Sequential):
    """`smoothen`: BN-ReLU -> 1x1 conv to C/ratio -> SE(4)."""

    def __init__(self, c_in: int, c_out: int, momentum: float) -> None:
        super().__init__(BNReLU(c_in, momentum), Conv1x1(c_in, c_out), SqueezeExcitation(c_out, 4))


def _need_blocks(channels: Sequence[int], name: str) -> None:
    if len(channels) < 4:
        raise ModelConfigError(f"decoder {name!r} fuses blocks 1-3 with the main stream: it needs 4 dense blocks, "
                         f"got {len(channels)}")


class DidDecoder(nn.Module):
    """Old-style `did{N}`: blocks 1-3 resized to the main stream, BN-ReLU-1x1 to C/N + SE(4),
    concatenated with the main stream (after the 01113e37 fix), then the classifier."""

    def __init__(self, channels: Sequence[int], num_classes: int, ratio: int,
                 aspp_rates: Sequence[int] | None, momentum: float) -> None:
        super().__init__()
        _need_blocks(channels, "did")
        self.side = nn.ModuleList(Smoothen(c, c // ratio, momentum) for c in channels[:3])
        fused = sum(c // ratio for c in channels[:3]) + channels[-1]
        self.classifier = Classifier(fused, num_classes, aspp_rates, momentum)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        main = feats[-1]
        sides = [m(resize(f, main.shape[-2:])) for m, f in zip(self.side, feats[:3], strict=True)]
        return [self.classifier(torch.cat([*sides, main], 1))]


class NewDidDecoder(nn.Module):
    """`newdid` (denseindense=1) / `newdid2` (=2): smoothen blocks 1-3 to C/4 (+SE4), pool block 1
    to block 2, concat, 1x1 conv, pool, concat block 3, 1x1 conv, concat the main stream.
    `newdid2` adds BN-ReLU before both 1x1 fusion convs and a final SE(4) on the concat."""

    def __init__(self, channels: Sequence[int], num_classes: int, version: int,
                 aspp_rates: Sequence[int] | None, momentum: float) -> None:
        super().__init__()
        _need_blocks(channels, "newdid")
        c1, c2, c3 = (c // 4 for c in channels[:3])
        self.smooth = nn.ModuleList(Smoothen(c, c // 4, momentum) for c in channels[:3])
        pre = version == 2
        self.fuse1 = nn.Sequential(*([BNReLU(c1 + c2, momentum)] if pre else []), Conv1x1(c1 + c2, c1 + c2))
        c12 = c1 + c2 + c3
        self.fuse2 = nn.Sequential(*([BNReLU(c12, momentum)] if pre else []), Conv1x1(c12, c12))
        out = c12 + channels[-1]
        self.final_se = SqueezeExcitation(out, 4) if pre else None
        self.classifier = Classifier(out, num_classes, aspp_rates, momentum)

    @staticmethod
    def _down(x: Tensor, like: Tensor) -> Tensor:
        return resize(F.avg_pool2d(x, 2, stride=2, ceil_mode=True), like.shape[-2:])

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        b1, b2, b3 = (m(f) for m, f in zip(self.smooth, feats[:3], strict=True))
        x = self.fuse1(torch.cat([self._down(b1, b2), b2], 1))
        x = self.fuse2(torch.cat([self._down(x, b3), b3], 1))
        x = torch.cat([x, resize(feats[-1], x.shape[-2:])], 1)
        if self.final_se is not None:
            x = self.final_se(x)
        return [self.classifier(x)]


class FPNDecoder(nn.Module):
    """`newdid4` / `newdid4_1` / `newdid6` / `newdid6_senet` (denseindense 4/5/6/7): 1x1 laterals to
    416 ch on the main stream and blocks 3, 2, 1 (+SE(4) each for `newdid6_senet`); top-down
    add at OS16, bilinear up + add at OS8 and OS4, a smoothing conv (3x3 for newdid4, 1x1
    otherwise) after the first two fusions. Deep supervision (newdid6*) puts a BN-ReLU-1x1
    classifier after each of the three fusions; otherwise one classifier at the end (OS4)."""

    def __init__(self, channels: Sequence[int], num_classes: int, smooth_kernel: int,
                 deep_supervision: bool, lateral_se: bool, aspp_rates: Sequence[int] | None,
                 momentum: float) -> None:
        super().__init__()
        _need_blocks(channels, "newdid4/6")
        c = FPN_CHANNELS
        sources = [channels[-1], channels[2], channels[1], channels[0]]
        self.laterals = nn.ModuleList(
            nn.Sequential(Conv1x1(s, c), *([SqueezeExcitation(c, 4)] if lateral_se else []))
            for s in sources)
        self.smooth = nn.ModuleList(conv2d(c, c, smooth_kernel) for _ in range(2))
        n_cls = 3 if deep_supervision else 1
        self.classifiers = nn.ModuleList(Classifier(c, num_classes, aspp_rates, momentum) for _ in range(n_cls))
        self.deep_supervision = deep_supervision

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        main, b3, b2, b1 = (lat(f) for lat, f in zip(self.laterals, [feats[-1], feats[2], feats[1], feats[0]],
                                                      strict=True))
        fused = [resize(main, b3.shape[-2:]) + b3]
        x = self.smooth[0](fused[-1])
        fused.append(resize(x, b2.shape[-2:]) + b2)
        x = self.smooth[1](fused[-1])
        fused.append(resize(x, b1.shape[-2:]) + b1)
        if self.deep_supervision:
            return [cls(f) for cls, f in zip(self.classifiers, fused, strict=True)]
        return [self.classifiers[0](fused[-1])]


DECODERS = ("none", "did", "newdid", "newdid2", "newdid4", "newdid4_1", "newdid6", "newdid6_senet")


def build_densenet_head(decoder: str, channels: Sequence[int], num_classes: int, did_ratio: int,
                        aspp_rates: Sequence[int] | None, momentum: float) -> nn.Module:
    """The DenseNet decoder + classifier named by `model.decoder` (`did{N}` is `did` with did_ratio=N)."""
    if decoder in ("none", None):
        return PlainHead(channels, num_classes, aspp_rates, momentum)
    if decoder == "did":
        return DidDecoder(channels, num_classes, did_ratio, aspp_rates, momentum)
    if decoder in ("newdid", "newdid2"):
        return NewDidDecoder(channels, num_classes, 2 if decoder == "newdid2" else 1, aspp_rates, momentum)
    if decoder in ("newdid4", "newdid4_1", "newdid6", "newdid6_senet"):
        return FPNDecoder(channels, num_classes, smooth_kernel=3 if decoder == "newdid4" else 1,
                          deep_supervision=decoder.startswith("newdid6"),
                          lateral_se=decoder == "newdid6_senet", aspp_rates=aspp_rates, momentum=momentum)
    raise ModelConfigError(f"model.decoder={decoder!r} is unknown; choose one of {', '.join(DECODERS)}")
