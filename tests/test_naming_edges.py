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


def test_a_name_without_dataset_or_model_tokens_gets_the_defaults_and_each_group_is_chosen_once():
    assert naming.parse("scratch.imagesize64.scale16")[:4] == [
        "dataset=synthetic", "backbone=resnet101", "model=deeplabv2", "train=resnet_scratch"]
    got = naming.parse("camvid.imagesize321.deeplabv3.noscratch.multiscale.scale16")
    assert got[:5] == ["dataset=camvid", "backbone=resnet101", "model=deeplabv3", "train=resnet_scratch",
                       "eval=multiscale"]
    assert [o.split("=")[0] for o in got].count("model") == 1 and [o.split("=")[0] for o in got].count("eval") == 1
    assert not any(o.startswith("train=") for o in got[4:])


def test_an_explicit_growth_wins_over_the_k_token():
    assert naming.semantic(f"{BASE}.k48.backbone-growth-24.scale16")["backbone"]["growth"] == 24
    assert naming.semantic(f"{BASE}.k48.scale16")["backbone"]["growth"] == 48


def test_an_init_that_is_neither_scratch_nor_imagenet_is_refused_with_the_name():
    name = "camvid.imagesize321.init-foo.scale16"
    with pytest.raises(naming.BadNameError) as error:
        naming.parse(name)
    assert str(error.value) == f"init='foo' in name {name!r}: init is scratch or imagenet"


def test_annotations_are_part_of_the_overrides_of_a_name():
    assert naming.parse(f"{NAME}.2ndtime.fortune")[-1] == "annotations=[2ndtime,fortune]"


def test_the_extra_overrides_of_a_list_count_in_its_semantic_config():
    assert naming.semantic(["scale=4"], ["scale=8"])["scale"] == 8


def test_the_old_camvid_aerial_phrase_is_read_anywhere_in_a_name():
    for name in ("camvid.aerial.scratch.imagesize321.scale16", "scratch.imagesize321.scale16.camvid.aerial"):
        assert "dataset=aerial" in naming.parse(name)


@pytest.mark.parametrize(("name", "error", "message"), [
    ("", naming.UnknownTokenError, "empty name: expected dotted tokens such as "
                                   "'camvid.scratch.imagesize321.dense30k48.scale16'"),
    ("  ", naming.UnknownTokenError, "empty name: expected dotted tokens"),
    ("camvid/x", naming.BadNameError, "name 'camvid/x' holds a '/': names become directories"),
    (f"{BASE}.stem.stem", naming.ConflictingTokensError, f"token 'stem' appears 2 times in name '{BASE}.stem.stem'"),
    (f"{BASE}.scale16.scale8", naming.ConflictingTokensError,
     f"tokens 'scale16' and 'scale8' of name '{BASE}.scale16.scale8' both set scale: keep one of them"),
])
def test_a_bad_name_is_one_line_that_names_it(name: str, error: type, message: str):
    with pytest.raises(error) as raised:
        naming.parse(name)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def _run(**changes) -> dict:
    """The semantic config of NAME with ``changes`` (``"group.key"``: value; None deletes)."""
    import copy

    run = copy.deepcopy(naming.semantic(NAME))
    for key, value in changes.items():
        *path, leaf = key.split(".")
        node = run
        for part in path:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return run


@pytest.mark.parametrize(("changes", "message"), [
    ({"train.epochs": None}, "the config lacks train.epochs: a config with deleted keys has no name"),
    ({"train.epochs": None, "train.milestones": None},
     "the config lacks train.epochs, train.milestones: a config with deleted keys has no name"),
    ({"train.newkey": 1}, "train.newkey: not a key of conf/, so no name can hold it"),
    ({"train.newkey": 1, "train.other": 2}, "train.newkey, train.other: not a key of conf/, so no name can hold it"),
    ({"init": "pretrained"}, "init='pretrained': init is scratch or imagenet"),
])
def test_a_config_no_name_can_hold_is_refused_saying_why(changes: dict, message: str):
    with pytest.raises(naming.BadNameError) as error:
        naming.compose_semantic(_run(**changes))
    assert str(error.value) == message


def test_a_value_no_token_spells_is_written_as_an_escape_token():
    assert naming.compose_semantic(_run(**{"backbone.compression": 1e-4})) == f"{NAME}.backbone-compression-1e-4"


@pytest.mark.parametrize(("annotation", "message"), [
    ("foo", "annotation 'foo' is not an annotation token: use one of 2ndtime, fixDim, bugfix, nodropout, "),
    ("a-b", "annotation 'a-b' cannot be written in a name"),
])
def test_an_annotation_that_is_no_annotation_token_is_refused(annotation: str, message: str):
    with pytest.raises(naming.BadNameError) as error:
        naming.compose_semantic(naming.semantic(NAME), [annotation])
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("token", ["test360x480", "360x480test"])
def test_both_spellings_of_the_eval_tile_read_height_then_width(token: str):
    assert naming.semantic(f"{NAME}.{token}")["eval"]["tile"] == [360, 480]


@pytest.mark.parametrize(("changes", "name"), [
    ({"backbone.compression": 0.25}, "camvid.scratch.imagesize321.compression0p25.dense30k48.scale16"),
    ({"eval.tile": [360, 480]}, f"{NAME}.test360x480"),
    ({"backbone.blocks": [2, 2, 2, 2]}, f"{NAME}.backbone-blocks-2+2+2+2"),  # no layout: dense30 + escape
    ({"backbone.growth": 200}, f"{BASE}.dense30k36.scale16.backbone-growth-200"),  # no option: k36 + escape
])
def test_a_table_token_is_written_for_a_run_whose_value_it_spells(changes: dict, name: str):
    assert naming.compose_semantic(_run(**changes)) == name


def test_an_imagenet_run_on_its_own_recipe_with_another_lr_stays_imagenet():
    assert naming.canonical("camvid.imagenet.imagesize321.resnet101.lr5.scale16") == (
        "camvid.imagenet.imagesize321.resnet101.scale16.lr5e-3")


@pytest.mark.parametrize(("token", "message"), [
    ("dense30k200", "DenseNet growth 200 of 'dense30k200' is outside 1..128 (GROWTHS in sweeper/naming/configs.py)"),
    ("dense99k12", "unknown DenseNet depth in 'dense99k12': known L values are [30, 31, 42, 121]"),
])
def test_a_densenet_token_outside_the_declared_ones_is_refused_saying_which(token: str, message: str):
    with pytest.raises(naming.UnknownTokenError) as error:
        naming.parse(f"{BASE}.{token}.scale16")
    assert f": {message}" in str(error.value)


def test_a_resnet_that_matches_two_options_equally_is_written_with_the_first_by_name():
    run = naming.semantic(f"{BASE}.resnet101.scale16")
    run["backbone"]["depth"] = 152  # as near resnet50 as resnet101
    assert naming.compose_semantic(run) == f"{BASE}.resnet101.scale16.backbone-depth-152"


def test_a_multiscale_run_is_written_with_the_multiscale_token():
    name = f"{BASE.replace('scratch', 'imagenet')}.resnet101.scale16.multiscale"
    assert naming.canonical(name) == name
    assert naming.compose_semantic(_run(**{"eval.scales": naming.semantic(name)["eval"]["scales"]})).endswith(
        ".multiscale")


def test_a_run_of_an_undeclared_family_is_refused_with_the_declarations_message():
    with pytest.raises(naming.BadNameError) as error:
        naming.compose_semantic(_run(**{"backbone.family": "foo"}))
    assert str(error.value).startswith("backbone.family='foo' is not declared; known: densenet, resnet")
