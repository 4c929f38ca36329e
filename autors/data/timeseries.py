"""Time-series sensors (`dates`): each date's raster header and bands, and reading one window
of every date. One sample format: a time series is held as its dates' values stacked on the
channel axis, date by date (`[T * C, h, w]`, C the bands of one date), and its validity per
date (`[T, h, w]`); the datasets hand the model `[T, C, P, P]`, the date mask `[T, P, P]` and
the day of year `<sensor>__doy` `[T]` (`autors.data.datasets`). A date a scene did not acquire
(no file) is invalid everywhere; each date's nodata and QA band apply to that date only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autors.config import SensorSpec
from autors.data.grid import Grid
from autors.data.masks import qa_band, rule_validity, sensor_bands
from autors.data.raster import RasterInfo, inspect
from autors.data.scene import load_sensor
from autors.errors import RasterError


@dataclass(frozen=True)
class DateRaster:
    """One acquired date of a time-series sensor in one scene."""

    info: RasterInfo
    bands: list[int]  # 1-based indexes read (band groups: inside the file's group)
    qa: int | None  # the QA band's index in this raster


def series_bands(name: str, spec: SensorSpec, info: RasterInfo, t: int
                 ) -> tuple[list[int], list[str]]:
    """The bands (indexes, names) of date `t` of a time-series sensor in raster `info`: the
    sensor's bands of that date's own raster, or of group `t` of band groups
    (`bands_per_date`; `bands` then 1-based indexes inside a group)."""
    per = spec.bands_per_date
    if per is None:
        return sensor_bands(name, spec, info)
    n = len(spec.dates or [])
    if info.count != n * per:
        raise RasterError(f"{info.path}: sensor '{name}' declares {n} dates of "
                          f"{per} band(s) (bands_per_date) = {n * per} bands, the file has "
                          f"{info.count}; fix sensors.{name}.dates / bands_per_date")
    inside = spec.bands or list(range(1, per + 1))
    bad = [b for b in inside if not isinstance(b, int) or b > per]
    if bad:
        raise RasterError(f"sensors.{name}.bands: {bad} are not 1-based indexes inside a "
                          f"group of {per} band(s) (bands_per_date)")
    indexes = [t * per + b for b in inside]
    return indexes, [info.band_label(b) for b in inside]


def date_rasters(name: str, spec: SensorSpec, files: list, channels: int, scene: str
                 ) -> list[DateRaster | None]:
    """Every date's raster of sensor `name` in a scene (`files`: a path per date, None where
    not acquired), its bands checked against the `channels` of the sensor's first date."""
    assert spec.dates is not None
    out: list[DateRaster | None] = []
    headers: dict = {}
    for t, (date, path) in enumerate(zip(spec.dates, files)):
        if path is None:
            out.append(None)
            continue
        where = f"scene '{scene}', sensor '{name}', date {date.date.isoformat()}"
        try:
            info = headers.get(path) or inspect(path)
            headers[path] = info
            indexes, _ = series_bands(name, spec, info, t)
            qa = qa_band(name, spec, info) if spec.qa is not None else None
        except RasterError as err:
            raise RasterError(f"{where}: {err}") from None
        if len(indexes) != channels:
            raise RasterError(f"{where} ({path}): {len(indexes)} band(s), the sensor's other "
                              f"dates have {channels}; every date must give the same bands")
        out.append(DateRaster(info, indexes, qa))
    return out


def read_series(spec: SensorSpec, grid: Grid, dates: list[DateRaster | None], channels: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Physical values float32 `[T * C, h, w]` (date by date, invalid values 0) and validity
    bool `[T, h, w]` of every date on `grid`; a date without a raster is invalid."""
    n = len(dates)
    values = np.zeros((n * channels,) + grid.shape, np.float32)
    valid = np.zeros((n,) + grid.shape, bool)
    for t, d in enumerate(dates):
        if d is None:
            continue
        v, ok = load_sensor(spec, grid, d.info, d.bands)
        rule = rule_validity(spec, grid, d.info, None, d.qa)
        if rule is not None:
            ok &= rule
            np.copyto(v, np.float32(0.0), where=~rule[None])
        values[t * channels:(t + 1) * channels] = v
        valid[t] = ok
    return values, valid


def any_date(valid: np.ndarray) -> np.ndarray:
    """A sensor's validity `[h, w]`: itself, or a time series' `[T, h, w]` any valid date."""
    return valid if valid.ndim == 2 else valid.any(axis=0)
