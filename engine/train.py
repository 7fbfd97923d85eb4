"""The training loop of the notes' recipe (TOKENS.md §2), in plain torch.

Adam (eps 2.5e-4) with L2 weight decay on conv weights, a piecewise-constant lr that steps after the
configured epochs, ``epochs`` epochs of ``floor(N / batch) x scale`` steps, mean cross-entropy over the
model's outputs (deep supervision), evaluation after each epoch. Reports through callbacks only; a
checkpoint is written atomically at the end of every epoch and a run resumes from it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Sampler

from data.build import build_dataset
from data.check import check_before_training
from engine import checkpoint, guards
from engine.callbacks import LR_METRIC, Callback, ConfigError, NonFiniteLossError, split_metric
from engine.distributed import (
    all_reduce_mean,
    autocast_context,
    init_distributed,
    to_channels_last,
    unwrap_model,
    wrap_model,
)
from engine.evaluate import evaluate
from engine.progress import Progress, epoch_bar
from models.build import build_model, count_params_m


class EpochSampler(Sampler[int]):
    """``scale`` shuffled passes over the set, each cut to whole batches; seeded by (seed, epoch).

    Pass ``p`` yields ``p * size + i`` for image ``i``: datasets read image ``index % size`` and draw a
    fresh augmentation per pass, so repeats of an image within an epoch see different crops.
    """

    def __init__(self, size: int, batch_size: int, scale: int, seed: int, max_steps: int | None = None):
        self.size, self.batch_size, self.scale, self.seed = size, batch_size, scale, seed
        self.steps = (size // batch_size) * scale
        if max_steps is not None:
            self.steps = min(self.steps, max_steps)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        per_pass = (self.size // self.batch_size) * self.batch_size
        emitted, pass_no = 0, 0
        while emitted < len(self):
            for index in torch.randperm(self.size, generator=generator)[:per_pass].tolist():
                if emitted == len(self):
                    return
                emitted += 1
                yield pass_no * self.size + index
            pass_no += 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(epoch: int, milestones: Sequence[int], factors: Sequence[float]) -> float:
    """The lr multiplier for 0-based ``epoch``: factors[i] applies once epoch milestones[i] is done."""
    factor = 1.0
    for milestone, value in zip(milestones, factors, strict=True):
        if epoch >= milestone:
            factor = value
    return factor


def validate_config(cfg: DictConfig) -> None:
    """Reject values that cannot train, with the key and the fix (engine.guards.ConfigValueError)."""
    guards.check_config(cfg)


def _param_groups(model: nn.Module, weight_decay: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """L2 decay on conv weights only (as slim's l2_regularizer); the head may get a larger lr."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim == 4
        head = name.startswith(("head.", "classifier.")) and head_lr_mult != 1.0
        groups.setdefault((decay, head), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_mult": head_lr_mult if head else 1.0} for (decay, head), params in groups.items()]


def _freeze_bn(model: nn.Module, affine: bool) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            if affine:
                for param in module.parameters():
                    param.requires_grad_(False)


def segmentation_loss(outputs: Sequence[torch.Tensor], label: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean over the outputs of the pixel cross-entropy over valid pixels (deep supervision)."""
    losses = [F.cross_entropy(logits, label, ignore_index=ignore_index) for logits in outputs]
    return torch.stack(losses).mean()


def _epoch_metrics(result: dict[str, Any], split: str, final: bool = False) -> dict[str, float]:
    """An evaluation's metrics named by the split it measured (``test_mIoU``, ``final_test_IoU/road``)."""
    metrics = {split_metric(split, "mIoU", final): float(result["mIoU"]),
               split_metric(split, "pixel_acc", final): float(result["pixel_acc"])}
    for cls, iou in (result.get("iou") or {}).items():
        if iou is not None:
            metrics[split_metric(split, f"IoU/{cls}", final)] = float(iou)
    return metrics


class _Run:
    """State of one training run (model, optimizer, data) with the epoch loop."""

    def __init__(self, cfg: DictConfig, callbacks: Sequence[Callback], workdir: Path | None):
        validate_config(cfg)
        self.cfg, self.workdir = cfg, workdir
        self.callbacks = [Progress(), *callbacks]  # the line per epoch first: a callback may stop the run
        seed_everything(int(cfg.seed))
        self.ctx = init_distributed(cfg)
        self.device = self.ctx.device
        self.amp = bool(cfg.train.get("amp", True))
        self.train_set = build_dataset(cfg, cfg.dataset.train_split, train=True)
        self.eval_set = build_dataset(cfg, cfg.dataset.eval_split, train=False)
        # every pair's headers and sizes, before any step (cached: an unchanged split is checked once)
        check_before_training(cfg, {cfg.dataset.train_split: self.train_set, cfg.dataset.eval_split: self.eval_set})
        if len(self.train_set) < cfg.batch_size:
            raise ConfigError(f"the {cfg.dataset.train_split} split has {len(self.train_set)} images, "
                              f"fewer than batch_size={cfg.batch_size}: lower batch_size")
        model = to_channels_last(build_model(cfg).to(self.device), self.device, self.amp)
        self.params_m = count_params_m(model)
        self.model = wrap_model(model, self.ctx, bool(cfg.train.get("sync_bn", False)))
        groups = _param_groups(self.model, float(cfg.train.weight_decay), float(cfg.train.head_lr_mult))
        self.optimizer = torch.optim.Adam(groups, lr=float(cfg.lr), eps=float(cfg.train.adam_eps))
        # every process draws its own stream, as each GPU tower did in the original (TOKENS §5.6)
        self.sampler = EpochSampler(len(self.train_set), int(cfg.batch_size), int(cfg.scale),
                                    int(cfg.seed) + 100_003 * self.ctx.rank, cfg.train.get("max_steps_per_epoch"))
        self.loader = DataLoader(self.train_set, batch_size=int(cfg.batch_size), sampler=self.sampler,
                                 num_workers=int(cfg.train.num_workers), drop_last=True,
                                 persistent_workers=False)
        self.start_epoch, self.history = 0, []
        self._resume()
        self.loss_watch = guards.LossWatch(float(cfg.train.get("explode_factor", guards.EXPLODE_FACTOR)),
                                           self.history[0]["train_loss"] if self.history else None)

    def _resume(self) -> None:
        state = checkpoint.load(self.workdir) if self.cfg.train.get("checkpoint", True) else None
        if state is None:
            return
        unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        self.start_epoch, self.history = int(state["epoch"]), list(state["history"])

    def _set_lr(self, epoch: int) -> float:
        lr = float(self.cfg.lr) * lr_factor(epoch, self.cfg.train.milestones, self.cfg.train.lr_factors)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        if self.cfg.train.freeze_bn:
            _freeze_bn(self.model, bool(self.cfg.train.freeze_bn_affine))
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        total, steps = 0.0, 0
        ignore = int(self.cfg.dataset.ignore_index)
        bar = epoch_bar(self.loader, epoch + 1, int(self.cfg.train.epochs))
        for batch in bar:
            image = to_channels_last(batch["image"].to(self.device, non_blocking=True), self.device, self.amp)
            label = batch["label"].to(self.device, non_blocking=True)
            with autocast_context(self.device, self.amp):
                outputs = self.model(image)
            loss = segmentation_loss([o.float() for o in outputs], label, ignore)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"training loss became {loss.item()} at epoch {epoch + 1}, step "
                                         f"{steps + 1}: lower lr (now {self.cfg.lr}) or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, steps = total + loss.item(), steps + 1
            warning = self.loss_watch.check(loss.item(), epoch + 1, steps)
            if warning:
                self._report("on_warning", "loss_exploded", warning)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        return all_reduce_mean(total / max(steps, 1), self.ctx)

    def _evaluate(self, limit: int | None) -> dict[str, Any]:
        return evaluate(self.model, self.eval_set, self.cfg, limit=limit, device=self.device, ctx=self.ctx)

    def _save(self, epoch: int) -> None:
        if self.workdir is None or not self.cfg.train.get("checkpoint", True) or not self.ctx.is_main:
            return
        checkpoint.save(self.workdir, {
            "model": unwrap_model(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": checkpoint.rng_state(), "epoch": epoch, "history": self.history})

    def _report(self, method: str, *args: Any) -> None:
        if self.ctx.is_main:  # one process reports for the run
            for callback in self.callbacks:
                getattr(callback, method)(*args)

    def run(self) -> dict[str, float]:
        info = {"params_M": self.params_m, "num_classes": int(self.cfg.dataset.num_classes),
                "steps_per_epoch": self.sampler.steps, "epochs": int(self.cfg.train.epochs),
                "start_epoch": self.start_epoch, "history": list(self.history), "device": str(self.device),
                "train_images": len(self.train_set), "eval_images": len(self.eval_set),
                "world_size": self.ctx.world_size}
        self._report("on_train_start", info)
        subset, split = self.cfg.eval.get("subset"), str(self.cfg.dataset.eval_split)
        for epoch in range(self.start_epoch, int(self.cfg.train.epochs)):
            started = time.perf_counter()
            lr = self._set_lr(epoch)
            train_loss = self._train_epoch(epoch)
            measured = _epoch_metrics(self._evaluate(subset), split)
            metrics = {"train_loss": train_loss, LR_METRIC: lr, **measured,
                       "epoch_seconds": time.perf_counter() - started}
            self.history.append(metrics)
            self._save(epoch + 1)  # before reporting: a kill after the report never repeats an epoch
            self._report("on_epoch_end", epoch + 1, metrics)
        final = dict(self.history[-1]) if self.history else {}
        if subset and self.cfg.eval.get("final_full", True):
            final.update(_epoch_metrics(self._evaluate(None), split, final=True))
        else:
            final[split_metric(split, final=True)] = final.get(split_metric(split), math.nan)
        final["params_M"] = self.params_m
        self._report("on_train_end", final)
        return final


def train(cfg: DictConfig, callbacks: Sequence[Callback] = (), workdir: Path | None = None) -> dict[str, float]:
    """Train ``cfg`` to the end (resuming from ``workdir``'s checkpoint if any); return the final metrics."""
    return _Run(cfg, callbacks, workdir).run()
