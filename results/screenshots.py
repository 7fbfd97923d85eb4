"""``python -m results.screenshots --out docs/screenshots``: regenerate every picture docs/ui.md lists.

One command, from nothing: in a temporary directory it runs the quick start (a real
``python sweep.py -m backbone=dense30k12 seed=0,1``, shortened to a few steps), imports the researcher's
notes, writes the results README (its plots are copied), starts a real ``mlflow ui --workers 1`` on
127.0.0.1 and takes headless-Chromium screenshots (fresh profile each) of the pages segsweep links to,
and of the plain experiment URL (what MLflow 3.17 shows without ``workflowType``). PNGs are reduced to a
256-colour palette (small files to commit). Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "tests" / "data" / "deeplab-notes.md"
QUICK = ["backbone=dense30k12", "seed=0,1", "dataset.num_train=16", "dataset.num_val=4", "dataset.image_size=32",
         "dataset.crop_size=32", "batch_size=4", "train.epochs=3", "train.max_steps_per_epoch=2"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: plot files of the results README -> the name they get in docs/screenshots
PLOTS = {"synthetic_params_miou.png": "quickstart-synthetic-per-run.png",
         "synthetic_curves.png": "quickstart-synthetic-curves.png",
         "voc_params_miou.png": "notes-voc-params-miou.png",
         "camvid_params_miou.png": "notes-camvid-params-miou.png",
         "cityscapes_params_miou.png": "notes-cityscapes-params-miou.png",
         "aerial_params_miou.png": "notes-aerial-params-miou.png"}


def browser() -> str:
    """The headless Chromium binary (SystemExit naming the install command when there is none)."""
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        raise SystemExit("error: no headless Chromium: apt-get install -y chromium")
    return found


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "SEGSWEEP_CACHE": str(work / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _run(cmd: list[str], work: Path) -> None:
    done = subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed: {done.stderr.strip().splitlines()[-1:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(chromium: str, url: str, out: Path, size: str = "1400,900") -> Path:
    """A screenshot of ``url`` after its scripts ran, in a fresh profile (no remembered UI choices)."""
    with tempfile.TemporaryDirectory(prefix="profile-") as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--hide-scrollbars",
                        f"--window-size={size}", f"--screenshot={out}", url],
                       capture_output=True, text=True, timeout=240, check=True)
    return out


def shrink(path: Path) -> Path:
    """Rewrite a PNG with a 256-colour palette (a third of the size for screenshots and plots)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def _store_ids(uri: str) -> dict[str, str]:
    """ids of the pages to shoot: the synthetic experiment, its sweep parent and a job, the VOC notes."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    syn = client.get_experiment_by_name("synthetic").experiment_id
    runs = client.search_runs([syn], order_by=["attributes.start_time ASC"])
    parent = next(r for r in runs if r.data.tags.get("segsweep.kind") == "sweep")
    job = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    return {"synthetic": syn, "parent": parent.info.run_id, "job": job.info.run_id,
            "voc": client.get_experiment_by_name("voc").experiment_id}


def pages(base: str, ids: dict[str, str]) -> dict[str, str]:
    """screenshot file -> the URL it shows (segsweep's links, and the plain URL for comparison)."""
    from sweeper.tracking import ui_url

    return {
        "mlflow-runs-table.png": ui_url(base, ids["synthetic"]),
        "mlflow-sweep-parent.png": ui_url(base, ids["synthetic"], ids["parent"]),
        "mlflow-job-config-artifact.png": ui_url(base, ids["synthetic"], ids["job"]).replace("?", "/artifacts/config.yaml?"),
        "mlflow-notes-voc-runs.png": ui_url(base, ids["voc"]),
        "mlflow-experiment-list.png": ui_url(base, ""),
        "mlflow-plain-url-genai-overview.png": f"{base}/#/experiments/{ids['synthetic']}",
    }


def _ui(uri: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = (work / "ui.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=work, env=_env(work))
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return proc, base
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                _stop(proc)
                raise SystemExit(f"error: mlflow ui did not come up: {(work / 'ui.log').read_text()[-500:]}") from None
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the UI and its worker (own process group)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def regenerate(out: Path, work: Path) -> list[Path]:
    """Every picture of docs/ui.md into ``out`` (made in ``work``); returns the files written."""
    chromium = browser()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    _run([sys.executable, str(REPO / "sweep.py"), "-m", *QUICK, f"output_root={work / 'outputs'}",
          "hydra.callbacks.results_readme.enabled=false"], work)
    _run([sys.executable, "-m", "results", "import-notes", str(NOTES)], work)
    _run([sys.executable, "-m", "results", "readme", "--out", str(work / "results" / "README.md")], work)
    written = []
    for src, dst in PLOTS.items():
        if (work / "results" / src).is_file():
            written.append(shrink(Path(shutil.copyfile(work / "results" / src, out / dst))))
    proc, base = _ui(uri, work)
    try:
        for name, url in pages(base, _store_ids(uri)).items():
            written.append(shrink(shoot(chromium, url, out / name)))
    finally:
        _stop(proc)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="where the PNGs go")
    p.add_argument("--keep", type=Path, default=None, help="make the store here and keep it (default: a temp dir)")
    args = p.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        files = regenerate(args.out.resolve(), args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="segsweep-shots-") as work:
            files = regenerate(args.out.resolve(), Path(work))
    for f in files:
        print(f"{f}  {f.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
