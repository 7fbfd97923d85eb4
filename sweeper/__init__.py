"""segsweep's sweep layer: naming, tracking, launching, status (see docs/architecture.md)."""

import os
from pathlib import Path

from sweeper.resolvers import register as _register_resolvers

#: the directory a command was started in (relative config paths resolve against it); set by sweep.py
LAUNCH_DIR_ENV = "SEGSWEEP_LAUNCH_DIR"


def launch_dir() -> Path:
    """The directory the command was started in (relative paths of the config resolve against it)."""
    return Path(os.environ.get(LAUNCH_DIR_ENV) or os.getcwd())

_register_resolvers()  # ${sweep_dirname:...} in conf/sweep.yaml, wherever a sweep config is resolved
