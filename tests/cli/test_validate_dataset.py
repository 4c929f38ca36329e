"""`autors validate` on a dataset of scenes: scenes, groups, splits, skipped and unused scenes,
sizes, CRSs; missing or unreadable files named without traceback; `--cluster` on a local Ray
instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import make_fixtures as fx  # tests/data (on sys.path via tests/conftest.py)
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from autors.cli import main
from autors.cli import validate as validate_verb
from autors.data import index as index_module

SCENES = ("a1", "a2", "a3", "b1", "b2", "c1", "d1", "e1")
OTHER_CRS = CRS.from_epsg(32631)  # b1's; the others are in the fixtures' EPSG:32632


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wraps at 80 columns when not on a terminal: keep each message on one line."""
    monkeypatch.setenv("COLUMNS", "300")


def _rewrite(path: Path, crs: CRS | None = None, data: np.ndarray | None = None) -> None:
    """`path` again, with another CRS tag and/or other pixel values."""
    with rasterio.open(path) as ds:
        profile, values, names = ds.profile, ds.read(), ds.descriptions
    profile["crs"] = crs or profile["crs"]
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values if data is None else data)
        ds.descriptions = names


def _write_scene(folder: Path, crs: CRS | None = None, empty: bool = False) -> None:
    """The data tests' scene without its LiDAR (its own CRS would not follow a re-tag)."""
    paths = fx.make_scene(folder)
    paths["lidar"].unlink()
    for key in ("labels", "optical", "sar"):
        if crs is not None:
            _rewrite(paths[key], crs=crs)
    if empty:  # no labelled pixel: the index skips the scene
        _rewrite(paths["labels"], data=np.zeros((1, fx.ROWS, fx.COLS), np.uint8))


def _task(folder: Path, **changes: object) -> dict:
    task = {
        "name": "dataset",
        "task": "patch_classification",
        "sensors": {
            "optical": {"kind": "optical", "bands": fx.OPT_BANDS, "scale": 0.5, "offset": 1.0},
            "sar": {"kind": "sar", "sar_units": "linear"},
        },
        "labels": {"classes": fx.CLASSES, "ignore": 0},
        "scenes": {
            "template": {"sensors": {"optical": "data/{scene}/optical.tif",
                                     "sar": "data/{scene}/sar.tif"},
                         "labels": "data/{scene}/labels.tif"},
            "group": "^([a-z])[0-9]$",
        },
        "split": {"kind": "scenes", "train": ["a1", "a2", "b1", "e1"], "val": "val.csv",
                  "test": ["b2", "c1"]},  # d1 in no list
        "patch_size": 5,
    }
    task.update(changes)
    return task


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    for scene in SCENES:
        _write_scene(folder / "data" / scene, crs=OTHER_CRS if scene == "b1" else None,
                     empty=scene == "e1")
    (folder / "val.csv").write_text("id\na3\n")
    fx.write_task(folder, _task(folder))
    return folder


@pytest.fixture
def task_path(dataset: Path) -> Path:
    return dataset / "task.yaml"


def test_dataset_summary(task_path: Path, capsys) -> None:
    assert main(["validate", str(task_path)]) == 0
    out = capsys.readouterr().out
    for text in (
        "optical (optical): 4 band(s): blue, green, red, nir; scale 0.5, offset 1",
        "data/{scene}/optical.tif",
        "window read in 6 scene(s)",  # optical on the label lattice in every indexed scene
        "resampled (bilinear) in 6 scene(s)",  # SAR at 20 m, shifted
        "Dataset: 8 scene(s) in 5 group(s) (scenes.group), listed by the glob of the template",
        "scenes per split: train 3 (2 group(s)), val 1 (1 group(s)), test 2 (2 group(s))",
        ("WARNING: 1 scene(s) skipped, no usable labelled pixel (a label where require_sensors "
        "holds): e1"),
        "1 scene(s) unused (in no split list): d1",
        ("Valid pixels: optical 99.5%, sar 100.0% of the scenes' grids; a label is used where "
        "any sensor is valid"),
        "2 CRS(s): EPSG:32632 (5 scene(s)), EPSG:32631 (1)",
        "pixel sizes: 10 x 10 m (6 scene(s))",
        "grids: 80 x 60 to 80 x 60 px, 28,800 px in all",
        "of rasters on disk;",
        "normalised in memory <= data.in_memory_max_mb 2048: training holds it in memory",
        "Split: whole scenes, given lists: train 4 id(s) / val val.csv / test 2 id(s)",
        "buffer: none needed",
        "leakage: test footprints touching training pixels: 0 of",
        "OK: the task is usable",
    ):
        assert text in out, text
    total = sum(p.stat().st_size for p in (task_path.parent / "data").rglob("*.tif"))
    assert f"{total / 1024:.1f} kB of rasters on disk" in out
    # 6 indexed scenes x 6 channels x 80 x 60 px x 4 bytes (float32)
    assert f"{6 * 6 * 80 * 60 * 4 / 1024:.1f} kB normalised in memory" in out
    assert "Reference grid" not in out  # one scene's lines


def test_a_sensor_absent_from_a_scene(dataset: Path, tmp_path: Path, capsys) -> None:
    folder = Path(shutil.copytree(dataset, tmp_path / "copy"))
    (folder / "data" / "a2" / "sar.tif").unlink()  # a2 delivered without SAR
    assert main(["validate", str(folder / "task.yaml")]) == 0
    out = capsys.readouterr().out
    assert "resampled (bilinear) in 5 scene(s), absent in 1 scene(s)" in out
    assert "sar 83.3% of the scenes' grids" in out  # 5 of 6 equal grids


def test_streamed_dataset(task_path: Path, capsys) -> None:
    assert main(["validate", str(task_path), "--set", "data.in_memory_max_mb=0.1"]) == 0
    out = capsys.readouterr().out
    assert "> data.in_memory_max_mb 0.1: training streams it from the GeoTIFFs (blocks of " \
           "256 px, 256 MB cache per reader)" in out


def test_seeded_fractions_by_group(task_path: Path, capsys) -> None:
    assert main(["validate", str(task_path), "--set", "split={kind: scenes}"]) == 0
    out = capsys.readouterr().out
    assert "Split: whole scenes, seeded fractions of the groups: test 25%, val 15%" in out
    assert "unused" not in out


def _fails(argv: list[str], capsys, *texts: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in texts:
        assert text in err, err


def test_missing_file_is_named(dataset: Path, tmp_path: Path, capsys) -> None:
    items = [{"id": i, "labels": f"{dataset}/data/{i}/labels.tif",
              "sensors": {"optical": f"{dataset}/data/{i}/optical.tif",
                          "sar": f"{dataset}/data/{i}/{'sar_missing' if i == 'b2' else 'sar'}.tif"}}
             for i in ("a1", "a2", "b1", "b2", "c1")]
    task = fx.write_task(tmp_path, _task(dataset, scenes={"items": items},
                                         split={"kind": "scenes"}))
    _fails(["validate", str(task)], capsys, "file(s) of the dataset do not exist",
           "scene 'b2' sensor 'sar':", "b2/sar_missing.tif")


def test_unreadable_file_is_named_before_pixels_are_read(dataset: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys) -> None:
    folder = Path(shutil.copytree(dataset, tmp_path / "copy"))
    (folder / "data" / "c1" / "sar.tif").write_bytes(b"not a GeoTIFF")  # the last used scene
    reads = []
    monkeypatch.setattr(index_module, "read_block", lambda *a: reads.append(a))
    _fails(["validate", str(folder / "task.yaml")], capsys, "scene 'c1', sensor 'sar':",
           str(folder / "data" / "c1" / "sar.tif"))
    assert reads == []  # every header is read before any pixel


# ---- --cluster, on a local Ray instance (the multi-node fixture lives in tests/cluster) ------
@pytest.fixture(scope="module")
def local_ray() -> object:
    ray = pytest.importorskip("ray")
    from autors.search.cluster import _loopback_only

    if ray.is_initialized():
        ray.shutdown()
    _loopback_only()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_cluster_every_node_reads_every_raster(task_path: Path, local_ray, capsys) -> None:
    assert main(["validate", str(task_path), "--cluster", "127.0.0.1:6379"]) == 0
    out = capsys.readouterr().out
    n = len(list((task_path.parent / "data").rglob("*.tif")))
    assert f"1 node(s), {n} raster(s) each" in out
    assert "node 127.0.0.1 (" in out and f"all {n} raster(s) readable" in out


@pytest.fixture
def one_bad_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The driver believes the dataset has one more raster, which no node can read."""
    bad = tmp_path / "elsewhere" / "b9_sar.tif"
    real = validate_verb.dataset_files

    def with_bad(scenes):
        files, where = real(scenes)
        return {**files, bad: 1234}, where

    monkeypatch.setattr(validate_verb, "dataset_files", with_bad)
    return bad


def test_cluster_node_that_cannot_read_a_file(task_path: Path, local_ray, one_bad_file: Path,
                                             capsys) -> None:
    _fails(["validate", str(task_path), "--set", "data.in_memory_max_mb=0", "--cluster",
            "127.0.0.1:6379"], capsys, "node 127.0.0.1 (", f"cannot read {one_bad_file}",
           "RasterioIOError", "the dataset is streamed",
           "storage that every node mounts at the same path")
    out = capsys.readouterr().out
    assert "OK" not in out


def test_cluster_unreadable_file_is_a_warning_when_held_in_memory(
        task_path: Path, local_ray, one_bad_file: Path, capsys) -> None:
    assert main(["validate", str(task_path), "--cluster", "127.0.0.1:6379"]) == 0
    out = capsys.readouterr().out
    assert "1 of" in out and "raster(s) not readable" in out and str(one_bad_file) in out
    assert "warning: the dataset is held in memory" in out and "OK: the task is usable" in out


def test_cluster_file_of_another_size(task_path: Path, local_ray) -> None:
    from autors.search.node_files import check_nodes

    files, _ = validate_verb.dataset_files(validate_verb.list_scenes(
        validate_verb.task_from_args(validate_verb.argparse.Namespace(
            task=str(task_path), data_root=None, overrides=[]))))
    first = next(iter(files))
    checks = check_nodes({first: files[first] + 1})
    assert len(checks) == 1 and checks[0].error is None
    why = f"{files[first]} bytes there but {files[first] + 1} on the driver: another copy"
    assert checks[0].failures == [(str(first), f"{why} of the file")]
