"""`python -m data prepare {voc,aerial}` on tiny trees written in the real download layouts, then a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from data import DatasetError, build_dataset
from data.__main__ import main
from data.config import dataset_config
from data.prepare_aerial import first_per_city, patch_boxes, prepare_aerial, starts
from data.prepare_voc import prepare_voc, sbd_label, train_aug_ids
from tests.conftest import REPO, subprocess_env
from tests.fixtures_data import make_inria, make_sbd, make_voc_devkit, truncate

SBD_TRAIN, SBD_VAL = ["2008_000001", "2008_000002", "2007_000010"], ["2008_000003", "2007_000020"]
VOC_TRAIN, VOC_VAL = ["2007_000010", "2007_000011"], ["2007_000020", "2007_000021"]


@pytest.fixture()
def raw_voc(tmp_path: Path) -> dict:
    sbd = make_sbd(tmp_path / "sbd", SBD_TRAIN, SBD_VAL)
    voc = make_voc_devkit(tmp_path / "voc", VOC_TRAIN, VOC_VAL, extra_images=["2008_000001", "2008_000002", "2008_000003"])
    return {"sbd_dir": tmp_path / "sbd", "voc_dir": tmp_path / "voc" / "VOCdevkit" / "VOC2012", "sbd": sbd, "voc": voc}


# -- VOC + SBD -----------------------------------------------------------------------------------
def test_train_aug_is_sbd_train_val_and_voc_train_minus_voc_val():
    got = train_aug_ids(sbd_train=["a", "b", "v1"], sbd_val=["c", "v2"], voc_train=["b", "t"], voc_val=["v1", "v2"])
    assert got == ["a", "b", "c", "t"]


def test_prepare_voc_writes_labels_lists_and_image_links(raw_voc: dict, tmp_path: Path):
    out = tmp_path / "out"
    counts = prepare_voc(raw_voc["sbd_dir"], raw_voc["voc_dir"], out, progress=False)
    assert counts == {"train_aug": 5, "train": 2, "val": 2, "written": 7, "kept": 0}
    lines = (out / "train_aug.txt").read_text().splitlines()
    assert lines[0] == "JPEGImages/2007_000010.jpg SegmentationClassAug/2007_000010.png"
    assert [ln.split()[0][11:22] for ln in lines] == sorted({*SBD_TRAIN, *SBD_VAL, *VOC_TRAIN} - set(VOC_VAL))
    assert (out / "val.txt").read_text().split()[::2] == [f"JPEGImages/{i}.jpg" for i in VOC_VAL]
    for image_id, label in raw_voc["sbd"].items():  # SBD-only ids: GTcls.Segmentation as it is
        if image_id not in VOC_TRAIN + VOC_VAL:
            png = Image.open(out / "SegmentationClassAug" / f"{image_id}.png")
            assert png.mode == "L" and np.array_equal(np.asarray(png), label)
    for image_id, label in raw_voc["voc"].items():  # VOC's own annotation wins (palette indices, 255 kept)
        np.testing.assert_array_equal(np.asarray(Image.open(out / "SegmentationClassAug" / f"{image_id}.png")), label)
    link = out / "JPEGImages" / "2008_000001.jpg"
    assert link.is_symlink() and link.resolve() == (raw_voc["voc_dir"] / "JPEGImages" / "2008_000001.jpg").resolve()
    cfg = dataset_config(["dataset=voc", f"dataset.root={out}"])
    ds = build_dataset(cfg, "train_aug", train=False)
    assert len(ds) == 5 and ds[0]["label"].shape == ds[0]["image"].shape[1:]


def test_prepare_voc_is_idempotent_and_resumes(raw_voc: dict, tmp_path: Path):
    out = tmp_path / "out"
    prepare_voc(raw_voc["sbd_dir"], raw_voc["voc_dir"], out, progress=False)
    label = out / "SegmentationClassAug" / "2008_000002.png"
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "SegmentationClassAug").iterdir()}
    again = prepare_voc(raw_voc["sbd_dir"], raw_voc["voc_dir"], out, progress=False)
    assert (again["written"], again["kept"]) == (0, 7)
    assert {p: p.stat().st_mtime_ns for p in (out / "SegmentationClassAug").iterdir()} == mtimes
    label.unlink()  # as an interrupted first run leaves it: the rest done, this one not
    (out / "JPEGImages" / "2008_000002.jpg").unlink()
    resumed = prepare_voc(raw_voc["sbd_dir"], raw_voc["voc_dir"], out, progress=False)
    assert (resumed["written"], resumed["kept"]) == (1, 6)
    assert np.array_equal(np.asarray(Image.open(label)), raw_voc["sbd"]["2008_000002"])
    assert (out / "JPEGImages" / "2008_000002.jpg").is_file()
    assert not [p for p in out.rglob(".*tmp*")]


def test_prepare_voc_accepts_the_download_folders_and_writes_into_voc2012(raw_voc: dict, tmp_path: Path):
    counts = prepare_voc(tmp_path / "sbd", tmp_path / "voc", raw_voc["voc_dir"], progress=False)
    assert counts["train_aug"] == 5 and (raw_voc["voc_dir"] / "SegmentationClassAug" / "2008_000003.png").is_file()
    jpg = raw_voc["voc_dir"] / "JPEGImages" / "2008_000001.jpg"
    assert jpg.is_file() and not jpg.is_symlink()  # VOC's own JPEGs are left as they are


def test_sbd_label_reads_the_gtcls_struct_and_rejects_other_mats(raw_voc: dict, tmp_path: Path):
    mat = raw_voc["sbd_dir"] / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000001.mat"
    label = sbd_label(mat)
    assert label.dtype == np.uint8 and np.array_equal(label, raw_voc["sbd"]["2008_000001"])
    from scipy.io import savemat

    savemat(tmp_path / "other.mat", {"GTinst": {"Segmentation": np.zeros((2, 2))}})
    with pytest.raises(DatasetError, match="not an SBD cls file with GTcls.Segmentation"):
        sbd_label(tmp_path / "other.mat")


def test_prepare_voc_bad_input_is_one_line_and_exit_2(raw_voc: dict, tmp_path: Path, capsys):
    assert main(["prepare", "voc", "--sbd", str(tmp_path / "nope"), "--voc", str(raw_voc["voc_dir"]),
                 "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --sbd {tmp_path / 'nope'} does not hold benchmark_RELEASE/dataset/cls")
    (raw_voc["voc_dir"] / "SegmentationClass" / "2007_000021.png").unlink()
    assert main(["prepare", "voc", "--sbd", str(raw_voc["sbd_dir"]), "--voc", str(raw_voc["voc_dir"]),
                 "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "1 listed id(s) have no label" in line and "2007_000021" in line
    assert not (tmp_path / "out").exists()  # nothing written before the sources are known complete


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary_one(tmp_path: Path):
    from data.io import write_atomic

    def stopped(tmp: Path) -> None:
        tmp.write_bytes(b"half a png")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "x.png", stopped)
    assert list(tmp_path.iterdir()) == []
    write_atomic(tmp_path / "x.png", lambda tmp: tmp.write_bytes(b"whole"))
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"] and (tmp_path / "x.png").read_bytes() == b"whole"


# -- Inria aerial --------------------------------------------------------------------------------
def test_patch_offsets_step_by_stride_and_end_at_the_border():
    assert starts(5000, 1000, 1000) == [0, 1000, 2000, 3000, 4000]
    assert starts(40, 16, 12) == [0, 12, 24]
    assert starts(45, 16, 12) == [0, 12, 24, 29]  # the last patch moved inward to reach the border
    assert starts(16, 16, 5) == [0]
    boxes = patch_boxes(40, 28, 16, 12)
    assert boxes[0] == (0, 0, (0, 0, 16, 16)) and boxes[-1] == (1, 2, (24, 12, 40, 28))
    with pytest.raises(DatasetError, match="larger than the tile side"):
        starts(10, 16, 16)


def test_validation_is_the_first_five_tiles_of_each_city():
    names = [f"{c}{n}" for c in ("austin", "tyrol-w", "vienna") for n in range(1, 9)]
    got = first_per_city(names[::-1], 5)
    assert got == [f"{c}{n}" for c in ("austin", "tyrol-w", "vienna") for n in range(1, 6)]
    assert first_per_city(["kitsap10", "kitsap2", "kitsap1"], 2) == ["kitsap1", "kitsap2"]  # numeric order


def test_prepare_aerial_cuts_patches_links_tiles_and_writes_lists(tmp_path: Path):
    inria = make_inria(tmp_path / "raw", {"austin": 7, "tyrol-w": 6})
    out = tmp_path / "aerial"
    counts = prepare_aerial(inria.parent, out, size=16, stride=12, progress=False)
    assert counts == {"train": 3 * 9, "val": 10, "train_tiles": 3}
    val = (out / "val.txt").read_text().splitlines()
    assert val[0] == "val/images/austin1.tif val/gt/austin1.tif" and val[-1].startswith("val/images/tyrol-w5.tif")
    train = (out / "train.txt").read_text().splitlines()
    assert train[0] == "train/images/austin6_patch0_0.tif train/gt/austin6_patch0_0.tif" and len(train) == 27
    tile = np.asarray(Image.open(inria / "train" / "images" / "tyrol-w6.tif"))
    gt = np.asarray(Image.open(inria / "train" / "gt" / "tyrol-w6.tif"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "train/images/tyrol-w6_patch1_2.tif")), tile[12:28, 24:40])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "train/gt/tyrol-w6_patch1_2.tif")), gt[12:28, 24:40])
    assert (out / "val" / "gt" / "austin3.tif").resolve() == (inria / "train" / "gt" / "austin3.tif").resolve()
    cfg = dataset_config(["dataset=aerial", f"dataset.root={out}"])
    assert len(build_dataset(cfg, "train", train=False)) == 27 and len(build_dataset(cfg, "val", train=False)) == 10
    assert set(np.unique(build_dataset(cfg, "val", train=False)[0]["label"].numpy())) == {0, 1}


def test_prepare_aerial_resumes_without_reopening_finished_tiles(tmp_path: Path):
    inria = make_inria(tmp_path / "raw", {"austin": 7})
    out = tmp_path / "aerial"
    prepare_aerial(inria, out, size=20, progress=False)
    truncate(inria / "train" / "images" / "austin6.tif", keep=0.5)  # only readable if it were reopened
    (out / "train" / "gt" / "austin7_patch1_1.tif").unlink()  # an interrupted run
    assert prepare_aerial(inria, out, size=20, progress=False)["train"] == 8
    np.testing.assert_array_equal(np.asarray(Image.open(out / "train/gt/austin7_patch1_1.tif")),
                                  np.asarray(Image.open(inria / "train/gt/austin7.tif"))[20:40, 20:40])
    assert not [p for p in out.rglob(".*tmp*")]


def test_prepare_aerial_takes_the_notes_val_list(tmp_path: Path, capsys):
    inria = make_inria(tmp_path / "raw", {"austin": 3, "vienna": 3})
    notes_val = tmp_path / "val.txt"  # the notes' metadata/aerial/val.txt: absolute paths of another machine
    notes_val.write_text("/data1/dataset/AerialImage/val/images/austin3.tif /data1/dataset/AerialImage/val/gt/austin3.tif\n"
                         "/data1/dataset/AerialImage/val/images/vienna1.tif /data1/dataset/AerialImage/val/gt/vienna1.tif\n")
    out = tmp_path / "aerial"
    assert main(["prepare", "aerial", "--inria", str(inria), "--out", str(out), "--size", "40",
                 "--val-list", str(notes_val)]) == 0
    assert [ln.split()[0] for ln in (out / "val.txt").read_text().splitlines()] == \
        ["val/images/austin3.tif", "val/images/vienna1.tif"]
    assert len((out / "train.txt").read_text().splitlines()) == 4
    notes_val.write_text("austin9\n")
    assert main(["prepare", "aerial", "--inria", str(inria), "--out", str(out), "--val-list", str(notes_val)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "names 1 tile(s) not in the download" in line and "austin9" in line


# -- a one-step run on each prepared tree ----------------------------------------------------------
TINY_RUN = ["backbone=dense30k12", "imagesize=8", "batch_size=2", "train.epochs=1", "train.max_steps_per_epoch=1",
            "train.num_workers=0", "eval.tile=48", "eval.subset=1", "eval.final_full=false",
            "tracking.heartbeat_s=3600"]


def _one_step_run(tmp_path: Path, store: str, overrides: list[str]) -> dict:
    from sweeper import naming
    from sweeper.task import run_job

    return run_job(naming.compose_config([*overrides, *TINY_RUN, f"output_root={tmp_path / 'outputs'}"]))


@pytest.mark.slow
def test_one_step_run_on_each_prepared_tree(raw_voc: dict, tmp_path: Path, store: str):
    prepare_voc(raw_voc["sbd_dir"], raw_voc["voc_dir"], tmp_path / "voc", progress=False)
    prepare_aerial(make_inria(tmp_path / "raw", {"austin": 6}), tmp_path / "aerial", size=20, progress=False)
    for name in ("voc", "aerial"):
        result = _one_step_run(tmp_path, store, [f"dataset={name}", f"dataset.root={tmp_path / name}"])
        assert result["status"] == "FINISHED", result
        run = MlflowClient(store).get_run(result["run_id"])
        assert run.info.status == "FINISHED" and "train_loss" in run.data.metrics


@pytest.mark.slow
def test_a_run_on_a_broken_tree_fails_before_its_first_step_naming_the_file(tmp_path: Path, store: str):
    prepare_aerial(make_inria(tmp_path / "raw", {"austin": 6}), tmp_path / "aerial", size=20, progress=False)
    broken = truncate(tmp_path / "aerial" / "train" / "images" / "austin6_patch1_0.tif")
    result = subprocess.run(
        [sys.executable, str(REPO / "sweep.py"), "dataset=aerial", f"dataset.root={tmp_path / 'aerial'}", *TINY_RUN,
         f"output_root={tmp_path / 'outputs'}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert result.returncode == 2, result.stderr[-3000:]
    (error,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert f"{broken}: truncated TIFF" in error and "1 broken file(s) of 4 pairs" in error
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("aerial").experiment_id])
    assert run.info.status == "FAILED" and "train_loss" not in run.data.metrics  # no step was taken


def _peak_rss_mb(args: list[str], cwd: Path) -> float:
    """The peak resident memory of ``python -m data ARGS`` (VmHWM: ru_maxrss would include the forking parent)."""
    probe = ("import re, sys\nfrom data.__main__ import main\nassert main(sys.argv[1:]) == 0\n"
             "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]) / 1024)")
    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=subprocess_env(PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.slow
def test_a_large_tile_is_in_memory_once_while_it_is_cut(tmp_path: Path):
    side = 4000  # Pillow holds RGB at 4 bytes a pixel: 64 MB for this tile
    for name, n in (("small", 40), ("large", side)):
        base = tmp_path / name / "train"
        for city in ("austin1", "austin2"):  # austin1 validates, austin2 is cut
            for kind, shape in (("images", (n, n, 3)), ("gt", (n, n))):
                (base / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(base / kind / f"{city}.tif")
    args = ["prepare", "aerial", "--val-per-city", "1", "--size", "40"]
    baseline = _peak_rss_mb([*args, "--inria", "small", "--out", "small-out"], tmp_path)
    peak = _peak_rss_mb([*args, "--size", "1000", "--inria", "large", "--out", "large-out"], tmp_path)
    tile_mb = side * side * 4 / 2**20
    assert 0.5 * tile_mb < peak - baseline < 1.5 * tile_mb, (baseline, peak)
    assert len((tmp_path / "large-out" / "train.txt").read_text().splitlines()) == 16
