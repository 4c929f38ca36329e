"""Airborne LiDAR rasters: normalised surface height (nDSM) and 1064 nm intensity.

Weaknesses built in: vertical noise hides sub-decimetre relief (ploughed furrows), intensity
carries an uncalibrated gain per flight strip, water returns drop out (specular surface), and
there are occlusion holes and a gap between two flight strips. Gaps are -9999 in both bands.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from autors.synth.bands import LIDAR
from autors.synth.fields import smooth_noise
from autors.synth.surface import Surface, render

NODATA = -9999.0
HEIGHT_NOISE_M = 0.08
INTENSITY_SCALE = 1000.0
INTENSITY_NOISE = 0.15  # relative
STRIP_WIDTH_M = 200.0
WATER_DROPOUT = 0.25
HOLE_FRACTION = 0.01


def simulate(
    surface: Surface,
    height: np.ndarray,
    canopy: np.ndarray,
    water: np.ndarray,
    pixel_size_m: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """[2, H, W] float32: height (m), intensity; nodata -9999."""
    w = height.shape[1]
    # first returns: mostly the crown top, sometimes deeper inside the crown
    depth = np.where(canopy, rng.uniform(0.0, 0.15, height.shape), 0.0)
    ndsm = height * (1.0 - depth) + HEIGHT_NOISE_M * rng.standard_normal(height.shape)

    # active sensor: no sun, no shadows, so render with direct = 1 everywhere
    lit = replace(surface, direct=np.ones_like(surface.direct))
    refl = render(lit, LIDAR.srf, LIDAR.centres, psf_sigma_px=0.5)[0]  # [H, W]
    strip_px = max(8, int(STRIP_WIDTH_M / pixel_size_m))
    strip = np.arange(w) // strip_px  # flight strips run north-south
    gains = rng.uniform(0.85, 1.15, int(strip.max()) + 1)
    incidence = np.where(canopy, rng.uniform(0.6, 1.0, height.shape), 1.0)  # leaves at all angles
    intensity = INTENSITY_SCALE * refl * gains[strip][None, :] * incidence
    intensity *= 1.0 + INTENSITY_NOISE * rng.standard_normal(height.shape)

    gap = water & (rng.random(height.shape) < WATER_DROPOUT)
    holes = smooth_noise(height.shape, 3.0, rng)
    gap |= holes > np.quantile(holes, 1.0 - HOLE_FRACTION)
    if strip.max() >= 1:  # the two first strips do not quite overlap
        edge = strip_px
        gap[:, edge : edge + max(1, round(2.0 / pixel_size_m))] = True
    out = np.stack([ndsm, np.clip(intensity, 0.0, None)]).astype(np.float32)
    out[:, gap] = NODATA
    return out
