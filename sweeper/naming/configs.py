"""Run configs for the codec: Hydra's composition, an exact Hydra-free one, the hash, the backbones.

``compose_config`` is Hydra's composition (the config a run gets). The codec itself only needs the
*semantic* part of a config (what enters the hash), and Hydra takes ~0.3 s a composition, so
``semantic_of`` builds it straight from the conf/ YAML files with OmegaConf: the same files, the
same merge order (group defaults, then ``_self_``), the same override grammar (Hydra's own parser).
It covers group choices and ``key=value`` / ``+key=value`` / ``++key=value`` overrides of the hashed
groups; anything else (``hydra.*``, other groups, deletions, sweeps) goes through Hydra. The tests
check it against Hydra on random override sets.

DenseNet backbones are one generic config: ``backbone=dense{L}k{K}`` is ``_densenet.yaml`` with the
blocks of ``DENSE_LAYOUTS[L]`` and growth K, one generated file ``conf/backbone/dense{L}k{K}.yaml`` for
each K in ``GROWTHS`` (``write_backbones``; a test fails when the files differ from what it writes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.registry import DECLARATION_KEYS
from models.families import CONF_DIR
from models.families import DECLARATION_KEYS as BACKBONE_DECLARATION_KEYS
from sweeper.naming.errors import BadNameError

#: DenseNet block layouts by the L of ``dense{L}k{K}`` (L = number of dense layers). A new depth: one line.
DENSE_LAYOUTS: dict[int, list[int]] = {
    30: [6, 8, 8, 8],
    42: [6, 8, 16, 12],
    121: [6, 12, 24, 16],
}
#: Depths of old names that are another depth's layout (``densenet31k48``: VOC's [6, 8, 8, 8]).
LEGACY_DEPTHS = {31: 30}
#: Growth rates registered as ``backbone=dense{L}k{K}`` options (any K parses; Hydra needs a node).
GROWTHS = range(1, 129)
DENSE_OPTION = re.compile(r"dense(?P<layers>\d+)k(?P<growth>\d+)")

#: Keys that do not change what a run computes: left out of the config hash.
UNHASHED_KEYS = ("name", "tracking", "launcher", "output_root", "device", "annotations", "force",
                 "optuna", "sweep", "hydra")
UNHASHED_NESTED_KEYS = (("dataset", "root"), ("train", "base_lr"),  # base_lr only defaults `lr`
                        *(("dataset", key) for key in DECLARATION_KEYS),  # the registry's declaration
                        *(("backbone", key) for key in BACKBONE_DECLARATION_KEYS))  # the family's declaration
#: Where inputs live (a file, a folder): a path, never part of a name and not what a run computes. They
#: enter the hash as null (their default) whatever they hold, so the hashes of existing configs stay.
LOCATION_KEYS = (("init_path",), ("dataset", "list_dir"))
#: The one hashed key that a name leaves out: runs that differ only by seed repeat one table cell.
SEED_KEY = "seed"


class NeedsHydra(Exception):
    """An override the Hydra-free composition does not cover."""


# --------------------------------------------------------------------------------------------------
# The conf/ tree


@cache
def _load(relative: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / relative), resolve=False)  # type: ignore[return-value]


def dense_node(layers: int, growth: int) -> dict:
    """The generic DenseNet backbone option ``dense{layers}k{growth}``."""
    return {"defaults": ["_densenet", "_self_"], "blocks": list(DENSE_LAYOUTS[layers]), "growth": growth}


GENERATED = ("# generated from DENSE_LAYOUTS x GROWTHS (sweeper/naming/configs.py) by "
             "`python -m sweeper.naming backbones --write`: do not edit\n")


def generated_backbones() -> dict[str, str]:
    """{file name: text} of every generated ``conf/backbone/dense{L}k{K}.yaml`` (plain files, so that
    any Hydra app composing conf/ finds them: docs/naming.md, "The DenseNet options")."""
    files = {}
    for layers, blocks in DENSE_LAYOUTS.items():
        for growth in GROWTHS:
            files[f"dense{layers}k{growth}.yaml"] = (
                f"{GENERATED}defaults:\n  - _densenet\n  - _self_\n\n"
                f"blocks: [{', '.join(map(str, blocks))}]\ngrowth: {growth}\n")
    return files


def stale_backbones(folder: Path | None = None) -> tuple[dict[str, str], list[Path]]:
    """(files to write: missing or different, generated files to remove) of conf/backbone/."""
    folder = folder or CONF_DIR / "backbone"
    wanted = generated_backbones()
    write = {name: text for name, text in wanted.items()
             if not (folder / name).is_file() or (folder / name).read_text() != text}
    remove = [p for p in sorted(folder.glob("*.yaml")) if p.name not in wanted and p.read_text().startswith(GENERATED)]
    return write, remove


def write_backbones(folder: Path | None = None) -> list[str]:
    """Bring the generated DenseNet options of conf/backbone/ up to date; the names of the changed files."""
    folder = folder or CONF_DIR / "backbone"
    write, remove = stale_backbones(folder)
    for name, text in write.items():
        (folder / name).write_text(text)
    for path in remove:
        path.unlink()
    return sorted([*write, *(p.name for p in remove)])


def _raw_option(group: str, option: str) -> dict:
    path = CONF_DIR / group / f"{option}.yaml"
    if "/" not in option and path.is_file():
        if "# @package" in path.read_text():
            raise NeedsHydra  # an option placed elsewhere in the config: Hydra places it
        return dict(_load(f"{group}/{option}.yaml"))
    raise BadNameError(f"no {group} option {option!r}: choose one of {', '.join(group_options(group))}")


@cache
def _option(group: str, option: str) -> dict:
    """A group option merged with the options its defaults list names (``_self_`` last unless placed)."""
    raw = _raw_option(group, option)
    defaults = raw.pop("defaults", [])
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    parts = [raw if entry == "_self_" else _option(group, entry) for entry in defaults if isinstance(entry, str)]
    return OmegaConf.to_container(OmegaConf.merge(*parts), resolve=False)  # type: ignore[return-value]


def group_options(group: str) -> list[str]:
    """The options of a group (files without ``_``, plus the generic DenseNet names for ``backbone``)."""
    files = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))
    if group == "backbone":
        files = [f for f in files if not DENSE_OPTION.fullmatch(f)] + [backbone_summary()]
    return files


def backbone_summary() -> str:
    """The DenseNet options in one phrase, for help texts: ``dense{30,42,121}k{1..128}``."""
    depths = ",".join(str(d) for d in DENSE_LAYOUTS)
    return f"dense{{{depths}}}k{{{GROWTHS.start}..{GROWTHS.stop - 1}}}"


@lru_cache(maxsize=1)
def default_choices() -> dict[str, str]:
    """The group choices of conf/sweep.yaml's defaults list."""
    choices: dict[str, str] = {}
    for entry in _load("sweep.yaml")["defaults"]:
        if isinstance(entry, dict):
            choices.update({str(k): str(v) for k, v in entry.items()
                            if not str(k).startswith(("override ", "hydra/"))})  # Hydra's own groups
    return choices


def hashed_groups() -> tuple[str, ...]:
    """The groups of sweep.yaml's defaults that enter the hash (all but tracking and launcher)."""
    return tuple(group for group in default_choices() if group not in UNHASHED_KEYS)


def option_values(group: str, option: str) -> dict:
    """The (unresolved) values of one group option, e.g. a train recipe's ``base_lr``."""
    return _option(group, option)


@lru_cache(maxsize=1)
def known_keys() -> dict[str, bool]:
    """Every hashed leaf key of the conf tree (over all options) -> whether it holds a list."""
    keys: dict[str, bool] = {}
    top = {k: v for k, v in _load("sweep.yaml").items() if k not in ("defaults", "hydra")}
    sources: list[tuple[str, dict]] = [("", top)]
    for group in hashed_groups():
        for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
            if group == "backbone" and DENSE_OPTION.fullmatch(option):
                continue  # a generated DenseNet option: the keys of _densenet.yaml
            try:
                sources.append((group, _option(group, option)))
            except NeedsHydra:
                continue  # an @package option: its keys land elsewhere
    for prefix, node in sources:
        for key, value in _leaves(node, prefix):
            keys[key] = keys.get(key, False) or isinstance(value, list)
    dropped = [*UNHASHED_KEYS, SEED_KEY, *(".".join(k) for k in (*UNHASHED_NESTED_KEYS, *LOCATION_KEYS))]
    return {key: is_list for key, is_list in keys.items()
            if not any(key == d or key.startswith(d + ".") for d in dropped)}


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf; lists are leaves."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def leaves(node: dict) -> dict[str, Any]:
    """The leaves of a nested dict by dotted key."""
    return dict(_leaves(node))


# --------------------------------------------------------------------------------------------------
# Composition and the hash


def register_backbones() -> None:
    """Nothing to do: the ``dense{L}k{K}`` options are files of conf/backbone/ (``write_backbones``).

    Kept for callers from before the files (sweep.py, tests/conftest.py): any Hydra app finds them.
    """


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Hydra's composition of conf/sweep.yaml with ``overrides`` (cached, read-only)."""
    return _hydra_compose(tuple(overrides))


@lru_cache(maxsize=256)
def _hydra_compose(overrides: tuple[str, ...]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app: same config tree
        cfg = hydra_compose(config_name="sweep", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="sweep", overrides=list(overrides))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def semantic_config(cfg: DictConfig | dict) -> dict:
    """The resolved config without the keys that do not change what a run computes."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False) if isinstance(cfg, DictConfig) \
        else json.loads(json.dumps(cfg))
    assert isinstance(data, dict)
    for key in UNHASHED_KEYS:
        data.pop(key, None)
    for group, key in UNHASHED_NESTED_KEYS:
        data.get(group, {}).pop(key, None)
    for *parents, leaf in LOCATION_KEYS:
        node = data
        for part in parents:
            node = node.get(part, {})
        if leaf in node:
            node[leaf] = None
    return data


def hash_semantic(data: dict) -> str:
    """The config hash of a semantic config."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig) -> str:
    """A short, process-stable hash of the semantic part of a resolved config."""
    return hash_semantic(semantic_config(cfg))


Change = tuple[str, str, Any]  # (kind: set | add | force, dotted key, value)


def semantic_of(overrides: Sequence[str]) -> dict:
    """The semantic config of ``overrides``: Hydra-free where that is exact, else Hydra's."""
    try:
        choices, changes = parse_overrides(tuple(overrides))
        return semantic_from(choices, changes)
    except NeedsHydra:
        return semantic_config(compose_config(overrides))


def semantic_from(choices: dict[str, str], changes: Sequence[Change]) -> dict:
    """The semantic config of group choices (over sweep.yaml's defaults) and value changes.

    Raises NeedsHydra where only Hydra can tell (a deleted key, another group, ...).
    """
    key = json.dumps([sorted(choices.items()), list(changes)], default=repr)
    return json.loads(_semantic_json(key))


@lru_cache(maxsize=4096)
def _semantic_json(key: str) -> str:
    choice_items, changes = json.loads(key)
    choices = {**default_choices(), **dict(choice_items)}
    try:
        data = _plain_build(choices, [tuple(c) for c in changes])
    except _NeedsOmegaConf:
        data = _build(choices, [tuple(c) for c in changes])
    return json.dumps(data)


@lru_cache(maxsize=256)
def _override_parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@lru_cache(maxsize=1024)
def parse_overrides(overrides: tuple[str, ...]) -> tuple[dict[str, str], tuple[Change, ...]]:
    """Group choices and value changes of command-line overrides (Hydra's grammar)."""
    if not overrides:
        return {}, ()
    try:
        parsed = _override_parser().parse_overrides(list(overrides))
    except Exception as error:  # Hydra's grammar error: let Hydra word it
        raise NeedsHydra from error
    choices: dict[str, str] = {}
    changes: list[Change] = []
    defaults = default_choices()
    for override in parsed:
        if override.is_sweep_override() or override.package is not None or override.is_delete():
            raise NeedsHydra
        key = override.key_or_group
        top = key.split(".")[0]
        if key in defaults and override.type.name == "CHANGE":
            choices[key] = str(override.value())
        elif top == "hydra" or (CONF_DIR / top).is_dir() and top not in defaults:
            raise NeedsHydra  # another group (`+search=...`) or Hydra's own settings
        elif top in UNHASHED_KEYS:
            continue  # bookkeeping (tracking.*, launcher.*, name, force, ...): not in the semantic config
        else:
            changes.append(("add" if override.is_add() else "force" if override.is_force_add() else "set",
                            key, override.value()))
    return choices, tuple(changes)


def annotations_value(override: str) -> list:
    """The list of an ``annotations=[...]`` override (Hydra's grammar)."""
    value = _override_parser().parse_override(override).value()
    if not isinstance(value, list):
        raise BadNameError(f"{override!r}: annotations is a list, e.g. annotations=[2ndtime]")
    return value


class _NeedsOmegaConf(Exception):
    """A value the plain-dict build does not resolve (an interpolation other than ``${key}``)."""


_REFERENCE = re.compile(r"\$\{([\w.]+)\}")


def _tree(choices: dict[str, str]) -> dict:
    for group in set(choices) - set(hashed_groups()):  # tracking, launcher: unhashed, but must exist
        if not (CONF_DIR / group / f"{choices[group]}.yaml").is_file():
            raise NeedsHydra
    tree = {group: _option(group, choices[group]) for group in hashed_groups()}
    tree.update({k: v for k, v in _load("sweep.yaml").items() if k not in ("defaults", "hydra")})
    return tree


def _plain_build(choices: dict[str, str], changes: list[Change]) -> dict:
    """The semantic config with plain dicts: overrides as Hydra applies them, ``${key}`` resolved."""
    tree = json.loads(json.dumps(_tree(choices)))
    for kind, key, value in changes:
        _plain_apply(tree, kind, key, value)
    data = semantic_config(tree)
    return _resolve(data, tree, 0)  # references may point at unhashed keys (lr: ${train.base_lr})


def _plain_apply(tree: dict, kind: str, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise _NeedsOmegaConf
        node = node[part]
    exists = leaf in node
    if kind == "set" and not exists or kind == "add" and node.get(leaf) is not None \
            and not isinstance(value, dict | list) or isinstance(value, dict) or isinstance(node.get(leaf), dict):
        raise _NeedsOmegaConf  # errors, and dict merges: OmegaConf words and merges them
    if isinstance(value, str) and "${" in value:
        raise _NeedsOmegaConf
    node[leaf] = value


def _resolve(node: Any, root: dict, depth: int) -> Any:
    if depth > 20:
        raise _NeedsOmegaConf
    if isinstance(node, dict):
        return {k: _resolve(v, root, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root, depth) for v in node]
    if isinstance(node, str) and "${" in node:
        match = _REFERENCE.fullmatch(node)
        if not match:
            raise _NeedsOmegaConf
        target: Any = root
        for part in match[1].split("."):
            if not isinstance(target, dict) or part not in target:
                raise _NeedsOmegaConf
            target = target[part]
        return _resolve(target, root, depth + 1)
    return node


def _build(choices: dict[str, str], changes: list[Change]) -> dict:
    """The semantic config through OmegaConf (interpolations of every kind, dict merges, its errors)."""
    cfg = OmegaConf.create(_tree(choices))
    OmegaConf.set_struct(cfg, True)
    try:
        for kind, key, value in changes:
            _apply(cfg, kind, key, value)
        return semantic_config(cfg)
    except OmegaConfBaseException as error:
        raise NeedsHydra from error


def _apply(cfg: DictConfig, kind: str, key: str, value: Any) -> None:
    """One override as Hydra's ConfigLoaderImpl applies it."""
    if kind == "set":
        OmegaConf.update(cfg, key, value, merge=True)
    elif kind == "force" or OmegaConf.select(cfg, key, throw_on_missing=False) is None \
            or isinstance(value, dict | list):
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    else:
        raise NeedsHydra
