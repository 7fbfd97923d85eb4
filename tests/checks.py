"""Checks several test modules share (not fixtures, so not in conftest.py): duplicate metric rows in a
sqlite store, and waits on a process that fail the test with a message instead of hanging."""

from __future__ import annotations

import select
import sqlite3
import subprocess


def duplicate_rows(uri: str) -> list[tuple]:
    """(run_uuid, key, step, count) of every (run, key, step) a sqlite store holds more than once."""
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT run_uuid, key, step, COUNT(*) FROM metrics GROUP BY run_uuid, key, step "
                          "HAVING COUNT(*) > 1").fetchall()


def wait_exit(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> int:
    """The exit status of ``proc``; after ``timeout`` s it is killed and the test fails naming ``what``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"{what} did not exit within {timeout:.0f} s (killed)") from None


def read_line(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> str:
    """The next line ``proc`` prints (stdout a text pipe); fails the test after ``timeout`` s."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise AssertionError(f"{what}: no line within {timeout:.0f} s")
    return proc.stdout.readline()


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM ``proc`` (a server stops its whole group on it), SIGKILL after ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
