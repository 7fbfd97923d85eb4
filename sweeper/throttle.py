"""Rate and size limits on what one run writes to its store, so a runaway job cannot fill a shared server.

- **Metric points** pass a token bucket per run (``points_per_s``, bursts up to ``burst``): a batch
  that finds the bucket empty is *delayed* until the rate allows it, never dropped. A run's metrics
  are its results (and a resumed run reads which epochs it logged), so the job that logs too much
  pays with its own time; nothing it logged is lost.
- **Artifacts** above ``artifact_mb`` are *not uploaded*; the run counts them in its
  ``segsweep.throttle.artifacts_skipped`` tag.

Either limit prints ONE warning per run (stderr, and the run's ``segsweep.warning.throttled`` tag)
and never raises: the sweep goes on. :class:`ThrottledClient` is the MlflowClient that applies them
(:func:`sweeper.tracking.client_for`); ``tracking.limits`` sets them (null: the defaults below).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

WARNING_TAG = "segsweep.warning.throttled"
SKIPPED_TAG = "segsweep.throttle.artifacts_skipped"


@dataclass(frozen=True)
class Limits:
    """What one run may write: metric points per second (bursts up to ``burst``), artifact size."""

    points_per_s: float = 200.0
    burst: int = 2000
    artifact_mb: float = 100.0

    @property
    def artifact_bytes(self) -> int:
        return int(self.artifact_mb * 1024 * 1024)


DEFAULTS = Limits()
_limits = DEFAULTS


def configure(values: Mapping[str, Any] | None) -> Limits:
    """Set this process's limits from ``tracking.limits`` (null or missing keys: :data:`DEFAULTS`)."""
    global _limits
    given = {k: v for k, v in dict(values or {}).items() if v is not None and k in Limits.__dataclass_fields__}
    _limits = replace(DEFAULTS, **given)
    return _limits


def limits() -> Limits:
    return _limits


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Throttle:
    """The limits of one run: :meth:`admit_points` delays, :meth:`admit_artifact` refuses; one warning."""

    run_id: str
    limits: Limits = DEFAULTS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    warn: Callable[[str], None] = _stderr
    delayed_s: float = 0.0
    skipped: int = 0
    warned: bool = False
    _tokens: float = field(default=-1.0, repr=False)
    _last: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _warn_once(self, message: str) -> bool:
        if self.warned:
            return False
        self.warned = True
        self.warn(f"[segsweep] warning: run {self.run_id} {message}")
        return True

    def admit_points(self, count: int) -> float:
        """Take ``count`` points from the bucket, sleeping as long as the rate needs; the seconds slept."""
        if count <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            if self._tokens < 0:  # a new run starts with a full bucket
                self._tokens, self._last = float(self.limits.burst), now
            self._tokens = min(float(self.limits.burst), self._tokens + (now - self._last) * self.limits.points_per_s)
            self._last = now
            self._tokens -= count
            wait = -self._tokens / self.limits.points_per_s if self._tokens < 0 else 0.0
            if wait > 0:
                self._warn_once(f"logs more than {self.limits.points_per_s:g} metric points/s (bursts of "
                                f"{self.limits.burst}): its metrics are delayed to that rate, none is dropped "
                                f"(tracking.limits.points_per_s)")
                self.sleep(wait)
                self.delayed_s += wait
                self._tokens, self._last = 0.0, self._last + wait
            return wait

    def admit_artifact(self, name: str, size: int) -> bool:
        """Whether an artifact of ``size`` bytes may be uploaded (above the limit: counted, warned once)."""
        if size <= self.limits.artifact_bytes:
            return True
        with self._lock:
            self.skipped += 1
            self._warn_once(f"logs artifact {name} of {size / 2**20:.3g} MB, above the {self.limits.artifact_mb:g} MB "
                            f"limit: it is not uploaded (tracking.limits.artifact_mb); skipped artifacts are "
                            f"counted in its {SKIPPED_TAG} tag")
        return False


_THROTTLES: dict[str, Throttle] = {}
_REGISTRY_LOCK = threading.Lock()


def throttle_for(run_id: str) -> Throttle:
    """The process-wide throttle of a run (shared by every client of the process that writes to it)."""
    with _REGISTRY_LOCK:
        if run_id not in _THROTTLES or _THROTTLES[run_id].limits != _limits:
            _THROTTLES[run_id] = Throttle(run_id, _limits)
        return _THROTTLES[run_id]


def _size(path: str | os.PathLike[str]) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


class ThrottledClient(MlflowClient):
    """An MlflowClient whose metric writes and artifact uploads keep to :func:`limits` per run
    (``log_text``/``log_dict``/``log_figure`` upload through :meth:`log_artifact`)."""

    def _note(self, run_id: str, throttle: Throttle, first: bool) -> None:
        """The run's tags for a throttle (best effort: a tag that cannot be written stops nothing)."""
        tags = [RunTag(SKIPPED_TAG, str(throttle.skipped))] if throttle.skipped else []
        if first:
            tags.append(RunTag(WARNING_TAG, "metrics delayed or artifacts skipped by tracking.limits "
                               f"({throttle.limits.points_per_s:g} points/s, {throttle.limits.artifact_mb:g} MB)"))
        if tags:
            with contextlib.suppress(Exception):  # the limit's note is not worth failing the run
                super().log_batch(run_id, tags=tags)

    def _points(self, run_id: str, count: int) -> None:
        throttle = throttle_for(run_id)
        warned = throttle.warned
        if throttle.admit_points(count) > 0 and not warned:
            self._note(run_id, throttle, True)

    def _artifact_allowed(self, run_id: str, name: str, size: int) -> bool:
        throttle = throttle_for(run_id)
        warned = throttle.warned
        if throttle.admit_artifact(name, size):
            return True
        self._note(run_id, throttle, not warned)
        return False

    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), synchronous=None) -> Any:
        self._points(run_id, len(metrics or ()))
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    def log_metric(self, run_id: str, key: str, value: float, *args: Any, **kwargs: Any) -> Any:
        self._points(run_id, 1)
        return super().log_metric(run_id, key, value, *args, **kwargs)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        if self._artifact_allowed(run_id, Path(local_path).name, _size(local_path)):
            super().log_artifact(run_id, local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        if self._artifact_allowed(run_id, Path(local_dir).name + "/", _size(local_dir)):
            super().log_artifacts(run_id, local_dir, artifact_path)
