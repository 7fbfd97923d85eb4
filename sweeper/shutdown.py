"""How a segsweep command ends when something stops it: SIGTERM/SIGINT, or input it cannot use.

SIGTERM (scancel, docker, systemd, ``kill``) and SIGINT (Ctrl-C) become :class:`Interrupted`, a
``KeyboardInterrupt``: it unwinds the job (its run is marked KILLED, resumable), the pool (its
worker processes are stopped: SIGTERM to each worker's process group, then SIGKILL after a grace
period) and the sweep (parent run KILLED, lock released); the command then prints one line and
exits 128 + the signal number. In a SLURM job nothing is installed: submitit owns SIGTERM/USR2
there (checkpoint and requeue, sweeper/slurm.py).

:func:`run_cli` is the entry point's wrapper: it also turns input errors that reach the top
(Hydra composition errors, bad launcher settings) into one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sweeper.errors import BAD_INPUT, UserError

#: exit codes
USAGE = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_S = 20.0  # how long stopped workers get to mark their runs KILLED before SIGKILL

_received: dict[str, int | None] = {"signum": None}


class Interrupted(KeyboardInterrupt):
    """The command was told to stop by signal ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def in_slurm_job() -> bool:
    """Inside a SLURM allocation (sbatch/srun/salloc): SIGTERM and USR2 belong to submitit there."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def requested() -> int | None:
    """The stop signal received so far in this process, or None."""
    return _received["signum"]


def _on_signal(signum: int, frame: Any) -> None:
    if _received["signum"] is not None:  # already unwinding from the first one: let it finish
        print(f"[segsweep] {signal_name(signum)} again: already stopping", file=sys.stderr, flush=True)
        return
    _received["signum"] = signum
    raise Interrupted(signum)


def install() -> bool:
    """Make SIGTERM and SIGINT raise :class:`Interrupted` once (main thread, outside SLURM jobs).
    Returns whether the handlers were installed."""
    if in_slurm_job() or threading.current_thread() is not threading.main_thread():
        return False
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    return True


def reason(stop: BaseException) -> str:
    """What stopped the process: the signal's name (SIGINT for a plain KeyboardInterrupt)."""
    return signal_name(getattr(stop, "signum", signal.SIGINT))


def exit_code(stop: BaseException) -> int:
    return 128 + int(getattr(stop, "signum", signal.SIGINT))


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Signal the process group a worker leads (started with ``start_new_session=True``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def stop_processes(procs: Iterable[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    """SIGTERM the process group of each worker, wait up to ``grace_s`` for them to exit (their
    runs are marked KILLED meanwhile), then SIGKILL whatever is left of the groups."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:  # the group also holds the worker's children (data loader workers, DDP ranks)
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def watch_parent(interval_s: float = 1.0) -> threading.Thread:
    """In a worker process: stop this process (SIGTERM, so its run is marked KILLED) when the process
    that started it is gone (killed with -9), instead of training on as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="segsweep-parent-watch", daemon=True)
    thread.start()
    return thread




class SlurmUnavailableError(UserError, ValueError):
    """``launcher=slurm`` where there is no SLURM (no ``sbatch`` on PATH)."""


def stopped_line(stop: BaseException) -> str:
    return (f"[segsweep] stopped by {reason(stop)}: the runs it cut are KILLED; run the same command again "
            f"to resume them")


def input_error_line(error: BaseException) -> str | None:
    """One ``error:`` line for an input error that reached the top, or None for anything else."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    def first(text: object) -> str:
        lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
        return lines[0] if lines else type(error).__name__

    if isinstance(error, MissingConfigException):
        options = ", ".join(o for o in error.options or [] if not o.startswith("_"))  # _x: shared bases
        group = (error.missing_cfg_file or "").split("/")[0]
        fix = f"choose one of {options} (conf/{group}/)" if options else "check the name under conf/"
        return f"error: {first(error)}: {fix}"
    if isinstance(error, ConfigCompositionException):
        cause = f" ({first(error.__cause__)})" if error.__cause__ is not None else ""
        if "could not be converted" in cause:  # a typed option (hydra.launcher.workers: int)
            return f"error: {first(error)}{cause}: give a value of the option's type (e.g. a whole number)"
        moved = re.search(r"override '(launcher\.[\w.]+)'", str(error))
        if moved:  # the launcher's options live under hydra.launcher (docs/sweeps.md)
            return (f"error: {first(error)}{cause}: the launcher's options are Hydra's now, write "
                    f"`hydra.{moved.group(1)}=...` (e.g. `hydra.launcher.workers=2`)")
        return (f"error: {first(error)}{cause}: check the key's spelling (`python sweep.py --cfg job` prints "
                f"every key), or add a new key with `+key=value`")
    if isinstance(error, OverrideParseException):
        return (f"error: cannot parse the override {error.override!r} ({first(error)}): write key=value "
                f"(a list as key=[1,2]; quote a value with spaces)")
    if isinstance(error, BAD_INPUT):  # bad settings the launcher found (workers, GPUs, sweep dir)
        return f"error: {first(error)}"
    return None


def run_cli(main: Callable[[], Any]) -> None:
    """Run a command's ``main`` (a ``@hydra.main`` function): signals stop it cleanly with one line;
    input errors that reach the top end with one ``error:`` line and exit code 2."""
    install()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing: we print one line
    try:
        main()
    except KeyboardInterrupt as stop:
        print(stopped_line(stop), file=sys.stderr, flush=True)
        sys.exit(exit_code(stop))
    except Exception as error:
        line = input_error_line(error)
        if line is None:
            raise
        print(line, file=sys.stderr, flush=True)
        sys.exit(USAGE)
