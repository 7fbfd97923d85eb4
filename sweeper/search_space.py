"""Search space: Hydra override grammar <-> Optuna distributions, and trial params -> overrides.

Grammar (same as hydra-optuna-sweeper):
  ``choice(a, b, c)`` or ``a,b,c``          -> categorical
  ``range(lo, hi[, step])``                  -> int (or float) steps, ``hi`` exclusive as in Hydra
  ``interval(lo, hi)``                       -> float (int when both ends are ints), ``hi`` inclusive
  ``tag(log, interval(lo, hi))``             -> log-uniform
  ``int(interval(lo, hi))`` / ``float(...)`` -> cast the ends
  ``x`` (no sweep)                           -> fixed, passed to every trial as is
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.errors import SettingsError
from sweeper.optuna_trial import quote


class SearchSpaceError(SettingsError):
    """A search-space entry that the sweeper cannot turn into an Optuna distribution."""


@dataclass
class SearchSpace:
    """Distributions to sample (key -> distribution) and fixed overrides (``key=value`` strings)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        """One short human-readable line per sampled parameter (part of the default study name: kept)."""
        return {k: _describe(d) for k, d in self.distributions.items()}

    def short(self) -> str:
        """The space in one line for a run name: ``lr=[0.0001..0.01 log] growth={12,24}``."""
        return " ".join(f"{k.lstrip('+~')}={_short(d)}" for k, d in self.distributions.items())


def _short(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "{" + ",".join(str(c) for c in dist.choices) + "}"
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        extra = " log" if dist.log else (f" step {dist.step:g}" if dist.step not in (None, 1) else "")
        return f"[{dist.low:g}..{dist.high:g}{extra}]"
    return repr(dist)


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return f"choice{tuple(dist.choices)}"
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        kind = "int" if isinstance(dist, IntDistribution) else "float"
        extra = ", log" if dist.log else (f", step={dist.step}" if dist.step not in (None, 1) else "")
        return f"{kind}[{dist.low}, {dist.high}{extra}]"
    return repr(dist)


def distribution_from_override(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``choice``, ``range``, ``interval``)."""
    value = override.value()
    key = override.get_key_element()
    if override.is_choice_sweep() and isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator(transformer=Transformer.identity))
        for c in choices:
            if not isinstance(c, (str, int, float, bool, type(None))):
                raise SearchSpaceError(
                    f"{key}: choice values must be str/int/float/bool/null, got {c!r}; "
                    "quote composite values as strings"
                )
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if value.shuffle:
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.identity)))
        return _range_distribution(key, value)
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        return _interval_distribution(key, value)
    raise SearchSpaceError(
        f"{key}: sweep type {override.value_type} is not supported; use choice(...), range(...), "
        "interval(lo, hi) or tag(log, interval(lo, hi))"
    )


def _range_distribution(key: str, value: RangeSweep) -> BaseDistribution:
    start, stop, step = value.start, value.stop, value.step
    assert start is not None and stop is not None
    if step is None:
        step = 1
    if step <= 0 or stop <= start:
        raise SearchSpaceError(f"{key}: range({start}, {stop}, {step}) is empty; use range(lo, hi, step>0)")
    n = math.ceil((stop - start) / step - 1e-9)  # Hydra's stop is exclusive
    last = start + (n - 1) * step
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(last), step=int(step))
    return FloatDistribution(float(start), float(last), step=float(step))


def _interval_distribution(key: str, value: IntervalSweep) -> BaseDistribution:
    lo, hi = value.start, value.end
    assert lo is not None and hi is not None
    log = "log" in value.tags
    if hi <= lo:
        raise SearchSpaceError(f"{key}: interval({lo}, {hi}) is empty; write interval(lo, hi) with lo < hi")
    if log and lo <= 0:
        raise SearchSpaceError(f"{key}: tag(log, interval({lo}, {hi})) needs lo > 0")
    if isinstance(lo, int) and isinstance(hi, int):
        return IntDistribution(lo, hi, log=log)
    return FloatDistribution(float(lo), float(hi), log=log)


def parse_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """Merge ``hydra.sweeper.params`` (key -> override value) with command-line ``arguments``.

    A command-line entry wins over a params entry with the same key.
    """
    parser = OverridesParser.create()
    entries: dict[str, str] = {}
    for key, val in (params or {}).items():
        entries[str(key).lstrip("+~")] = f"{key}={val}"
    for arg in arguments:
        ov = parser.parse_override(arg)
        entries[ov.get_key_element().lstrip("+~")] = arg
    space = SearchSpace()
    for text in entries.values():
        try:
            override = parser.parse_override(text)
        except Exception as e:  # Hydra's grammar errors are verbose; keep ours short
            raise SearchSpaceError(f"cannot parse search entry {text!r}: {e}") from e
        if override.is_sweep_override():
            # the key keeps its + / ++: a sampled key the config lacks stays addable
            space.distributions[override.get_key_element()] = distribution_from_override(override)
        else:  # as given: +key=..., ~key and quoting kept
            space.fixed.append(text)
    return space


def format_value(value: Any) -> str:
    """Render a sampled value as an override value that Hydra parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    parser = OverridesParser.create()
    try:
        if parser.parse_override(f"k={text}").value() == text:
            return text
    except Exception:  # noqa: BLE001 - not a plain override value: quote it
        pass
    return quote(text)


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides of one trial's sampled params."""
    return [f"{k}={format_value(v)}" for k, v in params.items()]


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The explicit grid for ``sampler=grid``: categorical choices and stepped ranges only."""
    grid: dict[str, list[Any]] = {}
    for key, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [dist.low + i * dist.step for i in range(n)]
        else:
            raise SearchSpaceError(
                f"{key}: sampler=grid needs finite values; use choice(...) or range(lo, hi, step) "
                f"instead of {_describe(dist)}"
            )
    return grid
