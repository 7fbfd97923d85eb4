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
from sweeper.naming.configs import group_options as naming_options

#: ``key: value   # comment`` at the top level of conf/sweep.yaml
_SHORT_KEY = re.compile(r"^(?P<key>[a-z_]+):\s*(?P<value>[^#\n]*?)\s*(?:#\s*(?P<comment>.*))?$")
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


def _escape(text: str) -> str:
    return text.replace("$", "$$")


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """{group: options} of conf/ without Hydra's own groups, as the name codec lists them (files
    without ``_``; the generated DenseNet backbones as one phrase, ``dense{30,42,121}k{1..128}``)."""
    groups = {p.name: naming_options(p.name) if conf_dir == CONF_DIR else
              sorted(f.stem for f in p.glob("*.yaml") if not f.name.startswith("_"))
              for p in sorted(conf_dir.iterdir()) if p.is_dir() and p.name != "hydra"}
    return {g: opts for g, opts in groups.items() if opts}


def format_groups(conf_dir: Path = CONF_DIR) -> str:
    """One ``group: a, b, c`` line per config group."""
    groups = group_options(conf_dir)
    width = max((len(g) for g in groups), default=0) + 1
    return "\n".join(textwrap.fill(", ".join(opts), width=100, initial_indent=f"  {g + ':':{width}s} ",
                                   subsequent_indent=" " * (width + 3), break_on_hyphens=False)
                     for g, opts in groups.items())


def skip_hydras_group_listing() -> None:
    """Hydra's ``--help`` lists every group's options for ``$APP_CONFIG_GROUPS`` and
    ``$HYDRA_CONFIG_GROUPS`` even when the template uses neither (segsweep's does not), at about a
    second per group with the ~400 generated backbone files: make that listing empty for ``--help``."""
    from hydra._internal.hydra import Hydra

    Hydra.format_config_groups = lambda self, predicate, compact=True: ""  # type: ignore[method-assign]


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
