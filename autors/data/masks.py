"""Per-sensor validity rules beyond nodata: a mask raster (clouds, shadows, gaps) or a QA band
of the sensor's own raster (Sentinel-2 SCL classes, Landsat QA_PIXEL bits). A masked pixel is
invalid for that sensor only."""

from __future__ import annotations

import numpy as np
from rasterio.warp import Resampling

from autors.config import SensorSpec
from autors.data.complex_sar import check_units, complex_bands
from autors.data.grid import Grid, crop_to_overlap, read_onto
from autors.data.raster import RasterInfo, inspect, resolve_bands
from autors.errors import DataError, RasterError


def sensor_bands(name: str, spec: SensorSpec, info: RasterInfo) -> tuple[list[int], list[str]]:
    """The model-input bands of a sensor (indexes, names): `bands`, or every band except the
    QA band when `bands` is omitted. A complex sensor: its bands as real/imaginary channel
    pairs (`autors.data.complex_sar`); a raster that does not fit `sar_units` raises."""
    check_units(name, spec, info)
    if spec.sar_units == "complex":
        return complex_bands(spec, info)
    indexes, names = resolve_bands(info, spec.bands)
    if spec.qa is not None and spec.bands is None:
        qa = qa_band(name, spec, info)
        keep = [i for i, idx in enumerate(indexes) if idx != qa]
        indexes, names = [indexes[i] for i in keep], [names[i] for i in keep]
        if not indexes:
            raise RasterError(f"{info.path}: sensor '{name}' has no band left besides its QA "
                              "band; check the file")
    return indexes, names


def qa_band(name: str, spec: SensorSpec, info: RasterInfo) -> int:
    """1-based index of the sensor's QA band; a RasterError naming the rule when absent."""
    try:
        return resolve_bands(info, [spec.qa.band])[0][0]
    except RasterError as err:
        raise RasterError(f"sensors.{name}.qa.band: {err}") from None


def mask_header(name: str, path, grid: Grid) -> RasterInfo:
    """The mask raster's header, checked to overlap the scene's grid."""
    info = inspect(path)
    try:
        crop_to_overlap(grid, {f"mask raster of sensor '{name}'": info})
    except DataError as err:
        raise DataError(f"{err}; the mask raster {path} has no overlap with its sensor: check "
                        "the file or its georeferencing") from None
    return info


def rule_validity(
    spec: SensorSpec, grid: Grid, info: RasterInfo, mask_info: RasterInfo | None,
    qa_index: int | None, mask_band: int = 1,
) -> np.ndarray | None:
    """Bool [H, W] on `grid`: False where the mask raster or the QA band marks the pixel
    invalid (nearest resampling; pixels the mask does not cover are not masked; the mask's
    band `mask_band`: a time series' band groups hold one per date); None when the sensor has
    no rule."""
    valid = None
    if spec.mask is not None and mask_info is not None:
        values = _read_nearest(mask_info, mask_band, grid)
        valid = ~np.isin(values, np.asarray(spec.mask.invalid_values, np.float32))
    if spec.qa is not None and qa_index is not None:
        q = _read_nearest(info, qa_index, grid)
        covered = np.isfinite(q)
        codes = np.where(covered, q, 0).astype(np.int64)
        if spec.qa.invalid_values is not None:
            bad = np.isin(codes, spec.qa.invalid_values)
        else:
            bits = np.int64(sum(1 << b for b in spec.qa.invalid_bits))
            bad = (codes & bits) != 0
        ok = ~(bad & covered)
        valid = ok if valid is None else valid & ok
    return valid


def _read_nearest(info: RasterInfo, index: int, grid: Grid) -> np.ndarray:
    """One band on `grid`, nearest resampling, NaN where the raster does not reach."""
    try:
        return read_onto(info, [index], grid, lambda raw: raw, np.nan, Resampling.nearest)[0]
    except DataError:
        return np.full(grid.shape, np.nan, np.float32)  # this window lies outside the raster
