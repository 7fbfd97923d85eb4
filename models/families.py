"""The backbone families: one declaration each, in its ``conf/backbone/`` file (torch-free).

A family is declared by the backbone file that names it (``family: <name>``) together with

- ``builder``: ``module:function``, ``fn(cfg) -> nn.Module`` the backbone (imported only when a model
  is built; the protocol is in ``models/registry.py``);
- ``recipes``: the train recipe (a ``conf/train`` option) of each init, ``{scratch: ..., imagenet: ...}``;
- ``imagenet_init``: whether ``init=imagenet`` loads local ImageNet weights (``init_path``); a family
  that has them defaults to ``init=imagenet`` in names, the others to ``scratch``;

and each hand-written option of a family (a file without a leading ``_``) lists ``tokens``: how a name
spells it, canonical first, then legacy spellings (``resnet101``, ``res100``). Options that inherit a
family through their defaults (``resnet50.yaml`` from ``_resnet.yaml``) share its declaration; generated
files (``dense{L}k{K}``: the DenseNet spelling is its own name token) are skipped here.

The codec (``sweeper.naming``: tokens, recipes, init), ``models.build`` (the builder, ImageNet support)
and the config tree (the files themselves) read this module. ``SEGSWEEP_CONF_DIR`` names another
config tree (a copy of conf/ with more families: tests, experiments); by default the repository's.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from models.errors import ModelConfigError

CONF_DIR = Path(os.environ.get("SEGSWEEP_CONF_DIR") or Path(__file__).resolve().parents[1] / "conf").resolve()
#: keys of a backbone declaration: they say what the family is, not what a run computes (left out of
#: the config hash and of a run's params)
DECLARATION_KEYS = ("builder", "recipes", "imagenet_init", "tokens")
#: the first line of a generated option file (skipped: it declares nothing)
GENERATED_MARK = "# generated"
INITS = ("scratch", "imagenet")


@dataclass(frozen=True)
class Family:
    """What one family's declaration says."""

    name: str
    builder: str
    recipes: dict[str, str] = field(hash=False)
    imagenet_init: bool
    source: str

    def recipe(self, init: str) -> str:
        """The train recipe of ``init`` (scratch | imagenet)."""
        if init not in self.recipes:
            raise ModelConfigError(f"init={init!r}: init is {' or '.join(INITS)} (backbone.family={self.name!r})")
        return self.recipes[init]

    @property
    def default_init(self) -> str:
        """The init of a name that states none: ImageNet weights where the family has them."""
        return "imagenet" if self.imagenet_init else "scratch"

    def build(self, cfg: Any) -> Any:
        """The family's backbone for a run config (imports the builder's module now)."""
        return load(self.builder)(cfg)


@dataclass(frozen=True)
class Option:
    """A hand-written backbone option: its family and its name tokens."""

    name: str
    family: str
    tokens: tuple[str, ...]


def load(path: str) -> Callable[..., Any]:
    """The function ``module:function``."""
    module, _, function = path.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise ModelConfigError(f"backbone builder {path!r} cannot be imported ({error}); the declaration's "
                               f"`builder:` is module:function") from None


@cache
def _raw(option: str) -> dict:
    path = CONF_DIR / "backbone" / f"{option}.yaml"
    text = path.read_text() if path.is_file() else ""
    return {} if text.startswith(GENERATED_MARK) else (yaml.safe_load(text) or {})


def _parents(raw: dict) -> list[str]:
    return [entry for entry in raw.get("defaults") or [] if isinstance(entry, str) and entry != "_self_"]


def _declared(option: str, key: str) -> Any:
    """``key`` of an option's file, else of the files its defaults name (the last one wins, as Hydra)."""
    raw = _raw(option)
    if key in raw:
        return raw[key]
    found = None
    for parent in _parents(raw):
        value = _declared(parent, key)
        found = value if value is not None else found
    return found


@cache
def families() -> dict[str, Family]:
    """Every declared family by name."""
    found: dict[str, Family] = {}
    for path in sorted((CONF_DIR / "backbone").glob("*.yaml")):
        raw = _raw(path.stem)
        if "family" not in raw or "builder" not in raw:
            continue
        name = str(raw["family"])
        if name in found:
            raise ModelConfigError(f"backbone family {name!r} is declared twice ({found[name].source}, {path.name}): "
                                   "one file declares a family, its options inherit it")
        recipes = {str(k): str(v) for k, v in (raw.get("recipes") or {}).items()}
        if set(recipes) != set(INITS):
            raise ModelConfigError(f"{path}: `recipes:` gives the train recipe of each init, {{scratch: ..., "
                                   f"imagenet: ...}}; got {sorted(recipes)}")
        found[name] = Family(name, str(raw["builder"]), recipes, bool(raw.get("imagenet_init", False)), path.name)
    return found


def family(name: Any) -> Family:
    """The declaration of ``backbone.family=name``."""
    known = families()
    if name not in known:
        raise ModelConfigError(f"backbone.family={name!r} is not declared; known: {', '.join(sorted(known))} "
                               "(a family: `family:` and `builder:` in its conf/backbone file, docs/architecture.md)")
    return known[name]


@cache
def family_of(option: str) -> str | None:
    """The family of a backbone option (its own ``family`` or an inherited one); None: no such file."""
    if not (CONF_DIR / "backbone" / f"{option}.yaml").is_file():
        return None
    if _raw(option):
        found = _declared(option, "family")
        return None if found is None else str(found)
    generated = yaml.safe_load((CONF_DIR / "backbone" / f"{option}.yaml").read_text()) or {}
    return next((family_of(parent) for parent in _parents(generated)), None)


@cache
def options() -> dict[str, Option]:
    """The hand-written options that a name spells with a token, by option name."""
    found = {}
    for path in sorted((CONF_DIR / "backbone").glob("[!_]*.yaml")):
        raw = _raw(path.stem)
        if raw.get("tokens"):
            found[path.stem] = Option(path.stem, str(family_of(path.stem)), tuple(str(t) for t in raw["tokens"]))
    return found


@cache
def option_of_token() -> dict[str, str]:
    """Every backbone token (canonical and legacy) -> its option."""
    table: dict[str, str] = {}
    for option in options().values():
        for token in option.tokens:
            if token in table:
                raise ModelConfigError(f"backbone token {token!r} is declared by {table[token]!r} and {option.name!r}")
            table[token] = option.name
    return table
