"""The MLflow UI as the researcher sees it: headless Chromium against a real ``mlflow ui`` on 127.0.0.1.

The store is written by segsweep's own code (``sweeper.tracking``, ``sweeper.sweep_record``); the pages
are the ones segsweep links to (``tracking.ui_url``). Checked on the rendered DOM (``--dump-dom``):
the experiment link lands on the runs table (not MLflow 3's GenAI overview), the sweep's parent shows its
params, metrics and summary, a job shows its config artifact.

Needs Debian's ``chromium`` (``apt-get install -y chromium chromium-driver``); skipped without it unless
``REQUIRE_BROWSER=1`` (CI), where a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from omegaconf import OmegaConf

from sweeper import sweep_record, tracking

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        why = "no headless Chromium (apt-get install -y chromium chromium-driver)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dom(browser: str, url: str, tmp: Path) -> str:
    """The page's DOM after its scripts ran (virtual time: the SPA's fetches complete first), in a
    fresh profile (no remembered UI choices); kept in ``tmp`` for a failing test's reader."""
    profile = tempfile.mkdtemp(dir=tmp, prefix="profile-")
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          f"--user-data-dir={profile}", "--virtual-time-budget=30000",
                          "--window-size=1400,1000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=240)
    Path(profile, "dom.html").write_text(out.stdout)
    return out.stdout


def _text(dom: str) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A store with a sweep (parent + two jobs, one with its config artifact) and a UI serving it."""
    tmp = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("synthetic", artifact_location=str(tmp / "artifacts"))
    tracking.ensure_experiment(uri, "synthetic")  # tags it as segsweep does
    parent = client.create_run(exp, run_name="sweep seed=0,1", tags={
        "segsweep.kind": "sweep", "segsweep.sweep_id": "s1", "segsweep.sweep": "sweep seed=0,1"}).info.run_id
    cells, jobs = [], []
    for seed, value in ((0, 41.25), (1, 43.75)):
        cfg = OmegaConf.create({"seed": seed, "train": {"epochs": 1, "marker_key": f"segsweepmarker{seed}"}})
        tags = {"mlflow.runName": f"synthetic.x seed {seed}", "segsweep.name": "synthetic.x",
                "segsweep.seed": str(seed), "segsweep.run_key": f"k{seed}", "mlflow.parentRunId": parent}
        rid = tracking.create_run(client, exp, cfg, tags)
        client.log_batch(rid, metrics=[Metric("final_val_mIoU", value, 0, 0), Metric("params_M", 0.34, 0, 0)])
        client.set_terminated(rid)
        cells.append({"name": "synthetic.x", "run_key": f"k{seed}", "uri": uri, "experiment": "synthetic",
                      "experiment_id": exp, "seed": str(seed)})
        jobs.append(rid)
    sweep_record.record_start(client, parent, ["seed=0,1", "train.epochs=1"], "sweep seed=0,1", cells,
                              argv=["sweep.py", "-m", "seed=0,1", "train.epochs=1"])
    client.set_terminated(parent)
    port = _free_port()
    log = (tmp / "ui.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"mlflow ui did not come up: {(tmp / 'ui.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield {"base": base, "exp": exp, "parent": parent, "jobs": jobs, "tmp": tmp, "uri": uri}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the UI and its workers (own process group)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_the_experiment_link_lands_on_the_runs_table(ui):
    browser = _browser()
    text = _text(_dom(browser, tracking.ui_url(ui["base"], ui["exp"]), ui["tmp"]))
    assert "Runs" in text and "sweep seed=0,1" in text  # the runs table with the sweep's parent
    assert "Usage" not in text and "Detect Issues" not in text  # not the GenAI overview
    assert "segsweep runs on synthetic" in text  # the experiment's description


@pytest.mark.slow
def test_the_experiment_link_opens_segsweeps_default_view(ui):
    """The link's ``viewStateShareKey`` opens the view segsweep stored on the experiment: mIoU, #Params and
    seed as columns of the runs table (MLflow's own default shows none of them)."""
    import re

    dom = _dom(_browser(), tracking.ui_url(ui["base"], ui["exp"]), ui["tmp"])
    columns = set(re.findall(r'col-id="([^"]+)"', dom))  # the runs table's columns (ag-grid)
    assert {"metrics.`final_val_mIoU`", "metrics.`params_M`", "params.`seed`"} <= columns, sorted(columns)
    assert "share key is invalid" not in _text(dom)
    plain = set(re.findall(r'col-id="([^"]+)"', _dom(_browser(), tracking.ui_url(ui["base"], ui["exp"]).split("&")[0],
                                                         ui["tmp"])))
    assert plain and not {c for c in plain if c.startswith(("metrics.", "params."))}, sorted(plain)
    # (without the view MLflow shows no metric or param column: the view did it)


@pytest.mark.slow
def test_the_parent_shows_its_axes_counts_and_best(ui):
    text = _text(_dom(_browser(), tracking.ui_url(ui["base"], ui["exp"], ui["parent"]), ui["tmp"]))
    for word in ("jobs_finished", "jobs_failed", "best_final_val_mIoU", "43.75", "sweep.axes", "train.epochs"):
        assert word in text, word
    assert "2/2 jobs ended: 2 finished, 0 failed." in text  # the summary, as its description


@pytest.mark.slow
def test_a_job_shows_its_config_artifact(ui):
    url = tracking.ui_url(ui["base"], ui["exp"], ui["jobs"][1]).replace("?", "/artifacts/config.yaml?")
    text = _text(_dom(_browser(), url, ui["tmp"]))
    assert "config.yaml" in text and "segsweepmarker1" in text


@pytest.mark.slow
def test_the_plain_url_still_lands_on_mlflows_genai_page(ui):
    """MLflow 3.17's UI ignores ``mlflow.experimentKind`` (set: see the fixture) and opens the plain
    ``#/experiments/<id>`` on GenAI in a fresh browser (docs/ui.md). When this fails, MLflow honours the
    tag: the plain URL then opens the runs table and segsweep's ``workflowType`` links can go."""
    from mlflow import MlflowClient

    tags = MlflowClient(ui["uri"]).get_experiment(ui["exp"]).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    text = _text(_dom(_browser(), f"{ui['base']}/#/experiments/{ui['exp']}", ui["tmp"]))
    assert "Traces" in text or "Usage" in text, "the plain URL no longer lands on GenAI: update docs/ui.md"
