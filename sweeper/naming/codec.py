"""Reading and writing names with the token table: ``parse``, ``compose``, ``canonical``, ``explain``.

``read_name`` turns a name into a ``Reading`` (the settings of each token, conflicts refused),
``resolve`` adds what depends on several tokens (the backbone of ``toy``, the recipe of the init,
the CamVid ResNet protocol) and gives the group choices and values of the name. ``compose`` writes a
run's config: the table's tokens in table order, then an escape token for every hashed key that
still differs from what those tokens imply (so a name says everything but the seed), then the
annotations; the result is read back and must give the run's semantic config, or BadNameError.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweeper.naming.configs import (
    SEED_KEY,
    annotations_value,
    hash_semantic,
    hydra_value,
    known_keys,
    leaves,
    semantic_config,
    semantic_from,
    semantic_of,
)
from sweeper.naming.configs import (
    compose_config as hydra_compose,
)
from sweeper.naming.errors import BadNameError, ConflictingTokensError, UnknownTokenError
from sweeper.naming.tokens import (
    ANNOTATE,
    ANNOTATIONS,
    DENSE_FAMILY,
    GROUPS,
    GROWTH,
    KNOWN_SPELLINGS,
    PHRASES,
    TABLE,
    TOY,
    V2_PREFIX,
    Context,
    Hint,
    Token,
    backbone_option,
    family_of_option,
    init_choice,
    multiscale_token,
    recipe,
)
from sweeper.naming.values import (
    KEY_SEPARATOR,
    check_path_safe,
    check_word,
    escape_token,
    format_value,
    read_value,
    split_escape,
)

ESCAPE_DOC = "a hashed config key without a token: <key path with '-'>-<value>, e.g. train-epochs-20"


@dataclass
class Reading:
    """What the tokens of one name set, each value with the token that set it."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    annotations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decoded:
    """One token of a name, the table entry that reads it and the settings it makes."""

    token: str
    entry: Token | None  # None: the escape token
    settings: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Reading


def split_tokens(name: str) -> list[str]:
    """The tokens of a name; empty tokens (``camvid..imagesize321``) are skipped, phrases joined."""
    name = check_path_safe(name.strip(), "name")
    if not name:
        raise UnknownTokenError("empty name: expected dotted tokens such as "
                                "'camvid.scratch.imagesize321.dense30k48.scale16'")
    tokens = [token for token in name.split(".") if token]
    for phrase, token in PHRASES.items():
        for i in range(len(tokens) - len(phrase) + 1):
            if tuple(tokens[i:i + len(phrase)]) == phrase:
                tokens[i:i + len(phrase)] = [token]
    return tokens


@lru_cache(maxsize=4096)
def decode_token(token: str) -> Decoded:
    """The table entry of ``token`` and its settings (escape tokens included), or UnknownTokenError."""
    for entry in TABLE:
        match = entry.regex.fullmatch(token)
        if match:
            return Decoded(token, entry, entry.decode(match))
    escape = split_escape(token, known_keys())
    if escape is not None:
        key, text = escape
        if key == SEED_KEY:
            raise BadNameError(f"{token!r}: the seed is never part of a name (runs that differ only by seed "
                               f"are repeats of one cell); pass seed=N instead")
        return Decoded(token, None, {key: read_value(text, known_keys()[key])})
    near = difflib.get_close_matches(token, KNOWN_SPELLINGS, n=4, cutoff=0.5)
    hint = f"; nearest known: {', '.join(near)}" if near else ""
    raise UnknownTokenError(f"unknown token {token!r}{hint}. Known tokens are listed by "
                            f"`python -m sweeper.naming tokens`; a key without a token is written "
                            f"<key path with '-'>-<value>, e.g. train-epochs-20")


def decode_name(name: str) -> list[Decoded]:
    """Every token of ``name`` with its settings; a token written twice is refused (even one that sets
    nothing: a name says each thing once)."""
    tokens = split_tokens(name)
    repeated = sorted({token for token in tokens if tokens.count(token) > 1})
    if repeated:
        raise ConflictingTokensError(f"token {repeated[0]!r} appears {tokens.count(repeated[0])} times in name "
                                     f"{name!r}: write it once")
    try:
        return [decode_token(token) for token in tokens]
    except UnknownTokenError as error:
        raise UnknownTokenError(f"name {name!r}: {error}") from None


def read_name(name: str) -> Reading:
    """The settings of a name; two tokens for one setting are refused with both named."""
    reading = Reading(name)
    for decoded in decode_name(name):
        for key, value in decoded.settings.items():
            if key == ANNOTATE:
                reading.annotations.append(value)
            elif isinstance(value, Hint):
                reading.hints.setdefault(key, value.value)
            elif key in reading.owners and not (decoded.entry and decoded.entry.corrects):
                raise ConflictingTokensError(
                    f"tokens {reading.owners[key]!r} and {decoded.token!r} of name {name!r} both set {key}: "
                    f"keep one of them")
            else:
                reading.owners[key], reading.values[key] = decoded.token, value
    return reading


@dataclass(frozen=True)
class Plan:
    """The group choices and the values of a name, in override order."""

    choices: dict[str, str]
    values: dict[str, Any]
    annotations: tuple[str, ...]

    def overrides(self) -> list[str]:
        groups = [f"{group}={self.choices[group]}" for group in GROUPS if group in self.choices]
        values = [f"{key}={hydra_value(value)}" for key, value in self.values.items()]
        if self.annotations:
            values.append(f"annotations={hydra_value(list(self.annotations))}")
        return groups + values


def resolve(reading: Reading) -> Plan:
    """Group choices and values of a name, with the defaults that depend on several tokens."""
    values, hints = dict(reading.values), reading.hints
    markers = {key: values.pop(key) for key in list(values) if key.startswith("@")}
    backbone = values.pop("backbone", None) or hints.get("backbone") or _default_backbone(values, markers)
    declared = family_of_option(backbone)
    family = declared.name
    if family == DENSE_FAMILY and GROWTH in markers and "backbone.growth" not in values:
        values["backbone.growth"] = markers[GROWTH]
    init = values.pop("init", None) or declared.default_init
    if init not in ("scratch", "imagenet"):
        raise BadNameError(f"init={init!r} in name {reading.name!r}: init is scratch or imagenet")
    choices = {"dataset": values.pop("dataset", "synthetic"), "backbone": backbone,
               "model": values.pop("model", "deeplabv2"), "train": values.pop("train", recipe(family, init))}
    if "eval" in values:
        choices["eval"] = values.pop("eval")
    for key, value in hints.items():
        if key not in GROUPS:
            values.setdefault(key, value)
    if markers.get(V2_PREFIX) and choices["dataset"] == "camvid" and family == "resnet" \
            and "dataset.eval_split" not in values:  # TOKENS.md 1b, the on_trainval row
        values.update({"dataset.train_split": "train", "dataset.eval_split": "val"})
    return Plan(choices, {"init": init, **values}, tuple(reading.annotations))


def _default_backbone(values: dict[str, Any], markers: dict[str, Any]) -> str:
    """No backbone token: the toy scripts were DenseNet k36 (or kN), the others ResNet-101."""
    dense_hint = TOY in markers or GROWTH in markers or any(
        k.startswith("backbone.") and k != "backbone.output_stride" for k in values)
    if dense_hint and "backbone.preact" not in values:
        return f"dense30k{markers.get(GROWTH, 36)}"
    return "resnet101"


def parse(name: str) -> list[str]:
    """Hydra overrides of a name: the group choices first, then the values the tokens own."""
    return plan_of(name).overrides()


@lru_cache(maxsize=4096)
def plan_of(name: str) -> Plan:
    """The Plan of a name (cached)."""
    return resolve(read_name(name))


# --------------------------------------------------------------------------------------------------
# Configs of names and overrides


def overrides_of(spec: str | Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """Overrides of a name (``str``) or of overrides (a list; a ``name=`` seed name among them is
    expanded first, the explicit overrides winning), plus ``extra``."""
    if isinstance(spec, str):
        return [*parse(spec), *extra]
    seed_names = [o.split("=", 1)[1] for o in spec if o.split("=", 1)[0].lstrip("+") == "name"]
    explicit = [o for o in spec if o.split("=", 1)[0].lstrip("+") != "name"]
    expanded = [*(parse(seed_names[-1]) if seed_names and seed_names[-1] not in ("null", "") else []), *explicit]
    return [*expanded, *extra]


def semantic(spec: str | Sequence[str], extra: Sequence[str] = ()) -> dict:
    """The semantic config (what enters the hash) of a name or of overrides (``configs.semantic_of``)."""
    if not isinstance(spec, str):
        return semantic_of(overrides_of(spec, extra))
    return semantic_of([*plan_of(spec).overrides(), *extra])


def compose_overrides(overrides: Sequence[str]) -> str:
    """The canonical name of the config of command-line overrides (annotations included)."""
    expanded = overrides_of(list(overrides))
    annotations: list[Any] = []
    for override in [o for o in expanded if o.split("=", 1)[0].lstrip("+") == "annotations"]:
        annotations = list(annotations_value(override))
    return compose_semantic(semantic_of(expanded), annotations)


def hash_of(spec: str | Sequence[str], extra: Sequence[str] = ()) -> str:
    """The config hash of a name or of overrides (fast: one cached composition per choice set)."""
    return hash_semantic(semantic(spec, extra))


def decode(name: str, seed: int | None = None) -> tuple[str, str]:
    """(canonical name, config hash) of a name, e.g. a notes name, with ``seed`` (the config's by default).

    The importer's fast path: one cached Hydra composition per choice set, not per name.
    """
    data = semantic(name, [f"{SEED_KEY}={seed}"] if seed is not None else [])
    return compose_semantic(data, plan_of(name).annotations), hash_semantic(data)


def compose_config(spec: str | Sequence[str], extra: Sequence[str] = ()) -> DictConfig:
    """The run config (Hydra's composition) of a name (``str``) or of overrides, plus ``extra``."""
    return hydra_compose(overrides_of(spec, extra) if isinstance(spec, str) else [*spec, *extra])


# --------------------------------------------------------------------------------------------------
# Writing


def compose(cfg: DictConfig | dict) -> str:
    """The canonical name of a (resolved or resolvable) run config."""
    annotations = cfg.get("annotations") or []
    if isinstance(annotations, ListConfig):
        annotations = OmegaConf.to_container(annotations)
    return compose_semantic(semantic_config(cfg), annotations)  # type: ignore[arg-type]


def compose_semantic(run: dict, annotations: Iterable[Any] = ()) -> str:
    """The canonical name of a semantic config (see ``compose``)."""
    annotations = [_annotation(a) for a in annotations]
    tokens = _table_tokens(run)
    for _ in range(3):
        got = semantic(".".join(tokens))
        missing = _differences(run, got)
        if not missing:
            return ".".join([*tokens, *annotations])
        tokens = _with_escapes(tokens, missing)
    raise BadNameError(f"the config cannot be written as a name: {', '.join(sorted(missing))} differ from "
                       f"what the name says (a key that is not in conf/, or deleted)")


def _annotation(value: Any) -> str:
    word = check_word(value, "annotation")
    if word not in ANNOTATIONS:
        raise BadNameError(f"annotation {word!r} is not an annotation token: use one of {', '.join(ANNOTATIONS)}")
    return word


def _table_tokens(run: dict) -> list[str]:
    """The table's tokens for a run, in canonical order, each only when all it sets is the run's."""
    context = Context(run, {})
    if run.get("init") not in ("scratch", "imagenet"):
        raise BadNameError(f"init={run.get('init')!r}: init is scratch or imagenet")
    init, recipe = init_choice(context)
    choices = {"dataset": run["dataset"]["name"], "backbone": backbone_option(context),
               "model": run["model"]["name"], "train": recipe, "eval": "multiscale" if multiscale_token(context)
               else "single"}
    context = Context(run, semantic_from(choices, [("set", "init", run["init"])]))
    tokens = []
    for entry in TABLE:
        text = entry.encode(context) if entry.encode else None
        if text is not None and _tells_the_truth(text, context):
            tokens.append(text)
    return tokens


def _tells_the_truth(token: str, context: Context) -> bool:
    """Whether ``token`` reads back and every plain value it sets is the run's value."""
    try:
        decoded = decode_token(token)
    except BadNameError:
        return False  # e.g. compression1e-4: no token spells it, an escape token will
    return all(same(context.get(key), value) for key, value in decoded.settings.items()
               if not isinstance(value, Hint) and not key.startswith("@") and key not in GROUPS)


def same(a: Any, b: Any) -> bool:
    """Equal as the hash sees them: 1, 1.0 and True are three values."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _differences(run: dict, got: dict) -> dict[str, Any]:
    """The leaves of ``run`` (seed aside) that ``got`` lacks or holds another value of."""
    want, have = leaves(run), leaves(got)
    missing = {k: v for k, v in want.items() if k != SEED_KEY and (k not in have or not same(have[k], v))}
    extra = set(have) - set(want)
    if extra:
        raise BadNameError(f"the config lacks {', '.join(sorted(extra))}: a config with deleted keys has no name")
    return missing


def _with_escapes(tokens: list[str], missing: dict[str, Any]) -> list[str]:
    """The table tokens, then the escape tokens (old and new) sorted by key."""
    table = [t for t in tokens if decode_token(t).entry is not None]
    escapes = {t for t in tokens if decode_token(t).entry is None}
    escapes |= {escape_token(key, value) for key, value in missing.items()}
    keys = known_keys()
    unknown = sorted(k for k in missing if k not in keys)
    if unknown:
        raise BadNameError(f"{', '.join(unknown)}: not a key of conf/, so no name can hold it")
    return table + sorted(escapes)


def canonical(name: str) -> str:
    """The canonical spelling of a name."""
    return compose_semantic(semantic(name), plan_of(name).annotations)


# --------------------------------------------------------------------------------------------------
# Explaining


def explain(name: str) -> list[str]:
    """One line per token of ``name``: the token, its slot and the values it sets; then the groups."""
    lines = []
    for decoded in decode_name(name):
        slot = decoded.entry.slot if decoded.entry else "escape"
        settings = ", ".join(_setting(k, v) for k, v in decoded.settings.items()) or "no value (a no-op)"
        lines.append(f"{decoded.token:<28} {slot:<20} {settings}")
    plan = plan_of(name)
    lines.append("=> " + " ".join(plan.overrides()))
    lines.append(f"canonical: {canonical(name)}  hash: {hash_of(name)}")
    return lines


def _setting(key: str, value: Any) -> str:
    if isinstance(value, Hint):
        return f"{key}={format_value(value.value, key)} (unless another token sets it)"
    labels = {ANNOTATE: "annotation", GROWTH: "growth of the default DenseNet", TOY: "toy schedule",
              V2_PREFIX: "old deeplabv2 prefix (CamVid ResNet: train -> val)"}
    if key in labels:
        return labels[key] if value is True else f"{labels[key]} {value}"
    return f"{key}={hydra_value(value)}"


__all__ = ["KEY_SEPARATOR", "compose", "compose_semantic", "canonical", "decode", "explain", "hash_of",
           "parse", "read_name", "semantic"]
