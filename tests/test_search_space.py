"""The search space (sweeper/search_space.py) rule by rule: the override grammar to Optuna distributions,
their one-line descriptions, sampled values back to overrides, the grid (issue 24.6: what mutation
testing of the module asks the tests to hold; tests/test_search.py runs searches)."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper.search_space import (
    SearchSpace,
    SearchSpaceError,
    format_value,
    grid_search_space,
    parse_search_space,
    trial_overrides,
)

SPACE = {"+lr": "tag(log, interval(1e-4, 1e-2))", "g": "range(12,49,12)", "c": "choice(a,b)",
         "f": "range(0, 1, 0.25)", "k": "int(interval(1,8))", "x": "interval(0.5, 2)", "n": "choice(1,2)",
         "s": "range(1,4)"}


def test_each_sampled_parameter_is_described_in_one_line():
    assert parse_search_space(SPACE, []).describe() == {
        "+lr": "float[0.0001, 0.01, log]", "g": "int[12, 48, step=12]", "c": "choice('a', 'b')",
        "f": "float[0.0, 0.75, step=0.25]", "k": "int[1, 8]", "x": "float[0.5, 2.0]", "n": "choice(1, 2)",
        "s": "int[1, 3]"}


def test_the_space_in_one_line_drops_the_add_and_delete_marks():
    assert parse_search_space(SPACE, ["~y"]).short() == (
        "lr=[0.0001..0.01 log] g=[12..48 step 12] c={a,b} f=[0..0.75 step 0.25] k=[1..8] x=[0.5..2] n={1,2} "
        "s=[1..3]")
    assert SearchSpace({"~a": IntDistribution(1, 2)}).short() == "a=[1..2]"
    assert SearchSpace().short() == "" and SearchSpace().describe() == {}


@pytest.mark.parametrize(("entry", "dist"), [
    ("a=range(1,10,3)", IntDistribution(1, 7, step=3)),          # the last step below the end
    ("a=range(0,1,0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
    ("a=range(0,1.1,0.5)", FloatDistribution(0.0, 1.0, step=0.5)),
    ("a=range(2,3)", IntDistribution(2, 2)),
    ("a=range(0,0.3,0.1)", FloatDistribution(0.0, 0.2, step=0.1)),  # float steps: no rounding up past the end
    ("a=interval(1,2)", FloatDistribution(1.0, 2.0)),
    ("a=int(interval(1,2))", IntDistribution(1, 2)),
    ("a=tag(log, int(interval(1,16)))", IntDistribution(1, 16, log=True)),
    ("a=shuffle(range(1,4))", CategoricalDistribution([1, 2, 3])),
    ("a=choice(true, 1.5, x)", CategoricalDistribution([True, 1.5, "x"])),
])
def test_an_entry_becomes_its_distribution(entry: str, dist):
    got = parse_search_space({}, [entry]).distributions["a"]
    if isinstance(dist, CategoricalDistribution):
        assert isinstance(got, CategoricalDistribution) and sorted(map(str, got.choices)) == sorted(map(str, dist.choices))
    else:
        assert got == dist and type(got.low) is type(dist.low) and got.step == dist.step


@pytest.mark.parametrize(("entry", "message"), [
    ("a=choice([1,2],[3])", "a: choice values must be str/int/float/bool/null, got [1, 2]; quote composite values"),
    ("a=range(1,5,0)", "a: range(1, 5, 0) is empty; use range(lo, hi, step>0)"),
    ("a=range(1,5,-1)", "a: range(1, 5, -1) is empty"),
    ("a=range(1,1)", "a: range(1, 1, 1) is empty"),
    ("a=range(2,1)", "a: range(2, 1, 1) is empty"),
    ("a=interval(1,1)", "a: interval(1.0, 1.0) is empty; write interval(lo, hi) with lo < hi"),
    ("a=tag(log, interval(0,1))", "a: tag(log, interval(0.0, 1.0)) needs lo > 0"),
    ("a=tag(log, interval(-1,1))", "a: tag(log, interval(-1.0, 1.0)) needs lo > 0"),
    ("a=glob(*)", "a: sweep type ValueType.GLOB_CHOICE_SWEEP is not supported; use choice(...), range(...)"),
])
def test_an_entry_without_a_distribution_is_refused_in_one_line(entry: str, message: str):
    with pytest.raises(SearchSpaceError) as error:
        parse_search_space({}, [entry])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_log_interval_just_above_zero_is_a_distribution():
    assert parse_search_space({}, ["a=tag(log, interval(0.001, 1))"]).distributions["a"].log


def test_the_command_line_wins_over_params_whatever_the_add_mark_and_fixed_entries_are_kept_as_written():
    space = parse_search_space({"+a": "choice(1,2)", "b": "3", "~c": "null", "d": "choice(x)"},
                               ["a=choice(5,6)", "++d=7", "e='q r'"])
    assert space.distributions == {"a": CategoricalDistribution([5, 6])}
    assert space.fixed == ["b=3", "~c=null", "++d=7", "e='q r'"]


def test_a_params_entry_hydra_cannot_parse_is_one_line_naming_it():
    with pytest.raises(SearchSpaceError, match=r"^cannot parse search entry 'a=choice\(': "):
        parse_search_space({"a": "choice("}, [])


@pytest.mark.parametrize(("value", "text"), [
    (None, "null"), (True, "true"), (False, "false"), (3, "3"), (0.1, "0.1"), (1e-05, "1e-05"),
    ("dense30k36", "dense30k36"), ("it's", "'it\\'s'"), ("3", "'3'"), ("true", "'true'"), ("x=y", "'x=y'"),
])
def test_a_sampled_value_is_written_so_hydra_reads_it_back(value, text: str):
    assert format_value(value) == text


def test_a_trials_overrides_are_its_params_in_order():
    assert trial_overrides({"b": 1, "+a": "x", "c": None}) == ["b=1", "+a=x", "c=null"]
    assert trial_overrides({}) == []


def test_the_grid_lists_choices_and_stepped_ranges():
    grid = grid_search_space(parse_search_space(
        {"c": "choice(a,b)", "g": "range(1,10,3)", "f": "range(0,1,0.25)", "k": "int(interval(2,4))"}, []))
    assert grid == {"c": ["a", "b"], "g": [1, 4, 7], "f": [0.0, 0.25, 0.5, 0.75], "k": [2, 3, 4]}


@pytest.mark.parametrize(("entry", "described"), [
    ("a=interval(0.1, 1)", "float[0.1, 1.0]"), ("a=tag(log, int(interval(1, 8)))", "int[1, 8, log]"),
    ("a=tag(log, interval(0.1, 1))", "float[0.1, 1.0, log]"),
])
def test_the_grid_refuses_what_has_no_finite_values(entry: str, described: str):
    with pytest.raises(SearchSpaceError) as error:
        grid_search_space(parse_search_space({}, [entry]))
    assert str(error.value) == (f"a: sampler=grid needs finite values; use choice(...) or range(lo, hi, step) "
                                f"instead of {described}")
