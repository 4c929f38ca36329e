"""Time series whose scenes have their own dates (`dates: per_scene`, issue 15 item 1), and
validity rasters per date (item 2): scenes with different date counts and days are padded to
one T with the date mask and each sample's own day of year; a mask raster per date (a {date}
path) and a QA band inside band groups change exactly the dates they mask; bad input names the
scene, date, field or file. Real GeoTIFFs, the real index and datasets (training end to end:
tests/export/test_series_dense.py and `autors synth --time-series --scenes` below)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from autors.cli import main
from autors.config import load_task, parse_task
from autors.data import load_scene
from autors.data.prepare import prepare
from autors.errors import DataError, RasterError, TaskFileError

SIZE = 16
TRANSFORM = from_origin(500_000.0, 5_000_000.0, 10.0, 10.0)
DATES = ["2021-03-01", "2021-05-15", "2021-08-01"]


def _write(path: Path, data: np.ndarray, dtype: str = "float32", nodata=-9999.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=dtype, crs="EPSG:32632", transform=TRANSFORM,
                       nodata=nodata) as ds:
        ds.write(data.astype(dtype))
    return path


def _series() -> np.ndarray:
    """[T, 2, H, W]: date t holds t * 10 + band + small noise."""
    rng = np.random.default_rng(0)
    x = np.stack([np.stack([np.full((SIZE, SIZE), t * 10.0 + b) for b in range(2)])
                  for t in range(3)]) + rng.normal(0, 0.1, (3, 2, SIZE, SIZE))
    return x.astype(np.float32)


def _labels(path: Path) -> None:
    labels = np.ones((1, SIZE, SIZE), np.uint8)
    labels[0, :, SIZE // 2:] = 2
    _write(path, labels, "uint8", nodata=0)


def _one_scene(folder: Path, sensor: dict) -> dict:
    _labels(folder / "labels.tif")
    return {"name": "ts", "task": "patch_classification", "patch_size": 3,
            "sensors": {"s2": {"kind": "optical", "nodata": -9999.0} | sensor},
            "labels": {"path": "labels.tif", "classes": ["a", "b"], "ignore": 0},
            "split": {"kind": "spatial_blocks", "block_size": 4, "buffer": 0,
                      "val_fraction": 0.25, "test_fraction": 0.25}}


def test_synthetic_scenes_with_their_own_dates_are_padded_with_their_own_doy(tmp_path: Path
                                                                             ) -> None:
    assert main(["synth", str(tmp_path / "ds"), "--time-series", "--scenes", "3", "--size",
                 "32", "--dates", "4"]) == 0
    task = load_task(tmp_path / "ds" / "task.yaml")
    assert task.sensors["s2"].per_scene_dates and task.sensors["s2"].input_kind == "temporal"
    data = prepare(task, in_memory=True)
    assert data.index.steps == {"s2": 4, "s1": 4}  # the most dates any scene has
    by_id = {e.id: e for e in data.index.scenes}
    # scene i: 4 - i dates of its own, shifted; padded dates have day of year 0
    assert by_id["scene_0"].doys["s2"] == [30, 130, 230, 330]
    assert by_id["scene_1"].doys["s2"] == [39, 181, 323, 0]
    assert by_id["scene_2"].doys["s2"] == [48, 316, 0, 0]
    raw = yaml.safe_load((tmp_path / "ds" / "task.yaml").read_text())  # what a user writes
    assert raw["sensors"]["s2"]["dates"] == "per_scene"
    assert raw["scenes"]["template"]["sensors"]["s2"] == "scenes/{scene}/s2_{date}.tif"
    ds = data.dataset("train")
    scenes = ds.locate(np.arange(len(ds)))
    k2 = int(np.flatnonzero(scenes == [e.id for e in data.index.scenes].index("scene_2"))[0])
    item = ds[k2]
    assert item["s2"].shape == (4, 4, 5, 5) and item["s2__mask"].shape == (4, 5, 5)
    assert item["s2__doy"].tolist() == [float(d) for d in by_id["scene_2"].doys["s2"]]
    assert (item["s2__mask"][2:] == 0).all() and (item["s2"][2:] == 0).all()
    s1 = item["s1__mask"]  # SAR is never clouded: its 2 dates valid alike (in the scene)
    assert s1[0].any() and (s1[0] == s1[1]).all() and (s1[2:] == 0).all()
    # streamed = in memory, padding included
    streamed = prepare(task, in_memory=False).dataset("train")[k2]
    for key in item:
        assert np.array_equal(streamed[key].numpy(), item[key].numpy()), key


def test_listed_scene_dates_band_groups_and_their_errors(tmp_path: Path) -> None:
    """`scenes.items[].dates` lists each scene's dates (band groups need them); a listed date
    without a file, dates on a sensor that is not per scene, per-scene dates without {date}
    are errors naming the scene and field."""
    x = _series()
    for scene, days in (("a", DATES), ("b", DATES[1:])):
        _labels(tmp_path / f"{scene}_labels.tif")
        rows = [x[t] for t, d in enumerate(DATES) if d in days]
        _write(tmp_path / f"{scene}_stack.tif", np.concatenate(rows))
    raw = {"name": "ts2", "task": "patch_classification", "patch_size": 3,
           "sensors": {"s2": {"kind": "optical", "nodata": -9999.0, "dates": "per_scene",
                              "bands_per_date": 2}},
           "labels": {"classes": ["a", "b"], "ignore": 0},
           "scenes": {"items": [
               {"id": s, "sensors": {"s2": f"{s}_stack.tif"}, "labels": f"{s}_labels.tif",
                "dates": {"s2": days}} for s, days in (("a", DATES), ("b", DATES[1:]))]},
           "split": {"kind": "spatial_blocks", "block_size": 4, "buffer": 0,
                     "val_fraction": 0.25, "test_fraction": 0.25}}
    data = prepare(parse_task(raw, tmp_path / "task.yaml"), in_memory=True)
    assert data.index.steps == {"s2": 3}
    b = data.index.scenes[1]
    assert b.doys["s2"] == [135, 213, 0] and b.dates["s2"][2] is None
    window = data.source().window(1, 0, 0, 4)  # b's first date is the task's second
    assert np.allclose(data.stats.apply({"s2": x[1]}, {"s2": np.ones((SIZE, SIZE), bool)})
                       ["s2"][:, :4, :4], window["s2"][:2])
    assert (window["s2__mask"][2] == 0).all()

    raw["scenes"]["items"][1]["dates"] = {"s2": DATES[1:] + ["2021-09-01"]}
    with pytest.raises(RasterError, match=r"scene 'b'.*declares 3 dates of 2 band\(s\).*"
                                          r"scenes.items\[\].dates.s2"):
        prepare(parse_task(raw, tmp_path / "task.yaml"))
    del raw["scenes"]["items"][1]["dates"]
    with pytest.raises(TaskFileError, match=r"scenes.items\[b\].dates: give the dates of \['s2'\]"):
        parse_task(raw, tmp_path / "task.yaml")
    raw["scenes"]["items"][1]["dates"] = {"s1": DATES}
    with pytest.raises(TaskFileError, match=r"scenes.items\[b\].dates.s1: only a sensor with "
                                            r"'dates: per_scene'"):
        parse_task(raw, tmp_path / "task.yaml")
    # one raster per date, listed dates: a date without its file names scene, date and field
    for t, d in enumerate(DATES):
        _write(tmp_path / f"a_s2_{d}.tif", x[t])
    raw["sensors"]["s2"].pop("bands_per_date")
    raw["scenes"]["items"] = [{"id": "a", "sensors": {"s2": "a_s2_{date}.tif"},
                               "labels": "a_labels.tif",
                               "dates": {"s2": DATES + ["2021-10-01"]}}]
    with pytest.raises(DataError, match=r"scene 'a', sensor 's2': 1 date\(s\) have no file: "
                                        r"2021-10-01: .*a_s2_2021-10-01\.tif; check "
                                        r"scenes.items\[a\].dates.s2"):
        prepare(parse_task(raw, tmp_path / "task.yaml"))
    with pytest.raises(TaskFileError, match=r"per_scene needs 'path' holding \{date\}"):
        parse_task(_one_scene(tmp_path, {"dates": "per_scene", "path": "a_stack.tif"}),
                   tmp_path / "task.yaml")
    with pytest.raises(TaskFileError, match=r"a list of dates, or 'per_scene'"):
        parse_task(_one_scene(tmp_path, {"dates": "each", "path": "a_s2_{date}.tif"}),
                   tmp_path / "task.yaml")
    # a one-scene task with dates per scene: the files its {date} path matches
    scene = load_scene(parse_task(_one_scene(tmp_path, {"dates": "per_scene",
                                                        "path": "a_s2_{date}.tif"}),
                                  tmp_path / "task.yaml"))
    assert scene.sensor_valid["s2"].shape == (3, SIZE, SIZE)


def test_a_mask_raster_per_date_and_a_qa_band_in_band_groups(tmp_path: Path) -> None:
    """Each date's validity from its own mask raster ({date} path) or its own QA band inside
    its band group: exactly the masked pixels of the masked date change, nothing else."""
    x = _series()
    for t, d in enumerate(DATES):
        _write(tmp_path / f"s2_{d}.tif", x[t])
        mask = np.zeros((1, SIZE, SIZE), np.uint8)
        if t == 1:
            mask[0, 2:6, 3:9] = 1
        _write(tmp_path / f"cloud_{d}.tif", mask, "uint8", nodata=None)
    plain = load_scene(parse_task(_one_scene(tmp_path, {"path": "s2_{date}.tif",
                                                        "dates": DATES}),
                                  tmp_path / "task.yaml"))
    masked = load_scene(parse_task(_one_scene(tmp_path, {
        "path": "s2_{date}.tif", "dates": DATES,
        "mask": {"path": "cloud_{date}.tif", "invalid_values": [1]}}), tmp_path / "task.yaml"))
    changed = plain.sensor_valid["s2"] != masked.sensor_valid["s2"]
    want = np.zeros((3, SIZE, SIZE), bool)
    want[1, 2:6, 3:9] = True
    assert (changed == want).all()
    assert (masked.sensors["s2"][2:4, 2:6, 3:9] == 0).all()  # date 1's values zeroed there
    assert np.array_equal(masked.sensors["s2"][:2], plain.sensors["s2"][:2])

    # band groups with a QA band (3rd of each group): date 2's QA marks a block
    qa = np.zeros((3, 1, SIZE, SIZE), np.float32)
    qa[2, 0, 8:12, 0:4] = 9
    _write(tmp_path / "stack.tif", np.concatenate([x, qa], axis=1).reshape(9, SIZE, SIZE))
    grouped = load_scene(parse_task(_one_scene(tmp_path, {
        "path": "stack.tif", "dates": DATES, "bands_per_date": 3,
        "qa": {"band": 3, "invalid_values": [9]}}), tmp_path / "task.yaml"))
    assert grouped.sensors["s2"].shape == (6, SIZE, SIZE)  # the QA band is no input
    changed = plain.sensor_valid["s2"] != grouped.sensor_valid["s2"]
    want = np.zeros((3, SIZE, SIZE), bool)
    want[2, 8:12, 0:4] = True
    assert (changed == want).all()

    # errors: a date's mask raster missing; a mask path without {date}; a QA band by name
    (tmp_path / f"cloud_{DATES[2]}.tif").unlink()
    with pytest.raises(DataError, match=r"date 2021-08-01: no mask raster .*cloud_2021-08-01"
                                        r"\.tif for this date's raster .*s2_2021-08-01\.tif"):
        load_scene(parse_task(_one_scene(tmp_path, {
            "path": "s2_{date}.tif", "dates": DATES,
            "mask": {"path": "cloud_{date}.tif", "invalid_values": [1]}}),
            tmp_path / "task.yaml"))
    with pytest.raises(TaskFileError, match=r"mask.path of a time series is one raster per "
                                            r"date: it must hold \{date\}"):
        parse_task(_one_scene(tmp_path, {"path": "s2_{date}.tif", "dates": DATES,
                                         "mask": {"path": "cloud.tif", "invalid_values": [1]}}),
                   tmp_path / "task.yaml")
    with pytest.raises(Exception, match=r"sensors.s2.qa.band 'SCL': with band groups"):
        load_scene(parse_task(_one_scene(tmp_path, {
            "path": "stack.tif", "dates": DATES, "bands_per_date": 3,
            "qa": {"band": "SCL", "invalid_values": [9]}}), tmp_path / "task.yaml"))
