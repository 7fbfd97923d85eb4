"""The token table: one entry per token, in canonical order.

Each entry owns its slot in the canonical order (its place in ``TABLE``), how it is read (``pattern``,
every accepted spelling, and ``decode``: the settings a match makes) and how it is written from a
config (``encode``: the canonical spelling for a config, or None when the config does not need it).
Settings are config keys (``backbone.stem``), group choices (``dataset``, ``backbone``, ``model``,
``train``, ``eval``), ``Hint`` values that apply only when no token sets the key, and the markers
``ANNOTATE``/``GROWTH``/``TOY``/``V2_PREFIX`` that the codec resolves. ``encode`` gets the semantic
config of the run and the one its group choices imply (``Context``); the codec emits a token only
when every value the token sets is the run's, so a token can never lie about a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data.registry import dataset_of_token, datasets
from models import families
from models.errors import ModelConfigError
from sweeper.naming.configs import DENSE_LAYOUTS, GROWTHS, LEGACY_DEPTHS, option_values
from sweeper.naming.errors import BadNameError, UnknownTokenError
from sweeper.naming.values import format_number, read_number

ANNOTATE = "@annotation"  # appended to ``annotations`` (changes no value)
GROWTH = "@growth"        # ``k48``: the growth of the default DenseNet
TOY = "@toy"              # ``toy``: a DenseNet k36 unless a backbone token says otherwise, scale 32
V2_PREFIX = "@deeplabv2"  # the old ``deeplabv2.`` prefix (the CamVid ResNet protocol, TOKENS.md 1b)
GROUPS = ("dataset", "backbone", "model", "train", "eval")

#: Tokens that change no value; they are recorded, in order, in ``annotations``.
ANNOTATIONS = ("2ndtime", "fixDim", "bugfix", "nodropout", "fortune", "newtp", "forview", "fusiontest")
#: Tokens that restate a default (or name the model family loosely): accepted and dropped.
NO_OPS = {
    "newbaseline": "crop padding value 255, the default",
    "baselline": "typo of newbaseline",
    "compression": "compression 0.5, the default",
    "py": "a script suffix",
}
DECODERS = ("newdid6_senet", "newdid4_1", "newdid6", "newdid4", "newdid2", "newdid")
#: The family of the generated ``dense{L}k{K}`` options (conf/backbone/_densenet.yaml): the family that
#: the DenseNet tokens (``dense30k48``, ``k48``, ``toy``) spell.
DENSE_FAMILY = "densenet"
#: Multi-token spellings of old names that are one token (TOKENS.md 1b: the CamVid recipe on aerial).
PHRASES = {("camvid", "aerial"): "aerial"}


@dataclass(frozen=True)
class Hint:
    """A setting that applies only when no token of the name sets the key (``toy``'s scale 32)."""

    value: Any


@dataclass(frozen=True)
class Context:
    """What ``encode`` reads: the run's semantic config and the one its group choices imply."""

    run: dict
    implied: dict

    def get(self, key: str, source: str = "run") -> Any:
        node: Any = self.run if source == "run" else self.implied
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def differs(self, key: str) -> bool:
        return self.get(key) != self.get(key, "implied")

    @property
    def family(self) -> str:
        return str(self.get("backbone.family"))

    @property
    def slim(self) -> bool:
        return self.family == "resnet" and bool(self.get("backbone.preact"))


Decode = Callable[[re.Match], dict[str, Any]]
Encode = Callable[[Context], str | None]


@dataclass(frozen=True)
class Token:
    """One token: its slot (its place in ``TABLE``), how it reads and how it is written."""

    slot: str
    pattern: str
    decode: Decode
    encode: Encode | None = None
    examples: tuple[str, ...] = ()
    doc: str = ""
    corrects: bool = False  # an ``actually`` token: overrides what an earlier token of the name said
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


def _set(**values: Any) -> Decode:
    return lambda match: dict(values)


def _dotted(**values: Any) -> Decode:
    """``_dotted(backbone__stem=True)`` sets ``backbone.stem``."""
    return _set(**{key.replace("__", "."): value for key, value in values.items()})


def _flag(key: str, token: str, on: Any = True) -> Encode:
    return lambda c: token if c.get(key) == on and c.differs(key) else None


# --------------------------------------------------------------------------------------------------
# Decoders and encoders that need more than one line


def _dataset_pattern() -> str:
    return "|".join(sorted(map(re.escape, dataset_of_token()), key=len, reverse=True))


def _dataset(match: re.Match) -> dict[str, Any]:
    return {"dataset": dataset_of_token()[match.group(0)]}


def _dataset_token(c: Context) -> str:
    name = str(c.get("dataset.name"))
    if name == "voc" and c.get("dataset.train_split") == "train":
        return "voc_train"
    return datasets()[name].token


def _recipe_matches(c: Context, recipe: str) -> bool:
    ref = option_values("train", recipe)
    return (c.get("lr"), c.get("train.weight_decay"), c.get("train.milestones")) == (
        ref["base_lr"], ref["weight_decay"], ref["milestones"])


def family(name: Any) -> families.Family:
    """The declaration of a backbone family (``models/families.py``), or BadNameError."""
    try:
        return families.family(name)
    except ModelConfigError as error:
        raise BadNameError(str(error)) from None


def family_of_option(option: str) -> families.Family:
    """The family declaration of a backbone option, or BadNameError."""
    name = families.family_of(option)
    if name is None:
        raise BadNameError(f"no backbone option {option!r}: conf/backbone/{option}.yaml is missing or names no "
                           f"`family:` (the generated DenseNet options: `python -m sweeper.naming backbones --write`)")
    return family(name)


def recipe(family_name: Any, init: str) -> str:
    """The train recipe of a family's init (its declaration's ``recipes``), or BadNameError."""
    try:
        return family(family_name).recipe(init)
    except ModelConfigError as error:
        raise BadNameError(str(error)) from None


def init_choice(c: Context) -> tuple[str, str]:
    """(init token, train recipe) of a run: ``noscratch`` is ImageNet weights on the scratch recipe
    (where the family's two recipes differ)."""
    scratch, imagenet = recipe(c.family, "scratch"), recipe(c.family, "imagenet")
    if c.get("init") == "scratch":
        return "scratch", scratch
    if scratch != imagenet and _recipe_matches(c, scratch) and not _recipe_matches(c, imagenet):
        return "noscratch", scratch
    return "imagenet", imagenet


def _imagesize(match: re.Match) -> dict[str, Any]:
    h, w = int(match["h"]), int(match["w"] or match["h"])
    return {"imagesize": h if h == w else [h, w]}


def _imagesize_token(c: Context) -> str:
    size = c.get("imagesize")
    if isinstance(size, list):
        h, w = size
        return f"imagesize{h}" if h == w else f"imagesize{h}x{w}"
    return f"imagesize{size}"


def _test_tile(match: re.Match) -> dict[str, Any]:
    return {"eval.tile": [int(match["h"] or match["h2"]), int(match["w"] or match["w2"])]}


def _test_tile_token(c: Context) -> str | None:
    tile = c.get("eval.tile")
    if tile is None or tile == c.get("imagesize"):
        return None
    h, w = tile if isinstance(tile, list) else (tile, tile)
    return f"test{h}x{w}"


def _compression_token(c: Context) -> str | None:
    if c.family != DENSE_FAMILY or not c.differs("backbone.compression"):
        return None
    value = c.get("backbone.compression")
    return "nocompression" if value == 1.0 else "compression" + format_number(value)


def _dense(match: re.Match) -> dict[str, Any]:
    layers, growth = int(match["layers"]), int(match["growth"])
    layers = LEGACY_DEPTHS.get(layers, layers)
    if growth not in GROWTHS:
        raise UnknownTokenError(f"DenseNet growth {growth} of {match.group(0)!r} is outside "
                                f"{GROWTHS.start}..{GROWTHS.stop - 1} (GROWTHS in sweeper/naming/configs.py)")
    if layers not in DENSE_LAYOUTS:
        known = sorted({*DENSE_LAYOUTS, *LEGACY_DEPTHS})
        raise UnknownTokenError(f"unknown DenseNet depth in {match.group(0)!r}: known L values are {known} "
                                f"(a new depth is one line of DENSE_LAYOUTS in sweeper/naming/configs.py)")
    return {"backbone": f"dense{layers}k{growth}"}


def backbone_option(c: Context) -> str:
    """The ``backbone`` group option nearest a run's backbone (escape tokens state the rest): a DenseNet's
    ``dense{L}k{K}``, else the family's declared option that shares the most values with the run's (ties:
    the first by name)."""
    if c.family == DENSE_FAMILY:
        blocks, growth = c.get("backbone.blocks"), c.get("backbone.growth")
        layers = next((n for n, layout in DENSE_LAYOUTS.items() if layout == blocks), 30)
        return f"dense{layers}k{growth if growth in GROWTHS else 36}"
    own = [o.name for o in families.options().values() if o.family == c.family]
    if not own:
        raise BadNameError(f"backbone.family={c.family!r} has no option with `tokens:` in conf/backbone/, so no "
                           f"name can spell it: add `tokens: [<name token>]` to its file")
    run = c.run.get("backbone") or {}
    return max(own, key=lambda option: (sum(run.get(k) == v for k, v in option_values("backbone", option).items()),
                                        [-ord(ch) for ch in option]))


def _backbone_pattern() -> str:
    return "|".join(sorted(map(re.escape, families.option_of_token()), key=len, reverse=True))


def _decoder(match: re.Match) -> dict[str, Any]:
    return {"model.decoder": match.group(0)}


def _did(match: re.Match) -> dict[str, Any]:
    return {"model.decoder": "did", "model.did_ratio": int(match["n"] or 8)}


def _decoder_token(c: Context) -> str | None:
    decoder = c.get("model.decoder")
    if decoder == "did":
        return f"did{c.get('model.did_ratio')}"
    return str(decoder) if decoder in DECODERS else None


def _slim(match: re.Match) -> dict[str, Any]:
    return {"backbone.preact": True, "backbone": Hint("resnet101"), "backbone.output_stride": Hint(8),
            "model.head_kernel": Hint(1)}


def _head_kernel_token(c: Context) -> str | None:
    kernel = c.get("model.head_kernel")
    if c.get("model.name") != "deeplabv2" or kernel == (1 if c.slim else c.get("model.head_kernel", "implied")):
        return None
    return "dilation6" if kernel == 3 else f"headkernel{kernel}"


def _stride_token(c: Context) -> str | None:
    stride = c.get("backbone.output_stride")
    return None if stride == (8 if c.slim else c.get("backbone.output_stride", "implied")) else f"stride{stride}"


def _lr(match: re.Match) -> dict[str, Any]:
    """``lr1e-2`` is 0.01; a bare multiple (``lr2``, ``lr1p5``) counts in units of 1e-3 (the notes)."""
    text = match["v"]
    value = read_number(text)
    return {"lr": value if "e" in text else value * 1e-3}


def tenfold_steps(milestones: list[int]) -> dict[str, Any]:
    """A schedule that divides the lr by 10 after each milestone epoch (the DenseNet recipes)."""
    return {"train.milestones": milestones,
            "train.lr_factors": [float(f"1e-{i}") for i in range(1, len(milestones) + 1)]}


def _lrsteps_token(c: Context) -> str | None:
    if not (c.differs("train.milestones") or c.differs("train.lr_factors")):
        return None
    return "lrsteps" + "-".join(str(m) for m in c.get("train.milestones") or [])


def _gpus(match: re.Match) -> dict[str, Any]:
    settings: dict[str, Any] = {"gpus": int(match["n"])}
    if match["bugfix"]:
        settings[ANNOTATE] = "bugfix"
    return settings


def multiscale_token(c: Context) -> str | None:
    return "multiscale" if c.get("eval.scales") == option_values("eval", "multiscale")["scales"] else None


def _value(prefix: str, key: str, number: Callable[[Any], str] = str) -> Encode:
    return lambda c: f"{prefix}{number(c.get(key))}" if c.differs(key) else None


def _sci(value: Any) -> str:
    return format_number(float(value), scientific=True)


# --------------------------------------------------------------------------------------------------
# The table (canonical order)

TABLE: list[Token] = [
    Token("model family", r"deeplabv2", _set(**{V2_PREFIX: True}), None, ("deeplabv2",),
          "the old prefix of every script: the model comes from the other tokens; on CamVid a ResNet name "
          "with it and without realtest/on_trainval trained on train and evaluated on val"),
    Token("dataset", _dataset_pattern(), _dataset, _dataset_token, tuple(dataset_of_token()),
          "the dataset (conf/dataset/<name>.yaml `tokens`; the first is canonical)"),
    Token("dataset", r"voc_train", _set(dataset="voc", **{"dataset.train_split": "train"}), None, ("voc_train",),
          "VOC trained on `train` (1,464) instead of train_aug"),
    Token("split protocol", r"realtest|on_trainval",
          _set(**{"dataset.train_split": "train_val", "dataset.eval_split": "test"}), None,
          ("realtest", "on_trainval"), "CamVid: train on train_val, evaluate on test (the dataset default)"),
    Token("init", r"scratch", _set(init="scratch"), lambda c: init_choice(c)[0], ("scratch",),
          "random init; writes the init slot (scratch, imagenet or noscratch)"),
    Token("init", r"imagenet|pretrained|scratch_no", _set(init="imagenet"), None, ("imagenet", "scratch_no"),
          "ImageNet weights (the recipe of the backbone family)"),
    Token("init", r"noscratch", _set(init="imagenet", train="resnet_scratch"), None, ("noscratch",),
          "ImageNet weights with the ResNet scratch recipe"),
    Token("init", r"scratch_ac(?:tu|u)r?ally(?P<n>\d+)",
          lambda m: {"init": "scratch", "imagesize": int(m["n"])}, None, ("scratch_actually321",),
          "corrects a stale imagesize: from scratch at crop N", corrects=True),
    Token("imagesize", r"imagesize(?P<h>\d+)(?:x(?P<w>\d+))?", _imagesize, _imagesize_token,
          ("imagesize321", "imagesize360x480"), "training crop (and evaluation tile), N or HxW"),
    Token("imagesize", r"imgsize(?P<h>\d+)(?:x(?P<w>\d+))?", _imagesize, None, ("imgsize800",),
          "the real crop of a name whose imagesize token is stale (the cs stride-8 runs)", corrects=True),
    Token("DenseNet stem", r"stem", _dotted(backbone__stem=True), _flag("backbone.stem", "stem"), ("stem",),
          "three 3x3 convs + 2x2 max-pool"),
    Token("DenseNet compression", r"nocompression|nocompress|compression(?P<v>\d+p\d+)",
          lambda m: {"backbone.compression": read_number(m["v"]) if m["v"] else 1.0}, _compression_token,
          ("nocompression", "compression0p25"), "transition compression (1.0 or the value)"),
    Token("DenseNet pooling", r"nopooling|removeLatterPooling", _dotted(backbone__latter_pooling=False),
          _flag("backbone.latter_pooling", "nopooling", False), ("nopooling",),
          "no 2x2 stride-1 avg-pool in stride-1 transitions"),
    Token("backbone", r"dense(?:net)?(?P<layers>\d+)k(?P<growth>\d+)", _dense, backbone_option,
          ("dense30k48", "densenet121k32"),
          "DenseNet dense{L}k{K} (L: DENSE_LAYOUTS); writes the backbone slot (resnet50/resnet101 too)"),
    Token("backbone", r"dense30k36\(actually48\)", lambda m: {"backbone": "dense30k48"}, None,
          ("dense30k36(actually48)",), "the run used k=48"),
    Token("backbone", r"k(?P<growth>\d+)", lambda m: {GROWTH: int(m["growth"])}, None, ("k48",),
          "growth of the default DenseNet (30 layers)"),
    Token("backbone", _backbone_pattern(), lambda m: {"backbone": families.option_of_token()[m.group(0)]}, None,
          tuple(families.option_of_token()),
          "a declared backbone option (conf/backbone/<option>.yaml `tokens`; the first is canonical): "
          "resnet50, resnet101 (`res100`: the notes' typo)"),
    Token("slim", r"slim", _slim, _flag("backbone.preact", "slim"), ("slim",),
          "TF-slim ResNet-v2 (pre-activation): output stride 8 and 1x1 logits unless stated"),
    Token("SE", r"senet(?P<n>\d+)|senet(?:\(ratio=8\))?",
          lambda m: {"backbone.senet": int(m["n"] or 8)},
          lambda c: f"senet{c.get('backbone.senet')}" if c.family == DENSE_FAMILY and c.differs("backbone.senet")
          else None, ("senet4", "senet", "senet(ratio=8)"), "SE (ratio N) on each dense layer's new channels"),
    Token("SE", r"transitionsenet(?P<n>\d+)", lambda m: {"backbone.transition_senet": int(m["n"])},
          lambda c: f"transitionsenet{c.get('backbone.transition_senet')}"
          if c.family == DENSE_FAMILY and c.differs("backbone.transition_senet") else None,
          ("transitionsenet4",), "SE after transitions (2: residual bottleneck transition)"),
    Token("decoder", r"did(?P<n>\d*)", _did, _decoder_token, ("did", "did4"),
          "dense-in-dense decoder with channel ratio N (8)"),
    Token("decoder", r"did4_1", _dotted(model__decoder="newdid4_1"), None, ("did4_1",), "newdid4_1"),
    Token("decoder", "|".join(DECODERS), _decoder, None, DECODERS, "the fusion decoders (TOKENS.md 1e)"),
    Token("model", r"deeplabv3", _set(model="deeplabv3"),
          lambda c: "deeplabv3" if c.get("model.name") == "deeplabv3" else None, ("deeplabv3",), "DeepLab v3"),
    Token("model", r"noASPP", _dotted(model__aspp=False, model__multi_grid=[1, 2, 1]),
          lambda c: "noASPP" if c.get("model.name") == "deeplabv3" and c.get("model.aspp") is False else None,
          ("noASPP",), "DeepLab v3 cascade (multi-grid 1,2,1)"),
    Token("head", r"aspp", _dotted(model__head="aspp"), _flag("model.head", "aspp", "aspp"), ("aspp",),
          "the 4-branch ASPP head"),
    Token("head", r"dilation6|headkernel(?P<n>\d+)", lambda m: {"model.head_kernel": int(m["n"] or 3)},
          _head_kernel_token, ("dilation6", "headkernel1"), "head kernel (dilation6: 3x3 rate 6)"),
    Token("stride", r"stride(?P<n>\d+)", lambda m: {"backbone.output_stride": int(m["n"])}, _stride_token,
          ("stride8",), "backbone output stride"),
    Token("scale", r"scale(?P<n>\d+)", lambda m: {"scale": int(m["n"])}, lambda c: f"scale{c.get('scale')}",
          ("scale16",), "epoch = floor(N/batch) x scale steps"),
    Token("scale", r"toy", _set(**{TOY: True, "scale": Hint(32)}), None, ("toy",),
          "the short schedule (scale 32) of a DenseNet k36"),
    Token("scale", r"fixDim\((?P<n>\d+)\)", lambda m: {ANNOTATE: "fixDim", "scale": int(m["n"])}, None,
          ("fixDim(8)",), "fixDim annotation and scale N"),
    Token("lr", r"lr(?P<v>\d+(?:p\d+)?(?:e-?\d+)?)", _lr, _value("lr", "lr", _sci), ("lr1e-2", "lr1p5"),
          "base learning rate (a bare number counts in 1e-3)"),
    Token("lr", r"lrx(?P<m>\d+)", lambda m: {"lr": int(m["m"]) * 1e-3, **tenfold_steps([5, 8])}, None,
          ("lrx1", "lrx3"), "lr N x 1e-3, steps after epochs 5 and 8"),
    Token("schedule", r"lrsteps(?P<v>\d+(?:-\d+)*)", lambda m: tenfold_steps([int(x) for x in m["v"].split("-")]),
          _lrsteps_token, ("lrsteps5-8",), "lr / 10 after each listed epoch"),
    Token("weight decay", r"(?:regularization|wd)(?P<v>\d+(?:p\d+)?e-?\d+)",
          lambda m: {"train.weight_decay": read_number(m["v"])},
          _value("regularization", "train.weight_decay", _sci), ("regularization2e-4",), "L2 weight decay"),
    Token("batch size", r"batchsize(?P<n>\d+)", lambda m: {"batch_size": int(m["n"])},
          _value("batchsize", "batch_size"), ("batchsize16",), "per-GPU batch"),
    Token("head lr", r"lrmultfix", _dotted(train__head_lr_mult=5.0), _flag("train.head_lr_mult", "lrmultfix", 5.0),
          ("lrmultfix",), "head gradient multiplier 5"),
    Token("BN", r"tune", _dotted(train__freeze_bn=True), _flag("train.freeze_bn", "tune"), ("tune",),
          "BatchNorm in inference mode"),
    Token("BN", r"betagammafix", _dotted(train__freeze_bn_affine=True),
          _flag("train.freeze_bn_affine", "betagammafix"), ("betagammafix",), "frozen BN gamma/beta"),
    Token("checkpointing", r"sublinear", _dotted(model__checkpointing=True),
          _flag("model.checkpointing", "sublinear"), ("sublinear",), "gradient checkpointing"),
    Token("GPUs", r"(?P<n>\d+)gpu(?P<bugfix>_bugfix)?", _gpus,
          lambda c: f"{c.get('gpus')}gpu" if c.differs("gpus") else None, ("3gpu", "4gpu_bugfix"), "GPUs per run"),
    Token("eval tile", r"test(?P<h>\d+)x(?P<w>\d+)|(?P<h2>\d+)x(?P<w2>\d+)test", _test_tile, _test_tile_token,
          ("test360x480",), "evaluation tile HxW"),
    Token("eval", r"multiscale", _set(eval="multiscale"), multiscale_token, ("multiscale",),
          "multi-scale evaluation (conf/eval/multiscale.yaml)"),
    Token("annotation", "|".join(re.escape(a) for a in ANNOTATIONS), lambda m: {ANNOTATE: m.group(0)}, None,
          ANNOTATIONS, "changes no value; kept in `annotations`"),
    Token("no-op", "|".join(NO_OPS), _set(), None, tuple(NO_OPS), "restates a default"),
]

KNOWN_SPELLINGS = sorted({s for token in TABLE for s in token.examples})
