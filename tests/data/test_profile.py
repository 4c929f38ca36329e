"""The training inputs' profile (autors.data.profile): value percentiles of a bounded seeded
sample of the valid training pixels, invalid shares and ground pixel sizes, computed by the
index's statistics pass on the real Sen1Floods11 chip (EPSG:4326), and pixel sizes of
projected and geographic grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from autors.config import shipped_task
from autors.data.grid import Grid
from autors.data.index import build_index, load_scene
from autors.data.profile import PROFILE_MAX_PIXELS, pixel_size


@pytest.fixture
def floods(shared_data):
    return shipped_task("sen1floods11_chip", shared_data)


def _training_values(task, index) -> dict[str, np.ndarray]:
    """Every valid training pixel's values per sensor [C, N] (the chip is small)."""
    scene = load_scene(task)
    train = index.scenes[0].labels("train", index.num_classes) >= 0
    return {n: s[:, train & scene.sensor_valid[n]] for n, s in scene.sensors.items()}


def test_profile_of_the_real_chip(floods):
    index, _ = build_index(floods, keep_raw=False)
    profile = index.profile
    assert profile is not None and set(profile.sensors) == {"s1", "s2"}
    truth = _training_values(floods, index)
    for name, p in profile.sensors.items():
        values = truth[name]
        assert len(p.bands) == values.shape[0]
        # a seeded sample of about PROFILE_MAX_PIXELS of the ~150k valid training pixels
        assert 0.9 * PROFILE_MAX_PIXELS <= p.sampled_pixels <= 1.1 * PROFILE_MAX_PIXELS
        assert p.sampled_pixels < values.shape[1]
        q = np.percentile(values.astype(np.float64), [1, 50, 99], axis=1)
        for b, (lo, mid, hi) in zip(p.bands, q.T):
            tol = 0.02 * (hi - lo)  # a sample's percentiles: well within 2 % of the range
            assert abs(b.p1 - lo) <= tol and abs(b.p50 - mid) <= tol and abs(b.p99 - hi) <= tol
        assert p.invalid_fraction == 0.0  # no NaN in s1, no 0 in s2 on training pixels
    # physical values: S1 in dB (mostly negative), S2 reflectance x 10000 -> 0-1
    assert profile.sensors["s1"].bands[0].p50 < -5 and profile.sensors["s1"].bands[1].p50 < -10
    assert all(0 < b.p50 < 0.5 for b in profile.sensors["s2"].bands)
    # geographic pixels (8.983e-5 deg) at 38.1 deg N on WGS 84: ~7.88 m east-west, ~9.97 m
    # north-south; the chip is one scene, the sensors share the label raster's grid
    lat = math.radians(38.1058)
    x = math.radians(8.983152841195e-5) * 6378137 * math.cos(lat) / math.sqrt(
        1 - 6.69438e-3 * math.sin(lat) ** 2)
    assert profile.grid.x_m == pytest.approx(x, rel=1e-3) == pytest.approx(7.879, rel=1e-3)
    assert profile.grid.y_m == pytest.approx(9.971, rel=1e-3)
    assert profile.grid.min_m == profile.grid.max_m == pytest.approx(math.sqrt(7.879 * 9.971),
                                                                     rel=1e-3)
    assert profile.grid.scenes == 1
    for p in profile.sensors.values():
        assert p.gsd.min_m == pytest.approx(profile.grid.min_m, rel=1e-9)


def test_profile_is_the_same_streamed_and_in_memory_and_seeded(floods):
    streamed, _ = build_index(floods, keep_raw=False)
    in_memory, raw = build_index(floods, keep_raw=True)
    assert raw is not None
    assert streamed.profile == in_memory.profile
    assert build_index(floods, keep_raw=False)[0].profile == streamed.profile
    other = floods.model_copy(update={"split": floods.split.model_copy(update={"seed": 1})})
    assert build_index(other, keep_raw=False)[0].profile != streamed.profile


def test_profile_follows_the_normalisation_blocks(floods):
    """With data.norm_max_pixels below the training pixels, both come from the same seeded
    sample of training blocks: fewer pixels behind the percentiles, the same distribution."""
    few = floods.model_copy(update={"data": floods.data.model_copy(
        update={"norm_max_pixels": 20_000, "block_size": 64})})
    full, _ = build_index(floods, keep_raw=False)
    part, _ = build_index(few, keep_raw=False)
    for name, p in part.profile.sensors.items():
        assert 20_000 <= p.sampled_pixels < 40_000  # whole blocks: about, not exactly
        for b, f in zip(p.bands, full.profile.sensors[name].bands):
            assert abs(b.p50 - f.p50) <= 0.15 * (f.p99 - f.p1)


def test_invalid_share_counts_training_pixels(floods, tmp_path: Path, shared_data: Path):
    """S1 NaN over the top half: its invalid share is that half's share of the training
    pixels; its percentiles come from the valid ones only."""
    with rasterio.open(shared_data / "sen1floods11_sample" / "s1.tif") as ds:
        data, profile, desc = ds.read(), ds.profile, ds.descriptions
    data[:, :256] = np.nan
    with rasterio.open(tmp_path / "s1.tif", "w", **profile) as out:
        out.write(data)
        out.descriptions = desc
    sensors = dict(floods.sensors)
    sensors["s1"] = sensors["s1"].model_copy(update={"path": tmp_path / "s1.tif"})
    task = floods.model_copy(update={"sensors": sensors})
    index, _ = build_index(task, keep_raw=False)
    train = index.scenes[0].labels("train", 2) >= 0
    expected = train[:256].sum() / train.sum()
    p = index.profile.sensors["s1"]
    assert p.invalid_fraction == pytest.approx(expected, abs=1e-9) and 0.3 < expected < 0.7
    assert index.profile.sensors["s2"].invalid_fraction == 0.0
    valid = data[:, 256:][:, train[256:]]
    assert p.bands[0].p50 == pytest.approx(float(np.median(valid[0])),
                                           abs=0.02 * (p.bands[0].p99 - p.bands[0].p1))


def _grid(crs: str | CRS, res: tuple[float, float], top: float = 0.0) -> Grid:
    return Grid(CRS.from_user_input(crs), Affine(res[0], 0, 500000.0 if "326" in str(crs)
                                                 else 10.0, 0, -res[1], top), 100, 100)


def test_pixel_size_of_projected_and_geographic_grids():
    # projected: transform x the CRS's linear unit
    utm = pixel_size(_grid("EPSG:32630", (30.0, 30.0), top=4_200_000))
    assert utm.x_m == utm.y_m == utm.mean_m == 30.0 and utm.describe() == "30 m"
    feet = pixel_size(_grid("EPSG:2263", (100.0, 100.0), top=200_000))  # US survey feet
    assert feet.x_m == pytest.approx(30.48006, rel=1e-6)
    # geographic: degrees to metres at the centre latitude (100 rows of 1e-4 deg from `top`)
    equator = pixel_size(_grid("EPSG:4326", (1e-4, 1e-4), top=0.005))
    assert equator.x_m == pytest.approx(11.132, rel=1e-3)
    assert equator.y_m == pytest.approx(11.057, rel=1e-3)
    north = pixel_size(_grid("EPSG:4326", (1e-4, 1e-4), top=60.005))
    assert north.x_m == pytest.approx(5.58, rel=2e-3) and north.y_m == pytest.approx(11.141,
                                                                                     rel=2e-3)
    # the geometric mean: the side of a square pixel of the same ground area
    assert north.mean_m == pytest.approx(math.sqrt(north.x_m * north.y_m))
    assert "x" in north.describe()


def test_a_sensor_of_many_bands_keeps_fewer_pixels(monkeypatch: pytest.MonkeyPatch):
    """The sample holds at most about PROFILE_MAX_VALUES values per sensor, whatever its
    band count; every valid training pixel is counted for the invalid share."""
    from autors.data import profile

    monkeypatch.setattr(profile, "PROFILE_MAX_VALUES", 40_000)
    sampler = profile.ProfileSampler({"a": 2, "b": 400}, pixels=20_000, seed=0)
    train = np.ones((100, 200), bool)
    valid = train.copy()
    valid[:10] = False  # 10 % invalid
    rng = np.random.default_rng(1)
    for name, c in (("a", 2), ("b", 400)):
        sampler.add(name, rng.normal(size=(c, 100, 200)).astype(np.float32), train, valid)
    grid = profile.GsdRange(min_m=10, max_m=10, x_m=10, y_m=10, scenes=1)
    result = sampler.result(grid, {"a": None, "b": None}).sensors
    assert result["a"].sampled_pixels == 18_000  # every valid one: under both bounds
    assert 50 <= result["b"].sampled_pixels <= 160  # ~40_000 / 400 of 20_000, binomial
    assert result["a"].invalid_fraction == result["b"].invalid_fraction == pytest.approx(0.1)
