"""``hydra/sweeper=segsweep_basic``: Hydra's basic (grid) sweeper without its second composition pass.

Hydra's basic sweeper composes every job's config to validate a batch, and the launcher composes
it again to run it ("as the launcher may be performing this in a different process/machine").
segsweep's launchers compose every config of a batch in the launching process before any job
starts, so a bad override still fails before anything runs; the sweeper's own pass is skipped for
them (about 0.25 s per job). With any other launcher it validates as Hydra does.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class SegsweepBasicSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.segsweep_pool.sweeper.SegsweepBasicSweeper"


class SegsweepBasicSweeper(BasicSweeper):
    """The grid sweeper of ``python sweep.py -m``; validation is left to launchers that compose first."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if getattr(self.launcher, "composes_before_launching", False):
            return  # the launcher composes (and so validates) the whole batch before any job starts
        super().validate_batch_is_legal(batch)


ConfigStore.instance().store(group="hydra/sweeper", name="segsweep_basic", node=SegsweepBasicSweeperConf,
                             provider="segsweep")
