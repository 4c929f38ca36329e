"""Generate the small GeoTIFF fixtures of the data tests (real files, written with rasterio).

    python tests/data/make_fixtures.py OUT_DIR    # writes the scene and a task.yaml

The scene: sparse labels on a 10 m UTM grid, an optical sensor on the same lattice with a wider
extent and a nodata corner, a SAR sensor at 20 m with a shifted origin (linear power), and a
LiDAR DEM in geographic EPSG:4326. Sensor values are *linear functions of map coordinates*, so
the exact value expected at any reference pixel centre is known (bilinear resampling reproduces
a linear function exactly), which is what the alignment tests check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_xy
from rasterio.warp import transform_bounds

UTM = CRS.from_epsg(32632)
WGS84 = CRS.from_epsg(4326)
X0, Y0 = 500_000.0, 5_000_000.0  # top-left corner of the label grid (UTM 32N)
ROWS, COLS = 60, 80  # label grid, 10 m pixels
LABEL_TRANSFORM = Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)
CLASSES = {1: "water", 2: "trees", 3: "urban"}
OPT_NODATA = -9999.0
OPT_BANDS = ["blue", "green", "red", "nir"]


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: CRS | None,
    transform: Affine | None,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
) -> Path:
    """Write `data` [C, H, W] as a tiled, compressed GeoTIFF."""
    data = data[None] if data.ndim == 2 else data
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)
    return path


def centres(transform: Affine, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (x, y) of pixel centres: two [rows, cols] arrays."""
    c, r = np.meshgrid(np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    t = transform
    return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def optical_field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[4, ...] reflectance-like values, linear in UTM coordinates."""
    return np.stack([100.0 * (b + 1) + 0.1 * (x - X0) - 0.2 * (y - Y0) for b in range(4)])


def sar_field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[2, ...] linear power (positive), linear in UTM coordinates."""
    return np.stack(
        [0.5 * (b + 1) + 1e-3 * (x - X0 + 100) + 5e-4 * (Y0 - y + 100) for b in range(2)]
    )


LON0, LAT0 = 9.0, 45.1  # near the grid (UTM 32N is centred on 9 deg E)


def dem_field(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """[1, ...] height, linear in longitude/latitude."""
    return (200.0 + 1e4 * (lon - LON0) + 2e4 * (lat - LAT0))[None]


def label_values() -> np.ndarray:
    """uint8 [ROWS, COLS]: sparse labels (about 1 pixel in 3), class by column band."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    cls = np.where(c < 27, 1, np.where(c < 54, 2, 3))
    return np.where((r * 7 + c * 3) % 3 == 0, cls, 0).astype(np.uint8)


def make_scene(folder: Path) -> dict[str, Path]:
    """Write labels, optical, sar and lidar rasters into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"labels": write_raster(folder / "labels.tif", label_values(), UTM, LABEL_TRANSFORM)}

    # Optical: same 10 m lattice, origin 5 columns left and 3 rows up, wider than the labels.
    t_opt = Affine(10.0, 0.0, X0 - 50, 0.0, -10.0, Y0 + 30)
    opt = optical_field(*centres(t_opt, ROWS + 8, COLS + 12)).astype(np.float32)
    opt[:, 3:8, 5:10] = OPT_NODATA  # label-grid rows 0..4, cols 0..4
    paths["optical"] = write_raster(folder / "optical.tif", opt, UTM, t_opt, OPT_NODATA, OPT_BANDS)

    # SAR: 20 m, origin shifted by 45 m (not a multiple of 10 m), covering the label grid.
    t_sar = Affine(20.0, 0.0, X0 - 45, 0.0, -20.0, Y0 + 45)
    sar = sar_field(*centres(t_sar, 35, 45)).astype(np.float32)
    paths["sar"] = write_raster(folder / "sar.tif", sar, UTM, t_sar, None, ["VV", "VH"])

    # LiDAR DEM in EPSG:4326, covering the label grid with a margin.
    left, bottom, right, top = transform_bounds(
        UTM, WGS84, X0 - 100, Y0 - ROWS * 10 - 100, X0 + COLS * 10 + 100, Y0 + 100
    )
    res = 5e-5
    t_dem = Affine(res, 0.0, left, 0.0, -res, top)
    h, w = int(np.ceil((top - bottom) / res)), int(np.ceil((right - left) / res))
    dem = dem_field(*centres(t_dem, h, w)).astype(np.float32)
    paths["lidar"] = write_raster(folder / "lidar.tif", dem, WGS84, t_dem, None, ["dsm"])
    return paths


def reference_centres_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = transform_xy(UTM, WGS84, x.ravel(), y.ravel())
    return np.asarray(lon).reshape(x.shape), np.asarray(lat).reshape(x.shape)


def task_dict(paths: dict[str, Path]) -> dict:
    """A patch-classification task over the generated scene (spatial blocks of 10 px)."""
    return {
        "name": "fixture",
        "task": "patch_classification",
        "sensors": {
            "optical": {
                "kind": "optical",
                "path": paths["optical"].name,
                "bands": OPT_BANDS,
                "scale": 0.5,
                "offset": 1.0,
            },
            "sar": {"kind": "sar", "path": paths["sar"].name, "sar_units": "linear"},
            "lidar": {"kind": "lidar", "path": paths["lidar"].name},
        },
        "labels": {"path": paths["labels"].name, "classes": CLASSES, "ignore": 0},
        "split": {
            "kind": "spatial_blocks",
            "block_size": 10,
            "test_fraction": 0.3,
            "val_fraction": 0.2,
        },
        "patch_size": 5,
        "seed": 0,
    }


def write_task(folder: Path, data: dict, name: str = "task.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def truncated_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """A copy of `src` cut to `keep` of its bytes (a broken download)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures")
    print(write_task(out, task_dict(make_scene(out))))
