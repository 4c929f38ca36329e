"""Time-series sensors (`dates`): the three ways to give the dates (a list of rasters, a
{date} template, band groups of one file) read the same values; each date has its own
validity (nodata, QA band; a date a scene lacks is invalid everywhere); normalisation per band
over valid dates; the datasets give `[T, C, P, P]`, the date mask and the day of year; the
streamed and in-memory paths agree; errors name the sensor, date and file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from autors.config import parse_task
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
    """[T, 2, H, W]: date t holds t * 10 + band + small noise; date 1 has a cloud (nodata)."""
    rng = np.random.default_rng(0)
    x = np.stack([np.stack([np.full((SIZE, SIZE), t * 10.0 + b) for b in range(2)])
                  for t in range(3)]) + rng.normal(0, 0.1, (3, 2, SIZE, SIZE))
    x[1, :, :4, :4] = -9999.0
    return x.astype(np.float32)


def _task(folder: Path, sensor: dict) -> dict:
    labels = np.ones((1, SIZE, SIZE), np.uint8)
    labels[0, :, SIZE // 2:] = 2
    _write(folder / "labels.tif", labels, "uint8", nodata=0)
    return {"name": "ts", "task": "patch_classification", "patch_size": 3,
            "sensors": {"s2": {"kind": "optical", "nodata": -9999.0} | sensor},
            "labels": {"path": "labels.tif", "classes": ["a", "b"], "ignore": 0},
            "split": {"kind": "spatial_blocks", "block_size": 4, "buffer": 0,
                      "val_fraction": 0.25, "test_fraction": 0.25}}


def _three_ways(tmp_path: Path) -> dict[str, dict]:
    x = _series()
    for t, d in enumerate(DATES):
        _write(tmp_path / f"s2_{d}.tif", x[t])
    _write(tmp_path / "stack.tif", x.reshape(6, SIZE, SIZE))
    return {
        "list": {"dates": [{"date": d, "path": f"s2_{d}.tif"} for d in DATES]},
        "template": {"path": "s2_{date}.tif", "dates": DATES},
        "groups": {"path": "stack.tif", "dates": DATES, "bands_per_date": 2},
    }


def test_three_ways_read_the_same_series_and_items_have_a_time_axis(tmp_path: Path) -> None:
    ways = _three_ways(tmp_path)
    items = {}
    for way, sensor in ways.items():
        task = parse_task(_task(tmp_path, sensor), tmp_path / "task.yaml")
        assert task.sensors["s2"].input_kind == "temporal"
        data = prepare(task, in_memory=True)
        assert data.in_channels == {"s2": 2} and data.index.steps == {"s2": 3}
        assert data.index.dates == {"s2": [60, 135, 213]}  # days of year (2021)
        # per band over valid dates: mean of t * 10 + b over dates (cloud excluded)
        mean = data.stats.mean["s2"]
        assert 9.0 < mean[0] < 11.0 and mean[1] == pytest.approx(mean[0] + 1.0, abs=0.01)
        item = data.dataset("train")[0]
        assert item["s2"].shape == (3, 2, 3, 3) and item["s2__mask"].shape == (3, 3, 3)
        assert item["s2__doy"].tolist() == [60.0, 135.0, 213.0]
        items[way] = (item, data)
        streamed = prepare(task, in_memory=False).dataset("train")[0]
        for key in item:
            torch.testing.assert_close(streamed[key], item[key])
    for way in ("template", "groups"):
        for key in items["list"][0]:
            torch.testing.assert_close(items[way][0][key], items["list"][0][key])
    # the cloud of date 1 is invalid for that date only, values 0 there
    data = items["list"][1]
    window = data.source().window(0, 0, 0, 4)
    assert window["s2__mask"][1].sum() == 0 and window["s2__mask"][0].all()
    assert (window["s2"][2:4] == 0).all()


def test_a_missing_acquisition_and_errors(tmp_path: Path) -> None:
    ways = _three_ways(tmp_path)
    (tmp_path / f"s2_{DATES[2]}.tif").unlink()
    with pytest.raises(DataError, match=r"sensor 's2': 1 date\(s\) have no file: 2021-08-01: "
                                        r".*s2_2021-08-01\.tif"):
        prepare(parse_task(_task(tmp_path, ways["template"]), tmp_path / "task.yaml"))
    bad = _task(tmp_path, ways["groups"] | {"bands_per_date": 4})
    with pytest.raises(RasterError, match=r"sensor 's2' declares 3 dates of 4 band\(s\).*"
                                          r"the file has 6"):
        prepare(parse_task(bad, tmp_path / "task.yaml"))
    _write(tmp_path / f"s2_{DATES[2]}.tif", _series()[2][:1])  # one band on the last date
    with pytest.raises(RasterError, match=r"sensor 's2', date 2021-08-01 \(.*\): 1 band\(s\), the "
                                          r"sensor's other dates have 2"):
        prepare(parse_task(_task(tmp_path, ways["template"]), tmp_path / "task.yaml"))
    with pytest.raises(TaskFileError, match=r"dates must be distinct and in increasing order"):
        parse_task(_task(tmp_path, {"path": "s2_{date}.tif", "dates": DATES[::-1]}),
                   tmp_path / "task.yaml")
    with pytest.raises(TaskFileError, match=r"holding \{date\}.*or 'bands_per_date'"):
        parse_task(_task(tmp_path, {"path": "stack.tif", "dates": DATES}),
                   tmp_path / "task.yaml")


def test_a_scene_without_an_acquisition_has_that_date_masked(tmp_path: Path) -> None:
    """A dataset of scenes ({scene} and {date} in one template): scene b lacks the last date,
    which is then invalid everywhere there (same T, a masked date), and the sensor's other
    dates still count."""
    x = _series()
    labels = np.ones((1, SIZE, SIZE), np.uint8)
    labels[0, :, SIZE // 2:] = 2
    for scene in ("a", "b"):
        _write(tmp_path / f"{scene}_labels.tif", labels, "uint8", nodata=0)
        for t, d in enumerate(DATES[:3] if scene == "a" else DATES[:2]):
            _write(tmp_path / f"{scene}_s2_{d}.tif", x[t])
    raw = {"name": "ts2", "task": "patch_classification", "patch_size": 3,
           "sensors": {"s2": {"kind": "optical", "nodata": -9999.0, "dates": DATES}},
           "labels": {"classes": ["a", "b"], "ignore": 0},
           "scenes": {"template": {"sensors": {"s2": "{scene}_s2_{date}.tif"},
                                   "labels": "{scene}_labels.tif"}},
           "split": {"kind": "spatial_blocks", "block_size": 4, "buffer": 0,
                     "val_fraction": 0.25, "test_fraction": 0.25}}
    data = prepare(parse_task(raw, tmp_path / "task.yaml"), in_memory=True)
    assert [e.id for e in data.index.scenes] == ["a", "b"]
    b = data.index.scenes[1]
    assert b.dates["s2"][2] is None and b.dates["s2"][0] is not None
    window = data.source().window(1, 0, 0, 6)
    assert window["s2"].shape == (6, 6, 6) and window["s2__mask"].shape == (3, 6, 6)
    assert window["s2__mask"][2].sum() == 0 and window["s2__mask"][0].all()
    item = data.dataset("train")[len(data.dataset("train")) - 1]  # a pixel of scene b
    assert item["s2"].shape == (3, 2, 3, 3) and item["s2__mask"][2].sum() == 0
