"""Dataset-level confusion matrix and the segmentation scores derived from it.

One matrix is accumulated over every labelled pixel of every evaluated image (not a per-image
mean), as in the original ``tensorpack`` code. Rows are ground truth, columns are predictions.

Absent-class rule: a class with no pixel in the labels **and** none in the predictions has an
undefined IoU (0/0). It is reported as ``None`` and left out of the mean. The original used
``np.mean`` over all classes and produced NaN in that case (TOKENS §3, §5.11);
:meth:`ConfusionMatrix.miou_legacy` reproduces that for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """A ``num_classes × num_classes`` int64 count matrix (rows: label, columns: prediction).

    Labels equal to ``ignore_index``, negative, or ``>= num_classes`` are dropped (the original
    dropped labels outside the ``C²`` bins silently, e.g. CamVid's 11 = Unlabelled).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu"):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.mat = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Zero the counts."""
        self.mat.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> None:
        """Add the pixels of one prediction/label pair (any equal shapes, integer class ids).

        Counting runs with ``torch.bincount`` on the tensors' device; ignored pixels go to an extra
        row of bins instead of being removed with a boolean index (faster than numpy's masked
        ``np.bincount`` on CPU, see bench/evaluate.py).
        """
        pred = torch.as_tensor(pred)
        label = torch.as_tensor(label, device=pred.device)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
        if pred.is_floating_point() or label.is_floating_point():
            raise TypeError("update() takes integer class ids; use probs.argmax(0) for the prediction")
        if pred.numel() == 0:
            return
        c = self.num_classes
        lo, hi = torch.aminmax(pred)
        if int(lo) < 0 or int(hi) >= c:
            raise ValueError(f"predicted class ids must lie in [0, {c}), got range [{int(lo)}, {int(hi)}]")
        label = label.reshape(-1).long()
        idx = label.clamp(-1, c)  # a new tensor; the caller's label is never modified
        idx.masked_fill_(idx.lt(0), c)  # row c collects negative, >= num_classes and ignored labels
        if 0 <= self.ignore_index < c:
            idx.masked_fill_(label.eq(self.ignore_index), c)
        idx.mul_(c).add_(pred.reshape(-1))
        counts = torch.bincount(idx, minlength=(c + 1) * c)[: c * c]
        self.mat += counts.reshape(c, c).to(self.mat.device)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (same number of classes)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.mat += other.mat.to(self.mat.device)
        return self

    # ---- derived scores (fractions in [0, 1]; the evaluator reports percent) ----
    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.mat.detach().cpu().numpy().astype(np.float64)
        tp = np.diag(m)
        return tp, m.sum(axis=1), m.sum(axis=0)  # tp, label count, prediction count

    @property
    def total(self) -> int:
        """Number of counted (labelled) pixels."""
        return int(self.mat.sum())

    def iou(self) -> list[float | None]:
        """Per-class IoU = TP / (TP + FP + FN); ``None`` for classes absent from labels and predictions."""
        tp, gt, pr = self._counts()
        union = gt + pr - tp
        return [float(t / u) if u > 0 else None for t, u in zip(tp, union, strict=True)]

    def miou(self) -> float:
        """Mean IoU over the classes whose IoU is defined; NaN when no class is."""
        vals = [v for v in self.iou() if v is not None]
        return float(np.mean(vals)) if vals else math.nan

    def miou_legacy(self) -> float:
        """The original's ``np.mean`` over all classes: NaN as soon as one class has zero union."""
        tp, gt, pr = self._counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.mean(tp / (gt + pr - tp)))

    def pixel_accuracy(self) -> float:
        """Correct pixels / labelled pixels; NaN when nothing was counted."""
        tp, gt, _ = self._counts()
        return float(tp.sum() / gt.sum()) if gt.sum() > 0 else math.nan

    def class_accuracy(self) -> list[float | None]:
        """Per-class recall TP / (TP + FN); ``None`` for classes with no labelled pixel."""
        tp, gt, _ = self._counts()
        return [float(t / g) if g > 0 else None for t, g in zip(tp, gt, strict=True)]

    def mean_class_accuracy(self) -> float:
        """Mean of the defined per-class accuracies; NaN when none is defined."""
        vals = [v for v in self.class_accuracy() if v is not None]
        return float(np.mean(vals)) if vals else math.nan

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Scores in percent: mIoU, pixel_acc, mean_class_acc and ``iou`` by class name."""
        names = list(class_names) if class_names is not None else [f"class{i}" for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes; "
                             "make dataset.class_names match dataset.num_classes")
        return {
            "mIoU": 100.0 * self.miou(),
            "pixel_acc": 100.0 * self.pixel_accuracy(),
            "mean_class_acc": 100.0 * self.mean_class_accuracy(),
            "iou": {n: (None if v is None else 100.0 * v) for n, v in zip(names, self.iou(), strict=True)},
        }
