"""Payloads (pickles that run code when loaded) are read only from this user's private files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper import trust
from tests.conftest import subprocess_env


class _Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_payloads_are_written_private_and_read_back(tmp_path: Path):
    old = os.umask(0o000)  # a permissive umask does not widen them
    try:
        path = trust.write_payload(tmp_path / "pool" / "0.pkl", {"overrides": ["a=1"]})
    finally:
        os.umask(old)
    assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
    assert trust.read_payload(path) == {"overrides": ["a=1"]}


@pytest.mark.parametrize("tamper", ["directory writable by others", "file writable by others", "symlink",
                                    "another owner"])
def test_a_payload_others_could_write_is_refused_without_running_it(tmp_path: Path, tamper: str):
    marker = tmp_path / "marker"
    path = trust.write_payload(tmp_path / "pool" / "0.pkl", _Hostile(marker))
    if tamper == "directory writable by others":
        os.chmod(path.parent, 0o777)
    elif tamper == "file writable by others":
        os.chmod(path, 0o622)
    elif tamper == "symlink":
        real = trust.write_payload(tmp_path / "elsewhere" / "x.pkl", _Hostile(marker))
        path.unlink()
        path.symlink_to(real)
    else:
        if os.getuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(path, 65534, 65534)
    with pytest.raises(trust.UntrustedPayloadError, match=f"refusing to load {path}: "):
        trust.read_payload(path)
    assert not marker.exists()


@pytest.mark.slow
def test_a_pool_worker_refuses_a_planted_payload_with_one_line(tmp_path: Path):
    marker = tmp_path / "marker"
    shared = tmp_path / "sweep" / ".pool"
    path = trust.write_payload(shared / "0.pkl", _Hostile(marker))
    os.chmod(shared, 0o777)  # as a shared outputs/ a colleague can write into
    result = subprocess.run([sys.executable, "-m", "sweeper.pool", "job", str(path), str(shared / "0.result.pkl")],
                            capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.startswith(f"error: refusing to load {path}: {shared} is writable by others")
    assert result.stderr.count("\n") == 1, result.stderr
