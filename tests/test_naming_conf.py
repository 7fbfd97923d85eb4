"""The config tree composes for any Hydra app (issue 25.1): every option ``python sweep.py --help``
lists is a file of conf/, found by Hydra's compose API without segsweep's code (docs/naming.md,
"The DenseNet options")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sweeper import cli_help
from sweeper.naming import configs
from tests.conftest import REPO, subprocess_env

#: a process that imports nothing of segsweep before Hydra composes conf/ (Hydra's own plugin scan of
#: ``hydra_plugins`` may import the launcher plugins afterwards; the codec that registered the DenseNet
#: options from code must stay unimported)
COMPOSE_ALL = '''
import json, sys
OURS = ("sweeper", "models", "data", "engine", "results", "hydra_plugins", "sweep")
conf, options, composed = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
before = sorted(m for m in sys.modules if m.split(".")[0] in OURS)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
out = {"before": before, "backbones": {}}
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    out["listed"] = GlobalHydra.instance().config_loader().get_group_options("backbone")
    for option in composed:
        cfg = compose(config_name="sweep", overrides=[f"backbone={option}"])
        out["backbones"][option] = {k: cfg.backbone[k] for k in ("family", "growth", "depth") if k in cfg.backbone}
        out["backbones"][option]["blocks"] = list(cfg.backbone.get("blocks") or [])
out["codec_imported"] = "sweeper.naming" in sys.modules
print(json.dumps(out))
'''


def backbone_options() -> list[str]:
    """Every backbone option the help lists, the DenseNet phrase (``dense{30,42,121}k{1..128}``) expanded."""
    listed = cli_help.group_options()["backbone"]
    generated = [name.removesuffix(".yaml") for name in configs.generated_backbones()]
    assert configs.backbone_summary() in listed
    return sorted([o for o in listed if o != configs.backbone_summary()] + generated)


def test_the_generated_backbone_files_are_what_the_declaration_writes():
    write, remove = configs.stale_backbones()
    assert not write and not remove, (f"{len(write) + len(remove)} stale file(s) of conf/backbone/: run "
                                      "`python -m sweeper.naming backbones --write`")


def test_a_stale_or_orphaned_generated_file_is_found(tmp_path: Path):
    assert configs.write_backbones(tmp_path) == sorted(configs.generated_backbones())
    (tmp_path / "dense30k12.yaml").write_text(configs.GENERATED + "growth: 13\n")
    (tmp_path / "dense99k1.yaml").write_text(configs.GENERATED)
    (tmp_path / "resnet50.yaml").write_text("depth: 50\n")  # a hand-written option is never removed
    write, remove = configs.stale_backbones(tmp_path)
    assert list(write) == ["dense30k12.yaml"] and remove == [tmp_path / "dense99k1.yaml"]
    assert configs.write_backbones(tmp_path) == ["dense30k12.yaml", "dense99k1.yaml"]
    assert (tmp_path / "resnet50.yaml").is_file() and not (tmp_path / "dense99k1.yaml").exists()


def test_every_backbone_option_composes_in_a_process_that_imports_nothing_of_segsweep():
    options = backbone_options()
    # Hydra lists every option itself; composing each takes ~0.3 s (Hydra's own config), so one
    # composition per kind of file: each depth at its first, a middle and its last growth, the ResNets
    growths = [configs.GROWTHS.start, 48, configs.GROWTHS.stop - 1]
    composed = [o for o in options if not o.startswith("dense")] + [
        f"dense{layers}k{growth}" for layers in configs.DENSE_LAYOUTS for growth in growths]
    done = subprocess.run([sys.executable, "-c", COMPOSE_ALL, str(REPO / "conf"), json.dumps(options),
                           json.dumps(composed)], cwd="/", capture_output=True, text=True, timeout=300,
                          env=subprocess_env(PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["before"] == [], f"the composing process imported {out['before']} before Hydra"
    assert not out["codec_imported"], "sweeper.naming was imported: the options came from code, not conf/"
    assert sorted(o for o in out["listed"] if not o.startswith("_")) == options
    for layers, blocks in configs.DENSE_LAYOUTS.items():
        for growth in growths:
            got = out["backbones"][f"dense{layers}k{growth}"]
            assert (got["family"], got["blocks"], got["growth"]) == ("densenet", blocks, growth)
    assert out["backbones"]["resnet50"]["depth"] == 50 and out["backbones"]["resnet101"]["family"] == "resnet"
