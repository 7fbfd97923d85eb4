"""OmegaConf resolvers of segsweep's config tree (registered when ``sweeper`` is imported).

``${sweep_dirname:${hydra.overrides.task}}``: the sweep's directory name, derived from the sweep's
own overrides (``<readable overrides>-<sweep id>``), so a re-run of the same command uses the same
sweep dir and two different sweeps never share one (no timestamps). It is meant for the sweep's own
config, whose ``hydra.overrides.task`` is the command line; a job's config has the job's overrides,
so :class:`sweeper.bookkeeping.FixSweepDir` resolves the directory once and hands it to the jobs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from omegaconf import OmegaConf

_IGNORED = ("hydra.", "launcher.", "force=")


def own_overrides(task_overrides: Iterable[str] | None) -> list[str]:
    """The sweep's own overrides: the command line without hydra.*, launcher.* and +force."""
    return [str(o) for o in (task_overrides or []) if not str(o).lstrip("+~").startswith(_IGNORED)]


def sweep_id_of(task_overrides: Iterable[str] | None) -> str:
    """A stable id of a sweep command (order of its overrides does not matter)."""
    return hashlib.sha256("\n".join(sorted(own_overrides(task_overrides))).encode()).hexdigest()[:12]


def sweep_dirname(task_overrides: Iterable[str] | None, max_len: int = 80) -> str:
    """``backbone=dense30k36,dense30k48_scale=12,16-<id>``: readable (truncated), unique by its id."""
    own = own_overrides(task_overrides)
    slug = re.sub(r"[^A-Za-z0-9=,._+-]+", "-", "_".join(sorted(own)) or "defaults")[:max_len].strip("-_.") or "sweep"
    return f"{slug}-{sweep_id_of(own)}"


def register() -> None:
    if not OmegaConf.has_resolver("sweep_dirname"):
        OmegaConf.register_new_resolver("sweep_dirname", lambda overrides: sweep_dirname(list(overrides or [])))
