"""Run configs for the codec: one composition path (Hydra's), the hash, the backbones.

``compose_config`` is Hydra's composition (the config a run gets). The codec needs the *semantic*
part of many configs (what enters the hash), and Hydra takes ~0.3 s a composition, so
``semantic_of`` composes with Hydra once per *choice set* (the overrides that change what Hydra
composes: group choices, other groups, ``hydra.*``) and applies the value overrides to a copy with
Hydra's own ``ConfigLoaderImpl._apply_overrides_to_config``, as a composition does after its defaults
list. Each choice set's composed tree is cached in memory and on disk (``$SEGSWEEP_CACHE_DIR`` or
``~/.cache/segsweep``, keyed by a digest of conf/ and Hydra's version), so a process that reads names
(``python -m sweeper.naming``, the results) composes only what no process composed before.

DenseNet backbones are one generic config: ``backbone=dense{L}k{K}`` is ``_densenet.yaml`` with the
blocks of ``DENSE_LAYOUTS[L]`` and growth K, one generated file ``conf/backbone/dense{L}k{K}.yaml`` for
each K in ``GROWTHS`` (``write_backbones``; a test fails when the files differ from what it writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
    """The (unresolved) values of one group option as Hydra composes it, e.g. a train recipe's ``base_lr``."""
    if not (CONF_DIR / group / f"{option}.yaml").is_file():
        raise BadNameError(f"no {group} option {option!r}: choose one of {', '.join(group_options(group))}")
    return composed((f"{group}={option}",))[group]


@lru_cache(maxsize=1)
def known_keys() -> dict[str, bool]:
    """Every hashed leaf key of the conf tree (over all options, as Hydra composes each) -> whether it
    holds a list. The generated DenseNet options are skipped: they hold the keys of ``_densenet``."""
    keys: dict[str, bool] = {}
    trees = [composed(())]
    for group in hashed_groups():
        for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
            if not (group == "backbone" and DENSE_OPTION.fullmatch(option)):
                trees.append(composed((f"{group}={option}",)))
    for tree in trees:
        for key, value in _leaves(tree):
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


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def semantic_of(overrides: Sequence[str]) -> dict:
    """The semantic config of ``overrides``: the composed tree of their choice set, then their values."""
    groups, values = split_overrides(tuple(overrides))
    return json.loads(_semantic_json(groups, values))


def semantic_from(choices: dict[str, str], changes: Sequence[Change]) -> dict:
    """The semantic config of group choices (over sweep.yaml's defaults) and value changes."""
    prefix = {"set": "", "add": "+", "force": "++"}
    return semantic_of([*(f"{g}={o}" for g, o in choices.items()),
                        *(f"{prefix[kind]}{key}={hydra_value(value)}" for kind, key, value in changes)])


@lru_cache(maxsize=4096)
def _semantic_json(groups: tuple[str, ...], values: tuple[str, ...]) -> str:
    """The semantic config of a choice set and value overrides (kept on disk too: it depends on conf/
    alone, the resolvers of conf/ reading the environment only for unhashed keys; a value override that
    interpolates is never kept)."""
    kept = not any("${" in value for value in values)
    return _disk_cached(("semantic", groups, values), lambda: _semantic_text(groups, values), kept)


def _semantic_text(groups: tuple[str, ...], values: tuple[str, ...]) -> str:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    cfg = OmegaConf.create(composed(groups))
    OmegaConf.set_struct(cfg, True)  # as Hydra's composition, before it applies the overrides
    if values:
        ConfigLoaderImpl._apply_overrides_to_config(_override_parser().parse_overrides(list(values)), cfg)
    return json.dumps(semantic_config(cfg))


@lru_cache(maxsize=256)
def _override_parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@lru_cache(maxsize=1024)
def split_overrides(overrides: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the choice set: overrides that change what Hydra composes, the value overrides) of command-line
    overrides in Hydra's grammar; bookkeeping values (tracking.*, launcher.*, name, ...) are left out."""
    groups: dict[str, str] = {}
    other: list[str] = []
    values: list[str] = []
    for override in _override_parser().parse_overrides(list(overrides)) if overrides else []:
        key = override.key_or_group
        top = key.split(".")[0]
        line = str(override.input_line)
        if override.is_sweep_override() or override.package is not None or top == "hydra" \
                or (CONF_DIR / key).is_dir():
            simple = (CONF_DIR / key).is_dir() and override.type.name == "CHANGE" and line.startswith(f"{key}=")
            if simple and not override.is_sweep_override() and override.package is None:
                groups[key] = str(override.value())
            else:
                other.append(line)  # Hydra words the errors (a sweep, a deletion) when it composes
        elif top not in UNHASHED_KEYS:
            values.append(line)
    choices = {g: o for g, o in groups.items() if default_choices().get(g) != o}
    return (*sorted(f"{g}={o}" for g, o in choices.items()), *other), tuple(values)


def composed(groups: tuple[str, ...]) -> dict:
    """The unresolved tree (no ``hydra`` node) that Hydra composes for a choice set (cached, a copy)."""
    return json.loads(_composed_json(groups))


@lru_cache(maxsize=256)
def _composed_json(groups: tuple[str, ...]) -> str:
    return _disk_cached(("composed", groups), lambda: json.dumps(
        OmegaConf.to_container(compose_config(groups), resolve=False)))


def _disk_cached(key: tuple, make: Any, kept: bool = True) -> str:
    """``make()``'s text, kept under the cache dir by ``key`` and the digest of conf/."""
    if not kept:
        return make()
    file = _cache_root() / _tree_digest() / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]}.json"
    try:
        return file.read_text()
    except OSError:
        pass
    text = make()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only home: made again next time
    return text


def _cache_root() -> Path:
    return Path(os.environ.get("SEGSWEEP_CACHE_DIR") or Path.home() / ".cache" / "segsweep") / "compose"


@lru_cache(maxsize=1)
def _tree_digest() -> str:
    """What decides a composition: every file of conf/ (its path, size and modification time, so an
    edit or a checkout changes it without reading ~400 files) and Hydra's version."""
    from hydra import __version__

    h = hashlib.sha256(f"{__version__}\0{CONF_DIR}".encode())
    for entry in sorted(_yaml_files(CONF_DIR)):
        h.update(entry.encode())
    return h.hexdigest()[:16]


def _yaml_files(folder: Path) -> Iterator[str]:
    """``path size mtime_ns`` of every yaml file below ``folder`` (os.scandir: one stat each)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from _yaml_files(Path(entry.path))
            elif entry.name.endswith(".yaml"):
                stat = entry.stat()
                yield f"{entry.path}\0{stat.st_size}\0{stat.st_mtime_ns}"


def annotations_value(override: str) -> list:
    """The list of an ``annotations=[...]`` override (Hydra's grammar)."""
    value = _override_parser().parse_override(override).value()
    if not isinstance(value, list):
        raise BadNameError(f"{override!r}: annotations is a list, e.g. annotations=[2ndtime]")
    return value
