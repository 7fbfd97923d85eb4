"""docs/architecture.md's recipe "A backbone", followed from this file alone (issue 24.1): a tiny
torch backbone defined here and its declaration written into a config tree of its own (a copy of
conf/ named by ``SEGSWEEP_CONF_DIR``) give a family that names spell, the codec composes, models/
builds with every head and the engine trains a step of — nothing else in the repository changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from torch import Tensor, nn

from tests.conftest import FAST, REPO, subprocess_env

#: the recipe's one file: the family's declaration and the values its builder reads
FAKENET_YAML = """\
family: fakenet
builder: tests.test_backbone_recipe:build_fakenet
recipes: {scratch: resnet_scratch, imagenet: resnet_pretrained}
imagenet_init: false
tokens: [fakenet, fake]
width: 8
output_stride: 16
"""


class FakeNet(nn.Module):
    """Four stride-2 conv stages (output stride 16): the backbone interface of models/registry.py."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.channels = [width, 2 * width, 2 * width, 4 * width]
        c_in, stages = 3, []
        for c in self.channels:
            stages.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU()))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.out_channels = self.channels[-1]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def build_fakenet(cfg) -> FakeNet:
    return FakeNet(int(cfg.backbone.width))


#: in a process whose config tree holds fakenet.yaml: name -> config -> model -> one train step
THROUGH_THE_NAME = '''
import json, sys
import torch
from sweeper import naming
from models.build import build_model
from engine.train import train
names, fast, workdir = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
out = {}
for name in names:
    cfg = naming.compose_config(name, [*fast, "train.epochs=1", "train.max_steps_per_epoch=1", "device=cpu"])
    model = build_model(cfg)
    metrics = train(cfg, workdir=None)
    out[name] = {"canonical": naming.canonical(name), "composed": naming.compose(cfg),
                 "parse": naming.parse(name), "family": cfg.backbone.family, "head": type(model.head).__name__,
                 "backbone": type(model.backbone).__name__, "loss": metrics.get("train_loss"),
                 "metrics": sorted(metrics), "hash": naming.hash_of(name)}
out["legacy"] = naming.canonical("synthetic.scratch.imagesize32.fake.scale1")
out["default_init"] = naming.canonical("synthetic.imagesize32.fakenet.scale1")
print(json.dumps(out))
'''


def test_a_family_added_from_a_test_file_trains_a_step_through_its_name(tmp_path: Path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "backbone" / "fakenet.yaml").write_text(FAKENET_YAML)
    names = ["synthetic.scratch.imagesize32.fakenet.scale1", "synthetic.scratch.imagesize32.fakenet.deeplabv3.scale1"]
    done = subprocess.run([sys.executable, "-c", THROUGH_THE_NAME, json.dumps(names), json.dumps(FAST), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(PYTHONPATH=str(REPO), SEGSWEEP_CONF_DIR=str(conf)))
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.splitlines()[-1])
    v2, v3 = (out[name] for name in names)
    for name, got in zip(names, (v2, v3), strict=True):
        assert got["family"] == "fakenet" and got["backbone"] == "FakeNet"
        assert "backbone=fakenet" in got["parse"] and "train=resnet_scratch" in got["parse"]
        assert got["composed"].startswith(name.removesuffix(".scale1")) and got["canonical"] == name
        assert got["loss"] is not None and got["loss"] > 0  # one step trained
    assert (v2["head"], v3["head"]) == ("DeepLabV2Head", "DeepLabV3Head")  # every head, from the interface
    assert v2["hash"] != v3["hash"]
    assert out["legacy"] == names[0]  # a legacy token of the declaration
    assert out["default_init"] == names[0]  # no ImageNet weights declared: a name's init defaults to scratch
