"""Small pictures of a task's scenes, read from their GeoTIFFs without loading them whole:
a decimated read (`out_shape`; GDAL uses the file's overviews when it has them) of at most
`MAX_SIDE` pixels a side per band.

- `sensor_thumbnail`: one sensor as colour (optical, hyperspectral: three bands) or grey (SAR
  in dB, anything else), stretched between its 2nd and 98th percentiles;
- `class_thumbnail`: a label raster in the palette's class colours;
- `split_thumbnail`: one split of a scene's index map (the pixels the run trained, validated
  or tested on), in class colours.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from autors.config import SensorSpec
from autors.data.raster import inspect, resolve_bands
from autors.errors import RasterError
from autors.report.palette import paint

MAX_SIDE = 240  # pixels a side of a thumbnail
RGB_NAMES = (("red", "green", "blue"), ("b4", "b3", "b2"), ("b04", "b03", "b02"))


def _shape(height: int, width: int) -> tuple[int, int]:
    f = max(1, math.ceil(max(height, width) / MAX_SIDE))
    return max(1, height // f), max(1, width // f)


def _read(path: Path, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decimated bands [C, h, w] (float64; complex values as magnitude) and validity [h, w]."""
    try:
        with rasterio.open(path) as src:
            h, w = _shape(src.height, src.width)
            data = src.read(bands, out_shape=(len(bands), h, w), resampling=Resampling.nearest)
            nodata = src.nodata
    except (rasterio.errors.RasterioError, OSError) as err:
        raise RasterError(f"{path}: cannot read a thumbnail ({err})") from None
    data = np.abs(data).astype(np.float64) if np.iscomplexobj(data) else data.astype(np.float64)
    valid = np.isfinite(data).all(axis=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= (data != nodata).all(axis=0)
    return data, valid


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 [h, w]: the band between its 2nd and 98th percentiles over valid pixels."""
    lo, hi = np.percentile(band[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    out = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.where(valid, out * 255, 0).astype(np.uint8)


def _rgb_bands(info, spec: SensorSpec) -> list[int]:
    """The red, green and blue bands when band names say so (a word of the name: 'B4 red',
    'red', 'B04'), else the first three bands read."""
    indexes, names = resolve_bands(info, spec.bands)
    words = [set(re.split(r"[\s_,;:()]+", n.strip().lower())) for n in names]
    for wanted in RGB_NAMES:
        found = [next((i for i, w in zip(indexes, words) if colour in w), None)
                 for colour in wanted]
        if None not in found:
            return found
    return indexes[:3]


def sensor_thumbnail(path: Path, spec: SensorSpec) -> tuple[np.ndarray, str]:
    """uint8 RGB [h, w, 3] of one sensor raster and what it shows."""
    info = inspect(path)
    indexes, names = resolve_bands(info, spec.bands)
    if spec.kind in ("optical", "hyperspectral") and len(indexes) >= 3:
        bands = _rgb_bands(info, spec)
        data, valid = _read(path, bands)
        rgb = np.dstack([_stretch(b, valid) for b in data])
        shown = ", ".join(info.band_label(b) for b in bands)
        return rgb, f"bands {shown} as RGB"
    data, valid = _read(path, indexes[:1])
    band = data[0]
    what = names[0]
    if spec.kind == "sar" and spec.sar_units != "db":
        band = 10 * np.log10(np.maximum(band, 1e-10))
        what += " (dB)"
    grey = _stretch(band, valid)
    return np.dstack([grey] * 3), what


def class_thumbnail(path: Path, class_values: list[int]) -> np.ndarray:
    """uint8 RGB [h, w, 3] of a label raster (raster values -> class colours; others
    white)."""
    data, _ = _read(path, [1])
    values = data[0]
    index = np.full(values.shape, -1, np.int64)
    for i, v in enumerate(class_values):
        index[values == v] = i
    return paint(index, len(class_values))


def split_thumbnail(classes: np.ndarray, k: int) -> np.ndarray:
    """uint8 RGB of a class index map (-1: not in the split), reduced to MAX_SIDE by keeping,
    per cell, the highest class index present (sparse labelled pixels stay visible)."""
    h, w = classes.shape
    f = max(1, math.ceil(max(h, w) / MAX_SIDE))
    if f > 1:
        hh, ww = math.ceil(h / f), math.ceil(w / f)
        padded = np.full((hh * f, ww * f), -1, classes.dtype)
        padded[:h, :w] = classes
        classes = padded.reshape(hh, f, ww, f).max(axis=(1, 3))
    return paint(classes, k)
