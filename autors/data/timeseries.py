"""Time-series sensors (`dates`): each date's raster header and bands, and reading one window
of every date. One sample format: a time series is held as its dates' values stacked on the
channel axis, date by date (`[T * C, h, w]`, C the bands of one date), and its validity per
date (`[T, h, w]`); the datasets hand the model `[T, C, P, P]`, the date mask `[T, P, P]` and
the day of year `<sensor>__doy` `[T]` (`autors.data.datasets`). A date a scene did not acquire
(no file) is invalid everywhere; each date's nodata, QA band and mask raster apply to that date
only. A scene with fewer dates than the index's T (scenes with their own dates, `per_scene`)
is padded with dates not acquired (date mask 0, day of year 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autors.config import SensorSpec
from autors.data.grid import Grid
from autors.data.masks import qa_band, rule_validity, sensor_bands
from autors.data.raster import RasterInfo, inspect
from autors.data.scene import load_sensor
from autors.errors import DataError, RasterError


@dataclass(frozen=True)
class DateRaster:
    """One acquired date of a time-series sensor in one scene."""

    info: RasterInfo
    bands: list[int]  # 1-based indexes read (band groups: inside the file's group)
    qa: int | None  # the QA band's index in this raster
    mask: RasterInfo | None = None  # this date's mask raster
    mask_band: int = 1  # its band holding this date (band groups: one band per date)


def series_bands(name: str, spec: SensorSpec, info: RasterInfo, t: int, n: int
                 ) -> tuple[list[int], list[str]]:
    """The bands (indexes, names) of date `t` (of `n` in the scene) of a time-series sensor
    in raster `info`: the sensor's bands of that date's own raster, or of group `t` of band
    groups (`bands_per_date`; `bands` and `qa.band` then 1-based indexes inside a group, the
    QA band left out of the default bands)."""
    per = spec.bands_per_date
    if per is None:
        return sensor_bands(name, spec, info)
    if info.count != n * per:
        raise RasterError(f"{info.path}: sensor '{name}' declares {n} dates of "
                          f"{per} band(s) (bands_per_date) = {n * per} bands, the file has "
                          f"{info.count}; fix the dates (sensors.{name}.dates, or the scene's "
                          f"scenes.items[].dates.{name}) or bands_per_date")
    qa = group_qa(name, spec)
    inside = spec.bands or [b for b in range(1, per + 1) if b != qa]
    bad = [b for b in inside if not isinstance(b, int) or b > per]
    if bad:
        raise RasterError(f"sensors.{name}.bands: {bad} are not 1-based indexes inside a "
                          f"group of {per} band(s) (bands_per_date)")
    indexes = [t * per + b for b in inside]
    return indexes, [info.band_label(b) for b in inside]


def group_qa(name: str, spec: SensorSpec) -> int | None:
    """Band groups: the QA band's 1-based index inside a group (None without a QA rule)."""
    if spec.qa is None:
        return None
    band = spec.qa.band
    if not isinstance(band, int) or band > (spec.bands_per_date or 0):
        raise RasterError(f"sensors.{name}.qa.band {band!r}: with band groups (bands_per_date "
                          f"{spec.bands_per_date}) the QA band is a 1-based index inside a "
                          "group, the same in every date's group")
    return band


def date_rasters(name: str, spec: SensorSpec, files: list, masks: list | None, labels: list,
                 channels: int, scene: str, steps: int) -> list[DateRaster | None]:
    """Every date's raster of sensor `name` in a scene (`files`: a path per date, None where
    not acquired; `masks`: a mask raster per date or None; `labels`: YYYY-MM-DD per date),
    its bands checked against the `channels` of the sensor's first date, padded with None
    (not acquired) to `steps` dates."""
    out: list[DateRaster | None] = []
    headers: dict = {}
    n = len(files)
    grouped = spec.bands_per_date is not None
    for t, (label, path) in enumerate(zip(labels, files)):
        if path is None:
            out.append(None)
            continue
        where = f"scene '{scene}', sensor '{name}', date {label}"
        try:
            info = headers.get(path) or inspect(path)
            headers[path] = info
            indexes, _ = series_bands(name, spec, info, t, n)
            if spec.qa is None:
                qa = None
            elif grouped:
                qa = t * spec.bands_per_date + group_qa(name, spec)
            else:
                qa = qa_band(name, spec, info)
        except RasterError as err:
            raise RasterError(f"{where}: {err}") from None
        if len(indexes) != channels:
            raise RasterError(f"{where} ({path}): {len(indexes)} band(s), the sensor's other "
                              f"dates have {channels}; every date must give the same bands")
        mask, band = _date_mask(spec, masks, t, n, where, path)
        out.append(DateRaster(info, indexes, qa, mask, band))
    return out + [None] * (steps - len(out))


def _date_mask(spec: SensorSpec, masks: list | None, t: int, n: int, where: str, raster
               ) -> tuple[RasterInfo | None, int]:
    """(header, band) of date `t`'s mask raster; a DataError naming the date and file when
    the sensor has a mask rule and this date's mask is missing or does not fit."""
    if spec.mask is None or masks is None:
        return None, 1
    path = masks[t]
    if path is None or not path.is_file():
        raise DataError(f"{where}: no mask raster {path} for this date's raster {raster}; "
                        "every acquired date needs its mask (sensors.<name>.mask, {date})")
    try:
        info = inspect(path)
    except RasterError as err:
        raise RasterError(f"{where}: mask: {err}") from None
    if spec.bands_per_date is not None:
        if info.count != n:
            raise DataError(f"{where}: the mask raster {path} has {info.count} band(s); with "
                            f"band groups it needs one band per date ({n})")
        return info, t + 1
    return info, 1


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
        rule = rule_validity(spec, grid, d.info, d.mask, d.qa, d.mask_band)
        if rule is not None:
            ok &= rule
            np.copyto(v, np.float32(0.0), where=~rule[None])
        values[t * channels:(t + 1) * channels] = v
        valid[t] = ok
    return values, valid


def any_date(valid: np.ndarray) -> np.ndarray:
    """A sensor's validity `[h, w]`: itself, or a time series' `[T, h, w]` any valid date."""
    return valid if valid.ndim == 2 else valid.any(axis=0)
