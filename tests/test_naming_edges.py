"""Rules of the codec that mutation testing found untested (issue 24.6, docs/testing.md): the ``name=``
seed name among overrides, the default backbone of a name without a backbone token, the seed of
``decode``, ``compose_config`` of a name, and what ``explain`` prints."""

from __future__ import annotations

import pytest

from sweeper import naming
from sweeper.naming import codec, configs

BASE = "camvid.scratch.imagesize321"
NAME = f"{BASE}.dense30k48.scale16"
OTHER = f"{BASE}.resnet101.scale8"


def test_overrides_of_a_name_are_its_parse_then_the_extra():
    assert codec.overrides_of(NAME, ["train.epochs=3"]) == [*naming.parse(NAME), "train.epochs=3"]


@pytest.mark.parametrize("seed", [f"name={NAME}", f"+name={NAME}"])
def test_a_seed_name_among_overrides_expands_first_and_the_explicit_ones_win(seed: str):
    assert codec.overrides_of(["scale=4", seed], ["seed=1"]) == [*naming.parse(NAME), "scale=4", "seed=1"]
    assert naming.semantic(["scale=4", seed])["scale"] == 4


def test_the_last_seed_name_counts_and_an_empty_or_null_one_is_none():
    assert codec.overrides_of([f"name={OTHER}", f"name={NAME}", "scale=4"]) == [*naming.parse(NAME), "scale=4"]
    assert codec.overrides_of([f"name={NAME}"]) == naming.parse(NAME)
    for empty in ("name=null", "name=", "+name=null"):
        assert codec.overrides_of([empty, "scale=4"]) == ["scale=4"]


def test_a_seed_name_holding_an_equals_sign_is_read_whole():
    name = "deeplabv2.camvid..imagesize321.toy.stem.dense30k36.senet(ratio=8)"
    assert codec.overrides_of([f"name={name}"]) == naming.parse(name)


def test_the_annotations_of_overrides_are_their_last_annotations_override():
    got = naming.compose_overrides([f"name={NAME}", "annotations=[bugfix]", "+annotations=[2ndtime,fortune]"])
    assert got == f"{NAME}.2ndtime.fortune"


@pytest.mark.parametrize(("tokens", "backbone"), [
    ("scale16", "resnet101"),                              # nothing DenseNet-like: ResNet-101
    ("stride8.scale16", "resnet101"),                      # the output stride is every family's
    ("backbone-output_stride-16.scale16", "resnet101"),
    ("stem.scale16", "dense30k36"),                        # a DenseNet setting: the default DenseNet
    ("backbone-preact-true.stem.scale16", "resnet101"),    # ... unless it is pre-activated (a ResNet)
    ("k48.scale16", "dense30k48"),                         # kN: its growth
    ("toy", "dense30k36"),                                 # the toy scripts were DenseNet k36
])
def test_a_name_without_a_backbone_token_gets_the_default_backbone(tokens: str, backbone: str):
    assert f"backbone={backbone}" in naming.parse(f"{BASE}.{tokens}")


def test_decode_applies_the_seed_it_is_given():
    canonical, default = naming.decode(NAME)
    seed = configs.semantic_of([])["seed"] + 1
    assert naming.decode(NAME, seed) == (canonical, naming.hash_of(NAME, [f"seed={seed}"]))
    assert naming.decode(NAME, seed)[1] != default


def test_compose_config_of_a_name_is_hydras_composition_of_its_overrides():
    assert codec.compose_config(NAME, ["train.epochs=3"]) == configs.compose_config(
        [*naming.parse(NAME), "train.epochs=3"])
    assert codec.compose_config(["backbone=dense42k20"], ["scale=4"]).scale == 4


def test_explain_prints_each_token_its_slot_and_settings_then_the_overrides():
    name = "deeplabv2.camvid.imagesize473.toy.k48.slim.scratch.newbaseline.2ndtime.train-epochs-20"
    lines = naming.explain(name)
    assert [line.split(None, 1)[0] for line in lines[:-2]] == name.split(".")
    assert [" ".join(line.split()[1:]) for line in lines[:-2]] == [
        "model family old deeplabv2 prefix (CamVid ResNet: train -> val)",
        "dataset dataset=camvid",
        "imagesize imagesize=473",
        "scale toy schedule, scale=32 (unless another token sets it)",
        "backbone growth of the default DenseNet 48",
        "slim backbone.preact=true, backbone=resnet101 (unless another token sets it), backbone.output_stride=8 "
        "(unless another token sets it), model.head_kernel=1 (unless another token sets it)",
        "init init=scratch",
        "no-op no value (a no-op)",
        "annotation annotation 2ndtime",
        "escape train.epochs=20",
    ]
    assert lines[-2] == "=> " + " ".join(naming.parse(name))
    assert lines[-1] == f"canonical: {naming.canonical(name)}  hash: {naming.hash_of(name)}"
