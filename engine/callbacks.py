"""How the training loop reports: callbacks, the names of the metrics it reports, and the exceptions
that end a run early (torch-free: the sweeper and the results read the names from here)."""

from __future__ import annotations

from typing import Any

#: the per-epoch learning rate (a metric; the ``lr`` param is the base rate it is scaled from)
LR_METRIC = "lr_epoch"


def split_metric(split: str, measure: str = "mIoU", final: bool = False) -> str:
    """The name of a metric measured on ``split``: ``test_mIoU``, ``val_IoU/road``, ``final_test_mIoU``.

    A run reports what it measured under the split it measured it on (``dataset.eval_split``), so a
    test score is never read as a validation score.
    """
    return f"{'final_' if final else ''}{split}_{measure}"


class StopTraining(Exception):
    """Raised by a callback to end training early (e.g. a pruned search trial)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InputError(ValueError):
    """Bad input, or a state of files the user fixes (exit 2); the message names the problem and the fix."""


class ConfigError(InputError):
    """A config value the engine cannot train with; the message names the key and the fix (exit 2)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Callback:
    """No-op base: override what you need. The engine calls these in order."""

    def on_train_start(self, info: dict[str, Any]) -> None:
        """``info``: params_M, num_classes, steps_per_epoch, epochs, start_epoch, history, device, ..."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """``epoch`` is 1-based; ``metrics`` holds train_loss, lr_epoch, <split>_mIoU, <split>_IoU/<class>,
        <split>_pixel_acc, epoch_seconds (``<split>`` is ``dataset.eval_split``)."""

    def on_train_end(self, metrics: dict[str, float]) -> None:
        """Final metrics: final_<split>_mIoU on the full split, params_M, ..."""

    def on_warning(self, key: str, message: str) -> None:
        """Something the run should carry (e.g. ``loss_exploded``): the loop goes on."""
