"""Output GeoTIFFs: class values in the smallest integer type, atomic publication."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from autors.data import Grid
from autors.export.card import ClassCard
from autors.export.loader import load_exported
from autors.export.writer import map_tags, map_writer, score_bands, scores_path

GRID = Grid(CRS.from_epsg(32632), Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0), 20, 30)


@pytest.mark.parametrize(("values", "ignore", "dtype"), [
    ([1, 2, 3], 0, "uint8"), ([10, 300], 0, "uint16"), ([1, 2], -1, "int8"), ([1, 200], -1, "int16"),
])
def test_class_dtype_and_atomic_write(exported: Path, tmp_path: Path, values: list[int],
                                      ignore: int, dtype: str) -> None:
    card = load_exported(exported).card.model_copy(update={
        "classes": [ClassCard(index=i, value=v, name=f"c{v}") for i, v in enumerate(values)],
        "ignore_value": ignore,
    })
    out = tmp_path / "map.tif"
    classes = np.full((20, 30), ignore)
    classes[5:, :] = values[-1]
    tags = {"sensors": "optical,sar", "absent_sensors": "hsi"}
    with map_writer(out, GRID, card, ["confidence"], tags) as writer:
        writer.write(0, 0, classes[:10], np.full((1, 10, 30), 0.5, np.float32))
        assert not out.exists()  # published only at the end
        writer.write(10, 0, classes[10:], np.full((1, 10, 30), 0.75, np.float32))
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == dtype and ds.nodata == ignore
        np.testing.assert_array_equal(ds.read(1), classes)
        assert ds.tags()[f"class_{values[-1]}"] == f"c{values[-1]}"
        assert ds.tags()["sensors"] == "optical,sar" and ds.tags()["absent_sensors"] == "hsi"
    with rasterio.open(scores_path(out)) as ds:
        assert ds.read(1)[15, 0] == 0.75
        assert ds.tags()["sensors"] == "optical,sar"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "map_confidence.tif"]


def test_map_tags_name_the_sensors_behind_the_map(exported: Path) -> None:
    card = load_exported(exported).card
    tags = map_tags(card, ["optical", "hsi"], [])
    assert tags == {"sensors": "optical,hsi", "absent_sensors": "sar,lidar",
                    "require_sensors": "any"}
    strict = card.model_copy(update={"require_sensors": ["sar", "hsi"]})
    assert map_tags(strict, ["optical", "hsi"], ["hsi"])["required_sensors"] == "hsi"
    assert map_tags(strict, card.inputs, ["sar", "hsi"])["require_sensors"] == "sar,hsi"
    assert score_bands(card, entropy=True, probabilities=False) == [
        "confidence", "entropy", "mutual_information", "valid_sensors"]


def test_error_inside_removes_both_files(exported: Path, tmp_path: Path) -> None:
    card = load_exported(exported).card
    with pytest.raises(RuntimeError, match="stop"), \
            map_writer(tmp_path / "map.tif", GRID, card, ["confidence"]) as writer:
        writer.write(0, 0, np.ones((20, 30), int), np.ones((1, 20, 30), np.float32))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
