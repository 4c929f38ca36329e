"""Alignment of sensors in several CRSs and resolutions onto the reference grid, and masks.

The fixture sensors hold linear functions of map coordinates, so the value expected at every
reference pixel centre is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

import autors.data.grid as grid_module
from autors.config import load_task
from autors.data import load_scene
from autors.errors import DataError


def test_reference_grid_is_the_label_grid(write_task, fx):
    scene = load_scene(load_task(write_task()))
    assert scene.grid.shape == (fx.ROWS, fx.COLS)
    assert scene.grid.crs == fx.UTM
    assert scene.grid.transform == fx.LABEL_TRANSFORM
    for name, stack in scene.sensors.items():
        assert stack.dtype == np.float32 and stack.shape[1:] == scene.grid.shape, name
        assert np.isfinite(stack).all(), name
    assert scene.sensors["optical"].shape[0] == 4
    assert scene.sensors["sar"].shape[0] == 2


def test_same_lattice_sensor_is_read_exactly_with_scale_offset_and_nodata(write_task, fx):
    scene = load_scene(load_task(write_task(lambda d: d.update(require_sensors="all"))))
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    expected = 0.5 * fx.optical_field(x, y) + 1.0  # scale 0.5, offset 1 in the task
    valid = scene.sensor_valid["optical"]
    np.testing.assert_allclose(scene.sensors["optical"][:, valid], expected[:, valid], rtol=1e-6)
    # The nodata corner (label-grid rows 0..4, cols 0..4) is invalid and zero-filled.
    corner = np.zeros(scene.grid.shape, bool)
    corner[:5, :5] = True
    assert np.array_equal(~valid, corner)
    assert (scene.sensors["optical"][:, corner] == 0).all()
    assert np.array_equal(
        scene.valid, valid & scene.sensor_valid["sar"] & scene.sensor_valid["lidar"]
    )


def test_sar_resampled_from_20m_shifted_grid_then_converted_to_db(write_task, fx):
    scene = load_scene(load_task(write_task()))
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    # Bilinear resampling of a linear field is exact; dB after resampling (linear power).
    expected = 10.0 * np.log10(fx.sar_field(x, y))
    assert scene.sensor_valid["sar"].all()
    np.testing.assert_allclose(scene.sensors["sar"], expected, atol=1e-4)


def test_sar_in_db_is_not_converted(write_task, fx):
    def edit(data):
        data["sensors"]["sar"]["sar_units"] = "db"

    scene = load_scene(load_task(write_task(edit)))
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    np.testing.assert_allclose(scene.sensors["sar"], fx.sar_field(x, y), rtol=1e-5)


def test_geographic_sensor_reprojected_to_utm(write_task, fx):
    scene = load_scene(load_task(write_task()))
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    lon, lat = fx.reference_centres_lonlat(x, y)
    expected = fx.dem_field(lon, lat)
    # The DEM (~4 x 5.5 m pixels) is downsampled to 10 m: GDAL widens the bilinear kernel,
    # which costs a little exactness; 0.2 is a fifth of the field's change per source pixel.
    err = np.abs(scene.sensors["lidar"] - expected)
    assert err.max() < 0.2, err.max()
    assert err.mean() < 0.06


def test_nodata_override_from_task(write_task, fx):
    def edit(data):
        data["sensors"]["optical"]["nodata"] = -1.0  # a value that does not occur

    scene = load_scene(load_task(write_task(edit)))
    assert scene.sensor_valid["optical"].all()
    assert np.allclose(scene.sensors["optical"][:, :5, :5], 0.5 * fx.OPT_NODATA + 1.0)


def test_partly_covering_sensor_crops_the_grid(write_task, tmp_path, fx):
    # SAR covering only the east half of the labels (from x = X0 + 400 m).
    t = Affine(20.0, 0.0, fx.X0 + 400, 0.0, -20.0, fx.Y0 + 40)
    sar = fx.sar_field(*fx.centres(t, 40, 30)).astype(np.float32)
    fx.write_raster(tmp_path / "sar_east.tif", sar, fx.UTM, t)

    def edit(data):
        data["sensors"]["sar"]["path"] = "sar_east.tif"

    scene = load_scene(load_task(write_task(edit)))
    assert scene.grid.shape == (fx.ROWS, fx.COLS - 40)
    assert scene.grid.transform.c == fx.X0 + 400
    # Labels are cropped with the grid: the label of each pixel is unchanged.
    full = fx.label_values()[:, 40:]
    classes = sorted(fx.CLASSES)
    expected = np.where(full == 0, -1, np.searchsorted(classes, full))
    assert np.array_equal(scene.labels["full"], expected)


def test_sensor_not_overlapping_is_an_error(write_task, tmp_path, fx):
    far = Affine(20.0, 0.0, fx.X0 + 100_000, 0.0, -20.0, fx.Y0)
    fx.write_raster(tmp_path / "sar_far.tif", np.ones((2, 30, 30), np.float32), fx.UTM, far)

    def edit(data):
        data["sensors"]["sar"]["path"] = "sar_far.tif"

    with pytest.raises(
        DataError,
        match=r"sensor 'sar' \(.*sar_far\.tif\) does not overlap "
        r"the reference grid",
    ):
        load_scene(load_task(write_task(edit)))


def test_entirely_nodata_sensor_is_an_error(write_task, tmp_path, fx):
    empty = np.full((4, 60, 80), fx.OPT_NODATA, np.float32)
    fx.write_raster(
        tmp_path / "opt_empty.tif", empty, fx.UTM, fx.LABEL_TRANSFORM, fx.OPT_NODATA, fx.OPT_BANDS
    )

    def edit(data):
        data["sensors"]["optical"]["path"] = "opt_empty.tif"

    with pytest.raises(
        DataError,
        match=r"sensor 'optical' \(.*opt_empty\.tif\) has no valid "
        r"pixel .*nodata \(-9999\.0\)",
    ):
        load_scene(load_task(write_task(edit)))


def test_undeclared_label_values_are_listed(write_task, tmp_path, fx):
    labels = fx.label_values()
    labels[0, :3] = 7
    labels[1, 0] = 9
    fx.write_raster(tmp_path / "labels_bad.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)

    def edit(data):
        data["labels"]["path"] = "labels_bad.tif"

    with pytest.raises(
        DataError,
        match=r"labels_bad\.tif: label values 7 \(3 px\), 9 \(1 px\) "
        r"are not declared classes",
    ):
        load_scene(load_task(write_task(edit)))


def test_label_values_map_to_class_indexes(write_task, fx):
    scene = load_scene(load_task(write_task()))
    raw = fx.label_values()
    labels = scene.labels["full"]
    assert labels.dtype == np.int16
    assert np.array_equal(labels == -1, raw == 0)
    for index, value in enumerate(sorted(fx.CLASSES)):
        assert np.array_equal(labels == index, raw == value)


def test_grid_can_be_a_sensor(write_task, fx):
    def edit(data):
        data["grid"] = "sar"

    scene = load_scene(load_task(write_task(edit)))
    assert scene.grid.res == (20.0, 20.0)
    # SAR is 35 x 45 px; the optical extent misses part of its first and last rows (15 m and
    # 5 m of 20 m), so those rows are cropped.
    assert scene.grid.shape == (33, 45)
    assert scene.grid.transform.f == fx.Y0 + 45 - 20
    # Labels come by nearest neighbour: each SAR pixel centre takes the label pixel under it.
    x, y = fx.centres(scene.grid.transform, *scene.grid.shape)
    col = np.floor((x - fx.X0) / 10).astype(int)
    row = np.floor((fx.Y0 - y) / 10).astype(int)
    inside = (col >= 0) & (col < fx.COLS) & (row >= 0) & (row < fx.ROWS)
    raw = fx.label_values()[row.clip(0, fx.ROWS - 1), col.clip(0, fx.COLS - 1)]
    expected = np.where(inside & (raw > 0), np.searchsorted(sorted(fx.CLASSES), raw), -1)
    assert np.array_equal(scene.labels["full"], expected)
    # The optical sensor is now resampled 10 m -> 20 m; the linear field stays exact.
    valid = scene.sensor_valid["optical"]
    expected_opt = 0.5 * fx.optical_field(x, y) + 1.0
    np.testing.assert_allclose(
        scene.sensors["optical"][:, valid], expected_opt[:, valid], rtol=1e-4
    )


def test_each_raster_is_read_once(write_task, monkeypatch):
    calls: list[str] = []
    real_read = grid_module.read

    def counting_read(info, indexes, window, dtype="float32", pairs=False):
        calls.append(info.path.name)
        return real_read(info, indexes, window, dtype, pairs)

    monkeypatch.setattr(grid_module, "read", counting_read)
    load_scene(load_task(write_task()))
    assert sorted(calls) == ["labels.tif", "lidar.tif", "optical.tif", "sar.tif"]


def test_nan_pixels_stay_invalid_through_resampling(write_task, tmp_path, fx):
    t = Affine(20.0, 0.0, fx.X0 - 45, 0.0, -20.0, fx.Y0 + 45)
    x, y = fx.centres(t, 35, 45)
    sar = fx.sar_field(x, y).astype(np.float32)
    sar[1, 10:15, 20:25] = np.nan  # one band only: the whole pixel is invalid
    fx.write_raster(tmp_path / "sar_nan.tif", sar, fx.UTM, t, float("nan"))

    def edit(data):
        data["sensors"]["sar"]["path"] = "sar_nan.tif"

    scene = load_scene(load_task(write_task(edit)))
    gx, gy = fx.centres(scene.grid.transform, *scene.grid.shape)
    # Reference pixel centres inside the NaN block (in map units) are invalid.
    nan_left, nan_top = fx.X0 - 45 + 20 * 20, fx.Y0 + 45 - 20 * 10
    inside = (gx > nan_left) & (gx < nan_left + 100) & (gy < nan_top) & (gy > nan_top - 100)
    valid = scene.sensor_valid["sar"]
    assert not valid[inside].any() and inside.sum() >= 64
    assert (scene.sensors["sar"][:, ~valid] == 0).all()
    # Away from the block (> 1 source pixel), values are exact as without NaN.
    far = ~(
        (gx > nan_left - 25) & (gx < nan_left + 125) & (gy < nan_top + 25) & (gy > nan_top - 125)
    )
    assert valid[far].all()
    expected = 10.0 * np.log10(fx.sar_field(gx, gy))
    np.testing.assert_allclose(scene.sensors["sar"][:, far], expected[:, far], atol=1e-4)


def test_label_file_nodata_is_unlabelled(write_task, tmp_path, fx):
    labels = fx.label_values()
    labels[10:12, 10:12] = 255
    fx.write_raster(tmp_path / "labels_nd.tif", labels, fx.UTM, fx.LABEL_TRANSFORM, nodata=255)

    def edit(data):
        data["labels"]["path"] = "labels_nd.tif"

    scene = load_scene(load_task(write_task(edit)))
    assert (scene.labels["full"][10:12, 10:12] == -1).all()


def test_grid_round_trips_through_a_dict(write_task):
    grid = load_scene(load_task(write_task())).grid
    again = type(grid).from_dict(grid.to_dict())
    assert again == grid and again.bounds == grid.bounds
