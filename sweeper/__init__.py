"""segsweep's sweep layer: naming, tracking, launching, status (see docs/architecture.md)."""

from sweeper.resolvers import register as _register_resolvers

_register_resolvers()  # ${sweep_dirname:...} in conf/sweep.yaml, wherever a sweep config is resolved
