"""SAR physics: speckle statistics, the coarser shifted grid, shadow / layover / double bounce."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from autors.synth.catalogue import CLASS_IDS, CLASSES
from autors.synth.sar import apply_geometry, sar_grid, simulate

TRANSFORM = from_origin(690_000.0, 5_336_000.0, 2.0, 2.0)
CRS_UTM = CRS.from_epsg(32632)


@pytest.mark.parametrize("looks", [1.0, 4.0, 9.0])
def test_speckle_cv_over_a_homogeneous_field_is_one_over_sqrt_looks(looks: float) -> None:
    size = 160
    labels = np.full((size, size), CLASS_IDS["soil_rough"], np.uint8)
    objects = np.ones((size, size), np.int32)  # one field: one sigma0
    img, _ = simulate(
        labels, objects, np.zeros((size, size), np.float32), CLASSES, TRANSFORM, CRS_UTM,
        2.5, looks, np.random.default_rng(0),
    )
    rough = CLASSES[CLASS_IDS["soil_rough"] - 1]
    for band, mean_db in zip(img, (rough.sar_vv_db, rough.sar_vh_db)):
        vals = band[1:-1, 1:-1].ravel()  # edge pixels average a partial footprint
        assert vals.std() / vals.mean() == pytest.approx(1 / np.sqrt(looks), rel=0.08)
        assert 10 * np.log10(vals.mean()) == pytest.approx(mean_db, abs=rough.sar_spread_db + 0.1)


def test_rough_soil_is_brighter_than_smooth_soil_by_several_db() -> None:
    size = 80
    labels = np.full((size, size), CLASS_IDS["soil_smooth"], np.uint8)
    labels[:, size // 2 :] = CLASS_IDS["soil_rough"]
    objects = np.where(labels == CLASS_IDS["soil_rough"], 2, 1).astype(np.int32)
    img, _ = simulate(
        labels, objects, np.zeros((size, size), np.float32), CLASSES, TRANSFORM, CRS_UTM,
        2.5, 4.0, np.random.default_rng(1),
    )
    vv = img[0]
    third = vv.shape[1] // 3
    smooth, rough = vv[:, :third].mean(), vv[:, -third:].mean()
    assert 10 * np.log10(rough / smooth) > 4.0


def test_sar_grid_is_coarser_shifted_and_covers_the_scene() -> None:
    grid = sar_grid(TRANSFORM, 64, 2.5)
    assert grid.transform.a == 5.0
    assert grid.transform.c < TRANSFORM.c and grid.transform.f > TRANSFORM.f
    right = grid.transform.c + grid.width * 5.0
    bottom = grid.transform.f - grid.height * 5.0
    assert right >= TRANSFORM.c + 128.0 and bottom <= TRANSFORM.f - 128.0
    assert right - 5.0 < TRANSFORM.c + 128.0 and bottom + 5.0 > TRANSFORM.f - 128.0  # no spare


def test_building_casts_radar_shadow_west_and_double_bounce_east() -> None:
    h, w = 20, 40
    height = np.zeros((h, w), np.float32)
    height[5:15, 15:25] = 10.0
    building = height > 0
    sigma0 = np.full((2, h, w), 0.05, np.float32)
    out = apply_geometry(sigma0, height, building, 2.0)
    # shadow length 10 m * tan(35 deg) = 7 m: the 3 pixels west of the wall are dark
    assert (out[:, 5:15, 12:15] == 0).all()
    assert (out[:, 5:15, 10] > 0).all()
    # the wall foot facing the sensor (just east of the building) is bright
    assert (out[0, 5:15, 25] > 1.0).all()
    # layover moves the roof 10 m / tan(35 deg) = 14 m (7 pixels) toward the sensor
    assert out[0, 5:15, 15:22].sum() == pytest.approx(0.0)
