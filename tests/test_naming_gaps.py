"""Rules of the codec that planted bugs slipped past (issue 24.6): each test fails when its rule breaks."""

from __future__ import annotations

import pytest

from sweeper import naming
from sweeper.naming.__main__ import main as naming_cli

BASE = "camvid.scratch.imagesize321.dense30k48.scale16"


@pytest.mark.parametrize(("override", "token", "value"), [
    ("backbone.rates=[2]", "backbone-rates-2", [2]),            # a list key: the one item stays a list
    ("train.resize_range=[1.5]", "train-resize_range-1p5", [1.5]),
    ("eval.scales=[0.75]", "eval-scales-0p75", [0.75]),
])
def test_a_one_item_list_is_written_with_the_escape_token_and_reads_back_a_list(override, token, value):
    name = naming.compose_overrides([*naming.parse(BASE), override])
    assert token in name.split(".")
    key = override.split("=", 1)[0]
    group, leaf = key.split(".")
    assert naming.semantic(name)[group][leaf] == value  # a list of one, not the bare item
    assert naming.hash_of(name) == naming.hash_of([*naming.parse(BASE), override])
    assert naming.canonical(name) == name


def test_an_empty_list_is_its_own_spelling():
    name = naming.compose_overrides([*naming.parse(BASE), "backbone.rates=[]"])
    assert "backbone-rates-+" in name.split(".") and naming.semantic(name)["backbone"]["rates"] == []


@pytest.mark.parametrize("name", [
    f"{BASE}.stem.stem",                  # a token that sets a value
    f"{BASE}.2ndtime.2ndtime",            # an annotation (sets no value)
    f"{BASE}.newbaseline.newbaseline",    # a no-op
    f"{BASE}.train-epochs-20.train-epochs-20",  # an escape token
])
def test_a_token_repeated_in_a_name_is_refused(name: str):
    with pytest.raises(naming.ConflictingTokensError, match="appears 2 times in name"):
        naming.parse(name)


def test_a_repeated_token_ends_the_cli_with_one_line_and_exit_2(capsys: pytest.CaptureFixture):
    assert naming_cli(["canonical", f"{BASE}.stem.stem"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"error: token 'stem' appears 2 times in name '{BASE}.stem.stem': write it once"]
