"""The reference grid and how other rasters are brought onto it.

A raster on the same pixel lattice as the grid (same CRS and pixel size, origin shifted by a
whole number of pixels) is read by window, without resampling. Anything else is warped with one
`rasterio.warp.reproject` call for the whole band stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window

from autors.data.raster import RasterInfo, read
from autors.errors import DataError, RasterError

# Pixel fractions below this are float noise (grids written by different tools), not offsets.
_PIXEL_TOL = 1e-3
# Extra source pixels read around the needed area so bilinear kernels at the edge are complete.
_MARGIN = 2

Bounds = tuple[float, float, float, float]  # left, bottom, right, top


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform (pixel corner origin) and size."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @classmethod
    def of(cls, info: RasterInfo) -> Grid:
        return cls(info.crs, info.transform, info.height, info.width)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units (degrees for a geographic CRS)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> Bounds:
        return _footprint(self.transform, self.width, self.height)

    def sub(self, window: Window) -> Grid:
        """The grid of the pixels inside `window` (integer offsets)."""
        return Grid(
            self.crs, _shifted(self.transform, window), int(window.height), int(window.width)
        )

    def to_dict(self) -> dict:
        """JSON-able form (CRS as WKT); travels with exported models."""
        return {
            "crs": self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "height": self.height,
            "width": self.width,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        return cls(
            CRS.from_wkt(data["crs"]), Affine(*data["transform"]), data["height"], data["width"]
        )


def crop_to_overlap(grid: Grid, rasters: dict[str, RasterInfo]) -> Grid:
    """Crop `grid` to the pixels that lie inside every raster's extent.

    `rasters` maps a readable name ("sensor 's2'") to a header. A raster that does not overlap
    the grid at all is a DataError naming it.
    """
    if grid.transform.b != 0 or grid.transform.d != 0:
        raise RasterError(
            "the reference grid is rotated (its geotransform has rotation terms), which is not "
            "supported: set 'grid' to a north-up sensor or warp the raster to north-up first"
        )
    row0, col0, row1, col1 = 0, 0, grid.height, grid.width
    for name, info in rasters.items():
        left, bottom, right, top = footprint_in(info, grid.crs)
        inv = ~grid.transform
        c_a, r_a = _apply(inv, left, top)
        c_b, r_b = _apply(inv, right, bottom)
        # Inward rounding: keep only pixels fully covered by the raster's extent.
        c_start = max(0, math.ceil(min(c_a, c_b) - _PIXEL_TOL))
        c_stop = min(grid.width, math.floor(max(c_a, c_b) + _PIXEL_TOL))
        r_start = max(0, math.ceil(min(r_a, r_b) - _PIXEL_TOL))
        r_stop = min(grid.height, math.floor(max(r_a, r_b) + _PIXEL_TOL))
        if c_start >= c_stop or r_start >= r_stop:
            raise DataError(
                f"{name} ({info.path}) does not overlap the reference grid: its extent "
                f"{_fmt(footprint_in(info, info.crs))} in {crs_name(info.crs)} lies outside "
                f"{_fmt(grid.bounds)} in {crs_name(grid.crs)}; check that the files show the "
                "same area and that their CRS is declared correctly"
            )
        row0, col0 = max(row0, r_start), max(col0, c_start)
        row1, col1 = min(row1, r_stop), min(col1, c_stop)
    if row0 >= row1 or col0 >= col1:
        raise DataError(
            f"the rasters ({', '.join(rasters)}) each overlap the reference grid but have no "
            "area in common; check their extents"
        )
    return grid.sub(Window(col0, row0, col1 - col0, row1 - row0))


def footprint_in(info: RasterInfo, crs: CRS) -> Bounds:
    """Bounding box of the raster's extent expressed in `crs`."""
    bounds = _footprint(info.transform, info.width, info.height)
    if info.crs == crs:
        return bounds
    try:
        return transform_bounds(info.crs, crs, *bounds, densify_pts=21)
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise RasterError(
            f"{info.path}: its extent cannot be transformed from {crs_name(info.crs)} to "
            f"{crs_name(crs)} ({err}); check the file's CRS"
        ) from None


def read_onto(
    info: RasterInfo,
    indexes: list[int],
    grid: Grid,
    convert: Callable[[np.ndarray], np.ndarray],
    fill: float,
    resampling: Resampling,
    pairs: bool = False,
) -> np.ndarray:
    """Read bands `indexes` of a raster once and bring them onto `grid`: [C, grid.h, grid.w].

    `convert` maps the raw float32 stack to the values to resample (e.g. nodata -> NaN,
    scale/offset, class values -> indexes); it runs before resampling. Grid pixels the raster
    does not cover are `fill`. `pairs`: a complex raster, read as real/imaginary channel pairs
    ([2C, ...], `raster.read`), each part resampled on its own.
    """
    offset = lattice_offset(info, grid)
    if offset is not None:
        # Same pixel lattice: a window read, no resampling. The raster may cover part of the grid.
        row, col = offset
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + grid.height, info.height), min(col + grid.width, info.width)
        if r1 <= r0 or c1 <= c0:
            raise DataError(f"{info.path} does not overlap the reference grid")
        part = convert(read(info, indexes, Window(c0, r0, c1 - c0, r1 - r0), pairs=pairs))
        if part.shape[1:] == grid.shape:
            return part
        out = np.full((part.shape[0], grid.height, grid.width), fill, dtype=part.dtype)
        out[:, r0 - row : r1 - row, c0 - col : c1 - col] = part
        return out
    window = source_window(info, grid)
    if window.width == 0 or window.height == 0:
        raise DataError(f"{info.path} does not overlap the reference grid")
    stack = convert(read(info, indexes, window, pairs=pairs))
    src = Grid(info.crs, _shifted(info.transform, window), int(window.height), int(window.width))
    return warp(stack, src, grid, resampling, fill, str(info.path))


def lattice_offset(info: RasterInfo, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the grid's origin in the raster's pixels when both share one pixel
    lattice (no resampling needed); None otherwise."""
    t, g = info.transform, grid.transform
    if info.crs != grid.crs or t.b != 0 or t.d != 0:
        return None
    for mine, ref in ((t.a, g.a), (t.e, g.e)):
        # Equal pixel size, to a tolerance that stays below _PIXEL_TOL across the whole grid.
        if abs(mine - ref) > _PIXEL_TOL * abs(ref) / max(grid.width, grid.height, 1):
            return None
    col, row = _apply(~t, g.c, g.f)
    if abs(col - round(col)) > _PIXEL_TOL or abs(row - round(row)) > _PIXEL_TOL:
        return None
    return round(row), round(col)


def source_window(info: RasterInfo, grid: Grid) -> Window:
    """The raster's pixels needed to resample onto `grid` (with a margin), clipped to the file."""
    if info.transform.b != 0 or info.transform.d != 0:
        return Window(0, 0, info.width, info.height)
    left, bottom, right, top = _to_crs(grid.bounds, grid.crs, info.crs, info)
    inv = ~info.transform
    c_a, r_a = _apply(inv, left, top)
    c_b, r_b = _apply(inv, right, bottom)
    c0 = max(0, math.floor(min(c_a, c_b)) - _MARGIN)
    c1 = min(info.width, math.ceil(max(c_a, c_b)) + _MARGIN)
    r0 = max(0, math.floor(min(r_a, r_b)) - _MARGIN)
    r1 = min(info.height, math.ceil(max(r_a, r_b)) + _MARGIN)
    return Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))


def warp(
    stack: np.ndarray, src: Grid, dst: Grid, resampling: Resampling, nodata: float, path: str
) -> np.ndarray:
    """Resample `stack` [C, h, w] from `src` onto `dst` in one call: [C, dst.height, dst.width].

    Pixels equal to `nodata` (NaN allowed) are excluded from the kernels; output pixels with no
    source data stay `nodata`.
    """
    out = np.full((stack.shape[0], dst.height, dst.width), nodata, dtype=stack.dtype)
    # GDAL's nodata-aware kernels cost ~20% more: use them only when nodata is present.
    present = np.isnan(stack).any() if np.isnan(nodata) else (stack == nodata).any()
    try:
        reproject(
            source=stack,
            destination=out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=dst.transform,
            dst_crs=dst.crs,
            src_nodata=nodata if present else None,
            dst_nodata=nodata,
            resampling=resampling,
        )
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise RasterError(f"{path}: cannot be resampled onto the reference grid ({err})") from None
    return out


def _apply(t: Affine, x: float, y: float) -> tuple[float, float]:
    """t applied to one point (spelled out: affine 3 deprecates `t * (x, y)`)."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def _shifted(t: Affine, window: Window) -> Affine:
    """Transform of the window's pixels (origin moved to the window's corner)."""
    x, y = _apply(t, window.col_off, window.row_off)
    return Affine(t.a, t.b, x, t.d, t.e, y)


def _footprint(t: Affine, width: int, height: int) -> Bounds:
    xs, ys = zip(*(_apply(t, c, r) for c, r in ((0, 0), (width, 0), (0, height), (width, height))))
    return min(xs), min(ys), max(xs), max(ys)


def _to_crs(bounds: Bounds, src: CRS, dst: CRS, info: RasterInfo) -> Bounds:
    if src == dst:
        return bounds
    try:
        return transform_bounds(src, dst, *bounds, densify_pts=21)
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise RasterError(
            f"{info.path}: the reference grid cannot be expressed in its CRS "
            f"{crs_name(dst)} ({err})"
        ) from None


def crs_name(crs: CRS) -> str:
    """Short readable CRS label (EPSG code when there is one)."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:60]


def _fmt(b: Bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"
