"""What the training inputs looked like: each sensor's raw value distribution per band and its
share of invalid pixels, and the ground pixel size (GSD) of the grids and rasters, in metres.

    profile = index.profile            # InputProfile, computed by build_index's statistics pass
    pixel_size(grid).mean_m            # a grid's GSD in metres (geometric mean of x and y)

The profile travels with a trained model (run.json `inputs.profile`, the model card's
`input_profile`), so `autors predict` can tell a scene that does not look like the training
data (`autors.export.input_check`).

Values are physical: after nodata, scale/offset and the SAR dB conversion, before
normalisation, exactly what `read_block` gives (complex SAR: the real and imaginary parts, one
channel each, never in dB; their percentiles are signed with medians near 0, and their
magnitude scales with the amplitude, which the scale check uses). They come from the pixels that feed training
(the training split, where the sensor is valid) of the blocks the normalisation statistics read
(all training blocks, or their seeded sample of about `data.norm_max_pixels`): one pass, block
by block, never a whole dataset in memory. The percentiles are those of a bounded seeded
sample of at most about `PROFILE_MAX_PIXELS` valid training pixels per sensor (fewer for a
sensor of many bands: at most about `PROFILE_MAX_VALUES` values held), drawn uniformly
from those blocks (each valid training pixel kept with the same probability), so their
sampling error is far below the differences the checks look for. The invalid share is counted
over every training pixel of those blocks (not sampled).

GSD: a projected CRS gives it from the transform and the CRS's linear unit; a geographic CRS's
degrees are converted to metres at the grid's centre latitude on the WGS 84 ellipsoid (east-west
by the parallel's radius, north-south by the meridian's; another ellipsoid differs by < 0.5 %).
Web Mercator and other projections whose scale varies with latitude give their nominal
projected metres.

A time-series sensor's figures pool its valid pixels over all dates (its dates themselves are
on the model card's sensor entry, `SensorCard.dates`), which is why predict skips the input
checks for dated rasters: one date would not compare with the pooled figures.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autors.data.grid import Grid

# Valid training pixels kept per sensor for the percentiles: the 1st percentile of 100k
# samples is within ~0.1 percentile point of the true one, far below what the checks flag.
PROFILE_MAX_PIXELS = 100_000
# ... and at most this many values per sensor (16 MB of float32): a 200-band hyperspectral
# sensor keeps 20k pixels, still percentiles within a fraction of a percentile point.
PROFILE_MAX_VALUES = 4_000_000
PERCENTILES = (1.0, 50.0, 99.0)

# WGS 84 (the ellipsoid of GPS and of most geographic CRSs of remote sensing products)
_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandStats(_Frozen):
    """One band's 1st, 50th and 99th percentiles of valid training values (physical units)."""

    p1: float
    p50: float
    p99: float

    @property
    def magnitude(self) -> float:
        """The size of the values, max(|p1|, |p99|): a unit or scale factor c multiplies it
        by |c|, whatever the sign or offset of the band."""
        return max(abs(self.p1), abs(self.p99))

    @property
    def spread(self) -> float:
        """p99 - p1: the training range the drift and band-order checks measure in."""
        return self.p99 - self.p1


class PixelSize(_Frozen):
    """Ground sampling distance of one grid in metres, per axis."""

    x_m: float = Field(gt=0)
    y_m: float = Field(gt=0)

    @property
    def mean_m(self) -> float:
        """Geometric mean of x and y: the side of a square pixel of the same ground area.
        Checks compare this: equal-angle geographic pixels are narrower in x than in y away
        from the equator, and that shape does not change what a pixel holds."""
        return math.sqrt(self.x_m * self.y_m)

    def describe(self) -> str:
        if abs(self.x_m - self.y_m) <= 0.005 * self.mean_m:
            return f"{self.mean_m:.3g} m"
        return f"{self.mean_m:.3g} m ({self.x_m:.3g} x {self.y_m:.3g} m)"


class GsdRange(_Frozen):
    """Pixel sizes over the training scenes: the smallest and largest geometric mean, and the
    median per axis."""

    min_m: float = Field(gt=0)
    max_m: float = Field(gt=0)
    x_m: float = Field(gt=0)
    y_m: float = Field(gt=0)
    scenes: int = Field(ge=1, description="training scenes measured")

    def describe(self) -> str:
        size = PixelSize(x_m=self.x_m, y_m=self.y_m).describe()
        if self.max_m > self.min_m * 1.005:
            return f"{self.min_m:.3g} to {self.max_m:.3g} m over {self.scenes} scenes"
        return size


class SensorProfile(_Frozen):
    """One sensor's training inputs: value percentiles per band (model channel order), the
    share of training pixels where it was invalid, and its rasters' native pixel size."""

    bands: list[BandStats] = Field(min_length=1)
    invalid_fraction: float = Field(ge=0, le=1, description="training pixels (of the blocks "
                                    "read) where the sensor is invalid or absent")
    sampled_pixels: int = Field(ge=0, description="valid training pixels behind the "
                                "percentiles")
    gsd: GsdRange | None = Field(description="its rasters' own pixel size; None when no "
                                 "training scene has the sensor's raster")


class InputProfile(_Frozen):
    """What the training inputs looked like (see the module docstring)."""

    sensors: dict[str, SensorProfile]
    grid: GsdRange = Field(description="the training reference grids' pixel size")
    max_pixels: int = Field(description="the bound on sampled_pixels (PROFILE_MAX_PIXELS; "
                            "a sensor of many bands: PROFILE_MAX_VALUES / bands)")


def pixel_size(grid: Grid) -> PixelSize:
    """The grid's GSD in metres (see the module docstring)."""
    t = grid.transform
    res_x, res_y = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    crs = grid.crs
    if crs.is_geographic:
        _, radians = crs.units_factor  # radians per angular unit
        centre_y = t.f + t.d * grid.width / 2 + t.e * grid.height / 2
        lat = max(min(centre_y * radians, math.radians(89.9)), math.radians(-89.9))
        s = math.sin(lat)
        w = math.sqrt(1 - _WGS84_E2 * s * s)
        prime_vertical = _WGS84_A / w  # N: radius of curvature along the parallel
        meridian = _WGS84_A * (1 - _WGS84_E2) / w**3  # M: along the meridian
        return PixelSize(x_m=res_x * radians * prime_vertical * math.cos(lat),
                         y_m=res_y * radians * meridian)
    _, metres = crs.linear_units_factor
    return PixelSize(x_m=res_x * metres, y_m=res_y * metres)


def gsd_range(sizes: list[PixelSize]) -> GsdRange | None:
    """The range of `sizes` (one per training scene); None when empty."""
    if not sizes:
        return None
    means = [s.mean_m for s in sizes]
    return GsdRange(min_m=min(means), max_m=max(means),
                    x_m=float(np.median([s.x_m for s in sizes])),
                    y_m=float(np.median([s.y_m for s in sizes])), scenes=len(sizes))


def band_stats(values: np.ndarray) -> list[BandStats]:
    """Percentiles per band of `values` [C, N] (N >= 1)."""
    q = np.percentile(values.astype(np.float64), PERCENTILES, axis=1)  # [3, C]
    return [BandStats(p1=float(a), p50=float(b), p99=float(c)) for a, b, c in q.T]


class ProfileSampler:
    """Accumulates, block by block, each sensor's counts of training pixels and valid training
    pixels, and a seeded sample of valid training values that keeps each one with the same
    probability, so the sample holds about `max_pixels` of the `pixels` training pixels the
    pass will see (fewer where the sensor is invalid)."""

    def __init__(self, channels: dict[str, int], pixels: int, seed: int,
                 max_pixels: int = PROFILE_MAX_PIXELS) -> None:
        self.channels = channels
        self.keep = {n: min(1.0, min(max_pixels, PROFILE_MAX_VALUES // max(c, 1))
                            / max(pixels, 1)) for n, c in channels.items()}
        self.max_pixels = max_pixels
        self.rng = np.random.default_rng([seed, 5])
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in channels}
        self.train = dict.fromkeys(channels, 0)
        self.valid = dict.fromkeys(channels, 0)

    def add(self, name: str, values: np.ndarray, train: np.ndarray, valid: np.ndarray) -> None:
        """One block: physical values [C, h, w], training pixels and validity [h, w]."""
        use = train & valid
        self.train[name] += int(train.sum())
        self.valid[name] += int(use.sum())
        picked = values[:, use]
        if self.keep[name] < 1.0:
            picked = picked[:, self.rng.random(picked.shape[1]) < self.keep[name]]
        if picked.shape[1]:
            self.parts[name].append(np.array(picked, np.float32))

    def result(self, grid: GsdRange, sensor_gsd: dict[str, GsdRange | None]) -> InputProfile:
        sensors = {}
        for name, c in self.channels.items():
            parts = self.parts[name]
            values = np.concatenate(parts, axis=1) if parts else np.zeros((c, 0), np.float32)
            if values.shape[1] == 0:  # cannot happen after the normalisation pass, which
                continue              # refuses a sensor without a valid training pixel
            sensors[name] = SensorProfile(
                bands=band_stats(values),
                invalid_fraction=1.0 - self.valid[name] / max(self.train[name], 1),
                sampled_pixels=int(values.shape[1]), gsd=sensor_gsd.get(name))
        return InputProfile(sensors=sensors, grid=grid, max_pixels=self.max_pixels)
