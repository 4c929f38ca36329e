"""Label rasters: raster values -> class indexes 0..K-1 (-1 = unlabelled), on the reference grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rasterio.warp import Resampling

from autors.config import LabelSpec
from autors.data.grid import Grid, read_onto
from autors.data.raster import RasterInfo
from autors.errors import DataError, RasterError

UNLABELLED = -1


def read_labels(info: RasterInfo, spec: LabelSpec, grid: Grid) -> np.ndarray:
    """Class indexes of a label raster on `grid`: int16 [H, W], -1 where unlabelled.

    Nearest-neighbour resampling when the raster is on another grid; grid pixels outside the
    raster are unlabelled. Values that are neither a declared class, the `ignore` value nor the
    file's nodata are a DataError listing them.
    """
    if info.count != 1:
        raise RasterError(
            f"{info.path}: a label raster must have one band, this one has {info.count}"
        )
    convert = _to_index(spec, info)
    return read_onto(info, [1], grid, convert, UNLABELLED, Resampling.nearest)[0]


def _to_index(spec: LabelSpec, info: RasterInfo) -> Callable[[np.ndarray], np.ndarray]:
    values = np.asarray(spec.class_values, dtype=np.float64)  # sorted; position = class index
    file_nodata = info.nodata[0]

    def convert(raw: np.ndarray) -> np.ndarray:  # [1, h, w] float32 -> [1, h, w] int16
        unlabelled = np.isnan(raw) | (raw == spec.ignore)
        if file_nodata is not None and file_nodata not in spec.classes:
            unlabelled |= raw == file_nodata
        pos = np.clip(np.searchsorted(values, raw), 0, len(values) - 1)
        is_class = values[pos] == raw
        unexpected = ~(is_class | unlabelled)
        if unexpected.any():
            vals, counts = np.unique(raw[unexpected], return_counts=True)
            listed = ", ".join(f"{_num(v)} ({n} px)" for v, n in zip(vals[:10], counts[:10]))
            more = f" and {len(vals) - 10} more" if len(vals) > 10 else ""
            raise DataError(
                f"{info.path}: label values {listed}{more} are not declared classes "
                f"(classes: {dict(spec.classes)}, ignore: {spec.ignore}); add them to "
                "'labels.classes' or recode them to the ignore value"
            )
        out = pos.astype(np.int16)
        out[unlabelled] = UNLABELLED
        return out

    return convert


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
