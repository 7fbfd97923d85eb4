"""What a person watching a run sees: a bar per epoch on a terminal, and always a line per epoch.

On a terminal the epoch's tqdm bar (on stderr) is erased when the epoch ends and the epoch's summary
line (loss, val mIoU, lr, time) stays; without one (a log file, ``nohup``, SLURM) there is no bar and
the same line is printed plainly, so a log shows every epoch and the end of the final evaluation.
Lines go to stdout, flushed, through ``tqdm.write`` so that they never tear a bar, and the same lines go
to every file handler of the root logger (Hydra's per-job ``<job>.log``), as records of the logger
``engine.progress``; the console handlers are skipped there, so a terminal sees each line once.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from engine.callbacks import LR_METRIC, Callback

T = TypeVar("T")
PREFIX = "[segsweep]"
LOG = logging.getLogger(__name__)


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where the bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-less file
        return False


def epoch_bar(items: Iterable[T], epoch: int, epochs: int, total: int | None = None) -> tqdm:
    """The bar over one epoch's batches (1-based ``epoch``): shown on a terminal only, erased at its end."""
    return tqdm(items, desc=f"epoch {epoch}/{epochs}", total=total, leave=False, disable=not is_terminal(),
                dynamic_ncols=True)


def _value(metrics: Mapping[str, Any], key: str, spec: str) -> str:
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(float(value), spec)


def _miou(metrics: Mapping[str, Any], final: bool = False) -> str:
    """``val mIoU 45.20`` (or ``test mIoU ...``): the mIoU under the split it was measured on."""
    for key in metrics:
        if key.endswith("_mIoU") and key.startswith("final_") == final:
            split = key.removeprefix("final_").removesuffix("_mIoU")
            return f"{split} mIoU {_value(metrics, key, '.2f')}"
    return "mIoU n/a"


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, Any]) -> str:
    """``[segsweep] epoch 3/10  loss 0.5120  val mIoU 45.20  lr 1.00e-03  12.3 s``."""
    return (f"{PREFIX} epoch {epoch}/{epochs}  loss {_value(metrics, 'train_loss', '.4f')}  "
            f"{_miou(metrics)}  lr {_value(metrics, LR_METRIC, '.2e')}  "
            f"{_value(metrics, 'epoch_seconds', '.1f')} s")


def start_line(info: Mapping[str, Any]) -> str:
    """What is about to train: epochs, steps, images, parameters, device (and where it resumes)."""
    resume = f", resuming after epoch {info['start_epoch']}" if info.get("start_epoch") else ""
    return (f"{PREFIX} training {info.get('epochs')} epochs x {info.get('steps_per_epoch')} steps "
            f"({info.get('train_images')} train / {info.get('eval_images')} eval images, "
            f"{_value(info, 'params_M', '.2f')}M params, {info.get('device')}){resume}")


def end_line(metrics: Mapping[str, Any]) -> str:
    """The end of the final evaluation: the run's final val mIoU."""
    return f"{PREFIX} final evaluation: {_miou(metrics, final=True)}"


def file_handlers(logger: logging.Logger | None = None) -> list[logging.FileHandler]:
    """The file handlers a record of ``logger`` (default ``engine.progress``) reaches: Hydra's job log."""
    found: list[logging.FileHandler] = []
    current: logging.Logger | None = logger or LOG
    while current is not None:
        found += [h for h in current.handlers if isinstance(h, logging.FileHandler) and h not in found]
        current = current.parent if current.propagate else None
    return found


def emit(line: str) -> None:
    """Print a line to stdout now, above any bar, and write it to the log files (Hydra's job log)."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
    if not LOG.isEnabledFor(logging.INFO):
        return
    record = LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, line, None, None)
    for handler in file_handlers():
        if record.levelno >= handler.level:
            handler.handle(record)


class Progress(Callback):
    """The engine's own reporter: a line at the start, one per epoch, one after the final evaluation."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.epochs = int(info.get("epochs") or 0)
        emit(start_line(info))

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        emit(epoch_line(epoch, self.epochs, metrics))

    def on_train_end(self, metrics: dict[str, float]) -> None:
        emit(end_line(metrics))
