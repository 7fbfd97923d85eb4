"""The name codec: a config <-> its dotted experiment name (docs/naming.md has the grammar).

A name such as ``camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16``
is a list of tokens; each token is one entry of the table in ``sweeper/naming/tokens.py``, which owns
its slot in the canonical order, how it is read and how it is written (``../shared/reference/TOKENS.md``
decodes the tokens from the original code). ``parse(name)`` gives the Hydra overrides of a name,
``compose(cfg)`` the canonical name of a config, and ``canonical(name) == compose(compose_config(name))``.

A canonical name states dataset, init, imagesize, backbone and scale, then every other token whose
value differs from what the groups imply, then an escape token (``train-epochs-20``) for every hashed
key that still differs, then the annotations. Only the seed is left out: runs that differ only by
seed share a name and are the repeats of one table cell. Legacy spellings (``res100``, ``cs``,
``pascal``, ``densenet121k32``, ``deeplabv2.camvid..``) parse to the canonical tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from omegaconf import DictConfig

from sweeper.naming.codec import (
    canonical,
    compose,
    compose_config,
    compose_overrides,
    compose_semantic,
    decode,
    explain,
    hash_of,
    parse,
    plan_of,
    read_name,
    semantic,
    split_tokens,
)
from sweeper.naming.configs import (
    CONF_DIR,
    DENSE_LAYOUTS,
    GROWTHS,
    UNHASHED_KEYS,
    UNHASHED_NESTED_KEYS,
    backbone_summary,
    config_hash,
    semantic_config,
)
from sweeper.naming.errors import BadNameError, ConflictingTokensError, UnknownTokenError
from sweeper.naming.tokens import ANNOTATIONS, KNOWN_SPELLINGS, TABLE


def run_key(name: str, config_hash: str) -> str:
    """The run key of a canonical name (which starts with the dataset) and its config hash."""
    return f"{name}@{config_hash}"


def apply_seed_name(cfg: DictConfig, explicit: Iterable[str]) -> DictConfig:
    """The config of ``cfg.name`` (a seed name), with the explicit command-line overrides on top."""
    explicit = [o for o in explicit if o.split("=", 1)[0].lstrip("+~") != "name"]
    return compose_config(str(cfg.name), extra=explicit)


__all__ = ["ANNOTATIONS", "CONF_DIR", "DENSE_LAYOUTS", "GROWTHS", "KNOWN_SPELLINGS", "TABLE", "UNHASHED_KEYS",
           "UNHASHED_NESTED_KEYS", "BadNameError", "ConflictingTokensError", "UnknownTokenError",
           "apply_seed_name", "backbone_summary", "canonical", "compose", "compose_config", "compose_overrides", "compose_semantic",
           "config_hash", "decode", "explain", "hash_of", "parse", "plan_of", "read_name", "run_key", "semantic",
           "semantic_config", "split_tokens"]
