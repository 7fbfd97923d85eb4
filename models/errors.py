"""The one exception family of models/: a model setting that cannot be built (exit 2 in sweep.py).

models/ imports nothing of sweeper/, so sweeper joins this class to its bad-input family
(``sweeper.errors.BAD_INPUT``) as it does the engine's ``InputError`` and the data's ``DatasetError``.
"""

from __future__ import annotations


class ModelConfigError(ValueError):
    """A backbone/model/init setting that cannot be built; the message names the key and the fix."""


class InitWeightsError(ModelConfigError, FileNotFoundError):
    """``init_path`` names no file (weights are never downloaded)."""
