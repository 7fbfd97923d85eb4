"""Per-stage summary of a model: `python -m models.summary NAME_OR_OVERRIDES [--size N]`.

Give one notes name (`camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6`)
or Hydra overrides (`backbone=dense30k48 dataset=camvid`). Prints a table of stages (output shape
for a 1x3xNxN input, parameters) and, as the last line, the parameter count in millions.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from tabulate import tabulate
from torch import nn

from models.build import build_model, count_params_m


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's stages in order: the backbone's top-level parts (interleaved blocks and
    transitions for DenseNet; stem and layers for ResNet), then the head."""
    backbone = model.backbone
    out: list[tuple[str, nn.Module]] = []
    if hasattr(backbone, "blocks"):  # DenseNet
        out.append(("stem", backbone.stem))
        for i, block in enumerate(backbone.blocks):
            out.append((f"block{i + 1} ({len(block.layers)} layers)", block))
            if i < len(backbone.transitions):
                out.append((f"trans{i + 1}", backbone.transitions[i]))
    else:  # ResNet
        out.append(("stem", nn.ModuleList([backbone.conv1, backbone.bn1, backbone.maxpool])))
        for name in backbone.layer_names:
            layer = getattr(backbone, name)
            out.append((f"{name} ({len(layer)} units)", layer))
        out.append(("postnorm", backbone.postnorm))
    out.append((f"head ({type(model.head).__name__})", model.head))
    return out


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "x".join(str(d) for d in value.shape[1:])
    if isinstance(value, list | tuple):
        return ", ".join(_shape(v) for v in value)
    return "-"


def summary_rows(model: nn.Module, size: int) -> list[list[Any]]:
    """[stage, output shape (C x H x W), params (M)] for every stage, from one forward pass."""
    shapes: dict[int, str] = {}
    hooks = []
    named = stages(model)
    for i, (_, module) in enumerate(named):
        last = module[-1] if isinstance(module, nn.ModuleList) else module
        hooks.append(last.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(i, _shape(o))))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return [[name, shapes.get(i, "-"), f"{count_params_m(module):.3f}"] for i, (name, module) in enumerate(named)]


def _config(spec: Sequence[str]) -> Any:
    from sweeper.naming import compose_config  # the documented exception: models/ stays Hydra-free

    if len(spec) == 1 and "=" not in spec[0]:
        return compose_config(spec[0], extra=["init=scratch"])
    return compose_config([*spec, "init=scratch"])


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m models.summary", description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="+", help="one notes name, or Hydra overrides (key=value ...)")
    parser.add_argument("--size", type=int, default=321, help="input side for the shape column (default 321)")
    args = parser.parse_args(argv)
    cfg = _config(args.spec)
    model = build_model(cfg)
    print(f"{cfg.backbone.family} {cfg.model.name}, dataset={cfg.dataset.name} "
          f"({cfg.dataset.num_classes} classes), input 1x3x{args.size}x{args.size}")
    print(tabulate(summary_rows(model, args.size), headers=["stage", "output (CxHxW)", "params (M)"]))
    print(f"{count_params_m(model):.2f}")


if __name__ == "__main__":
    main()
