"""Cloud / gap masks and QA bands per sensor, `require_sensors`, and validity masks in samples."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from make_fixtures import LABEL_TRANSFORM, UTM, write_raster  # tests/data on sys.path

from autors.config import load_task
from autors.data import load_scene, prepare
from autors.errors import DataError, RasterError, TaskFileError


def _cloud_mask(folder, shape=(60, 80)):
    """A mask raster on the label grid: 1 (cloud) in a square, 3 (shadow) in a strip, else 0."""
    mask = np.zeros(shape, np.uint8)
    mask[20:40, 30:50] = 1
    mask[50:55, :] = 3
    return write_raster(folder / "cloudmask.tif", mask, UTM, LABEL_TRANSFORM), mask


def test_a_mask_raster_invalidates_its_sensor_only(write_task, tmp_path):
    path, mask = _cloud_mask(tmp_path)

    def edit(d):
        d["sensors"]["optical"]["mask"] = {"path": path.name, "invalid_values": [1, 3]}

    task = load_task(write_task(edit))
    scene = load_scene(task)
    plain = load_scene(load_task(write_task(name="plain.yaml")))
    masked = mask > 0
    assert not scene.sensor_valid["optical"][masked].any()
    np.testing.assert_array_equal(scene.sensor_valid["optical"][~masked],
                                  plain.sensor_valid["optical"][~masked])
    assert (scene.sensors["optical"][:, masked] == 0).all()
    np.testing.assert_array_equal(scene.sensor_valid["sar"], plain.sensor_valid["sar"])
    # require_sensors: any (default) keeps the labels under the cloud, `all` drops them
    assert scene.valid[masked].all()
    strict = load_scene(load_task(write_task(lambda d: (edit(d), d.update(
        require_sensors="all")), name="strict.yaml")))
    assert not strict.valid[masked].any()


def test_samples_carry_each_sensors_validity_mask(write_task, tmp_path):
    path, _mask = _cloud_mask(tmp_path)

    def edit(d):
        d["sensors"]["optical"]["mask"] = {"path": path.name, "invalid_values": [1]}

    data = prepare(load_task(write_task(edit)))
    ds = data.dataset("train")
    cloudy = sum(1 for i in range(len(ds)) if ds[i]["optical__mask"][2, 2] == 0)
    assert cloudy > 0  # labelled pixels under the cloud are used, with optical masked
    item = ds[0]
    assert item["optical__mask"].shape == (5, 5) and item["optical__mask"].dtype.is_floating_point
    for i in range(len(ds)):
        it = ds[i]
        for name in ("optical", "sar", "lidar"):
            invalid = it[name + "__mask"] == 0
            assert (it[name][:, invalid] == 0).all()  # invalid values are 0 after normalising


def test_a_qa_band_rule_by_values_and_by_bits(write_task, tmp_path):
    # a copy of the optical raster with an extra QA band (SCL-like codes / bit flags)
    src = tmp_path / "optical.tif"
    with rasterio.open(src) as ds:
        data, profile, names = ds.read(), ds.profile, list(ds.descriptions)
    qa = np.zeros(data.shape[1:], np.float32)
    qa[10:20, 20:40] = 9  # cloud high probability; binary 1001 -> bits 0 and 3
    qa[30:32, :] = 8  # bit 3 only
    with rasterio.open(tmp_path / "optical_qa.tif", "w", **dict(profile, count=data.shape[0] + 1)) as dst:
        dst.write(np.concatenate([data, qa[None]]))
        for i, n in enumerate([*names, "SCL"], start=1):
            dst.set_band_description(i, n)

    def by_values(d):
        d["sensors"]["optical"].update(path="optical_qa.tif", qa={"band": "SCL",
                                                                  "invalid_values": [9]})

    def by_bits(d):
        d["sensors"]["optical"].update(path="optical_qa.tif", bands=None,
                                       qa={"band": "SCL", "invalid_bits": [3]})

    values = load_scene(load_task(write_task(by_values)))
    bits = load_scene(load_task(write_task(by_bits, name="bits.yaml")))
    plain = load_scene(load_task(write_task(name="plain.yaml")))
    lost_values = plain.sensor_valid["optical"] & ~values.sensor_valid["optical"]
    lost_bits = plain.sensor_valid["optical"] & ~bits.sensor_valid["optical"]
    assert lost_values.sum() > 0 and lost_bits.sum() > lost_values.sum()  # bit 3: codes 8 and 9
    # with `bands` omitted the QA band is a rule, not a model input
    assert "SCL" not in bits.band_names["optical"] and len(bits.band_names["optical"]) == 4


def test_a_qa_band_the_raster_lacks_names_the_rule(write_task):
    def edit(d):
        d["sensors"]["optical"]["qa"] = {"band": "SCL", "invalid_values": [9]}

    with pytest.raises(RasterError, match=r"sensors.optical.qa.band: .*no band named 'SCL'"):
        load_scene(load_task(write_task(edit)))


def test_a_mask_without_overlap_is_an_error(write_task, tmp_path):
    from rasterio.transform import Affine

    far = write_raster(tmp_path / "far.tif", np.ones((10, 10), np.uint8), UTM,
                       Affine(10.0, 0, 0.0, 0, -10.0, 100.0))

    def edit(d):
        d["sensors"]["optical"]["mask"] = {"path": far.name, "invalid_values": [1]}

    with pytest.raises(DataError, match=r"mask raster .*far.tif has no overlap with its sensor"):
        load_scene(load_task(write_task(edit)))


def test_require_sensors_lists_known_sensors(write_task):
    with pytest.raises(TaskFileError, match=r"require_sensors names \['radar'\]"):
        load_task(write_task(lambda d: d.update(require_sensors=["radar"])))
    task = load_task(write_task(lambda d: d.update(require_sensors=["sar"]), name="sar.yaml"))
    scene = load_scene(task)
    np.testing.assert_array_equal(scene.valid, scene.sensor_valid["sar"])
