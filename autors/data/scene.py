"""A Scene (one scene's rasters aligned on its grid, read whole: `autors.data.index.load_scene`)
and how a sensor's raster becomes physical values on a grid (`load_sensor`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.warp import Resampling

from autors.config import SensorSpec, TaskSpec
from autors.data.complex_sar import assemble_pairs, complex_bands, pair_nodata
from autors.data.grid import Grid, read_onto
from autors.data.raster import RasterInfo, inspect, is_complex, resolve_bands
from autors.errors import DataError

# Floor of linear SAR power before the dB conversion (10*log10(1e-10) = -100 dB).
SAR_EPS = 1e-10


@dataclass
class Scene:
    """All rasters of a task on the reference grid.

    Sensor arrays hold physical values (after scale/offset and dB conversion); invalid pixels
    are 0 in the arrays and False in the masks, so no NaN travels downstream.
    """

    grid: Grid
    sensors: dict[str, np.ndarray]  # name -> float32 [C, H, W]
    sensor_valid: dict[str, np.ndarray]  # name -> bool [H, W]
    valid: np.ndarray  # bool [H, W]: enough sensors valid for a label (`require_sensors`)
    band_names: dict[str, list[str]]
    labels: dict[str, np.ndarray]  # "full" / "train" / "val" / "test" -> int16 [H, W], -1 = none
    rasters: dict[str, RasterInfo]  # headers of the source files (sensor names, "labels:<key>")


def load_sensor(
    spec: SensorSpec,
    grid: Grid,
    info: RasterInfo | None = None,
    indexes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One sensor on `grid` (a scene, or a window of one when predicting): values float32
    [C, H, W] after nodata, scale/offset and dB conversion (a complex sensor: real/imaginary
    channel pairs, `autors.data.complex_sar`), invalid pixels 0, and validity bool [H, W]. `info`/`indexes` skip re-reading the header when already known."""
    if info is None:
        info = inspect(spec.path)
    if indexes is None:
        indexes, _ = (complex_bands(spec, info) if spec.sar_units == "complex"
                      else resolve_bands(info, spec.bands))
    if spec.sar_units == "complex" and is_complex(info.dtype):
        # Real and imaginary parts as channel pairs, resampled part by part, never in dB.
        stack = read_onto(info, indexes, grid, pair_nodata(spec, info, indexes), np.nan,
                          Resampling.bilinear, pairs=True)
    else:
        stack = read_onto(
            info, indexes, grid, _to_physical(spec, info, indexes), np.nan, Resampling.bilinear
        )
    if spec.complex_pairs:
        stack = assemble_pairs(stack, spec)
    if spec.kind == "sar" and spec.sar_units == "linear":
        # Resampled in linear power (physically meaningful averages), then converted.
        linear_to_db(stack)
    valid = np.isfinite(stack).all(axis=0)  # [H, W]
    np.copyto(stack, 0.0, where=~valid[None])
    return stack, valid


def linear_to_db(stack: np.ndarray) -> np.ndarray:
    """Linear SAR power -> dB in place (floored at SAR_EPS; NaN stays NaN); returns `stack`."""
    np.maximum(stack, SAR_EPS, out=stack)
    np.log10(stack, out=stack)
    stack *= 10.0
    return stack


def _to_physical(
    spec: SensorSpec, info: RasterInfo, indexes: list[int]
) -> Callable[[np.ndarray], np.ndarray]:
    """Raw stack -> NaN at nodata, then scale/offset (in place on the freshly read array)."""
    if spec.nodata is not None:
        nodata = [spec.nodata] * len(indexes)
    else:
        nodata = [info.nodata[i - 1] for i in indexes]
    # NaN never compares equal, so bands without nodata mark nothing here.
    nd = np.array([np.nan if v is None else v for v in nodata], np.float32)[:, None, None]

    def convert(raw: np.ndarray) -> np.ndarray:  # [C, h, w] float32
        np.copyto(raw, np.float32(np.nan), where=raw == nd)
        if spec.scale != 1.0:
            raw *= np.float32(spec.scale)
        if spec.offset != 0.0:
            raw += np.float32(spec.offset)
        return raw

    return convert


def check_disjoint(task: TaskSpec, labels: dict[str, np.ndarray]) -> None:
    """The given split rasters must not label the same pixel twice."""
    given = [key for key in ("train", "val", "test") if key in labels]
    for i, a in enumerate(given):
        for b in given[i + 1:]:
            both = (labels[a] >= 0) & (labels[b] >= 0)
            if both.any():
                raise DataError(
                    f"{int(both.sum())} pixels are labelled in both the {a} raster "
                    f"({getattr(task.split, a)}) and the {b} raster ({getattr(task.split, b)}); "
                    "the given splits must be disjoint"
                )
