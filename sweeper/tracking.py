"""MLflow for segsweep: stores, experiments, job runs, per-epoch metrics, run-key look-ups.

Everything goes through an explicit ``MlflowClient`` (no fluent "active run" state), so jobs that
share a process (Hydra's basic launcher) or a store (parallel workers) never see each other's runs.
The tag/metric contract is in ``docs/architecture.md``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from data.registry import DECLARATION_KEYS
from engine.callbacks import Callback, split_metric
from models.families import DECLARATION_KEYS as BACKBONE_DECLARATION_KEYS
from sweeper import shutdown
from sweeper.errors import StoreError
from sweeper.store_template import index_store, seed_sqlite_store

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_URI = "sqlite:///mlflow.db"
TAG = "segsweep."
MAX_BATCH = 100  # MLflow's limit of params per log_batch call
HEARTBEAT_TAG = TAG + "heartbeat"
EVAL_SPLIT_TAG = TAG + "eval_split"  # the split the run's metrics measured (``<split>_mIoU``)
OBJECTIVE_TAG = TAG + "objective"  # the run's result metric: ``final_<split>_mIoU``
EPOCH_METRIC = "epoch"  # logged with every epoch's metrics: its steps are the epochs a run has logged
SWEEP_CONFIG = REPO_DIR / "conf" / "sweep.yaml"
#: config keys that say where and how a run is tracked or launched, not what it computes: left out
#: of the params (the ``config.yaml`` artifact keeps them; ``annotations`` is a tag)
BOOKKEEPING_KEYS = ("name", "output_root", "force", "annotations", "tracking", "launcher", "optuna", "sweep",
                    "hydra", *(f"dataset.{key}" for key in DECLARATION_KEYS),
                    *(f"backbone.{key}" for key in BACKBONE_DECLARATION_KEYS))


def resolve_uri(uri: str | None, base: Path | None = None) -> str:
    """The tracking URI with a relative sqlite path made absolute against ``base`` (the launch dir).

    Hydra may run each job in its own directory; a relative ``sqlite:///mlflow.db`` would then give
    one database per job.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):])
        uri = prefix + str(((base or Path.cwd()) / path).resolve())
    return uri


def tracking_uri(cfg: DictConfig, base: Path | None = None) -> str:
    from sweeper import credentials, throttle

    uri = resolve_uri(cfg.tracking.get("uri"), base)
    credentials.authenticate(uri, cfg.tracking.get("credentials"))  # a server's login, checked once (issue 26)
    throttle.configure(cfg.tracking.get("limits"))  # metric rate and artifact size per run
    return uri


#: MLflow's HTTP client settings for every segsweep process (the environment wins): a tracking server
#: that is down fails in seconds (refused: ~6 s; unreachable host: ~30 s) instead of minutes of retries
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "6"}
for _name, _value in HTTP_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def client_for(uri: str) -> MlflowClient:
    from sweeper.credentials import login_for
    from sweeper.throttle import ThrottledClient  # tracking.limits: metric rate, artifact size per run

    login_for(uri)  # a server's login inherited from the process that started this one (issue 26)
    index_store(uri)  # look-ups by tag value (run key, sweep id) search an index (issue 27)
    return ThrottledClient(tracking_uri=uri)


def prepare_store(uri: str) -> None:
    """Check that a sqlite store is writable and create it from the migrated template if new."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):])
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(db.parent, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))
    except OSError:
        writable = False
    if not writable:
        raise StoreError(f"the tracking store {uri} is not writable: choose a writable path with "
                           f"`tracking.uri=sqlite:////abs/path/mlflow.db` or MLFLOW_TRACKING_URI")
    seed_sqlite_store(db)


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment if needed (once, before any parallel job) and return its id.

    An unusable store raises one :class:`~sweeper.errors.StoreError` that names the URI and the fix.
    """
    prepare_store(uri)
    try:
        probe_database(uri)
        client = client_for(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            describe_experiment(client, experiment.experiment_id, name)  # the UI opens on its runs table
            return experiment.experiment_id
        try:
            experiment_id = client.create_experiment(name)
        except Exception:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
        describe_experiment(client, experiment_id, name)
        return experiment_id
    except Exception as error:
        raise StoreError(store_error(uri, error)) from error


def probe_database(uri: str) -> None:
    """One connection attempt to a database server store (MLflow itself retries for ~100 s)."""
    if not uri.startswith(("postgresql", "mysql", "mssql")):
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def store_error(uri: str, error: BaseException, kind: str = "tracking") -> str:
    """One line for a store that cannot be opened: the store, the error's first line and the fix."""
    if isinstance(error, ImportError) and uri.startswith("postgresql"):
        fix = "install the PostgreSQL driver with `pip install -e \".[postgres]\"` (psycopg 3)"
    elif uri.startswith("postgresql"):
        fix = "start the database (scripts/local-postgres-start.sh) or correct the URI"
    elif uri.startswith(("http://", "https://")):
        text = str(error)
        cause = ("connection refused" if "refused" in text else "timed out" if "timed out" in text.lower()
                 else first_line(error)[:200])
        return (f"cannot reach the {kind} server {uri} ({cause}): start it with `python -m sweeper server` "
                f"(scripts/mlflow-server.sh), or point tracking.uri / MLFLOW_TRACKING_URI at a running one")
    else:
        fix = "check the path/server, or set `tracking.uri=...` / MLFLOW_TRACKING_URI"
    return f"cannot use the {kind} store {uri} ({first_line(error)}): {fix}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists stay whole values."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = str(value)[:6000]
    return flat


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the segsweep checkout; ("unknown", False) outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def short_keys() -> dict[str, str]:
    """The top-level short keys of ``conf/sweep.yaml`` that default to a group's key, e.g.
    ``{"lr": "train.base_lr", "scale": "dataset.scale"}``: the short key holds the effective value."""
    declared = OmegaConf.to_container(OmegaConf.load(SWEEP_CONFIG), resolve=False)
    return {key: value[2:-1] for key, value in declared.items()
            if isinstance(value, str) and value.startswith("${") and value.endswith("}")
            and ":" not in value and value.count("${") == 1}


def _is_bookkeeping(key: str) -> bool:
    return any(key == skip or key.startswith(skip + ".") for skip in BOOKKEEPING_KEYS)


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The values the run computes with, once each: flattened, without bookkeeping, and each short key
    (``lr``, ``scale``, ``imagesize``, ``batch_size``) instead of the group key it only defaults from."""
    defaults_only = set(short_keys().values())
    return {key: value for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
            if key not in defaults_only and not _is_bookkeeping(key)}


def run_name(name: str, seed: Any) -> str:
    """The MLflow run name: the canonical name and the seed, the one axis a name leaves out."""
    return f"{name} seed={seed}"


def objective_metric(cfg: DictConfig) -> str:
    """The metric that is the run's result: ``final_<eval split>_mIoU``."""
    return split_metric(str(cfg.dataset.eval_split), final=True)


def result_value(run: Any) -> float | None:
    """A run's result: the metric its ``segsweep.objective`` tag names (runs recorded before the tag
    logged their eval split's score as ``final_val_mIoU``)."""
    return run.data.metrics.get(run.data.tags.get(OBJECTIVE_TAG, "final_val_mIoU"))


def run_tags(cfg: DictConfig, name: str, config_hash: str, key: str, extra: Mapping[str, str] = ()) -> dict:
    commit, dirty = git_state()
    tags = {"mlflow.runName": run_name(name, cfg.seed), TAG + "name": name,
            TAG + "dataset": str(cfg.dataset.name), EVAL_SPLIT_TAG: str(cfg.dataset.eval_split),
            OBJECTIVE_TAG: objective_metric(cfg),
            TAG + "config_hash": config_hash, TAG + "run_key": key, TAG + "seed": str(cfg.seed),
            TAG + "git_commit": commit, TAG + "git_dirty": str(dirty).lower(), TAG + "source": "segsweep",
            "mlflow.source.git.commit": commit}
    if cfg.get("annotations"):
        tags[TAG + "annotations"] = ",".join(str(a) for a in cfg.annotations)
    tags.update(extra or {})
    return tags


NEWEST_FIRST = ["attributes.start_time DESC"]
PAGE = 1000  # runs per page of a paged search
ID_BATCH = 100  # run ids per ``attributes.run_id IN (...)`` search


def find_runs(client: MlflowClient, experiment_id: str, key: str) -> list:
    """Runs of one run key, newest first."""
    return client.search_runs([experiment_id], filter_string=f"tags.`{TAG}run_key` = '{key}'",
                              order_by=NEWEST_FIRST, max_results=50)


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str,
               order_by: list[str] | None = None) -> list:
    """Every run that matches, read page by page (:data:`PAGE` runs each)."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, order_by=order_by, max_results=PAGE,
                                  page_token=token)
        runs += page
        token = page.token
        if not token or not page:
            return runs


def run_key_of(run: Any) -> str:
    """``<experiment id>|<run key>`` of a job's run ('' for a run without a key: a parent)."""
    key = run.data.tags.get(TAG + "run_key")
    return f"{run.info.experiment_id}|{key}" if key else ""


def newest_by_key(runs: Iterable[Any]) -> dict[str, Any]:
    """{``<experiment id>|<run key>``: its newest run} of ``runs`` (by start time)."""
    out: dict[str, Any] = {}
    for run in runs:
        key = run_key_of(run)
        if key and (key not in out or (run.info.start_time or 0) > (out[key].info.start_time or 0)):
            out[key] = run
    return out


def sweep_runs(client: MlflowClient, experiment_ids: list[str], sweep_id: str) -> dict[str, Any]:
    """The newest run of each run key among the runs of one sweep (tag ``segsweep.sweep_id``): one
    paged search for the whole sweep, not one per cell."""
    return newest_by_key(search_all(client, experiment_ids, f"tags.`{TAG}sweep_id` = '{sweep_id}'", NEWEST_FIRST))


def runs_by_id(client: MlflowClient, experiment_ids: list[str], run_ids: Iterable[str]) -> list:
    """The runs of ``run_ids`` (those in ``experiment_ids``), :data:`ID_BATCH` ids per search."""
    ids = sorted(set(run_ids))
    runs: list = []
    for start in range(0, len(ids), ID_BATCH):
        chunk = ", ".join(f"'{i}'" for i in ids[start:start + ID_BATCH])
        runs += search_all(client, experiment_ids, f"attributes.run_id IN ({chunk})")
    return runs


def create_run(client: MlflowClient, experiment_id: str, cfg: DictConfig, tags: Mapping[str, str]) -> str:
    """A new RUNNING run with its tags, its params (:func:`run_params`) and the resolved config artifact.

    A signal or an error while its params are written closes it (KILLED / FAILED): never left RUNNING.
    """
    run_id = client.create_run(experiment_id, tags=dict(tags), run_name=tags.get("mlflow.runName")).info.run_id
    try:
        params = [Param(k, v) for k, v in run_params(cfg).items()]
        for start in range(0, len(params), MAX_BATCH):
            client.log_batch(run_id, params=params[start:start + MAX_BATCH])
        client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    except Exception as error:
        record_failure(client, run_id, error)
        raise
    except KeyboardInterrupt as stop:  # a signal (sweeper.shutdown): KILLED, as a run cut while it trains
        close_run(client, run_id, "KILLED", {TAG + "stopped": shutdown.reason(stop)})
        raise
    except BaseException:
        close_run(client, run_id, "KILLED")
        raise
    return run_id


_BEAT_LOCK = threading.Lock()  # sqlite's set_tag is select-then-insert: two threads would collide


def beat() -> str:
    """A heartbeat value: time and pid@host of this process (for the stale-run check of re-runs)."""
    return f"{time.time():.0f}:{os.getpid()}@{os.uname().nodename}"


def heartbeat(client: MlflowClient, run_id: str, metrics: Iterable[Metric] = (),
              tags: Iterable[RunTag] = ()) -> None:
    """Mark the run as alive now, in the same write as ``metrics`` and ``tags`` (one transaction)."""
    with _BEAT_LOCK:
        client.log_batch(run_id, metrics=list(metrics), tags=[*tags, RunTag(HEARTBEAT_TAG, beat())])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is alive (not gone, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not zombie(pid)


def zombie(pid: int) -> bool:
    """Whether every thread of process ``pid`` has exited (a zombie: killed, not yet reaped). Its main
    thread alone reads "Z" while other threads still finish its exit, holding its files and locks."""
    try:
        states = [p.read_text().rsplit(")", 1)[1].split()[0] for p in Path(f"/proc/{pid}/task").glob("*/stat")]
    except (OSError, IndexError):
        return False
    return bool(states) and all(state in ("Z", "X") for state in states)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not running it: whoever did is gone
    return pid_alive(pid)


def is_alive(run: Any, stale_after_s: float = 180.0) -> bool:
    """Whether a RUNNING run's process is still alive.

    On this host the heartbeat's pid decides; on another host the heartbeat's age (newer than
    ``stale_after_s``). A run without a heartbeat counts from its start time.
    """
    beat = run.data.tags.get(HEARTBEAT_TAG, "")
    try:
        stamp, who = beat.split(":", 1)
        pid, host = who.split("@", 1)
        when = float(stamp)
    except ValueError:
        when, pid, host = (run.info.start_time or 0) / 1000, "", ""
    if host == os.uname().nodename and pid.isdigit():
        return _pid_alive(int(pid))
    return time.time() - when < stale_after_s


class Heartbeat:
    """Context manager: a daemon thread that refreshes the run's heartbeat every ``interval_s`` (the
    run starts with one: :func:`beat` is among the tags it is created or resumed with)."""

    def __init__(self, uri: str, run_id: str, interval_s: float = 30.0):
        self.client, self.run_id, self.interval_s = client_for(uri), run_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="segsweep-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next interval
                heartbeat(self.client, self.run_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def first_line(error: BaseException) -> str:
    """The first line of the error's message (its type name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def error_line(error: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` when the message is empty)."""
    return f"{type(error).__name__}: {first_line(error)}" if str(error).strip() else type(error).__name__


def record_failure(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """FAILED with the traceback as an artifact and the first line of the error as a tag."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    first = error_line(error)
    try:
        client.log_text(run_id, text, "traceback.txt")
    finally:
        close_run(client, run_id, "FAILED", {TAG + "error": first[:5000]})


def logged_steps(client: MlflowClient, run_id: str, key: str = EPOCH_METRIC) -> set[int]:
    return {m.step for m in client.get_metric_history(run_id, key)}


class MlflowCallback(Callback):
    """Logs the engine's reports to one run: params_M once (however often it resumes), metrics per
    epoch (step = epoch, each epoch once), the final metrics at the last epoch's step; batched."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
        self._done: set[int] = set()
        self._finals: set[str] = set()  # final_* metrics a resumed run had logged before

    def _log(self, metrics: Mapping[str, float], step: int, beat: bool = False) -> None:
        """Finite metrics in batches of 1000; with ``beat``, the last batch also refreshes the heartbeat."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, int | float) and math.isfinite(float(v))]
        chunks = [batch[start:start + 1000] for start in range(0, len(batch), 1000)] or [[]]
        for chunk in chunks[:-1]:
            self.client.log_batch(self.run_id, metrics=chunk)
        if beat:
            heartbeat(self.client, self.run_id, chunks[-1])
        elif chunks[-1]:
            self.client.log_batch(self.run_id, metrics=chunks[-1])

    def on_train_start(self, info: dict[str, Any]) -> None:
        self._done = logged_steps(self.client, self.run_id)
        logged = self.client.get_run(self.run_id).data.metrics  # a resumed run has its params_M
        self._finals = {key for key in logged if key.startswith("final_")}
        size = [] if "params_M" in logged else [
            Metric("params_M", round(info["params_M"], 4), int(time.time() * 1000), 0)]
        tags = [RunTag(TAG + "steps_per_epoch", str(info["steps_per_epoch"])),
                RunTag(TAG + "device", info["device"])]
        heartbeat(self.client, self.run_id, size, tags)
        for epoch, metrics in enumerate(info.get("history", []), start=1):  # epochs a killed run had not logged
            self.on_epoch_end(epoch, metrics)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch in self._done:
            return
        self._log({**metrics, EPOCH_METRIC: epoch}, epoch, beat=True)
        self._done.add(epoch)

    def on_warning(self, key: str, message: str) -> None:
        set_tags(self.client, self.run_id, {f"{TAG}warning.{key}": message[:5000]})

    def on_train_end(self, metrics: dict[str, float]) -> None:
        """The final metrics at the last epoch's step, each once (a run cut after it logged them and
        resumed logs none of them again at that step)."""
        step = len(self._done)
        final = {k: v for k, v in metrics.items() if k.startswith("final_") and
                 not (k in self._finals and step in logged_steps(self.client, self.run_id, k))}
        self._log(final, step)


# --------------------------------------------------------------------------- run state: the one writer
# Every write of a run's state (open, re-open, tags, params, counters, artifacts, close) is one of these
# functions (and create_run, heartbeat, record_failure above): tests/test_architecture.py allows MLflow
# write calls in this module alone.

def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Set (mutable) tags in one write (values as strings)."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in items])


def reopen_run(client: MlflowClient, run_id: str, tags: Mapping[str, str] = ()) -> None:
    """A run RUNNING again (a resumed job, a re-run sweep's or search's parent), with ``tags`` set first:
    an interruption in between leaves it closed, never RUNNING without them."""
    if tags:
        set_tags(client, run_id, tags)
    client.update_run(run_id, status="RUNNING")


def open_parent_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str], run_name: str) -> str:
    """A new RUNNING run with tags and nothing else (a sweep's or a search's parent); its id."""
    return client.create_run(experiment_id, tags=dict(tags), run_name=run_name).info.run_id


def log_new_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """The params the run has not logged yet (a re-opened run keeps its first values), in batches."""
    have = client.get_run(run_id).data.params
    todo = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
    for start in range(0, len(todo), MAX_BATCH):
        client.log_batch(run_id, params=todo[start:start + MAX_BATCH])


def next_step(client: MlflowClient, run_id: str, key: str) -> int:
    """One past the highest step ``key`` has logged on the run (0 when none): a step that only grows, so
    a metric written again (a re-run, the closing record) is a new point, never a (key, step) twice."""
    return max((m.step + 1 for m in client.get_metric_history(run_id, key)), default=0)


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float | None], step: int = 0,
                tags: Mapping[str, str] = ()) -> None:
    """The finite numbers of ``metrics`` at ``step`` (None, NaN and inf are left out), with ``tags``, in
    one write; full precision (rounding is for what is displayed)."""
    now = int(time.time() * 1000)
    batch = [Metric(k, number, now, int(step)) for k, v in metrics.items()
             if (number := finite(v)) is not None]
    labels = [RunTag(k, str(v)) for k, v in dict(tags).items()]
    if batch or labels:
        client.log_batch(run_id, metrics=batch, tags=labels)


def finite(value: Any) -> float | None:
    """``value`` as a finite float (numpy scalars too), else None (None, NaN, inf, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def log_artifact(client: MlflowClient, run_id: str, path: str | os.PathLike[str]) -> None:
    """Attach a file to the run."""
    client.log_artifact(run_id, str(path))


def close_run(client: MlflowClient, run_id: str, status: str, tags: Mapping[str, str] = ()) -> None:
    """Close a run (FINISHED, FAILED or KILLED) with ``tags`` set first (why it ended); a failed write
    is tried once more before it raises (a run is never left RUNNING for want of a retry)."""
    for attempt in (1, 2):
        try:
            if tags:
                set_tags(client, run_id, tags)
            client.set_terminated(run_id, status)
            return
        except Exception:
            if attempt == 2:
                raise
            time.sleep(0.5)


# --------------------------------------------------------------------------- experiments, imported history
# (owned by the results helper: experiment tags for the MLflow UI and the notes importer's writes)

#: MLflow 3's UI reads this experiment tag to choose its landing page (the JS bundle's ``experimentKind``):
#: ``custom_model_development`` opens the runs table ("Machine learning"), not the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows (experiments and runs)
#: MLflow 3.17's UI chooses GenAI or model-training pages by the ``workflowType`` URL parameter (else the
#: browser's last choice, GenAI at first), not by the tag: segsweep's links carry it.
UI_QUERY = "workflowType=machine_learning"
#: MLflow 3.17's shared views: the experiment tag ``mlflow.sharedViewState.<key>`` holds a runs-table state
#: (columns, sort) that the URL parameter ``viewStateShareKey=<key>`` opens (the UI's "Copy share link").
SHARED_VIEW_TAG = "mlflow.sharedViewState."
DEFAULT_VIEW_KEY = "segsweep-default"
DEFAULT_VIEW = {"selectedColumns": ["metrics.`final_val_mIoU`", "metrics.`final_test_mIoU`", "metrics.`params_M`",
                                    "params.`seed`"],
                "orderByKey": "metrics.`final_val_mIoU`", "orderByAsc": False}


def ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment's runs table (in segsweep's default view: mIoU, #Params and
    seed as columns, best first), of one run, or, with ``experiment_id`` '', the experiment list (whose
    links keep the parameter); each opens on model training (``UI_QUERY``)."""
    page = f"{base.rstrip('/')}/#/experiments" + (f"/{experiment_id}" if experiment_id else "")
    if experiment_id and run_id:
        return f"{page}/runs/{run_id}?{UI_QUERY}"
    view = f"&viewStateShareKey={DEFAULT_VIEW_KEY}" if experiment_id else ""
    return f"{page}/runs?{UI_QUERY}{view}" if experiment_id else f"{page}?{UI_QUERY}"


def experiment_description(name: str) -> str:
    """The markdown description of a segsweep experiment (one per dataset)."""
    return (f"segsweep runs on **{name}**: one run per name and seed (`segsweep.name`, `segsweep.seed`); "
            "sweep and search parents (`segsweep.kind`) summarise their jobs in their description. "
            "Compare `final_val_mIoU` / `final_test_mIoU` (the split each run was evaluated on) against "
            "`params_M`; runs with `segsweep.source = notes` are the notes' history, imported.")


def describe_experiment(client: MlflowClient, experiment_id: str, name: str) -> None:
    """Tag an experiment so the UI opens on its runs table, with a description (kept when set) and
    segsweep's default view of the table (``DEFAULT_VIEW``, opened by ``ui_url``'s links)."""
    import json

    tags = client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if not tags.get(NOTE_TAG):
        client.set_experiment_tag(experiment_id, NOTE_TAG, experiment_description(name))
    view = json.dumps(DEFAULT_VIEW, sort_keys=True)
    if tags.get(SHARED_VIEW_TAG + DEFAULT_VIEW_KEY) != view:
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + DEFAULT_VIEW_KEY, view)


def history_experiment(client: MlflowClient, name: str) -> str:
    """The (described) experiment imported history goes to, created if needed."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
    describe_experiment(client, experiment_id, name)
    return experiment_id


def log_history_run(client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str],
                    metrics: Mapping[str, tuple[float, int]], start_time_ms: int) -> str:
    """One FINISHED run of imported history: ``metrics`` is {key: (value, step)}; it starts at
    ``start_time_ms`` and lasts 0 ms, which its ``segsweep.imported`` tag and description explain."""
    tags = {**tags, TAG + "imported": "true",
            NOTE_TAG: (f"Imported history (`{tags.get(TAG + 'notes_file', 'notes')}` line "
                       f"{tags.get(TAG + 'notes_line', '?')}): the start time keeps the notes' order, "
                       "the duration (0) is unknown.")}
    run = client.create_run(experiment_id, start_time=start_time_ms, tags=dict(tags), run_name=run_name)
    batch = [Metric(k, float(v), start_time_ms, int(step)) for k, (v, step) in metrics.items()]
    client.log_batch(run.info.run_id, metrics=batch)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start_time_ms)
    return run.info.run_id
