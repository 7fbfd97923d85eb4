"""Running a sweep's jobs here: sequentially in-process, in a pool of worker processes (one job per
GPU slot, or N CPU workers), or in a detached process that outlives the command.

``python -m sweeper.pool job PAYLOAD RESULT`` runs one pickled job (a pool worker);
``python -m sweeper.pool detached PAYLOAD`` runs a whole pickled sweep (``hydra.launcher.detach=true``).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from sweeper import bookkeeping as sweep
from sweeper import launch as launch_
from sweeper import shutdown, trust
from sweeper.errors import SettingsError, UserError

log = logging.getLogger(__name__)
POOL_DIR = ".pool"


def _opts(launcher: Any) -> dict[str, Any]:
    """The launcher's own settings (``hydra.launcher.*``: workers, gpus_per_job, detach, cell_info)."""
    return dict(getattr(launcher, "options", None) or {})


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else those `nvidia-smi -L` lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(x for x in out.splitlines() if x.startswith("GPU "))]


def slots(opts: Mapping[str, Any], gpus: Sequence[str] | None = None) -> list[list[str] | None]:
    """The pool's slots: GPU id groups of ``gpus_per_job`` (one job each), or ``workers`` CPU slots."""
    gpus = visible_gpus() if gpus is None else list(gpus)
    if gpus:
        per = int(opts.get("gpus_per_job") or 1)
        if per < 1 or per > len(gpus):
            raise SettingsError(f"hydra.launcher.gpus_per_job={per} but {len(gpus)} GPU(s) are visible "
                             f"({','.join(gpus)}): choose 1..{len(gpus)}")
        return [list(gpus[i:i + per]) for i in range(0, len(gpus) - per + 1, per)]
    workers = 1 if opts.get("workers") is None else opts.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"hydra.launcher.workers={workers}: a pool needs a whole number of workers, at least 1 "
                        f"(e.g. `hydra.launcher.workers=2`)")
    return [None] * workers


_FREE: queue.Queue | None = None  # the process's free slots, shared by concurrent launch() calls
_FREE_LOCK = threading.Lock()


def _free_slots(pool_slots: list[list[str] | None]) -> queue.Queue:
    """One queue of free slots per process: concurrent launches (a search's parallel trials) never
    hand out the same GPU twice."""
    global _FREE
    with _FREE_LOCK:
        if _FREE is None:
            _FREE = queue.Queue()
            for slot in pool_slots:
                _FREE.put(slot)
        return _FREE


def run_one(launcher: Any, overrides: Sequence[str], idx: int, singleton_state: Any = None,
            cfg: DictConfig | None = None) -> JobReturn:
    """Run one job as Hydra's launchers do (sweep config, job dir, callbacks); ``cfg``: the job's
    sweep config when already composed."""
    if singleton_state is not None:
        Singleton.set_state(singleton_state)
    setup_globals()
    if cfg is None:
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = idx
        cfg.hydra.job.num = idx
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _failed(overrides: Sequence[str], name: str, error: str) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": "FAILED", "name": name, "run_id": None, "value": None, "error": error}
    return ret


def _sequential(launcher: Any, jobs: list[tuple[int, list[str]]],
                configs: Sequence[DictConfig | None] = ()) -> list[JobReturn]:
    returns = []
    for pos, (idx, overrides) in enumerate(jobs):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        returns.append(run_one(launcher, overrides, idx, cfg=configs[pos] if pos < len(configs) else None))
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return returns


def _job_env(slot: list[str] | None, n_slots: int) -> dict[str, str]:
    env = dict(os.environ)
    if slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(slot)
    else:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_slots)))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pool(launcher: Any, jobs: list[tuple[int, list[str]]], cells: Sequence[dict], sweep_dir: Path,
          pool_slots: list[list[str] | None]) -> list[JobReturn]:
    """Each slot runs one worker process at a time until the queue is empty."""
    work_dir = trust.private_dir(sweep_dir / POOL_DIR)  # payloads run code when loaded: this user's only
    todo: queue.Queue = queue.Queue()
    for pos, job in enumerate(jobs):
        todo.put((pos, job))
    results: dict[int, JobReturn] = {}
    state = Singleton.get_state()
    procs: dict[int, subprocess.Popen] = {}

    free = _free_slots(pool_slots)

    def worker() -> None:
        while True:
            try:
                pos, (idx, overrides) = todo.get_nowait()
            except queue.Empty:
                return
            slot = free.get()
            try:
                run(pos, idx, overrides, slot)
            finally:
                free.put(slot)

    def run(pos: int, idx: int, overrides: list[str], slot: list[str] | None) -> None:
        payload, result, logfile = (work_dir / f"{idx}.pkl", work_dir / f"{idx}.result.pkl",
                                    work_dir / f"{idx}.log")
        result.unlink(missing_ok=True)
        if shutdown.requested():  # the sweep is stopping: start nothing new
            return
        trust.write_payload(payload, (launcher, overrides, idx, state))
        where = f"GPU {','.join(slot)}" if slot is not None else "CPU"
        log.info("\t#%d (%s) : %s", idx, where, " ".join(filter_overrides(overrides)))
        with logfile.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "sweeper.pool", "job", str(payload), str(result)],
                                    stdout=out, stderr=subprocess.STDOUT, env=_job_env(slot, len(pool_slots)),
                                    start_new_session=True)  # its own group: the launcher stops it in order
            procs[pos] = proc
            code = proc.wait()
        name = ((cells[pos] or {}).get("name", "") if pos < len(cells) else "") or \
            " ".join(filter_overrides(overrides))
        if result.exists():
            results[pos] = trust.read_payload(result)
        else:
            results[pos] = _failed(overrides, name, f"worker exited with status {code} (log: {logfile})")
        status = sweep.result(results[pos]).get("status")
        print(f"[segsweep] job #{idx} {status} {name} ({where}, log {logfile})", flush=True)

    threads = [threading.Thread(target=worker, daemon=True) for _ in pool_slots]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        while not todo.empty():  # no new job starts
            todo.get_nowait()
        shutdown.stop_processes(procs.values())  # SIGTERM: each worker marks its run KILLED; then SIGKILL
        raise
    return [results[pos] for pos in range(len(jobs))]


class Local:
    """The jobs one after the other in this process (``segsweep_local``)."""

    label = "local"
    leaves_out_done = False  # every job starts; its task decides (sweeper.task.decide)
    records_ids = False

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def check(self, batch: launch_.Batch) -> None:
        """Nothing to check: this process runs the jobs."""

    def run(self, batch: launch_.Batch, sweep_state: launch_.Sweep) -> list[JobReturn]:
        return _sequential(self.launcher, batch.jobs, batch.configs)

    def detach(self, batch: launch_.Batch, sweep_state: launch_.Sweep, lock_fd: int) -> list[JobReturn]:
        return _detach(self, batch, sweep_state, lock_fd)


class Pool(Local):
    """A pool of worker processes, one job per GPU slot or CPU worker (``segsweep_pool``)."""

    label = "pool"

    def check(self, batch: launch_.Batch) -> None:
        slots(_opts(self.launcher))  # bad pool settings end here, before any run is opened

    def run(self, batch: launch_.Batch, sweep_state: launch_.Sweep) -> list[JobReturn]:
        return _pool(self.launcher, batch.jobs, batch.cells, sweep_state.dir, slots(_opts(self.launcher)))


def backend(launcher: Any) -> Local:
    """The backend of a segsweep_local / segsweep_pool launcher."""
    return Pool(launcher) if getattr(launcher, "pool", False) else Local(launcher)


def _detach(backend_: Local, batch: launch_.Batch, sweep_state: launch_.Sweep, lock_fd: int | None = None) -> list[JobReturn]:
    sweep_dir = sweep_state.dir
    payload = trust.write_payload(sweep_dir / POOL_DIR / "detached.pkl",
                                  (backend_.launcher, batch, sweep_state, Singleton.get_state()))
    logfile = sweep_dir / "detached.log"
    with logfile.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeper.pool", "detached", str(payload)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                pass_fds=() if lock_fd is None else (lock_fd,),  # it holds the sweep lock on
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    (sweep_dir / "detached.pid").write_text(str(proc.pid))
    (sweep_dir / ".lock").write_text(f"detached process {proc.pid} on {os.uname().nodename}")
    print(f"[segsweep] detached: {len(batch.jobs)} jobs run in process {proc.pid} (log {logfile}); follow with "
          f"`python -m sweeper status {sweep_dir}`", flush=True)
    return [launch_.returned(overrides, "SUBMITTED", cell, pid=proc.pid)
            for (_, overrides), cell in zip(batch.jobs, batch.cells, strict=True)]


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """The launcher's ``launch``: sweeper.launch's skeleton with the local or pool backend."""
    return launch_.launch(launcher, backend(launcher), job_overrides, initial_job_idx)


def _main(argv: Sequence[str]) -> int:
    if shutdown.install() and argv[:1] == ["job"]:  # SIGTERM (the launcher's, anyone's): the run ends KILLED
        shutdown.watch_parent()  # and a worker whose launcher was killed -9 stops too
    try:
        return _serve(argv)
    except trust.UntrustedPayloadError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as stop:
        print(shutdown.stopped_line(stop), file=sys.stderr, flush=True)
        return shutdown.exit_code(stop)


def _serve(argv: Sequence[str]) -> int:
    if len(argv) == 3 and argv[0] == "job":
        launcher, overrides, idx, state = trust.read_payload(Path(argv[1]))
        ret = run_one(launcher, overrides, idx, state)
        try:
            trust.write_payload(Path(argv[2]), ret)
        except Exception as error:  # noqa: BLE001 - an unpicklable return still reports the job
            trust.write_payload(Path(argv[2]), _failed(overrides, "", f"unpicklable job return: {error}"))
        return 0
    if len(argv) == 2 and argv[0] == "detached":
        launcher, batch, sweep_state, state = trust.read_payload(Path(argv[1]))
        Singleton.set_state(state)
        setup_globals()
        # the sweep lock was inherited from the launching command and goes when this process ends
        returns = launch_.run_and_close(backend(launcher), batch, sweep_state)
        return 1 if sweep.any_failed(returns) else 0
    print("usage: python -m sweeper.pool job PAYLOAD RESULT | detached PAYLOAD", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
