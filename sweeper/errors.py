"""What can end a job, and the exit code each ends the command with.

- :class:`UserError` and its family: bad input the user can fix. The message is one line naming the
  problem and the fix; the command exits 2. Other packages' bad-input errors join the family through
  :data:`BAD_INPUT` (``engine`` and ``data`` cannot import ``sweeper``): the engine's
  :class:`engine.callbacks.InputError` family (config values, checkpoints), the data package's
  :class:`data.errors.DatasetError` and the models package's :class:`models.errors.ModelConfigError`.
- :class:`JobFailed`: a job whose MLflow run was created and then failed; it names the run (recorded
  FAILED) and carries the error that ended it.
- Anything else is a bug or a fault of the machine: exit 1.
"""

from __future__ import annotations

from data.errors import DatasetError
from engine.callbacks import InputError
from models.errors import ModelConfigError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UserError(Exception):
    """Bad input: the message names the problem and the fix in one line (exit 2)."""


class SettingsError(UserError, ValueError):
    """A launcher or sweeper setting that cannot work (``hydra.launcher.*``, ``hydra.sweeper.*``)."""


class StoreError(UserError, RuntimeError):
    """The tracking store cannot be used (not writable, unreachable, wrong URI)."""


class JobFailed(Exception):
    """The job's run ``run_id`` (recorded FAILED) ended with ``cause``."""

    def __init__(self, run_id: str, cause: BaseException):
        super().__init__(f"run {run_id} failed: {type(cause).__name__}: {cause}")
        self.run_id, self.cause = run_id, cause


#: the exception classes that mean bad input (exit 2)
BAD_INPUT: tuple[type[BaseException], ...] = (UserError, InputError, DatasetError, ModelConfigError)


def root_cause(error: BaseException) -> BaseException:
    """The error a :class:`JobFailed` carries, else the error itself."""
    return error.cause if isinstance(error, JobFailed) else error


def exit_code(error: BaseException, bad_input: tuple[type[BaseException], ...] = BAD_INPUT) -> int:
    """2 for bad input (the ``bad_input`` classes, also inside a :class:`JobFailed`), else 1."""
    return EXIT_BAD_INPUT if isinstance(root_cause(error), bad_input) else EXIT_FAILED
