"""The written scene: valid GeoTIFFs with the georeferencing, bands and values the task claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from autors.config import load_task
from autors.synth import SceneInfo, SynthConfig, generate_scene
from autors.synth.catalogue import CLASSES

from .conftest import SIZE

EXPECTED = {
    # role: (bands, dtype, nodata)
    "optical": (10, "uint16", 0),
    "sar": (2, "float32", 0.0),
    "lidar": (2, "float32", -9999.0),
    "hsi": (60, "int16", -32768),
    "labels": (1, "uint8", 0),
    "train": (1, "uint8", 0),
    "test": (1, "uint8", 0),
}


def _read(scene: SceneInfo, role: str) -> np.ndarray:
    with rasterio.open(scene.files[role]) as src:
        return src.read()


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_geotiff_georeferencing_dtype_and_nodata(scene: SceneInfo, role: str) -> None:
    bands, dtype, nodata = EXPECTED[role]
    with rasterio.open(scene.files[role]) as src:
        assert src.driver == "GTiff"
        assert src.crs.to_epsg() == 32632
        assert src.count == bands
        assert src.dtypes == (dtype,) * bands
        assert src.nodata == nodata
        assert all(d for d in src.descriptions), "every band has a name"
        if role != "sar":
            assert (src.width, src.height) == (SIZE, SIZE)
            assert src.transform.a == 2.0 and src.transform.e == -2.0


def test_band_names_select_by_name(scene: SceneInfo) -> None:
    with rasterio.open(scene.files["optical"]) as src:
        assert src.descriptions == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9")
    with rasterio.open(scene.files["sar"]) as src:
        assert src.descriptions == ("VV", "VH")
    with rasterio.open(scene.files["lidar"]) as src:
        assert src.descriptions == ("height", "intensity")
    with rasterio.open(scene.files["hsi"]) as src:
        centres = [float(d.removesuffix("nm")) for d in src.descriptions]
    assert len(centres) == 60 and 400 < min(centres) < max(centres) < 1000
    assert np.all(np.diff(centres) > 0)


def test_value_ranges(scene: SceneInfo) -> None:
    opt = _read(scene, "optical").astype(float) / 1e4
    assert opt.min() > 0 and opt.max() < 1.2
    hsi = _read(scene, "hsi").astype(float) / 1e4
    assert np.median(hsi) > 0.02 and np.percentile(hsi, 99.9) < 1.2
    lidar = _read(scene, "lidar")
    gap = lidar[0] == -9999.0
    assert np.array_equal(gap, lidar[1] == -9999.0), "both LiDAR bands share the gaps"
    assert 0.001 < gap.mean() < 0.2
    assert -1.0 < lidar[0][~gap].min() and lidar[0][~gap].max() < 30.0
    assert lidar[1][~gap].min() >= 0
    labels = _read(scene, "labels")[0]
    assert labels.min() >= 1 and labels.max() <= len(CLASSES)


def test_clouds_cover_part_of_the_optical_image(scene: SceneInfo) -> None:
    blue = _read(scene, "optical")[1].astype(float) / 1e4  # B2: surfaces stay below ~0.3
    cloudy = (blue > 0.4).mean()
    assert 0.03 < cloudy < 0.5


def test_hsi_has_a_few_noisy_bands(scene: SceneInfo) -> None:
    hsi = _read(scene, "hsi").astype(float) / 1e4
    # band-to-neighbour-band difference: large only where a band carries extra noise
    rough = np.abs(np.diff(hsi, axis=0)).mean(axis=(1, 2))
    noisy = int((rough > 5 * np.median(rough)).sum())
    assert 2 <= noisy <= 16


def test_sar_is_on_a_coarser_shifted_grid_covering_the_scene(scene: SceneInfo) -> None:
    with rasterio.open(scene.files["labels"]) as lab, rasterio.open(scene.files["sar"]) as sar:
        assert sar.transform.a > lab.transform.a  # coarser
        assert sar.transform != lab.transform
        offset = (lab.transform.c - sar.transform.c) / lab.transform.a
        assert abs(offset - round(offset)) > 0.05, "SAR pixel edges do not line up with labels"
        lb, sb = lab.bounds, sar.bounds
        assert sb.left <= lb.left and sb.right >= lb.right
        assert sb.bottom <= lb.bottom and sb.top >= lb.top
        data = sar.read()
    assert (data > 0).all(), "speckled power is positive everywhere (0 is nodata)"


def test_train_and_test_are_disjoint_and_spatially_separated(scene: SceneInfo) -> None:
    labels = _read(scene, "labels")[0]
    train, test = _read(scene, "train")[0], _read(scene, "test")[0]
    assert not ((train > 0) & (test > 0)).any()
    assert np.array_equal(train[train > 0], labels[train > 0])
    assert np.array_equal(test[test > 0], labels[test > 0])
    counts = np.bincount(train.ravel(), minlength=len(CLASSES) + 1)[1:]
    assert counts.max() <= 10 and counts.sum() == scene.n_train
    assert (counts > 0).all() and (np.bincount(test.ravel(), minlength=len(CLASSES) + 1)[1:] > 0).all()
    assert scene.train_counts == dict(zip(scene.class_names, counts.tolist()))
    # no 11 x 11 training patch overlaps any 11 x 11 test patch
    near_train = ndimage.binary_dilation(train > 0, structure=np.ones((21, 21), bool))
    assert not (near_train & (test > 0)).any()
    assert scene.n_test > 5 * scene.n_train
    # labelled pixels lie inside homogeneous areas: 3 x 3 neighbourhood of one class
    lo = ndimage.minimum_filter(labels, size=3, mode="nearest")
    hi = ndimage.maximum_filter(labels, size=3, mode="nearest")
    assert (lo == hi)[(train > 0) | (test > 0)].all()


def test_task_file_parses_and_points_at_the_files(scene: SceneInfo) -> None:
    task = load_task(scene.task_path)
    assert task.task == "patch_classification"
    assert set(task.sensors) == {"optical", "sar", "lidar", "hsi"}
    assert {n: s.kind for n, s in task.sensors.items()} == {
        "optical": "optical", "sar": "sar", "lidar": "lidar", "hsi": "hyperspectral"
    }
    assert task.sensors["sar"].sar_units == "linear"
    for spec in task.sensors.values():
        assert spec.path.is_file()
    with rasterio.open(task.sensors["lidar"].path) as src:
        assert task.sensors["lidar"].nodata == src.nodata
    assert task.labels.path is not None and task.labels.path.is_file()
    assert task.labels.ignore == 0
    assert task.class_names == list(scene.class_names) == [c.name for c in CLASSES]
    assert task.split.kind == "given"
    assert task.split.train.is_file() and task.split.test.is_file()
    assert task.patch_size == 11
    assert task.search.max_trials is not None and task.train.epochs <= 20


def test_record_states_spectra_and_split(scene: SceneInfo) -> None:
    record = json.loads(scene.files["record"].read_text())
    assert record["spectra"] == scene.spectra
    assert record["split"] == scene.split
    assert record["config"]["seed"] == 3
    assert sum(record["pixel_counts"]["labels"].values()) == SIZE * SIZE


def test_validation_raster_from_blocks_of_its_own(tmp_path: Path) -> None:
    """With n_val_per_class the generator writes val.tif from validation blocks taken out of the
    train side: disjoint from train and test, no footprint overlap, referenced by the task, and
    the training set keeps its size; without it there is no val.tif."""
    plain = generate_scene(tmp_path / "plain", SynthConfig(size=SIZE, seed=3, n_train_per_class=10))
    cfg = SynthConfig(size=SIZE, seed=3, n_train_per_class=10, n_val_per_class=25)
    info = generate_scene(tmp_path / "with_val", cfg)
    train, val, test = (_read(info, role)[0] for role in ("train", "val", "test"))
    labels = _read(info, "labels")[0]
    assert not ((val > 0) & ((train > 0) | (test > 0))).any()
    assert np.array_equal(val[val > 0], labels[val > 0])
    counts = np.bincount(val.ravel(), minlength=len(CLASSES) + 1)[1:]
    assert counts.max() <= 25 and counts.sum() == info.n_val > 5 * len(CLASSES)
    assert info.n_train == plain.n_train and plain.n_val == 0
    near_val = ndimage.binary_dilation(val > 0, structure=np.ones((21, 21), bool))
    assert not (near_val & ((train > 0) | (test > 0))).any()  # 11 x 11 footprints never meet
    task = load_task(info.task_path)
    assert task.split.val is not None and task.split.val.name == "val.tif"
    assert "of the train blocks for validation" in info.split
    assert load_task(plain.task_path).split.val is None
    assert not (tmp_path / "plain" / "val.tif").exists()
