"""segsweep's sweep layer: naming, tracking, launching, status (see docs/architecture.md)."""

import os
from pathlib import Path

from sweeper.resolvers import register as _register_resolvers

#: the directory a command was started in (relative config paths resolve against it); set by sweep.py
LAUNCH_DIR_ENV = "SEGSWEEP_LAUNCH_DIR"
#: JSON {"<uri>|<experiment>": parent run id}: set by the launcher or the search, read by each job
PARENTS_ENV = "SEGSWEEP_PARENT_RUNS"
#: the sweep (or study) a job belongs to: its runs' ``segsweep.sweep_id`` tag
SWEEP_ID_ENV = "SEGSWEEP_SWEEP_ID"


def launch_dir() -> Path:
    """The directory the command was started in (relative paths of the config resolve against it)."""
    return Path(os.environ.get(LAUNCH_DIR_ENV) or os.getcwd())

_register_resolvers()  # ${sweep_dirname:...} in conf/sweep.yaml, wherever a sweep config is resolved
