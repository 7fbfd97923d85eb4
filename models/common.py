"""Small building blocks shared by the backbones, decoders and heads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

BN_EPS = 1e-5


_RECOMPUTING = False


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that leaves its running statistics alone while a checkpoint recomputes.

    Without this, `torch.utils.checkpoint` would update the running mean/var twice per step.
    """

    def forward(self, x: Tensor) -> Tensor:
        if _RECOMPUTING and self.training:
            # same op as the first pass (so checkpoint saves the same tensors), on throwaway copies
            mean, var = self.running_mean, self.running_var
            mean = mean.clone() if mean is not None else None
            var = var.clone() if var is not None else None
            return F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum or 0.0, self.eps)
        return super().forward(x)


@contextmanager
def _recompute_context() -> Iterator[None]:
    global _RECOMPUTING
    previous, _RECOMPUTING = _RECOMPUTING, True
    try:
        yield
    finally:
        _RECOMPUTING = previous


def _checkpoint_contexts() -> tuple[Any, Any]:
    return nullcontext(), _recompute_context()


def bn(channels: int, momentum: float = 0.1) -> BatchNorm2d:
    """BatchNorm2d with the notes' epsilon (1e-5) and affine gamma/beta."""
    return BatchNorm2d(channels, eps=BN_EPS, momentum=momentum)


class BNReLU(nn.Sequential):
    """BN followed by ReLU (the pre-activation of TF-slim `unit`)."""

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__(bn(channels, momentum), nn.ReLU(inplace=True))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation as in the notes: GAP -> FC(C/r)+ReLU -> FC(C)+sigmoid -> scale.

    Both FCs have biases (`tf.layers.dense(use_bias=True)`); the hidden width is int(C / ratio).
    """

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = max(1, int(channels / ratio))
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class Conv1x1(nn.Conv2d):
    """1x1 stride-1 conv. On a channels_last CPU input it is one matmul over the channels (`F.linear`
    on the NHWC view, output channels_last): the same numbers as conv2d, without the NCHW copies and
    zero-fills of the THNN kernel that conv2d picks for 1x1 convolutions on one thread (~4% of a
    channels_last train step, bench/train_step.py). Elsewhere (CUDA, NCHW) a plain conv2d."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True) -> None:
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)
        return super().forward(x)


def conv2d(c_in: int, c_out: int, kernel: int, stride: int = 1, rate: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded conv (padding = rate * (kernel - 1) / 2); `Conv1x1` for 1x1 stride 1."""
    if kernel == 1 and stride == 1:
        return Conv1x1(c_in, c_out, bias)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=rate * (kernel - 1) // 2, dilation=rate, bias=bias)


def same_avg_pool_s1(x: Tensor) -> Tensor:
    """TF `avg_pool2d([2,2], stride=1, padding='SAME')`: pad right/bottom, average valid cells only."""
    padded = F.pad(x, (0, 1, 0, 1))
    summed = F.avg_pool2d(padded, 2, stride=1, divisor_override=1)
    ones = F.pad(torch.ones_like(x[:1, :1]), (0, 1, 0, 1))
    count = F.avg_pool2d(ones, 2, stride=1, divisor_override=1)
    return summed / count


def resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize (align_corners=False) to a spatial size; a no-op when it already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def maybe_checkpoint(fn: Callable[..., Any], *args: Tensor, enabled: bool) -> Any:
    """Run `fn(*args)`, through `torch.utils.checkpoint` when enabled and autograd is recording."""
    if enabled and torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False, context_fn=_checkpoint_contexts)
    return fn(*args)


def setting(node: Any, key: str, default: Any = None) -> Any:
    """``node[key]`` of a config node (DictConfig, dict or object), ``default`` when absent or null."""
    if node is None:
        return default
    value = node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)
    return default if value is None else value
