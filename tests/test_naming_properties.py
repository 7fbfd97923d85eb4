"""Properties of the codec over random override sets drawn from conf/ (group options and hashed keys).

- ``hash(compose(o)) == hash(o)``: a name says everything the hash holds (the seed aside);
- ``canonical`` is a fixed point and ``parse`` accepts every composed name;
- the Hydra-free semantic config equals Hydra's composition (a few examples: Hydra is slow).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.registry import names
from sweeper import naming
from sweeper.naming import configs
from sweeper.naming.configs import leaves

BACKBONES = ["resnet50", "resnet101", *(f"dense{layers}k{growth}" for layers in configs.DENSE_LAYOUTS
                                        for growth in (12, 20, 36, 48))]
GROUP_OPTIONS = {
    "dataset": list(names()),
    "backbone": BACKBONES,
    "model": configs.group_options("model"),
    "train": configs.group_options("train"),
    "eval": configs.group_options("eval"),
}
WORDS = ["train", "val", "test", "train_val", "bilinear", "nearest", "sum", "adam"]
FLOATS = [1e-4, 2.5e-4, 3.3e-3, 0.1, 0.5, 1.0, 1.5, 20.0]


def _value_like(value: object) -> st.SearchStrategy:
    """Another value of the same kind as a config leaf."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(1, 64)
    if isinstance(value, float):
        return st.sampled_from(FLOATS)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return st.lists(st.integers(1, 12), min_size=1, max_size=4)
    if isinstance(value, list):
        return st.lists(st.sampled_from(FLOATS), min_size=1, max_size=3)
    if isinstance(value, str):
        return st.sampled_from(WORDS)
    return st.one_of(st.none(), st.integers(1, 8))


def _hydra(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def override_sets(draw: st.DrawFn) -> list[str]:
    """Group choices plus a few hashed keys of the resulting config, set to other values."""
    chosen = {g: draw(st.sampled_from(options)) for g, options in GROUP_OPTIONS.items() if draw(st.booleans())}
    overrides = [f"{g}={o}" for g, o in chosen.items()]
    if draw(st.booleans()):
        overrides.append(f"init={draw(st.sampled_from(['scratch', 'imagenet']))}")
    base = leaves(naming.semantic(overrides))
    keys = sorted(k for k in base if k not in ("seed", "init") and k in configs.known_keys()
                  and not k.endswith((".name", ".family", "class_names")))
    for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        overrides.append(f"{key}={_hydra(draw(_value_like(base[key])))}")
    return overrides


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override_sets())
def test_a_composed_name_holds_everything_the_hash_holds(overrides: list[str]):
    name = naming.compose_semantic(naming.semantic(overrides))
    assert naming.hash_of(name) == naming.hash_of(overrides)
    assert naming.canonical(name) == name
    assert naming.parse(name)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override_sets())
def test_the_hydra_free_semantic_config_is_hydras(overrides: list[str]):
    assert naming.semantic(overrides) == naming.semantic_config(configs.compose_config(overrides))


@pytest.mark.parametrize("name", ["deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling."
                                  "dense30k48.newdid6.sublinear.lr1p5",
                                  "voc.imagenet.imagesize473.resnet101.deeplabv3.noASPP.scale8.multiscale"])
def test_the_hydra_free_semantic_config_of_a_name_is_hydras(name: str):
    assert naming.semantic(name) == naming.semantic_config(configs.compose_config(naming.parse(name)))


def test_a_key_that_is_not_in_conf_cannot_be_named():
    with pytest.raises(naming.BadNameError, match="not a key of conf/"):
        naming.compose_semantic(naming.semantic(["+train.extra_knob=3"]))
