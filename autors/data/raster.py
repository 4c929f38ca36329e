"""Reading GeoTIFFs with rasterio, turning every GDAL failure into a `RasterError` naming the file.

Opening a raster (`inspect`) reads only its header; `read` reads pixels. The pipeline inspects
every raster first (to agree on a common grid) and then reads each one exactly once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.windows import Window

from autors.errors import RasterError

# GDAL/rasterio failures that mean "this file cannot be read" (missing, not a raster, truncated).
_IO_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)


@dataclass(frozen=True)
class RasterInfo:
    """Header of one raster: georeferencing, size, bands. No pixels."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: tuple[float | None, ...]  # per band, as declared in the file
    descriptions: tuple[str | None, ...]  # per band

    def band_label(self, index: int) -> str:
        """Readable name of 1-based band `index`: its description, else `band<index>`."""
        return self.descriptions[index - 1] or f"band{index}"

    def available_bands(self) -> str:
        """'1: VV, 2: VH' — listed in error messages so the user can pick a valid band."""
        return ", ".join(f"{i}: {self.band_label(i)}" for i in range(1, self.count + 1))


def inspect(path: Path) -> RasterInfo:
    """Open `path`, check that it is a georeferenced raster and return its header."""
    path = Path(path)
    if not path.exists():
        raise RasterError(f"raster not found: {path} (check the path in the task file)")
    if not path.is_file():
        raise RasterError(f"{path} is not a file (give the path of a GeoTIFF)")
    try:
        with warnings.catch_warnings():
            # A missing geotransform is reported below as a RasterError, not a warning.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                info = RasterInfo(
                    path=path,
                    crs=ds.crs,
                    transform=ds.transform,
                    width=ds.width,
                    height=ds.height,
                    count=ds.count,
                    dtype=ds.dtypes[0],
                    nodata=tuple(ds.nodatavals),
                    descriptions=tuple(ds.descriptions),
                )
    except _IO_ERRORS as err:
        raise RasterError(
            f"{path} cannot be read as a raster ({_first_line(err)}): it is not a format GDAL "
            "reads, or it is truncated or corrupted; give a GeoTIFF (re-export or re-download it)"
        ) from None
    if info.crs is None:
        raise RasterError(
            f"{path} has no CRS: assign one, e.g. `gdal_edit.py -a_srs EPSG:32632 {path.name}`"
        )
    if info.transform == Affine.identity():
        raise RasterError(
            f"{path} has no geotransform (pixel size and origin): georeference it, "
            f"e.g. `gdal_edit.py -a_ullr ULX ULY LRX LRY {path.name}`"
        )
    if info.count < 1:
        raise RasterError(f"{path} has no bands")
    return info


def resolve_bands(
    info: RasterInfo, bands: Sequence[int | str] | None
) -> tuple[list[int], list[str]]:
    """1-based band indexes and names for a sensor's `bands` (names match band descriptions,
    case-insensitively). `None` selects every band."""
    if bands is None:
        indexes = list(range(1, info.count + 1))
        return indexes, [info.band_label(i) for i in indexes]
    lowered = [(d or "").strip().lower() for d in info.descriptions]
    indexes, names = [], []
    for band in bands:
        if isinstance(band, int):
            if band > info.count:
                raise RasterError(
                    f"{info.path}: band {band} does not exist, the file has {info.count} "
                    f"band(s) ({info.available_bands()}); fix 'bands' in the task file"
                )
            indexes.append(band)
            names.append(info.band_label(band))
            continue
        hits = [i + 1 for i, d in enumerate(lowered) if d == band.strip().lower()]
        if not hits:
            raise RasterError(
                f"{info.path}: no band named '{band}'; available bands are "
                f"{info.available_bands()}; use one of these names or a 1-based index in 'bands'"
            )
        if len(hits) > 1:
            raise RasterError(
                f"{info.path}: band name '{band}' is ambiguous (bands {hits}); use an index"
            )
        indexes.append(hits[0])
        names.append(band)
    if len(set(indexes)) != len(indexes):
        raise RasterError(f"{info.path}: 'bands' selects the same band twice ({bands})")
    return indexes, names


def is_complex(dtype: str) -> bool:
    """Whether a raster's data type holds complex values (complex64, complex_int16, ...)."""
    return "complex" in dtype.lower()


def read(
    info: RasterInfo, indexes: list[int], window: Window, dtype: str = "float32",
    pairs: bool = False,
) -> np.ndarray:
    """Pixels of bands `indexes` inside `window`, as `dtype`: [C, window.height, window.width].

    A complex raster is read only with `pairs`: each band becomes its real and imaginary parts
    as two float32 channels, interleaved ([2C, h, w]: re0, im0, re1, ...). Without `pairs` it
    is a RasterError: casting would keep the real part only, silently."""
    if is_complex(info.dtype) != pairs:
        raise RasterError(
            f"{info.path} holds {'complex' if is_complex(info.dtype) else 'real'} values "
            f"({info.dtype}) but is read as {'complex pairs' if pairs else 'real values'}: "
            "declare the sensor's sar_units (complex for SLC rasters) to match the file"
        )
    try:
        with rasterio.open(info.path) as ds, rasterio.Env(GDAL_CACHEMAX=_cache_mb(ds)):
            if pairs:
                z = ds.read(indexes, window=window, out_dtype="complex64")
                out = np.empty((2 * z.shape[0],) + z.shape[1:], np.float32)
                out[0::2], out[1::2] = z.real, z.imag
                return out
            return ds.read(indexes, window=window, out_dtype=dtype)
    except _IO_ERRORS as err:
        raise RasterError(
            f"{info.path} cannot be read ({_first_line(err)}): the file is probably truncated "
            "or corrupted; re-export or re-download it"
        ) from None


def _cache_mb(ds: rasterio.DatasetReader) -> int:
    """GDAL block cache for one whole read: room for two blocks (all bands of a block when the
    file is pixel-interleaved), at least 64 MB. GDAL's default (5% of RAM) makes it keep a
    copy of every block read, which doubled the memory and tripled the time of reading a
    144-band scene (benchmarks/data_load.py)."""
    rows, cols = ds.block_shapes[0]
    bands = ds.count if ds.profile.get("interleave") == "pixel" else 1
    block = rows * cols * bands * _itemsize(ds.dtypes[0])
    return max(64, -(-2 * block // 2**20))


def _itemsize(dtype: str) -> int:
    """Bytes per value of a GDAL data type (numpy has no complex int16: two int16, 4 bytes)."""
    return 4 if dtype == "complex_int16" else np.dtype(dtype).itemsize


def _first_line(err: BaseException) -> str:
    """First line of the innermost GDAL message (rasterio wraps it in 'Read failed...')."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
