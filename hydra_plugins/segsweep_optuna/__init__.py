"""segsweep's Hydra sweeper on Optuna 5: asynchronous trials, pruning, crash tolerance, resume.

Select it with ``hydra/sweeper=segsweep_optuna`` (the ``search/`` config group does this).
Hydra imports this package during plugin discovery: keep it free of heavy imports.
"""
