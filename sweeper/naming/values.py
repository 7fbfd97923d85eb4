"""Values inside names: safe text, exact numbers, and the generic escape token ``<key path>-<value>``.

A name becomes a directory and an MLflow run name, so every piece of text that enters one is
checked here: no ``/``, ``\\``, NUL, ``..`` or leading ``.``. Numbers are written exactly (the
shortest spelling that reads back as the same float), with ``p`` for the decimal point because
``.`` separates tokens. The escape token names a config key that has no token of its own:
``train.epochs=20`` is ``train-epochs-20`` (key segments and the value joined by ``-``; list items
by ``+``; floats always show ``p`` or ``e``, so ``1p0`` is a float and ``1`` an int).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sweeper.naming.errors import BadNameError

#: What a word inside a name may hold: letters, digits and ``_`` (strings in escapes, annotations).
SAFE_WORD = re.compile(r"[A-Za-z0-9_]+")
#: Characters that may never reach a path through a name.
_FORBIDDEN = {"/": "a '/'", "\\": "a '\\'", "\0": "a NUL byte"}
_RESERVED_WORDS = {"true", "false", "null", "none", "nan", "inf"}
LIST_SEPARATOR = "+"
KEY_SEPARATOR = "-"


def check_path_safe(text: str, what: str) -> str:
    """``text`` unchanged, or BadNameError when it holds a character that could escape a directory."""
    for char, label in _FORBIDDEN.items():
        if char in text:
            raise BadNameError(f"{what} {text!r} holds {label}: names become directories, so a name holds "
                               f"dotted tokens of letters, digits, '_', '-' and '+' only")
    return text


def check_word(text: Any, what: str) -> str:
    """A string that may stand in a name (an annotation, a string value of an escape token)."""
    text = str(text)
    check_path_safe(text, what)
    if not SAFE_WORD.fullmatch(text):
        raise BadNameError(f"{what} {text!r} cannot be written in a name: use letters, digits and '_' only")
    return text


def format_number(value: float, scientific: bool = False) -> str:
    """The exact, dot-free spelling of a float: ``0p5``, ``1e-3``, ``2p5e-4``, ``20p0`` (never ``20``)."""
    if not math.isfinite(value):
        raise BadNameError(f"the value {value!r} cannot be written in a name (not a finite number)")
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(str(d) for d in digits)
    magnitude = exponent + len(text) - 1
    if scientific or not -2 <= magnitude < 6:
        spelled = text[0] + (f"p{text[1:]}" if len(text) > 1 else "") + f"e{magnitude}"
    else:
        spelled = format(Decimal(repr(abs(float(value)))).normalize(), "f").replace(".", "p")
        spelled = spelled if "p" in spelled else f"{spelled}p0"
    return ("-" if sign else "") + spelled


def read_number(text: str) -> float:
    """``1p5`` -> 1.5, ``2e-4`` -> 2e-4, ``1p5e-3`` -> 1.5e-3."""
    return float(text.replace("p", "."))


def format_value(value: Any, what: str) -> str:
    """The spelling of one config value inside an escape token."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | tuple):
        if not value:
            return LIST_SEPARATOR
        if any(isinstance(v, list | tuple | dict) for v in value):
            raise BadNameError(f"{what}: nested lists cannot be written in a name")
        return LIST_SEPARATOR.join(format_value(v, what) for v in value)
    if isinstance(value, str):
        word = check_word(value, what)
        if word.lower() in _RESERVED_WORDS or re.fullmatch(r"-?\d[\dpe-]*", word):
            raise BadNameError(f"{what}: the string {value!r} would read back as another type")
        return word
    raise BadNameError(f"{what}: a {type(value).__name__} value cannot be written in a name")


def read_scalar(text: str) -> Any:
    """The value of one escape spelling: bool, null, int, float (``p``/``e``) or a word."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+(p\d+)?(e-?\d+)?", text):
        return read_number(text)
    if SAFE_WORD.fullmatch(text):
        return text
    raise BadNameError(f"cannot read the value {text!r} of an escape token "
                       f"(expected a number such as 20 or 1p5e-3, true/false, null or a word)")


def read_value(text: str, is_list: bool) -> Any:
    """An escape value; ``+``-joined items (or a list-valued key) give a list."""
    if text == LIST_SEPARATOR:
        return []
    if LIST_SEPARATOR in text or is_list:
        return [read_scalar(item) for item in text.split(LIST_SEPARATOR)]
    return read_scalar(text)


def escape_token(key: str, value: Any) -> str:
    """``train.epochs``, 20 -> ``train-epochs-20``."""
    return KEY_SEPARATOR.join([*key.split("."), format_value(value, f"{key}={value!r}")])


def split_escape(token: str, keys: Iterable[str]) -> tuple[str, str] | None:
    """(dotted key, value text) of an escape token, the key being the longest known key it starts with."""
    parts = token.split(KEY_SEPARATOR)
    known = set(keys)
    for end in range(len(parts) - 1, 0, -1):
        key = ".".join(parts[:end])
        if key in known:
            return key, KEY_SEPARATOR.join(parts[end:])
    return None
