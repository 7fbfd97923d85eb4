"""Atomic training checkpoints: model, optimizer, RNG states, epoch and metric history.

A checkpoint holds tensors and plain data only (no pickled objects), so it loads with
``weights_only=True``: a file under ``outputs/`` cannot run code in the next job. The last two are
kept (``checkpoint.pt`` and ``checkpoint.prev.pt``); a write that fails (a full disk) leaves no
temporary file and the last good checkpoint in place; one that cannot be read is reported with
its path and the way out, never resumed from silently.
"""

from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.callbacks import InputError

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
REQUIRED_KEYS = ("model", "optimizer", "rng", "epoch", "history")


class CheckpointError(InputError):
    """A checkpoint that cannot be written or read (the message names the path and the fix)."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (e.g. no space left); the previous checkpoint is kept."""


class CheckpointReadError(CheckpointError):
    """A checkpoint exists but cannot be read (truncated, empty, not a checkpoint)."""


def rng_state() -> dict[str, Any]:
    """The states of every random generator the loop uses, as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "state": list(state), "gauss": gauss},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`'s data."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is ENOSPC / EDQUOT."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def _write_error(path: Path, error: BaseException) -> CheckpointWriteError:
    kept = f"the last good checkpoint {path} is kept" if path.exists() else "no checkpoint was kept"
    if _is_no_space(error):
        return CheckpointWriteError(f"no space left on {path.parent} writing {path.name} ({kept}): free space "
                                    f"there (or set output_root=<dir with space>) and run the same command again")
    return CheckpointWriteError(f"cannot write the checkpoint {path} ({type(error).__name__}: {error}; {kept}): "
                                f"check the directory, then run the same command again")


def save(workdir: Path, state: dict[str, Any]) -> Path:
    """Write ``checkpoint.pt`` atomically (a temporary file in the same directory, fsynced, renamed over
    the old one), keeping the one before as ``checkpoint.prev.pt``; raises CheckpointWriteError."""
    workdir.mkdir(parents=True, exist_ok=True)
    path, previous = workdir / CHECKPOINT_NAME, workdir / PREVIOUS_NAME
    fd, tmp_name = tempfile.mkstemp(dir=workdir, prefix=f".{CHECKPOINT_NAME}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            torch.save(state, out)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():  # a hard link: checkpoint.pt stays a complete file at every instant
            link = workdir / f".{PREVIOUS_NAME}.{os.getpid()}.tmp"
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        raise _write_error(path, error) from error
    finally:
        tmp.unlink(missing_ok=True)
        for stale in workdir.glob(f".{PREVIOUS_NAME}.*.tmp"):
            stale.unlink(missing_ok=True)
    return path


def _read_error(path: Path, error: BaseException | str) -> CheckpointReadError:
    what = error if isinstance(error, str) else (str(error).strip().splitlines() or [type(error).__name__])[0]
    previous = path.with_name(PREVIOUS_NAME)
    way_out = "run again with +force=true to start this run over"
    if previous.exists() and previous != path:
        way_out += f", or resume from the epoch before: `mv {previous} {path}`"
    return CheckpointReadError(f"cannot read the checkpoint {path} ({what[:200]}): {way_out}")


def read(path: Path) -> dict[str, Any]:
    """One checkpoint file (tensors and plain data only); raises CheckpointReadError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _read_error(path, error) from error
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise _read_error(path, f"not a segsweep checkpoint: no {', '.join(missing)}")
    return state


def load(workdir: Path | None) -> dict[str, Any] | None:
    """The last checkpoint in ``workdir``, or None when there is none."""
    if workdir is None or not (workdir / CHECKPOINT_NAME).exists():
        return None
    return read(workdir / CHECKPOINT_NAME)
