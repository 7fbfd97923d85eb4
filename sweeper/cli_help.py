"""The parts of ``python sweep.py --help`` (conf/hydra/help/segsweep.yaml) that derive from conf/.

Registered as OmegaConf resolvers by sweep.py, so the help lists what conf/ holds today: the config
groups and their options (without the ``_`` files other options inherit from) and the short keys of
conf/sweep.yaml with their defaults and comments. Torch- and MLflow-free. Hydra feeds the help text
to ``string.Template``, so every ``$`` of the output is doubled.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from omegaconf import OmegaConf

from sweeper.naming import CONF_DIR
from sweeper.naming.configs import DENSE_OPTION

#: ``key: value   # comment`` at the top level of conf/sweep.yaml
_SHORT_KEY = re.compile(r"^(?P<key>[a-z_]+):\s*(?P<value>[^#\n]*?)\s*(?:#\s*(?P<comment>.*))?$")
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


def _escape(text: str) -> str:
    return text.replace("$", "$$")


def _public(options: list[str]) -> list[str]:
    return sorted(o for o in options if not o.startswith("_"))


def group_options(conf_dir: Path | None = None) -> dict[str, list[str]]:
    """{group: options} without Hydra's own groups and without ``_*`` (internal) files.

    From the running Hydra app's config loader (files and structured configs alike, e.g. the
    registered ``dense{L}k{K}`` backbones), or from the files of ``conf_dir`` when given.
    """
    if conf_dir is not None:
        groups = {p.name: _public([f.stem for f in p.glob("*.yaml")])
                  for p in sorted(conf_dir.iterdir()) if p.is_dir() and p.name != "hydra"}
        return {g: opts for g, opts in groups.items() if opts}
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    loader = GlobalHydra.instance().config_loader()
    groups = {g: _public(list(loader.get_group_options(g, ObjectType.CONFIG)))
              for g in sorted(loader.list_groups("")) if g != "hydra"}
    return {g: opts for g, opts in groups.items() if opts}


def _collapse_dense(options: list[str]) -> list[str]:
    """The generated ``dense{L}k{K}`` backbones as one entry per layout (``dense30k{1..128}``)."""
    growths: dict[str, list[int]] = {}
    rest = []
    for option in options:
        match = DENSE_OPTION.fullmatch(option)
        if match:
            growths.setdefault(match["layers"], []).append(int(match["growth"]))
        else:
            rest.append(option)
    dense = [f"dense{layers}k{{{min(ks)}..{max(ks)}}}" if len(ks) > 2 else ", ".join(f"dense{layers}k{k}" for k in ks)
             for layers, ks in sorted(growths.items(), key=lambda item: int(item[0]))]
    return dense + rest


def format_groups(conf_dir: Path | None = None) -> str:
    """One ``group: a, b, c`` line per config group."""
    groups = {g: _collapse_dense(opts) for g, opts in group_options(conf_dir).items()}
    width = max((len(g) for g in groups), default=0) + 1
    return "\n".join(textwrap.fill(", ".join(opts), width=100, initial_indent=f"  {g + ':':{width}s} ",
                                   subsequent_indent=" " * (width + 3), break_on_hyphens=False)
                     for g, opts in groups.items())


def short_keys(sweep_yaml: Path = CONF_DIR / "sweep.yaml") -> list[tuple[str, str, str]]:
    """(key, default, comment) of the top-level keys of conf/sweep.yaml (not ``defaults``/``hydra``);
    a default that interpolates a group key reads ``= dataset.scale``."""
    keys = []
    for line in sweep_yaml.read_text().splitlines():
        match = _SHORT_KEY.match(line)
        if not match or match["key"] in ("defaults", "hydra") or not match["value"]:
            continue
        value = match["value"]
        linked = _INTERPOLATION.match(value)
        keys.append((match["key"], f"= {linked[1]}" if linked else value, (match["comment"] or "").strip()))
    return keys


def format_short_keys(sweep_yaml: Path = CONF_DIR / "sweep.yaml") -> str:
    """One aligned ``key  default  comment`` line per short key."""
    rows = short_keys(sweep_yaml)
    kw = max((len(k) for k, _, _ in rows), default=0)
    vw = max((len(v) for _, v, _ in rows), default=0)
    return "\n".join(_escape(f"  {k:{kw}s}  {v:{vw}s}  {c}".rstrip()) for k, v, c in rows)


def register() -> None:
    """``${segsweep_groups:}`` and ``${segsweep_short_keys:}`` for the help template."""
    if not OmegaConf.has_resolver("segsweep_groups"):
        OmegaConf.register_new_resolver("segsweep_groups", lambda: _escape(format_groups()))
    if not OmegaConf.has_resolver("segsweep_short_keys"):
        OmegaConf.register_new_resolver("segsweep_short_keys", format_short_keys)
