"""The name codec: a config <-> its dotted experiment name.

A name such as ``camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16``
is a list of tokens; each token owns a few config values (``../shared/reference/TOKENS.md`` decodes
them from the original code). ``parse(name)`` gives the Hydra overrides of a name, ``compose(cfg)`` the
canonical name of a config, and ``canonical(name) == compose(compose_config(name))``.

Canonical order: dataset, init, imagesize, DenseNet options, backbone, SE, decoder, head, stride,
scale, schedule, checkpointing, GPUs, annotations. Tokens that only repeat a default are left out of
canonical names, except dataset, init, imagesize, backbone and scale, which every name states.
Legacy spellings (``res100``, ``cs``, ``pascal``, ``densenet121k32``, ``deeplabv2.camvid..``) parse to
the canonical tokens; annotation tokens (``2ndtime``, ``fixDim``, ``bugfix``...) change no value and
are kept, in order, in ``annotations``.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

#: DenseNet block layouts by the L of ``dense{L}k{K}`` (L = number of dense layers; 31 = 30, VOC only).
DENSE_LAYOUTS: dict[int, list[int]] = {
    30: [6, 8, 8, 8],
    31: [6, 8, 8, 8],
    42: [6, 8, 16, 12],
    121: [6, 12, 24, 16],
}
DATASETS = {"synthetic": "synthetic", "voc": "voc", "pascal": "voc", "camvid": "camvid",
            "cityscapes": "cityscapes", "cs": "cityscapes", "aerial": "aerial"}
DECODERS = ["newdid6_senet", "newdid4_1", "newdid6", "newdid4", "newdid2", "newdid"]
#: Tokens that change no value; they are recorded in ``annotations``.
ANNOTATIONS = ["2ndtime", "fixDim", "bugfix", "nodropout", "fortune", "newtp", "forview", "fusiontest"]
#: Tokens that restate a default (or name the model family loosely): accepted and dropped.
NO_OPS = {
    "deeplabv2": "the model family label; the backbone tokens decide the network",
    "newbaseline": "crop padding value 255, the default",
    "baselline": "typo of newbaseline",
    "compression": "compression 0.5, the default",
    "py": "a script suffix",
}
#: Defaults a ResNet/DenseNet run is trained with, by (family, init): the train/ recipe.
RECIPES = {("densenet", "scratch"): "densenet", ("densenet", "imagenet"): "densenet",
           ("resnet", "scratch"): "resnet_scratch", ("resnet", "imagenet"): "resnet_pretrained"}
#: Keys that do not change what a run computes: left out of the config hash.
UNHASHED_KEYS = ("name", "tracking", "launcher", "output_root", "device", "annotations", "force",
                 "optuna", "sweep", "hydra")
UNHASHED_NESTED_KEYS = (("dataset", "root"), ("train", "base_lr"),  # base_lr only defaults `lr`
                        ("dataset", "reader"), ("dataset", "tokens"), ("dataset", "order"))  # the declaration


class UnknownTokenError(ValueError):
    """A name holds a token that the codec does not know."""


# --------------------------------------------------------------------------------------------------
# Parsing: tokens -> settings


@dataclass
class _Parsed:
    """What the tokens of one name say, before defaults that depend on several tokens are applied."""

    dataset: str | None = None
    init: str | None = None
    recipe: str | None = None        # explicit train recipe (noscratch / scratch_no)
    backbone: str | None = None      # a conf/backbone option
    growth: int | None = None
    model: str | None = None
    toy: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    annotations: list[str] = field(default_factory=list)


def _number(text: str) -> float:
    """``1p5`` -> 1.5, ``2e-4`` -> 2e-4, ``1p5e-3`` -> 1.5e-3."""
    return float(text.replace("p", "."))


def _lr(text: str) -> float:
    """The lr tokens: ``1e-2`` is 0.01; a bare multiple (``2``, ``1p5``) counts in units of 1e-3."""
    value = _number(text)
    return value if "e" in text else value * 1e-3


def _dense(match: re.Match, p: _Parsed) -> None:
    layers, growth = int(match["layers"]), int(match["growth"])
    if layers not in DENSE_LAYOUTS:
        raise UnknownTokenError(
            f"unknown DenseNet depth in {match.group(0)!r}: known L values are {sorted(DENSE_LAYOUTS)}")
    p.backbone = f"dense{30 if layers == 31 else layers}k{growth}"


def _set(**values: Any) -> Callable[[re.Match, _Parsed], None]:
    def apply(match: re.Match, p: _Parsed) -> None:
        p.values.update(values)
    return apply


def _attr(**attrs: Any) -> Callable[[re.Match, _Parsed], None]:
    def apply(match: re.Match, p: _Parsed) -> None:
        for key, value in attrs.items():
            setattr(p, key, value)
    return apply


def _imagesize(match: re.Match, p: _Parsed) -> None:
    h, w = int(match["h"]), int(match["w"] or match["h"])
    p.values["imagesize"] = h if h == w else [h, w]


def _testsize(match: re.Match, p: _Parsed) -> None:
    p.values["eval.tile"] = [int(match["h"]), int(match["w"])]


def _annotation(match: re.Match, p: _Parsed) -> None:
    p.annotations.append(match.group(0))


def _dataset(match: re.Match, p: _Parsed) -> None:
    p.dataset = DATASETS[match.group(0)]  # a later dataset token wins: `camvid.aerial` is aerial


def _voc_train(match: re.Match, p: _Parsed) -> None:
    p.dataset = "voc"
    p.values["dataset.train_split"] = "train"


def _camvid_test_protocol(match: re.Match, p: _Parsed) -> None:
    p.values.update({"dataset.train_split": "train_val", "dataset.eval_split": "test"})


def _tenfold_steps(milestones: list[int]) -> dict[str, list]:
    """A schedule that divides the lr by 10 after each milestone epoch (the DenseNet recipes)."""
    return {"train.milestones": milestones,
            "train.lr_factors": [float(f"1e-{i}") for i in range(1, len(milestones) + 1)]}


def _lrsteps(match: re.Match, p: _Parsed) -> None:
    p.values.update(_tenfold_steps([int(x) for x in match["v"].split("-")]))


def _lrx(match: re.Match, p: _Parsed) -> None:
    p.values.update({"lr": int(match["m"]) * 1e-3, **_tenfold_steps([5, 8])})


def _gpus(match: re.Match, p: _Parsed) -> None:
    p.values["gpus"] = int(match["n"])
    if match["bugfix"]:
        p.annotations.append("bugfix")


def _fixdim_scale(match: re.Match, p: _Parsed) -> None:
    p.annotations.append("fixDim")
    p.values["scale"] = int(match["n"])


def _scratch_actually(match: re.Match, p: _Parsed) -> None:
    p.init = "scratch"
    p.values["imagesize"] = int(match["n"])


def _slim(match: re.Match, p: _Parsed) -> None:
    p.backbone = p.backbone or "resnet101"
    p.values.update({"backbone.preact": True, "backbone.output_stride": 8, "model.head_kernel": 1})


_Action = Callable[[re.Match, _Parsed], None]

#: The token table: (regular expression, action, example spellings for error messages).
TOKENS: list[tuple[str, _Action, tuple[str, ...]]] = [
    (r"synthetic|voc|pascal|camvid|cityscapes|cs|aerial", _dataset, tuple(DATASETS)),
    (r"voc_train", _voc_train, ("voc_train",)),
    (r"realtest|on_trainval", _camvid_test_protocol, ("realtest", "on_trainval")),
    (r"scratch", _attr(init="scratch"), ("scratch",)),
    (r"imagenet|pretrained|scratch_no", _attr(init="imagenet"), ("imagenet", "scratch_no")),
    (r"noscratch", _attr(init="imagenet", recipe="resnet_scratch"), ("noscratch",)),
    (r"scratch_ac(?:tu|u)r?ally(?P<n>\d+)", _scratch_actually, ("scratch_actually321",)),
    (r"(?:imagesize|imgsize)(?P<h>\d+)(?:x(?P<w>\d+))?", _imagesize, ("imagesize321", "imagesize360x480")),
    (r"(?:test(?P<h>\d+)x(?P<w>\d+))|(?:(?P<h2>\d+)x(?P<w2>\d+)test)",
     lambda m, p: _testsize(_TestMatch(m), p), ("test360x480",)),
    (r"stem", _set(**{"backbone.stem": True}), ("stem",)),
    (r"nocompression|nocompress", _set(**{"backbone.compression": 1.0}), ("nocompression",)),
    (r"compression(?P<v>\d+p\d+)", lambda m, p: p.values.update({"backbone.compression": _number(m["v"])}),
     ("compression0p25",)),
    (r"nopooling|removeLatterPooling", _set(**{"backbone.latter_pooling": False}), ("nopooling",)),
    (r"dense(?:net)?(?P<layers>\d+)k(?P<growth>\d+)", _dense, ("dense30k48", "densenet121k32")),
    (r"k(?P<growth>\d+)", lambda m, p: setattr(p, "growth", int(m["growth"])), ("k48",)),
    (r"dense30k36\(actually48\)", lambda m, p: _dense(re.match(
        r"dense(?P<layers>30)k(?P<growth>48)", "dense30k48"), p), ("dense30k36(actually48)",)),
    (r"res(?:net)?50", _attr(backbone="resnet50"), ("resnet50", "res50")),
    (r"res(?:net)?10[01]", _attr(backbone="resnet101"), ("resnet101", "res100")),
    (r"slim", _slim, ("slim",)),
    (r"senet(?P<n>\d+)", lambda m, p: p.values.update({"backbone.senet": int(m["n"])}), ("senet4",)),
    (r"senet(?:\(ratio=8\))?", _set(**{"backbone.senet": 8}), ("senet", "senet(ratio=8)")),
    (r"transitionsenet(?P<n>\d+)",
     lambda m, p: p.values.update({"backbone.transition_senet": int(m["n"])}), ("transitionsenet4",)),
    (r"did(?P<n>\d*)", lambda m, p: p.values.update(
        {"model.decoder": "did", "model.did_ratio": int(m["n"] or 8)}), ("did", "did4")),
    (r"did4_1", _set(**{"model.decoder": "newdid4_1"}), ("did4_1",)),
    (r"|".join(DECODERS), lambda m, p: p.values.update({"model.decoder": m.group(0)}), tuple(DECODERS)),
    (r"deeplabv3", _attr(model="deeplabv3"), ("deeplabv3",)),
    (r"noASPP", _set(**{"model.aspp": False, "model.multi_grid": [1, 2, 1]}), ("noASPP",)),
    (r"aspp", _set(**{"model.head": "aspp"}), ("aspp",)),
    (r"dilation6", _set(**{"model.head_kernel": 3}), ("dilation6",)),
    (r"stride(?P<n>8|16)", lambda m, p: p.values.update({"backbone.output_stride": int(m["n"])}),
     ("stride8",)),
    (r"scale(?P<n>\d+)", lambda m, p: p.values.update({"scale": int(m["n"])}), ("scale16",)),
    (r"toy", _attr(toy=True), ("toy",)),
    (r"fixDim\((?P<n>\d+)\)", _fixdim_scale, ("fixDim(8)",)),
    (r"lr(?P<v>\d+(?:p\d+)?(?:e-?\d+)?)", lambda m, p: p.values.update({"lr": _lr(m["v"])}),
     ("lr1e-2", "lr1p5", "lr2e-3")),
    (r"lrx(?P<m>\d+)", _lrx, ("lrx1", "lrx3")),
    (r"lrsteps(?P<v>\d+(?:-\d+)*)", _lrsteps, ("lrsteps5-8",)),
    (r"(?:regularization|wd)(?P<v>\d+(?:p\d+)?e-?\d+)",
     lambda m, p: p.values.update({"train.weight_decay": _number(m["v"])}), ("regularization2e-4",)),
    (r"batchsize(?P<n>\d+)", lambda m, p: p.values.update({"batch_size": int(m["n"])}), ("batchsize16",)),
    (r"lrmultfix", _set(**{"train.head_lr_mult": 5.0}), ("lrmultfix",)),
    (r"tune", _set(**{"train.freeze_bn": True}), ("tune",)),
    (r"betagammafix", _set(**{"train.freeze_bn_affine": True}), ("betagammafix",)),
    (r"sublinear", _set(**{"model.checkpointing": True}), ("sublinear",)),
    (r"(?P<n>\d+)gpu(?P<bugfix>_bugfix)?", _gpus, ("3gpu", "4gpu_bugfix")),
    (r"|".join(re.escape(a) for a in ANNOTATIONS), _annotation, tuple(ANNOTATIONS)),
    (r"|".join(NO_OPS), lambda m, p: None, tuple(NO_OPS)),
]


class _TestMatch:
    """Normalises the two spellings of the evaluation tile token (``test360x480`` / ``360x480test``)."""

    def __init__(self, match: re.Match):
        self._match = match

    def __getitem__(self, key: str) -> str:
        return self._match[key] or self._match[key + "2"]


_COMPILED = [(re.compile(pattern), action) for pattern, action, _ in TOKENS]
KNOWN_SPELLINGS = sorted({s for _, _, examples in TOKENS for s in examples})


def split_tokens(name: str) -> list[str]:
    """The tokens of a name; empty tokens (``camvid..imagesize321``) are skipped."""
    name = name.strip()
    if not name:
        raise UnknownTokenError("empty name: expected dotted tokens such as "
                                "'camvid.scratch.imagesize321.dense30k48.scale16'")
    return [token for token in name.split(".") if token]


def _read_tokens(name: str) -> _Parsed:
    parsed = _Parsed()
    for token in split_tokens(name):
        for pattern, action in _COMPILED:
            match = pattern.fullmatch(token)
            if match:
                action(match, parsed)
                break
        else:
            near = difflib.get_close_matches(token, KNOWN_SPELLINGS, n=4, cutoff=0.5)
            hint = f"; nearest known: {', '.join(near)}" if near else ""
            raise UnknownTokenError(
                f"unknown token {token!r} in name {name!r}{hint}. "
                f"Known tokens are listed by `python -m sweeper.naming tokens`.")
    return parsed


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return str(value)


def parse(name: str) -> list[str]:
    """Hydra overrides of a name: the group choices first, then the values the tokens own."""
    p = _read_tokens(name)
    dataset = p.dataset or "synthetic"
    backbone = p.backbone
    if backbone is None:  # no backbone token: the toy scripts were DenseNet k36, the others ResNet-101
        dense_hint = p.toy or p.growth is not None or any(k.startswith("backbone.") and k != "backbone.output_stride"
                                                          for k in p.values)
        backbone = "dense30k36" if dense_hint and "backbone.preact" not in p.values else "resnet101"
    family = "densenet" if backbone.startswith("dense") else "resnet"
    init = p.init or ("scratch" if family == "densenet" else "imagenet")
    recipe = p.recipe or RECIPES[(family, init)]
    overrides = [f"dataset={dataset}", f"backbone={backbone}", f"model={p.model or 'deeplabv2'}",
                 f"train={recipe}", f"init={init}"]
    values = dict(p.values)
    if p.growth is not None and family == "densenet":
        values.setdefault("backbone.growth", p.growth)
    if p.toy:
        values.setdefault("scale", 32)
    if p.annotations:
        values["annotations"] = p.annotations
    overrides += [f"{key}={_format(value)}" for key, value in values.items()]
    return overrides


# --------------------------------------------------------------------------------------------------
# Config composition and hashing


def compose_config(spec: str | Sequence[str], extra: Sequence[str] = ()) -> DictConfig:
    """The run config of a name (``str``) or of Hydra overrides (a list), plus ``extra`` overrides."""
    overrides = parse(spec) if isinstance(spec, str) else list(spec)
    return _compose(tuple(overrides) + tuple(extra))


@lru_cache(maxsize=256)
def _compose(overrides: tuple[str, ...]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app: same config tree
        cfg = hydra_compose(config_name="sweep", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="sweep", overrides=list(overrides))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config without the keys that do not change what a run computes."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(data, dict)
    for key in UNHASHED_KEYS:
        data.pop(key, None)
    for group, key in UNHASHED_NESTED_KEYS:
        data.get(group, {}).pop(key, None)
    return data


def config_hash(cfg: DictConfig) -> str:
    """A short, process-stable hash of the semantic part of a resolved config."""
    text = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_key(name: str, config_hash: str) -> str:
    """The run key of a canonical name (which starts with the dataset) and its config hash."""
    return f"{name}@{config_hash}"


# --------------------------------------------------------------------------------------------------
# Composing: config -> canonical name


def _value_token(prefix: str, value: float) -> str:
    """``lr`` + 1.5e-3 -> ``lr1p5e-3``; ``regularization`` + 2e-4 -> ``regularization2e-4``."""
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".").replace(".", "p")
    return f"{prefix}{mantissa}e{int(exponent)}"


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def _recipe_defaults(recipe: str) -> DictConfig:
    return _compose((f"train={recipe}",)).train


def _dataset_defaults(dataset: str) -> DictConfig:
    return _compose((f"dataset={dataset}",)).dataset


def _backbone_token(bb: DictConfig) -> str:
    if bb.family == "resnet":
        return f"resnet{bb.depth}"
    blocks = _plain(bb.blocks)
    layers = next((n for n, layout in DENSE_LAYOUTS.items() if layout == blocks), sum(blocks))
    return f"dense{layers}k{bb.growth}"


def _init_token(cfg: DictConfig) -> tuple[str, str]:
    """The init token and the train recipe it implies."""
    family = cfg.backbone.family
    if cfg.init == "scratch":
        return "scratch", RECIPES[(family, "scratch")]
    if family == "resnet" and _recipe_matches(cfg, "resnet_scratch") and not _recipe_matches(
            cfg, "resnet_pretrained"):
        return "noscratch", "resnet_scratch"
    return "imagenet", RECIPES[(family, "imagenet")]


def _recipe_matches(cfg: DictConfig, recipe: str) -> bool:
    ref = _recipe_defaults(recipe)
    return (cfg.lr == ref.base_lr and cfg.train.weight_decay == ref.weight_decay
            and _plain(cfg.train.milestones) == _plain(ref.milestones))


def _dataset_token(cfg: DictConfig) -> str:
    ds = cfg.dataset
    if ds.name == "voc" and ds.train_split == "train":
        return "voc_train"
    return ds.name


def _imagesize_token(size: Any) -> str:
    size = _plain(size)
    if isinstance(size, list):
        h, w = size
        return f"imagesize{h}" if h == w else f"imagesize{h}x{w}"
    return f"imagesize{size}"


def _densenet_options(bb: DictConfig) -> list[str]:
    tokens = ["stem"] if bb.stem else []
    if bb.compression == 1.0:
        tokens.append("nocompression")
    elif bb.compression != 0.5:
        tokens.append("compression" + f"{bb.compression:g}".replace(".", "p"))
    if not bb.latter_pooling:
        tokens.append("nopooling")
    return tokens


def _model_tokens(cfg: DictConfig) -> list[str]:
    m, bb = cfg.model, cfg.backbone
    tokens = []
    if bb.family == "densenet" and bb.senet:
        tokens.append(f"senet{bb.senet}")
    if bb.family == "densenet" and bb.transition_senet:
        tokens.append(f"transitionsenet{bb.transition_senet}")
    decoder = m.get("decoder", "none")
    if decoder == "did":
        tokens.append(f"did{m.did_ratio}")
    elif decoder not in (None, "none"):
        tokens.append(decoder)
    if m.name == "deeplabv3":
        tokens.append("deeplabv3")
        if not m.get("aspp", True):
            tokens.append("noASPP")
    else:
        if m.get("head") == "aspp":
            tokens.append("aspp")
        slim = bb.family == "resnet" and bb.get("preact", False)
        if m.get("head_kernel") != (1 if slim else 3):
            tokens.append("dilation6" if m.get("head_kernel") == 3 else f"headkernel{m.get('head_kernel')}")
    if bb.output_stride != (8 if bb.family == "resnet" and bb.get("preact", False) else 16):
        tokens.append(f"stride{bb.output_stride}")
    return tokens


def _schedule_tokens(cfg: DictConfig, recipe: str) -> list[str]:
    ref = _recipe_defaults(recipe)
    tokens = [f"scale{cfg.scale}"]
    if cfg.lr != ref.base_lr:
        tokens.append(_value_token("lr", cfg.lr))
    schedule = (_plain(cfg.train.milestones), _plain(cfg.train.lr_factors))
    if schedule != (_plain(ref.milestones), _plain(ref.lr_factors)):
        tokens.append("lrsteps" + "-".join(str(m) for m in cfg.train.milestones))
    if cfg.train.weight_decay != ref.weight_decay:
        tokens.append(_value_token("regularization", cfg.train.weight_decay))
    if cfg.batch_size != _dataset_defaults(cfg.dataset.name).batch_size:
        tokens.append(f"batchsize{cfg.batch_size}")
    for key, token in (("head_lr_mult", "lrmultfix"), ("freeze_bn", "tune"), ("freeze_bn_affine", "betagammafix")):
        if cfg.train.get(key) != ref.get(key):
            tokens.append(token)
    if cfg.model.get("checkpointing", False):
        tokens.append("sublinear")
    if cfg.gpus != 1:
        tokens.append(f"{cfg.gpus}gpu")
    tile = _plain(cfg.eval.get("tile"))
    if tile is not None and tile != _plain(cfg.imagesize):
        h, w = tile if isinstance(tile, list) else (tile, tile)
        tokens.append(f"test{h}x{w}")
    return tokens


def compose(cfg: DictConfig) -> str:
    """The canonical name of a (resolved or resolvable) run config."""
    init, recipe = _init_token(cfg)
    bb = cfg.backbone
    tokens = [_dataset_token(cfg), init, _imagesize_token(cfg.imagesize)]
    if bb.family == "densenet":
        tokens += _densenet_options(bb)
    tokens.append(_backbone_token(bb))
    if bb.family == "resnet" and bb.get("preact", False):
        tokens.append("slim")
    tokens += _model_tokens(cfg)
    tokens += _schedule_tokens(cfg, recipe)
    tokens += [str(a) for a in cfg.get("annotations") or []]
    return ".".join(tokens)


def canonical(name: str) -> str:
    """The canonical spelling of a name."""
    return compose(compose_config(name))


def apply_seed_name(cfg: DictConfig, explicit: Iterable[str]) -> DictConfig:
    """The config of ``cfg.name`` (a seed name), with the explicit command-line overrides on top."""
    explicit = [o for o in explicit if not o.split("=", 1)[0].lstrip("+~") == "name"]
    return compose_config(str(cfg.name), extra=explicit)


# --------------------------------------------------------------------------------------------------
# Command line


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper.naming", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("parse", help="print the Hydra overrides of a name, one per line").add_argument("name")
    sub.add_parser("canonical", help="print the canonical spelling of a name").add_argument("name")
    compose_cmd = sub.add_parser("compose", help="print the canonical name of the config of overrides")
    compose_cmd.add_argument("overrides", nargs="*")
    sub.add_parser("hash", help="print the config hash of a name").add_argument("name")
    sub.add_parser("tokens", help="list the known token spellings")
    args = parser.parse_args(argv)
    try:
        if args.command == "parse":
            print("\n".join(parse(args.name)))
        elif args.command == "canonical":
            print(canonical(args.name))
        elif args.command == "compose":
            print(compose(compose_config(list(args.overrides))))
        elif args.command == "hash":
            print(config_hash(compose_config(args.name)))
        else:
            print("\n".join(KNOWN_SPELLINGS))
    except Exception as error:  # noqa: BLE001 - every failure becomes one line and exit 2
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
