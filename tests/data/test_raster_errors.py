"""Broken or mismatching rasters give a RasterError naming the file and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from autors.config import load_task
from autors.data import load_scene
from autors.errors import RasterError, TaskFileError


def _set_sensor(name: str, **fields):
    def edit(data: dict) -> None:
        data["sensors"][name].update(fields)

    return edit


def test_missing_file(write_task):
    task = load_task(write_task(_set_sensor("sar", path="nope/sar.tif")))
    with pytest.raises(RasterError, match=r"raster not found: .*nope/sar\.tif"):
        load_scene(task)


def test_not_a_raster(write_task, tmp_path):
    (tmp_path / "notes.tif").write_text("this is not a GeoTIFF")
    task = load_task(write_task(_set_sensor("sar", path="notes.tif")))
    with pytest.raises(RasterError, match=r"notes\.tif cannot be read as a raster"):
        load_scene(task)


@pytest.mark.parametrize(
    "descriptions, message",
    [
        # Band descriptions make GDAL rewrite the directory at the end: the cut loses the header.
        (["a", "b"], r"cut\.tif cannot be read as a raster .*truncated or corrupted"),
        # Directory first, pixel tiles after it: the file opens, reading the pixels fails.
        (None, r"cut\.tif cannot be read \(.*\): the file is probably truncated"),
    ],
)
def test_truncated_file(write_task, tmp_path, fx, descriptions, message):
    data = np.random.default_rng(0).random((2, 100, 100), dtype=np.float32)
    full = fx.write_raster(
        tmp_path / "full.tif", data, fx.UTM, fx.LABEL_TRANSFORM, descriptions=descriptions
    )
    fx.truncated_copy(full, tmp_path / "cut.tif", keep=0.5)
    task = load_task(write_task(_set_sensor("lidar", path="cut.tif")))
    with pytest.raises(RasterError, match=message):
        load_scene(task)


def test_raster_without_crs(write_task, tmp_path, fx):
    data = np.ones((1, 20, 20), np.float32)
    fx.write_raster(tmp_path / "nocrs.tif", data, None, fx.LABEL_TRANSFORM)
    task = load_task(write_task(_set_sensor("lidar", path="nocrs.tif")))
    with pytest.raises(RasterError, match=r"nocrs\.tif has no CRS: assign one"):
        load_scene(task)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_raster_without_geotransform(write_task, tmp_path, fx):
    fx.write_raster(tmp_path / "nogt.tif", np.ones((1, 20, 20), np.float32), fx.UTM, None)
    task = load_task(write_task(_set_sensor("lidar", path="nogt.tif")))
    with pytest.raises(RasterError, match=r"nogt\.tif has no geotransform"):
        load_scene(task)


def test_bands_by_name_and_index(write_task, fx):
    scene = load_scene(load_task(write_task(_set_sensor("optical", bands=["NIR", 2]))))
    assert scene.band_names["optical"] == ["NIR", "green"]
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    expected = 0.5 * fx.optical_field(x, y)[[3, 1]] + 1.0
    valid = scene.sensor_valid["optical"]
    np.testing.assert_allclose(scene.sensors["optical"][:, valid], expected[:, valid], rtol=1e-6)


def test_absent_band_name_lists_available_bands(write_task):
    task = load_task(write_task(_set_sensor("optical", bands=["red", "swir"])))
    with pytest.raises(
        RasterError,
        match=r"optical\.tif: no band named 'swir'; available bands are "
        r"1: blue, 2: green, 3: red, 4: nir",
    ):
        load_scene(task)


def test_absent_band_index_lists_available_bands(write_task):
    task = load_task(write_task(_set_sensor("sar", bands=[1, 3])))
    with pytest.raises(
        RasterError,
        match=r"sar\.tif: band 3 does not exist, .* 2 band\(s\) "
        r"\(1: VV, 2: VH\)",
    ):
        load_scene(task)


def test_band_index_zero_is_a_task_file_error(write_task):
    with pytest.raises(TaskFileError, match=r"sensors\.sar\.bands: band index 0 is invalid"):
        load_task(write_task(_set_sensor("sar", bands=[0])))


def test_unnamed_bands_get_default_names(write_task, tmp_path, fx):
    data = np.ones((2, 70, 90), np.float32)
    fx.write_raster(tmp_path / "plain.tif", data, fx.UTM, fx.LABEL_TRANSFORM)
    scene = load_scene(load_task(write_task(_set_sensor("lidar", path="plain.tif"))))
    assert scene.band_names["lidar"] == ["band1", "band2"]
