"""The token table: each token sets exactly its values, conflicts and hostile values are refused.

One test per token (``TOKEN_VALUES``): a token that sets a wrong value (``lrmultfix`` at 10 instead
of 5) fails its test, and a table entry without a case fails ``test_every_token_has_a_value_test``.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sweeper import naming
from sweeper.naming import configs
from sweeper.naming.configs import leaves

BASE = "camvid.scratch.imagesize321.dense30k48.scale16"
RESNET = "voc.imagenet.imagesize473.resnet101.scale8"
V3 = "voc.imagenet.imagesize473.resnet101.deeplabv3.scale8"

#: (a name holding the token, the config values the token must set). Each spelling of the table's
#: ``examples`` appears in one name here.
TOKEN_VALUES: list[tuple[str, str, dict]] = [
    ("deeplabv2", "deeplabv2.camvid.imagesize473.resnet50.scratch",
     {"dataset.train_split": "train", "dataset.eval_split": "val"}),
    ("synthetic", "synthetic.scratch.imagesize64.dense30k12.scale1", {"dataset.name": "synthetic"}),
    ("voc", "voc.scratch.imagesize321.dense30k48.scale8", {"dataset.name": "voc", "dataset.train_split": "train_aug"}),
    ("pascal", "pascal.scratch.imagesize321.dense30k48", {"dataset.name": "voc"}),
    ("camvid", BASE, {"dataset.name": "camvid", "dataset.num_classes": 11, "dataset.eval_split": "test"}),
    ("cityscapes", "cityscapes.scratch.imagesize321.dense30k48", {"dataset.name": "cityscapes"}),
    ("cs", "cs.scratch.imagesize321.dense30k48", {"dataset.name": "cityscapes", "dataset.num_classes": 19}),
    ("aerial", "aerial.scratch.imagesize473.dense30k48", {"dataset.name": "aerial", "dataset.num_classes": 2}),
    ("voc_train", "deeplabv2.voc_train.imagesize321.scale50.scratch",
     {"dataset.name": "voc", "dataset.train_split": "train", "scale": 50}),
    ("realtest", "deeplabv2.camvid.imagesize473.resnet50.realtest.scratch",
     {"dataset.train_split": "train_val", "dataset.eval_split": "test"}),
    ("on_trainval", "deeplabv2.camvid.imagesize321.res100.scratch.on_trainval.scale32",
     {"dataset.train_split": "train_val", "dataset.eval_split": "test"}),
    ("scratch", "camvid.scratch.imagesize321.resnet101", {"init": "scratch", "lr": 2.5e-3,
                                                         "train.weight_decay": 2e-5}),
    ("imagenet", "camvid.imagenet.imagesize321.resnet101", {"init": "imagenet", "lr": 2.5e-4,
                                                           "train.weight_decay": 2e-4}),
    ("scratch_no", "camvid.scratch_no.imagesize321.resnet50", {"init": "imagenet", "lr": 2.5e-4,
                                                              "backbone.depth": 50}),
    ("noscratch", "camvid.noscratch.imagesize321.resnet101", {"init": "imagenet", "lr": 2.5e-3}),
    ("scratch_actually321", "deeplabv2.camvid.imagesize473.scratch_actually321", {"init": "scratch", "imagesize": 321}),
    ("imagesize321", BASE, {"imagesize": 321, "eval.tile": 321}),
    ("imagesize360x480", "camvid.scratch.imagesize360x480.dense30k48", {"imagesize": [360, 480]}),
    ("imgsize800", "cs.scratch.imagesize321.dense30k48.stride8.imgsize800", {"imagesize": 800}),
    ("stem", "camvid.scratch.imagesize321.stem.dense30k48", {"backbone.stem": True}),
    ("nocompression", "camvid.scratch.imagesize321.nocompression.dense30k48", {"backbone.compression": 1.0}),
    ("compression0p25", "camvid.scratch.imagesize321.compression0p25.dense30k48", {"backbone.compression": 0.25}),
    ("nopooling", "camvid.scratch.imagesize321.nopooling.dense30k48", {"backbone.latter_pooling": False}),
    ("dense30k48", BASE, {"backbone.blocks": [6, 8, 8, 8], "backbone.growth": 48, "train.base_lr": None}),
    ("densenet121k32", "voc.scratch.imagesize321.densenet121k32", {"backbone.blocks": [6, 12, 24, 16],
                                                                   "backbone.growth": 32}),
    ("resnet101", RESNET, {"backbone.family": "resnet", "backbone.depth": 101}),
    ("dense30k36(actually48)", "camvid.scratch.imagesize321.dense30k36(actually48)", {"backbone.growth": 48}),
    ("k48", "deeplabv2.camvid.imagesize321.toy.k48", {"backbone.growth": 48, "backbone.blocks": [6, 8, 8, 8]}),
    ("resnet50", "camvid.scratch.imagesize321.resnet50", {"backbone.depth": 50}),
    ("res50", "camvid.scratch.imagesize321.res50", {"backbone.depth": 50}),
    ("res100", "camvid.scratch.imagesize321.res100", {"backbone.depth": 101}),
    ("res101", "camvid.scratch.imagesize321.res101", {"backbone.depth": 101}),
    ("resnet100", "camvid.scratch.imagesize321.resnet100", {"backbone.depth": 101}),
    ("slim", "voc.imagesize473.slim", {"backbone.preact": True, "backbone.output_stride": 8,
                                       "model.head_kernel": 1, "backbone.depth": 101}),
    ("senet4", BASE + ".senet4", {"backbone.senet": 4}),
    ("senet", BASE + ".senet", {"backbone.senet": 8}),
    ("senet(ratio=8)", BASE + ".senet(ratio=8)", {"backbone.senet": 8}),
    ("transitionsenet4", BASE + ".transitionsenet4", {"backbone.transition_senet": 4}),
    ("did", BASE + ".did", {"model.decoder": "did", "model.did_ratio": 8}),
    ("did4", BASE + ".did4", {"model.decoder": "did", "model.did_ratio": 4}),
    ("did4_1", BASE + ".did4_1", {"model.decoder": "newdid4_1"}),
    ("newdid6", BASE + ".newdid6", {"model.decoder": "newdid6"}),
    ("newdid6_senet", BASE + ".newdid6_senet", {"model.decoder": "newdid6_senet"}),
    ("newdid4_1", BASE + ".newdid4_1", {"model.decoder": "newdid4_1"}),
    ("newdid4", BASE + ".newdid4", {"model.decoder": "newdid4"}),
    ("newdid2", BASE + ".newdid2", {"model.decoder": "newdid2"}),
    ("newdid", BASE + ".newdid", {"model.decoder": "newdid"}),
    ("deeplabv3", V3, {"model.name": "deeplabv3", "model.aspp": True}),
    ("noASPP", V3 + ".noASPP", {"model.aspp": False, "model.multi_grid": [1, 2, 1]}),
    ("aspp", RESNET + ".aspp", {"model.head": "aspp"}),
    ("dilation6", "voc.imagesize473.slim.dilation6", {"model.head_kernel": 3}),
    ("headkernel1", RESNET + ".headkernel1", {"model.head_kernel": 1}),
    ("stride8", BASE + ".stride8", {"backbone.output_stride": 8}),
    ("scale16", BASE, {"scale": 16}),
    ("toy", "deeplabv2.camvid.imagesize321.toy", {"scale": 32, "backbone.growth": 36}),
    ("fixDim(8)", BASE.removesuffix(".scale16") + ".fixDim(8)", {"scale": 8}),
    ("lr1e-2", BASE + ".lr1e-2", {"lr": 1e-2}),
    ("lr1p5", BASE + ".lr1p5", {"lr": 1.5e-3}),
    ("lrx1", BASE + ".lrx1", {"lr": 1e-3, "train.milestones": [5, 8], "train.lr_factors": [0.1, 0.01]}),
    ("lrx3", BASE + ".lrx3", {"lr": 3e-3, "train.milestones": [5, 8]}),
    ("lrsteps5-8", BASE + ".lrsteps5-8", {"train.milestones": [5, 8], "train.lr_factors": [0.1, 0.01]}),
    ("regularization2e-4", BASE + ".regularization2e-4", {"train.weight_decay": 2e-4}),
    ("batchsize16", BASE + ".batchsize16", {"batch_size": 16}),
    ("lrmultfix", BASE + ".lrmultfix", {"train.head_lr_mult": 5.0}),
    ("tune", BASE + ".tune", {"train.freeze_bn": True}),
    ("betagammafix", BASE + ".betagammafix", {"train.freeze_bn_affine": True}),
    ("sublinear", BASE + ".sublinear", {"model.checkpointing": True}),
    ("3gpu", BASE + ".3gpu", {"gpus": 3}),
    ("4gpu_bugfix", BASE + ".4gpu_bugfix", {"gpus": 4}),
    ("test360x480", BASE + ".test360x480", {"eval.tile": [360, 480], "imagesize": 321}),
    ("multiscale", BASE + ".multiscale", {"eval.scales": [0.5, 0.75, 1.0, 1.25, 1.5]}),
    *[(a, f"{BASE}.{a}", {}) for a in naming.ANNOTATIONS],
    *[(n, f"{BASE}.{n}", {}) for n in ("newbaseline", "baselline", "compression", "py")],
]


def _values(name: str) -> dict:
    return leaves(naming.semantic(name))


@pytest.mark.parametrize(("token", "name", "expected"), TOKEN_VALUES, ids=[t for t, _, _ in TOKEN_VALUES])
def test_token_sets_its_values(token: str, name: str, expected: dict):
    assert token in naming.split_tokens(name)
    values = _values(name)
    assert {key: values.get(key) for key in expected} == expected
    if not expected:  # an annotation or a no-op: the same config as the name without it
        assert values == _values(BASE)


def test_every_token_has_a_value_test():
    tested = {token for token, _, _ in TOKEN_VALUES}
    untested = [s for entry in naming.TABLE for s in entry.examples if s not in tested]
    assert untested == []
    assert all(entry.examples for entry in naming.TABLE)  # every entry is reachable by a tested spelling


def test_annotations_are_kept_in_order_and_change_no_value():
    name = f"{BASE}.fortune.2ndtime.4gpu_bugfix"
    assert naming.plan_of(name).annotations == ("fortune", "2ndtime", "bugfix")
    assert naming.canonical(name) == f"{BASE}.4gpu.fortune.2ndtime.bugfix"


@pytest.mark.parametrize(("name", "first", "second"), [
    ("synthetic.scratch.imagesize64.dense30k12.dense30k48.scale1.scale16", "dense30k12", "dense30k48"),
    (f"{BASE}.scale20", "scale16", "scale20"),
    (f"{BASE}.lrx1.lrsteps4-8", "lrx1", "lrsteps4-8"),
    (f"{BASE}.train-epochs-3.train-epochs-4", "train-epochs-3", "train-epochs-4"),
    (f"{BASE}.lr1e-2.lr-0p5", "lr1e-2", "lr-0p5"),
])
def test_two_tokens_for_one_setting_are_refused_with_both_named(name: str, first: str, second: str):
    with pytest.raises(naming.ConflictingTokensError) as error:
        naming.parse(name)
    assert repr(first) in str(error.value) and repr(second) in str(error.value)


def test_corrections_and_hints_are_not_conflicts():
    assert _values("cs.scratch.imagesize321.dense30k48.imgsize800")["imagesize"] == 800  # the stale 321
    assert _values("deeplabv2.camvid.imagesize321.toy.dense30k48.scale640")["scale"] == 640  # toy's 32
    assert _values("voc.imagesize473.slim.stride16")["backbone.output_stride"] == 16  # slim's 8
    assert _values("camvid.aerial.imagesize473.dense30k48")["dataset.name"] == "aerial"  # one phrase


# --------------------------------------------------------------------------------------------------
# The escape token and closure


@pytest.mark.parametrize("override", ["train.epochs=20", "model.head_rate=12", "eval=multiscale",
                                      "train.flip=false", "train.max_steps_per_epoch=3"])
def test_every_hashed_change_shows_in_the_name(override: str):
    default = naming.compose_semantic(naming.semantic([]))
    name = naming.compose_semantic(naming.semantic([override]))
    assert name != default and name.startswith(default)
    assert naming.hash_of(name) == naming.hash_of([override])


def test_escape_tokens_spell_keys_and_values_readably():
    name = naming.compose_semantic(naming.semantic(["train.epochs=20", "eval.scales=[0.5,1.0]",
                                                    "train.label_interp=bilinear", "eval.subset=4",
                                                    "train.checkpoint=false"]))
    assert name.endswith(".eval-scales-0p5+1p0.eval-subset-4.train-checkpoint-false.train-epochs-20"
                         ".train-label_interp-bilinear")
    assert naming.semantic(name)["eval"]["scales"] == [0.5, 1.0]


def test_escape_values_keep_their_type():
    name = naming.compose_semantic(naming.semantic(["train.adam_eps=1.0", "train.epochs=1", "lr=1.2345678901e-3"]))
    assert "train-adam_eps-1p0" in name and "train-epochs-1" in name and "lr1p2345678901e-3" in name
    values = naming.semantic(name)
    assert type(values["train"]["adam_eps"]) is float and type(values["train"]["epochs"]) is int
    assert values["lr"] == 1.2345678901e-3


@pytest.mark.parametrize("override", ["lr=1", "train.epochs=true", "train.weight_decay=0"])
def test_a_value_of_another_type_is_another_value(override: str):
    name = naming.compose_semantic(naming.semantic([override]))
    assert naming.hash_of(name) == naming.hash_of([override])


def test_compose_never_emits_what_parse_refuses():
    overrides = ["backbone=resnet101", "init=imagenet", "train=resnet_pretrained", "model.head_kernel=1"]
    name = naming.compose_semantic(naming.semantic(overrides))
    assert name == "synthetic.imagenet.imagesize64.resnet101.headkernel1.scale1"
    assert naming.hash_of(name) == naming.hash_of(overrides)


def test_the_seed_is_the_one_key_a_name_leaves_out():
    assert naming.compose_semantic(naming.semantic(["seed=3"])) == naming.compose_semantic(naming.semantic([]))
    assert naming.hash_of(["seed=3"]) != naming.hash_of([])
    with pytest.raises(naming.BadNameError, match="seed"):
        naming.parse(f"{BASE}.seed-3")


@pytest.mark.parametrize("path", [*configs.UNHASHED_KEYS, *(".".join(k) for k in configs.UNHASHED_NESTED_KEYS),
                                  *(".".join(k) for k in configs.LOCATION_KEYS)])
def test_key_left_out_of_the_hash(path: str):
    """Each key of UNHASHED_KEYS / UNHASHED_NESTED_KEYS / LOCATION_KEYS changes neither hash nor name."""
    cfg = OmegaConf.create(naming.semantic(BASE))
    OmegaConf.update(cfg, path, ["2ndtime"] if path == "annotations" else "elsewhere", force_add=True)
    assert naming.config_hash(cfg) == naming.hash_of(BASE)
    assert naming.compose(cfg) == (f"{BASE}.2ndtime" if path == "annotations" else BASE)  # recorded, not hashed


def test_locations_are_hashed_as_unset():
    assert naming.hash_of(["dataset=camvid", "init_path=/w/a.npz", "dataset.list_dir=/lists"]) == naming.hash_of(
        ["dataset=camvid"])
    assert naming.compose_semantic(naming.semantic(["init_path=/w/a.npz"])) == naming.compose_semantic(
        naming.semantic([]))


# --------------------------------------------------------------------------------------------------
# Values that reach paths (issue 13.4)


@pytest.mark.parametrize("annotation", ["../../x", "a/b", "..", ".hidden", "a\\b", "a\0b", "notatoken"])
def test_hostile_or_unknown_annotations_are_refused(annotation: str):
    cfg = OmegaConf.create({**naming.semantic(BASE), "annotations": [annotation]})
    with pytest.raises(naming.BadNameError) as error:
        naming.compose(cfg)
    assert "annotation" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["../../camvid.scratch", "camvid/scratch.imagesize321", "camvid.scratch\\x",
                                  "camvid.\0"])
def test_names_with_separators_are_refused(name: str):
    with pytest.raises(naming.BadNameError, match="holds"):
        naming.parse(name)


@pytest.mark.parametrize("override", ["dataset.eval_split=../../x", "dataset.eval_split=a.b", "train.label_interp=true"])
def test_string_values_that_cannot_be_a_name_word_are_refused(override: str):
    if override.endswith("true"):
        override = "train.label_interp='true'"  # a string that would read back as a bool
    with pytest.raises(naming.BadNameError):
        naming.compose_semantic(naming.semantic([override]))


# --------------------------------------------------------------------------------------------------
# The generic DenseNet backbone (issue 17.3)


def test_any_growth_of_a_known_depth_is_a_backbone():
    values = _values("camvid.scratch.imagesize321.dense42k20")
    assert values["backbone.blocks"] == configs.DENSE_LAYOUTS[42] and values["backbone.growth"] == 20
    assert naming.hash_of(["backbone=dense42k20"]) == naming.hash_of(["backbone=dense42k48", "backbone.growth=20"])
    assert (configs.CONF_DIR / "backbone" / "dense42k20.yaml").is_file()  # a generated file: any Hydra app finds it
    hydra = naming.compose_config(["backbone=dense42k20"])
    assert (list(hydra.backbone.blocks), hydra.backbone.growth, hydra.backbone.stem) == ([6, 8, 16, 12], 20, False)


def test_a_new_depth_is_one_line_and_its_generated_files(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(configs.DENSE_LAYOUTS, 18, [4, 4, 6, 4])
    write, remove = configs.stale_backbones()  # what `python -m sweeper.naming backbones --write` writes
    assert sorted(write) == sorted(f"dense18k{k}.yaml" for k in configs.GROWTHS) and not remove
    assert "blocks: [4, 4, 6, 4]\ngrowth: 12\n" in write["dense18k12.yaml"]
    with pytest.raises(naming.BadNameError, match=r"dense18k12.yaml is missing .* backbones --write"):
        naming.parse("camvid.scratch.dense18k12")  # until its files are written: the files are the options


def test_unknown_depth_names_the_known_ones():
    with pytest.raises(naming.UnknownTokenError, match=r"known L values are \[30, 31, 42, 121\]"):
        naming.parse("camvid.scratch.dense33k48")


def test_backbone_options_are_listed_compactly():
    assert naming.backbone_summary() == "dense{30,42,121}k{1..128}"
    assert configs.group_options("backbone") == ["resnet101", "resnet50", "dense{30,42,121}k{1..128}"]
