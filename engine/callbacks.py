"""How the training loop reports: callbacks, and the exceptions that stop a run early."""

from __future__ import annotations

from typing import Any


class StopTraining(Exception):
    """Raised by a callback to end training early (e.g. a pruned search trial)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Callback:
    """No-op base: override what you need. The engine calls these in order."""

    def on_train_start(self, info: dict[str, Any]) -> None:
        """``info``: params_M, num_classes, steps_per_epoch, epochs, start_epoch, history, device, ..."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """``epoch`` is 1-based; ``metrics`` holds train_loss, lr, val_mIoU, val_IoU/<class>, ..."""

    def on_train_end(self, metrics: dict[str, float]) -> None:
        """Final metrics (final_val_mIoU on the full split, ...)."""

    def on_warning(self, key: str, message: str) -> None:
        """Something the run should carry (e.g. ``loss_exploded``): the loop goes on."""
