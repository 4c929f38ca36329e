"""C-band SAR backscatter (VV, VH) on its own coarser, shifted grid, with Gamma speckle.

Physics on the label grid first: sigma0 per class and object (moisture, wind, vegetation
state), radar shadow behind tall objects, layover of elevated scatterers toward the sensor and
double bounce at building walls facing it. Then the sensor: area-average onto the SAR grid
(`pixel x sar_pixel_factor`, origin shifted by a fraction of a SAR pixel), add the noise floor
and multiply by unit-mean Gamma speckle with `looks` looks (coefficient of variation
1/sqrt(looks) over a homogeneous area). Written as linear power (sar_units: linear). The grid
covers the whole scene; its edge pixels, partly outside, average the part inside. Power is
always > 0, so 0 is free to be the nodata value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from autors.synth.catalogue import CLASS_IDS, ClassDef

INCIDENCE_DEG = 35.0  # the sensor looks down from the east
NESZ_DB = -25.0  # noise-equivalent sigma0
DOUBLE_BOUNCE = (3.0, 0.15)  # linear sigma0 added at a wall foot facing the sensor (VV, VH)
GRID_SHIFT = (0.37, 0.29)  # SAR origin shift in SAR pixels (west, north)
NODATA = 0.0


@dataclass(frozen=True)
class SarGrid:
    transform: Affine
    width: int
    height: int


def sar_grid(label_transform: Affine, size: int, factor: float) -> SarGrid:
    """A grid `factor` times coarser than the labels, shifted, covering the whole scene."""
    p = label_transform.a
    ps = p * factor
    x0 = label_transform.c - GRID_SHIFT[0] * ps
    y0 = label_transform.f + GRID_SHIFT[1] * ps
    extent = size * p
    w = int(np.ceil((extent + GRID_SHIFT[0] * ps) / ps))
    h = int(np.ceil((extent + GRID_SHIFT[1] * ps) / ps))
    return SarGrid(Affine(ps, 0.0, x0, 0.0, -ps, y0), w, h)


def ground_sigma0(
    labels: np.ndarray, objects: np.ndarray, classes: tuple[ClassDef, ...], rng: np.random.Generator
) -> np.ndarray:
    """[2, H, W] linear sigma0 (VV, VH) of each pixel before geometry: class mean + object offset."""
    k = len(classes)
    base = np.array([[c.sar_vv_db, c.sar_vh_db] for c in classes], np.float32)  # [K, 2]
    spread = np.array([c.sar_spread_db for c in classes], np.float32)  # [K]
    offset = rng.uniform(-1.0, 1.0, int(objects.max()) + 1).astype(np.float32)  # per object
    idx = np.clip(labels.astype(np.int64) - 1, 0, k - 1)
    db = base[idx].transpose(2, 0, 1) + (offset[objects] * spread[idx])[None]  # [2, H, W]
    return 10.0 ** (db / 10.0)


def apply_geometry(
    sigma0: np.ndarray, height: np.ndarray, building: np.ndarray, pixel_size_m: float
) -> np.ndarray:
    """Radar shadow, layover and double bounce for a sensor looking west from the east."""
    cot = 1.0 / np.tan(np.radians(INCIDENCE_DEG))
    rise = pixel_size_m * cot  # line-of-sight rise per pixel toward the sensor
    h, w = height.shape
    # radar shadow: scan from the east (last column) westwards
    horizon = np.full(h, -np.inf)
    shadow = np.zeros((h, w), bool)
    for col in range(w - 1, -1, -1):
        shadow[:, col] = horizon > height[:, col] + 0.5
        horizon = np.maximum(horizon, height[:, col]) - rise
    out = np.where(shadow[None], 0.0, sigma0)
    # layover: an elevated scatterer appears h * cot(theta) closer to the sensor (east)
    shift = np.round(height * cot / pixel_size_m).astype(np.int64)
    moved = (shift > 0) & ~shadow
    rows, cols = np.nonzero(moved)
    dest = cols + shift[rows, cols]
    keep = dest < w
    layover = np.zeros_like(out)
    for band in range(out.shape[0]):
        np.add.at(layover[band], (rows[keep], dest[keep]), out[band, rows[keep], cols[keep]])
        out[band][moved] = 0.0
    out += layover
    # double bounce: ground pixel just east of a building wall (wall faces the sensor)
    foot = np.zeros((h, w), bool)
    foot[:, 1:] = building[:, :-1] & (height[:, :-1] - height[:, 1:] > 2.0) & ~building[:, 1:]
    for band, extra in enumerate(DOUBLE_BOUNCE):
        out[band][foot] += extra
    return out


def simulate(
    labels: np.ndarray,
    objects: np.ndarray,
    height: np.ndarray,
    classes: tuple[ClassDef, ...],
    label_transform: Affine,
    crs: CRS,
    factor: float,
    looks: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, SarGrid]:
    """([2, h, w] float32 linear VV/VH on the SAR grid, the grid)."""
    roof = CLASS_IDS["roof"]
    building = labels == roof if roof <= len(classes) else np.zeros(labels.shape, bool)
    fine = apply_geometry(
        ground_sigma0(labels, objects, classes, rng), height, building, label_transform.a
    ).astype(np.float32)
    grid = sar_grid(label_transform, labels.shape[0], factor)
    coarse = np.zeros((2, grid.height, grid.width), np.float32)
    for band in range(2):
        reproject(
            fine[band], coarse[band],
            src_transform=label_transform, src_crs=crs,
            dst_transform=grid.transform, dst_crs=crs,
            resampling=Resampling.average, dst_nodata=0.0,
        )
    coarse += 10.0 ** (NESZ_DB / 10.0)  # thermal noise floor, speckled like the signal
    coarse *= rng.gamma(shape=looks, scale=1.0 / looks, size=coarse.shape).astype(np.float32)
    return coarse, grid
