"""A Hydra callback that regenerates the results README (``outputs/results/README.md``) when a run or a
sweep ends. It lives in ``results`` and Hydra instantiates it from ``conf/sweep.yaml`` by ``_target_``,
so the import points one way: results -> sweeper, never sweeper -> results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from results.query import StoreError
from results.readme import DEFAULT_OUT, refresh
from sweeper import launch_dir, tracking

log = logging.getLogger(__name__)


class RefreshResults(Callback):
    """Rewrite the results README (tables + plots) from the run's MLflow store."""

    def __init__(self, out: str = str(DEFAULT_OUT), enabled: bool = True, ui_url: str | None = None) -> None:
        self.out, self.enabled, self.ui_url = out, enabled, ui_url  # ui_url None: from the tracking URI

    def _refresh(self, config: DictConfig) -> None:
        if not self.enabled:
            return
        out = Path(self.out)
        out = out if out.is_absolute() else launch_dir() / out
        try:
            path = refresh(tracking.resolve_uri(config.tracking.get("uri"), launch_dir()), out, self.ui_url)
        except StoreError as error:  # e.g. every job failed before its run was created
            log.warning("results README not regenerated: %s", error)
            return
        log.info("results README regenerated: %s", path)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._refresh(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._refresh(config)
