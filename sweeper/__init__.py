"""segsweep's sweep layer: naming, tracking, launching, status (see docs/architecture.md)."""

from sweeper.resolvers import register as _register_resolvers

#: the directory a command was started in (relative config paths resolve against it); set by sweep.py
LAUNCH_DIR_ENV = "SEGSWEEP_LAUNCH_DIR"

_register_resolvers()  # ${sweep_dirname:...} in conf/sweep.yaml, wherever a sweep config is resolved
