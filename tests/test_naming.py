"""The name codec: every notes name parses, canonical names round-trip, bad names are rejected.

Configs come from the codec's Hydra-free semantic composition (``naming.semantic``, exact: the
property tests check it against Hydra); a few tests compose with Hydra where the full config matters.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from sweeper import naming
from sweeper.naming import __main__ as naming_cli
from tests.conftest import REPO, notes_names, subprocess_env

NAMES = notes_names()
EXAMPLE = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16"


def test_notes_hold_the_expected_number_of_names():
    assert len(NAMES) == 98  # guards the extraction itself: a regex drift must not shrink the test


@pytest.mark.parametrize("name", NAMES)
def test_every_notes_name_round_trips(name: str):
    canonical = naming.canonical(name)
    assert naming.canonical(canonical) == canonical
    assert naming.hash_of(canonical) == naming.hash_of(name)
    assert naming.parse(canonical)  # the canonical name parses


def test_canonical_spelling_of_the_everyday_name_is_itself():
    assert naming.canonical(EXAMPLE) == EXAMPLE


@pytest.mark.parametrize(("legacy", "canonical"), [
    ("deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid6",
     "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale32"),
    ("deeplabv2.camvid.imagesize321.res100.scratch.on_trainval.scale32",
     "camvid.scratch.imagesize321.resnet101.scale32"),
    ("cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale16",
     "cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16.fixDim"),
    ("deeplabv2.voc.imagesize321.densenet121k32.scratch", "voc.scratch.imagesize321.dense121k32.scale8"),
    ("pascal.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale4",
     "voc.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale4.fixDim"),
    ("deeplabv2.camvid.imagesize473.toy.k60.realtest.scratch", "camvid.scratch.imagesize473.dense30k60.scale32"),
    ("camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6.4gpu_bugfix",
     "aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6.scale32.4gpu.bugfix"),
    ("deeplabv2.camvid.imagesize473.scratch_acturally321",  # the old CamVid ResNet protocol: train -> val
     "camvid.scratch.imagesize321.resnet101.scale320.dataset-eval_split-val.dataset-train_split-train"),
])
def test_legacy_spellings_map_to_canonical_tokens(legacy: str, canonical: str):
    assert naming.canonical(legacy) == canonical


def test_tokens_own_the_values_of_the_recipe():
    cfg = OmegaConf.create(naming.semantic(EXAMPLE))
    assert cfg.dataset.name == "camvid" and cfg.dataset.num_classes == 11
    assert (cfg.backbone.blocks, cfg.backbone.growth) == ([6, 8, 8, 8], 48)
    assert cfg.backbone.stem and cfg.backbone.compression == 1.0 and not cfg.backbone.latter_pooling
    assert cfg.model.decoder == "newdid6" and cfg.scale == 16 and cfg.imagesize == 321
    assert cfg.init == "scratch" and cfg.lr == 1e-3 and list(cfg.train.milestones) == [4, 8]


def test_annotations_are_recorded_not_dropped():
    name = "camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.3gpu.2ndtime.regularization2e-4"
    cfg = OmegaConf.create({**naming.semantic(name), "annotations": list(naming.plan_of(name).annotations)})
    assert list(cfg.annotations) == ["2ndtime"]
    assert cfg.gpus == 3 and cfg.train.weight_decay == 2e-4
    assert naming.compose(cfg).endswith(".3gpu.2ndtime")


def test_lr_tokens():
    assert naming.semantic("camvid.scratch.imagesize321.dense30k48.lr1p5")["lr"] == pytest.approx(1.5e-3)
    cfg = naming.semantic("camvid.scratch.imagesize321.dense30k48.scale320.lrx1.4gpu")
    assert cfg["lr"] == pytest.approx(1e-3) and cfg["train"]["milestones"] == [5, 8]
    assert ".lrsteps5-8." in naming.compose_semantic(cfg)


def test_resnet_init_and_recipe():
    pretrained = naming.semantic("deeplabv2.voc.imagesize473")
    scratch = naming.semantic("deeplabv2.voc.imagesize473.scratch")
    noscratch = naming.semantic("deeplabv2.camvid.imagesize321.res100.noscratch.on_trainval.scale160")
    assert (pretrained["init"], pretrained["lr"]) == ("imagenet", 2.5e-4)
    assert (scratch["init"], scratch["lr"]) == ("scratch", 2.5e-3)
    assert (noscratch["init"], noscratch["lr"]) == ("imagenet", 2.5e-3)
    assert naming.compose_semantic(noscratch).startswith("camvid.noscratch.")


@pytest.mark.parametrize(("overrides", "expected"), [
    (["backbone=dense30k36", "scale=12"], "synthetic.scratch.imagesize64.dense30k36.scale12"),
    (["dataset=camvid", "backbone=dense42k48", "model.checkpointing=true", "batch_size=40"],
     "camvid.scratch.imagesize321.dense42k48.scale320.batchsize40.sublinear"),
    (["dataset=cityscapes", "backbone=resnet50", "model=deeplabv3", "backbone.output_stride=8",
      "init=imagenet", "train=resnet_pretrained"],
     "cityscapes.imagenet.imagesize1024.resnet50.deeplabv3.stride8.scale8"),
    (["backbone=resnet50"],  # a ResNet on the DenseNet recipe: the name says so
     "synthetic.scratch.imagesize64.resnet50.scale1.lr1e-3.lrsteps4-8.regularization1e-5"),
    (["dataset=voc", "backbone=dense30k36", "backbone.senet=4", "model.decoder=did", "model.did_ratio=4"],
     "voc.scratch.imagesize473.dense30k36.senet4.did4.scale8"),
])
def test_compose_then_parse_gives_back_the_config(overrides: list[str], expected: str):
    assert naming.compose_semantic(naming.semantic(overrides)) == expected
    assert naming.hash_of(expected) == naming.hash_of(overrides)


@pytest.mark.parametrize(("name", "bad", "near"), [
    ("camvid.scratch.imagesize321.dense30k48.newdid7", "newdid7", "newdid6"),
    ("camvid.scrach.imagesize321.dense30k48", "scrach", "scratch"),
    ("camvid.scratch.imagesize321.dense30k48.scal16", "scal16", "scale16"),
])
def test_unknown_tokens_are_named_with_the_nearest_known(name: str, bad: str, near: str):
    with pytest.raises(naming.UnknownTokenError) as error:
        naming.parse(name)
    assert repr(bad) in str(error.value) and near in str(error.value)


def test_unknown_dense_depth_is_rejected():
    with pytest.raises(naming.UnknownTokenError, match="DenseNet depth"):
        naming.parse("camvid.scratch.dense33k48")


def test_config_hash_ignores_tracking_but_not_recipe():
    base = naming.hash_of(["scale=4"])
    assert base == naming.hash_of(["scale=4", "tracking=server"])
    assert base != naming.hash_of(["scale=5"])
    assert base != naming.hash_of(["scale=4", "seed=1"])


def _cli(*args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-m", "sweeper.naming", *args], cwd=REPO, capture_output=True,
                          text=True, env=subprocess_env(), timeout=120)


def _main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (cheap): exit code, stdout, stderr."""
    code = naming_cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_parse_canonical_compose_and_errors(capsys: pytest.CaptureFixture):
    code, out, _ = _main(capsys, "parse", EXAMPLE)
    assert code == 0 and "backbone=dense30k48" in out.splitlines()
    assert _main(capsys, "canonical", "deeplabv2.camvid..imagesize321.toy.newbaseline.dense30k36.py")[1].strip() == \
        "camvid.scratch.imagesize321.dense30k36.scale32"
    assert _main(capsys, "compose", "backbone=dense30k48", "scale=16")[1].strip() == \
        "synthetic.scratch.imagesize64.dense30k48.scale16"
    assert _main(capsys, "compose", "train.epochs=20")[1].strip() == \
        "synthetic.scratch.imagesize64.dense30k12.scale1.train-epochs-20"
    code, out, err = _main(capsys, "parse", "camvid.bogus")
    assert code == 2 and "bogus" in err and out == "" and len(err.splitlines()) == 1


def test_cli_hash_takes_a_name_or_overrides(capsys: pytest.CaptureFixture):
    by_name = _main(capsys, "hash", "synthetic.scratch.imagesize64.dense30k48.scale16.train-epochs-3")[1]
    by_overrides = _main(capsys, "hash", "backbone=dense30k48", "scale=16", "train.epochs=3")[1]
    assert by_name == by_overrides and len(by_name.strip()) == 16
    seed_name = _main(capsys, "hash", "name=synthetic.scratch.imagesize64.dense30k48.scale16", "train.epochs=3")[1]
    assert seed_name == by_name  # a seed name's tokens, the explicit overrides on top (as sweep.py does)
    with_paren = _main(capsys, "hash", "deeplabv2.camvid..imagesize321.toy.stem.dense30k36.senet(ratio=8)")
    assert with_paren[0] == 0  # a name holding '=' is a name, not an override


def test_cli_explain_lists_each_token_and_its_values(capsys: pytest.CaptureFixture):
    code, out, _ = _main(capsys, "explain", "deeplabv2.camvid.imagesize473.toy.resnet101.scratch.lrmultfix")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("deeplabv2") and "train -> val" in lines[0]
    assert any(line.startswith("lrmultfix") and "train.head_lr_mult=5.0" in line for line in lines)
    assert any(line.startswith("toy") and "scale=32 (unless another token sets it)" in line for line in lines)
    assert "dataset.eval_split=val" in lines[-2] and lines[-1].startswith("canonical: camvid.scratch.")


def test_cli_refuses_a_hostile_annotation_in_one_line(capsys: pytest.CaptureFixture):
    code, out, err = _main(capsys, "compose", "annotations=[../../x]")
    assert code == 2 and out == "" and "'../../x'" in err and len(err.splitlines()) == 1


def test_cli_tokens_lists_the_table_and_the_escape(capsys: pytest.CaptureFixture):
    out = _main(capsys, "tokens")[1].splitlines()
    assert len(out) == len(naming.TABLE) + 2 and out[-2].startswith("<key>-<value>")


def test_config_hash_is_stable_across_processes_and_imports_neither_torch_nor_mlflow():
    runs = [_cli("hash", EXAMPLE, flags=("-X", "importtime")), _cli("hash", EXAMPLE)]
    assert {r.stdout.strip() for r in runs} == {naming.config_hash(naming.compose_config(EXAMPLE))}
    imported = {line.split("|")[-1].strip().split(".")[0] for line in runs[0].stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "mlflow" not in imported and "sweeper" in imported
    bad = _cli("compose", "annotations=[../../x]")
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1
