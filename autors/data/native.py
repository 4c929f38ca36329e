"""How much coarser each sensor's own rasters are than the grid the scenes are aligned on.

Every sensor is resampled to its scene's reference grid, so a 20 m sensor on a 10 m grid
reaches the model as 2 x 2 copies of each of its pixels. An encoder-decoder can let such a
sensor enter at the stage whose resolution matches its own (`fusion.BranchSpec.scale`):
this module says which scale that is, from the raster headers (no pixels read).
"""

from __future__ import annotations

import math

import numpy as np

from autors.data.grid import Grid
from autors.data.index import DatasetIndex
from autors.data.profile import pixel_size

# A sensor counts as 2^k times coarser from 0.9 x 2^k: pixel sizes such as 10 m vs 20.0 m,
# or 30 m vs 15 m pan-sharpening pairs, are rarely exact ratios after reprojection.
_TOLERANCE = 0.9


def native_scales(index: DatasetIndex) -> dict[str, int]:
    """Per sensor: k >= 0 such that its rasters' pixels are about 2^k times the grid's
    (geometric mean of x and y, in metres), the median over the scenes that have it."""
    ratios: dict[str, list[float]] = {}
    for scene in index.scenes:
        grid = pixel_size(scene.grid).mean_m
        for name, info in scene.rasters.items():
            if name not in index.band_names:
                continue  # a mask or QA raster, no model input
            ratios.setdefault(name, []).append(pixel_size(Grid.of(info)).mean_m / grid)
    out = {}
    for name in index.band_names:
        ratio = float(np.median(ratios[name])) if ratios.get(name) else 1.0
        out[name] = max(0, math.floor(math.log2(ratio / _TOLERANCE))) if ratio > 0 else 0
    return out
