"""Per-run write limits (sweeper/throttle.py): metric points are delayed to the rate, never dropped;
artifacts above the size are not uploaded and counted; one warning per run, never an exception."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mlflow.entities import Metric
from omegaconf import OmegaConf

from sweeper import throttle, tracking
from sweeper.throttle import Limits, Throttle


class FakeTime:
    """A clock that only the throttle's own sleeps (and the test) move."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(limits: Limits) -> tuple[Throttle, FakeTime, list[str]]:
    fake, warnings = FakeTime(), []
    return Throttle("r1", limits, fake.clock, fake.sleep, warnings.append), fake, warnings


def test_a_burst_passes_then_the_rate_is_kept_and_warned_once():
    gate, fake, warnings = make(Limits(points_per_s=100, burst=50, artifact_mb=1))
    assert gate.admit_points(50) == 0 and fake.slept == []  # the full bucket
    assert gate.admit_points(10) == pytest.approx(0.1)  # 10 points at 100/s
    for _ in range(9):
        gate.admit_points(10)
    assert sum(fake.slept) == pytest.approx(1.0)  # 100 points beyond the burst: one second at 100/s
    assert len(warnings) == 1 and "100 metric points/s" in warnings[0] and "none is dropped" in warnings[0]
    assert gate.delayed_s == pytest.approx(1.0)


def test_time_refills_the_bucket_up_to_the_burst():
    gate, fake, warnings = make(Limits(points_per_s=10, burst=20, artifact_mb=1))
    gate.admit_points(20)
    fake.now += 1000  # a long pause refills 20, not 10000
    assert gate.admit_points(20) == 0
    assert gate.admit_points(5) == pytest.approx(0.5) and len(warnings) == 1


def test_a_batch_bigger_than_the_burst_waits_for_its_excess():
    gate, fake, _ = make(Limits(points_per_s=100, burst=10, artifact_mb=1))
    assert gate.admit_points(310) == pytest.approx(3.0)


def test_an_artifact_above_the_size_is_refused_counted_and_warned_once():
    gate, _, warnings = make(Limits(points_per_s=100, burst=10, artifact_mb=1))
    assert gate.admit_artifact("ok.txt", 2**20)
    assert not gate.admit_artifact("big.bin", 2**20 + 1)
    assert not gate.admit_artifact("big2.bin", 5 * 2**20)
    assert gate.skipped == 2 and len(warnings) == 1 and "big.bin" in warnings[0] and "not uploaded" in warnings[0]


def test_configure_takes_tracking_limits_with_nulls_as_defaults():
    try:
        cfg = OmegaConf.create({"points_per_s": 7, "burst": None, "artifact_mb": None, "unknown": 1})
        assert throttle.configure(cfg) == Limits(points_per_s=7)
        assert throttle.configure(None) == throttle.DEFAULTS
    finally:
        throttle.configure(None)


def test_the_shipped_tracking_configs_use_the_defaults():
    for name in ("local", "server"):
        cfg = OmegaConf.load(tracking.REPO_DIR / "conf" / "tracking" / f"{name}.yaml")
        assert throttle.configure(cfg.limits) == throttle.DEFAULTS


@pytest.fixture()
def tight() -> Iterator[Limits]:
    limits = throttle.configure({"points_per_s": 50, "burst": 20, "artifact_mb": 0.001})  # ~1 KB
    yield limits
    throttle.configure(None)


def test_the_client_delays_metrics_keeps_every_point_and_skips_big_artifacts(store: str, tight: Limits,
                                                                           capsys: pytest.CaptureFixture):
    client = tracking.client_for(store)
    run_id = client.create_run(tracking.ensure_experiment(store, "x")).info.run_id
    for step in range(10):  # 10 batches of 10 points: 80 beyond the burst of 20
        client.log_batch(run_id, metrics=[Metric(f"m{k}", float(k), 0, step) for k in range(10)])
    client.log_text(run_id, "small", "small.txt")
    client.log_text(run_id, "x" * 5000, "big.txt")
    client.log_text(run_id, "y" * 5000, "big2.txt")
    assert 0 < throttle.throttle_for(run_id).delayed_s <= 80 / 50  # less what the slow writes refilled
    assert [len(client.get_metric_history(run_id, f"m{k}")) for k in range(10)] == [10] * 10  # none dropped
    assert {a.path for a in client.list_artifacts(run_id)} == {"small.txt"}
    tags = client.get_run(run_id).data.tags
    assert tags[throttle.SKIPPED_TAG] == "2" and "tracking.limits" in tags[throttle.WARNING_TAG]
    warned = [line for line in capsys.readouterr().err.splitlines() if "[segsweep] warning" in line]
    assert len(warned) == 1 and run_id in warned[0]
