"""Stale check: the config hash that a run's name (and seed) composes today.

A run whose ``segsweep.config_hash`` differs from ``config_hash(compose_config(parse(name) +
[f"seed={seed}"]))`` was made under another config tree, so the tables mark it. Composing is the
slow part (Hydra), so each name is composed once and the other seeds are hashed from its semantic
config; that shortcut is checked against the codec's own ``config_hash`` and dropped for a name
where they disagree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

_SLOW = object()


def _seed_value(seed: str) -> Any:
    try:
        return int(seed)
    except ValueError:
        return seed


class ConfigHashes:
    """Callable ``(name, seed) -> hash or None`` (None: the name no longer composes). Cached."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        from sweeper import naming

        self._naming = naming
        self._base: dict[str, Any] = {}
        self._cache: dict[tuple[str, str | None], str | None] = {}
        self._file = None if cache_dir is None else Path(cache_dir) / f"config-hashes-{self._tree_digest()}.json"
        self._loaded = 0
        if self._file is not None and self._file.is_file():
            with contextlib.suppress(OSError, ValueError):  # a damaged cache is only a slower render
                self._base.update(json.loads(self._file.read_text()))
            self._loaded = len(self._base)

    def _tree_digest(self) -> str:
        """Digest of what decides a name's config today: the conf tree and the codec's source."""
        h = hashlib.sha256()
        codec = Path(self._naming.__file__).parent  # the codec package: its table and its config builder
        for f in sorted(codec.rglob("*.py")):
            h.update(str(f.relative_to(codec)).encode() + b"\0" + f.read_bytes())
        conf = Path(self._naming.CONF_DIR)
        for f in sorted(conf.rglob("*.yaml")):
            h.update(str(f.relative_to(conf)).encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]

    def save(self) -> None:
        """Keep each name's semantic config for the next process (same conf tree and codec only)."""
        keep = {k: v for k, v in self._base.items() if v is not _SLOW}
        if self._file is None or len(keep) == self._loaded:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keep, sort_keys=True, default=str))
        os.replace(tmp, self._file)

    def __call__(self, name: str, seed: str | None) -> str | None:
        key = (name, seed)
        if key not in self._cache:
            self._cache[key] = self._compute(name, seed)
        return self._cache[key]

    def _official(self, name: str, seed: str | None) -> str:
        n = self._naming
        extra = [f"seed={seed}"] if seed is not None else []
        return n.config_hash(n.compose_config(n.parse(name), extra))

    @staticmethod
    def _fast(data: dict, seed: str | None) -> str:
        if seed is not None:
            data = {**data, "seed": _seed_value(seed)}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _compute(self, name: str, seed: str | None) -> str | None:
        base = self._base.get(name)
        if base is None and name in self._base:
            return None
        if base is _SLOW:
            return self._official(name, seed)
        if base is not None:
            return self._fast(base, seed)
        n = self._naming
        try:
            cfg = n.compose_config(n.parse(name), [f"seed={seed}"] if seed is not None else [])
        except Exception:  # noqa: BLE001 - an unknown token, a composition error: the name no longer composes
            self._base[name] = None
            return None
        official = n.config_hash(cfg)
        data = n.semantic_config(cfg)
        self._base[name] = data if self._fast(data, seed) == official else _SLOW
        return official


def cache_dir() -> Path:
    """``$SEGSWEEP_CACHE``, else ``$XDG_CACHE_HOME/segsweep``, else ``~/.cache/segsweep``."""
    if os.environ.get("SEGSWEEP_CACHE"):
        return Path(os.environ["SEGSWEEP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segsweep"


def default_hash_fn() -> ConfigHashes | None:
    """A ConfigHashes cached on disk, or None (with a warning) when the codec cannot be imported."""
    try:
        return ConfigHashes(cache_dir())
    except ImportError as exc:
        import sys

        print(f"warning: no config-hash stale check ({exc})", file=sys.stderr)
        return None
