"""Values inside names (sweeper/naming/values.py), rule by rule: safe text, exact numbers and the escape
token's spelling (issue 24.6: what mutation testing of the module asks the tests to hold)."""

from __future__ import annotations

import re

import pytest

from sweeper.naming import values
from sweeper.naming.errors import BadNameError


@pytest.mark.parametrize(("text", "label"), [("a/b", "a '/'"), ("a\\b", "a '\\'"), ("a\0b", "a NUL byte")])
def test_a_character_that_could_leave_a_directory_is_refused_by_name(text: str, label: str):
    with pytest.raises(BadNameError) as error:
        values.check_path_safe(text, "name")
    assert str(error.value).startswith(f"name {text!r} holds {label}: names become directories")


def test_safe_text_is_returned_unchanged():
    assert values.check_path_safe("camvid..x-1+2", "name") == "camvid..x-1+2"


def test_a_word_is_letters_digits_and_underscores_of_any_value():
    assert values.check_word("fix_Dim2", "annotation") == "fix_Dim2"
    assert values.check_word(12, "annotation") == "12"  # a value is spelled with str()
    for bad in ("a-b", "a.b", "a+b", "", "a b"):
        with pytest.raises(BadNameError, match=r"^annotation .* cannot be written in a name: use letters"):
            values.check_word(bad, "annotation")
    with pytest.raises(BadNameError, match=r"^annotation '\.\./x' holds a '/'"):
        values.check_word("../x", "annotation")  # the path rule speaks first


@pytest.mark.parametrize(("value", "spelled"), [
    (0.5, "0p5"), (20.0, "20p0"), (1.0, "1p0"), (0.01, "0p01"), (123456.0, "123456p0"), (1.25, "1p25"),
    (0.001, "1e-3"), (2.5e-4, "2p5e-4"), (1e6, "1e6"), (1234567.0, "1p234567e6"),
    (-0.5, "-0p5"), (-2.5e-4, "-2p5e-4"), (-20.0, "-20p0"), (0.0, "0p0"),
])
def test_a_number_is_spelled_exactly_without_a_dot(value: float, spelled: str):
    assert values.format_number(value) == spelled
    assert values.read_number(spelled) == value


@pytest.mark.parametrize(("value", "spelled"), [(0.5, "5e-1"), (20.0, "2e1"), (1.5, "1p5e0"), (1e-3, "1e-3"),
                                                (-0.25, "-2p5e-1")])
def test_a_scientific_spelling_always_shows_the_exponent(value: float, spelled: str):
    assert values.format_number(value, scientific=True) == spelled
    assert values.read_number(spelled) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_has_no_spelling(value: float):
    with pytest.raises(BadNameError, match="not a finite number"):
        values.format_number(value)


@pytest.mark.parametrize(("value", "spelled"), [
    (True, "true"), (False, "false"), (None, "null"), (3, "3"), (-3, "-3"), (0, "0"), (0.5, "0p5"),
    ([], "+"), ((), "+"), ([1, 2], "1+2"), ((0.5, True, None), "0p5+true+null"), (["a", "b_c"], "a+b_c"),
    ("sgd", "sgd"), ("e5", "e5"), ("a1", "a1"),
])
def test_a_value_is_spelled_for_an_escape_token(value, spelled: str):
    assert values.format_value(value, "k") == spelled


@pytest.mark.parametrize(("value", "message"), [
    ([[1]], "k: nested lists cannot be written in a name"),
    ([(1,)], "k: nested lists cannot be written in a name"),
    ([{"a": 1}], "k: nested lists cannot be written in a name"),
    ({"a": 1}, "k: a dict value cannot be written in a name"),
    (["a-b"], "k 'a-b' cannot be written in a name: use letters, digits and '_' only"),  # an item: its key
    *[(word, f"k: the string {word!r} would read back as another type")
      for word in ("true", "False", "null", "None", "NaN", "inf", "12", "1p5", "1e3", "2p5e4", "1p")],
    ("-3", "k '-3' cannot be written in a name: use letters, digits and '_' only"),  # a '-' is never a word's
])
def test_a_value_that_cannot_be_spelled_is_refused(value, message: str):
    with pytest.raises(BadNameError) as error:
        values.format_value(value, "k")
    assert str(error.value) == message


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("false", False), ("null", None), ("1", 1), ("-3", -3), ("1p0", 1.0), ("1p5", 1.5),
    ("2e-4", 2e-4), ("-1p5e-3", -1.5e-3), ("1e3", 1e3), ("sgd", "sgd"), ("True", "True"), ("a_1", "a_1"),
])
def test_an_escape_spelling_reads_back_with_its_type(text: str, value):
    got = values.read_scalar(text)
    assert got == value and type(got) is type(value)  # 1 and 1.0 and True are three values


@pytest.mark.parametrize("text", ["a-b", "a.b", "a+b", "", "1p5-3"])
def test_an_unreadable_escape_spelling_is_refused(text: str):
    with pytest.raises(BadNameError, match=f"^cannot read the value {re.escape(repr(text))} of an escape token"):
        values.read_scalar(text)


def test_list_items_are_joined_by_plus_and_a_list_key_reads_a_list():
    assert values.read_value("+", is_list=False) == [] and values.read_value("+", is_list=True) == []
    assert values.read_value("1+2p5", is_list=False) == [1, 2.5]
    assert values.read_value("3", is_list=True) == [3]
    assert values.read_value("3", is_list=False) == 3


def test_an_escape_token_is_the_key_path_and_the_value_joined_by_dashes():
    assert values.escape_token("train.epochs", 20) == "train-epochs-20"
    assert values.escape_token("lr", 1e-3) == "lr-1e-3"
    assert values.escape_token("eval.scales", [0.5, 1.0]) == "eval-scales-0p5+1p0"
    with pytest.raises(BadNameError, match=r"^train\.optim='a-b' 'a-b' cannot be written"):
        values.escape_token("train.optim", "a-b")


def test_an_escape_token_splits_at_the_longest_known_key():
    keys = {"train", "train.lr", "train.lr.head", "lr"}
    assert values.split_escape("train-lr-head-2", keys) == ("train.lr.head", "2")
    assert values.split_escape("train-lr-1e-3", keys) == ("train.lr", "1e-3")  # the value may hold '-'
    assert values.split_escape("lr-5", ["lr"]) == ("lr", "5")                  # any iterable of keys
    assert values.split_escape("train-lr", {"train.lr"}) is None                 # no value: not an escape
    assert values.split_escape("model-x-1", keys) is None
