"""What a run prints: bars on a terminal only, a line per epoch always (engine/progress.py)."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from engine import progress
from engine.callbacks import LR_METRIC
from tests.conftest import FAST, REPO, subprocess_env

EPOCH_LINE = re.compile(r"^\[segsweep\] epoch (\d+)/(\d+)  loss \d+\.\d{4}  val mIoU \d+\.\d\d  "
                        r"lr \d\.\d\de[-+]\d\d  \d+\.\d s$")


def test_epoch_line_names_loss_val_miou_lr_and_time():
    line = progress.epoch_line(3, 10, {"train_loss": 0.51234, "val_mIoU": 45.2, "val_IoU/road": 3.0,
                                       LR_METRIC: 1e-3, "epoch_seconds": 12.34})
    assert line == "[segsweep] epoch 3/10  loss 0.5123  val mIoU 45.20  lr 1.00e-03  12.3 s"
    assert EPOCH_LINE.match(line)


def test_a_missing_or_nan_metric_reads_n_a():
    line = progress.epoch_line(1, 2, {"train_loss": float("nan"), LR_METRIC: 0.01, "epoch_seconds": 1.0})
    assert "loss n/a" in line and "mIoU n/a" in line and "lr 1.00e-02" in line


def test_the_miou_is_named_by_its_split():
    line = progress.epoch_line(1, 2, {"test_mIoU": 61.0, LR_METRIC: 0.01})
    assert "test mIoU 61.00" in line and "val" not in line
    assert progress.end_line({"final_test_mIoU": 61.0, "test_mIoU": 1.0}) == "[segsweep] final evaluation: test mIoU 61.00"


def test_start_and_end_lines():
    start = progress.start_line({"epochs": 4, "steps_per_epoch": 5, "train_images": 16, "eval_images": 4,
                                 "params_M": 0.3412, "device": "cpu", "start_epoch": 2})
    assert start == ("[segsweep] training 4 epochs x 5 steps (16 train / 4 eval images, 0.34M params, cpu), "
                     "resuming after epoch 2")
    assert progress.end_line({"val_mIoU": 1.0, "final_val_mIoU": 61.234}) == \
        "[segsweep] final evaluation: val mIoU 61.23"


def test_the_lines_reach_the_log_files_but_not_the_console_twice(tmp_path: Path, capsys):
    """Hydra's job log is a FileHandler on the root logger, its console a StreamHandler: the line goes to
    the file through logging and to stdout once (not again through the console handler)."""
    root = logging.getLogger()
    log_file = logging.FileHandler(tmp_path / "sweep.log")
    log_file.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    old_level = root.level
    root.addHandler(log_file)
    root.addHandler(console)
    root.setLevel(logging.INFO)
    try:
        line = progress.epoch_line(1, 2, {"train_loss": 1.0, "val_mIoU": 5.0, LR_METRIC: 1e-3})
        progress.emit(line)
    finally:
        root.removeHandler(log_file)
        root.removeHandler(console)
        root.setLevel(old_level)
        log_file.close()
    assert (tmp_path / "sweep.log").read_text() == f"[engine.progress][INFO] - {line}\n"
    assert capsys.readouterr().out == line + "\n"


def test_is_terminal_tells_a_pty_from_a_file(tmp_path: Path):
    master, slave = os.openpty()
    with open(slave, "w") as tty, open(tmp_path / "log.txt", "w") as log:
        assert progress.is_terminal(tty) and not progress.is_terminal(log)
    os.close(master)
    closed = open(tmp_path / "closed.txt", "w")  # noqa: SIM115 - closed on purpose
    closed.close()
    assert not progress.is_terminal(closed)


def _read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):  # no more data; EIO once the slave side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_the_bar_is_erased_and_the_epoch_line_stays(monkeypatch: pytest.MonkeyPatch, capsys):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with open(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        bar = progress.epoch_bar(range(3), 1, 2)
        assert not bar.disable
        for _ in bar:
            pass
        bar.close()
        tty.flush()
        progress.emit(progress.epoch_line(1, 2, {"train_loss": 1.0, "val_mIoU": 5.0, LR_METRIC: 1e-3,
                                                 "epoch_seconds": 0.5}))
        shown = _read_all(master)
    os.close(master)
    assert shown.startswith("\repoch 1/2:")  # the bar was drawn on the terminal ...
    assert re.search(r"\r {50,}\r$", shown)  # ... and erased at the end of the epoch
    out = capsys.readouterr().out
    assert out.splitlines() == ["[segsweep] epoch 1/2  loss 1.0000  val mIoU 5.00  lr 1.00e-03  0.5 s"]


def test_without_a_terminal_there_is_no_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with open(tmp_path / "err.txt", "w") as log:
        monkeypatch.setattr(sys, "stderr", log)
        bar = progress.epoch_bar(range(3), 1, 1)
        assert bar.disable and list(bar) == [0, 1, 2]
    assert (tmp_path / "err.txt").read_text() == ""


@pytest.mark.slow
def test_a_run_with_stdout_to_a_file_prints_a_line_per_epoch(tmp_path: Path):
    """A real `python sweep.py` run, stdout and stderr to files as under nohup or SLURM."""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    cmd = [sys.executable, str(REPO / "sweep.py"), *FAST, "train.epochs=2", f"output_root={tmp_path / 'o'}",
           f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "hydra.callbacks.results_readme.enabled=false"]
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=stdout, stderr=stderr, env=subprocess_env())
        first_output = None
        while proc.poll() is None:
            if first_output is None and out.stat().st_size:
                first_output = time.monotonic() - started
            time.sleep(0.05)
    assert proc.returncode == 0, err.read_text()[-2000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("[segsweep] starting ")  # printed before torch and MLflow are imported
    epochs = [m.groups() for m in map(EPOCH_LINE.match, lines) if m]
    assert epochs == [("1", "2"), ("2", "2")], lines
    assert any(line.startswith("[segsweep] training 2 epochs x 2 steps") for line in lines)
    assert any(line.startswith("[segsweep] final evaluation: val mIoU ") for line in lines)
    assert "\r" not in out.read_text() + err.read_text()  # no bar in a log
    (job_log,) = (tmp_path / "o" / "single").glob("*/sweep.log")  # Hydra's job log holds the same lines
    logged = [ln.split(" - ", 1)[1] for ln in job_log.read_text().splitlines() if " - [segsweep] " in ln]
    assert logged == [ln for ln in lines if ln.startswith(("[segsweep] training", "[segsweep] epoch",
                                                          "[segsweep] final"))], job_log.read_text()
    print(f"first output after {first_output:.2f} s")
